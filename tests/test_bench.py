"""`segloop bench --quick`, the CI smoke version of the benchmark (issues 4 and 6).

It asserts what the bench reports, never how fast: the fast and naive implementations agree,
the runs with 1 and N workers write identical case files, and the Docker section measured both
modes (CI requires an engine; without one it must say why it skipped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_equal_results_and_docker_overhead(tmp_path):
    figures_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "segloop", "bench", "--quick", "--json", str(figures_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(figures_path.read_text())
    for work in ("click", "metrics"):
        equal = figures[work]["equal"]
        assert equal["compared"] >= 1 and equal["same"] == equal["compared"], work
    # the organ-scale engine sums the areas in another order than the naive EDT version
    assert figures["metrics"]["equal"]["max_abs_difference"] <= 1e-12
    runs = figures["throughput"]["runs"]
    assert len(runs) >= 2 and all(row["identical_to_first"] for row in runs)
    docker = figures["docker"]
    if "skipped" in docker:
        assert os.environ.get("SEGLOOP_REQUIRE_DOCKER") != "1", docker["skipped"]
        assert "Docker harness overhead: skipped" in result.stdout
    else:
        assert docker["per_step_step_median_s"] > 0 and docker["session_step_median_s"] > 0
        ratio = docker["per_step_step_median_s"] / docker["session_step_median_s"]
        assert abs(docker["step_ratio"] - ratio) < 1e-12
        assert "ratio per-step / session" in result.stdout
    for row in runs:  # the time budget of each full run (issue 16, item 4)
        budget = row["time_budget"]
        assert budget["cases"] == figures["throughput"]["cases"] and budget["model_s"] > 0
    assert "time: model" in result.stdout


def test_quick_real_bench_without_the_network_skips_mni_and_agrees(tmp_path):
    """`segloop bench --real --quick --no-download` (issue 16, item 5): the MNI152 rows are
    skipped with a message (nothing cached, no download asked), never at import time; the
    phantoms' values equal surface-distance's and the clicks the naive ones."""
    result = subprocess.run(
        [sys.executable, "-m", "segloop", "bench", "--real", "--quick", "--no-download"]
        + ["--cache", str(tmp_path / "empty-cache")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "MNI152 skipped: no nilearn wheel in" in result.stdout
    assert not (tmp_path / "empty-cache").exists()
    rows = [line for line in result.stdout.splitlines() if line.startswith("| organ phantom")]
    assert len(rows) == 2
    assert float(rows[0].split("|")[-2]) <= 1e-12  # Dice, NSD@2, HD95: surface-distance's
    assert rows[1].endswith("| yes |")  # voxel and spacing-aware clicks equal the naive ones
    assert "all classes' Sakinis clicks" in result.stdout
