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
    assert figures["metrics"]["equal"]["max_abs_difference"] == 0.0
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
