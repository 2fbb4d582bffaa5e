"""docs/participants.md, run as a participant would: every ```sh block in order, in one fresh
folder, with the real CLI, Docker and the real images (issue 17, item 3). The same predict
function must score the same through python:, cmd:, docker: per step, session mode, the
archive and the Grand Challenge-style container."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "participants.md"
IMAGES = ("my-team/model:1", "my-team/gc-model:1")
RUNS = ("python", "command", "docker", "session", "archive", "grand-challenge")

pytestmark = pytest.mark.docker


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def remove_images() -> None:
    for tag in IMAGES:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def test_the_doc_has_the_four_roles_commands():
    blocks = sh_blocks(DOC.read_text())
    text = "\n".join(blocks)
    assert len(blocks) == 5
    for needle in ("python:model:predict", "cmd:python3 model.py", "docker:my-team/model:1"):
        assert needle in text
    assert "docker:gc-autopet+my-team/gc-model:1" in text and "sdk init my-gc-model --gc" in text


def test_every_command_of_the_participants_doc_runs_and_scores_alike(tmp_path):
    engine = subprocess.run(["docker", "version"], capture_output=True, check=False)
    if engine.returncode != 0:  # CI (SEGLOOP_REQUIRE_DOCKER=1) turns this skip into a failure
        pytest.skip("no Docker engine reachable")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    remove_images()
    timings = []
    try:
        for block in sh_blocks(DOC.read_text()):
            started = time.perf_counter()
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            timings.append(round(time.perf_counter() - started, 1))
            assert result.returncode == 0, (
                f"{block}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
            assert "warning" not in result.stderr, result.stderr[-2000:]
    finally:
        remove_images()
    print("participants doc, seconds per block:", timings)
    means = {}
    for name in RUNS:
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert summary["num_cases"] == 2 and summary["failed_steps"] == 0
        means[name] = (summary["mean"], summary["mean_curve"])
    assert all(means[name] == means["python"] for name in RUNS), means
    assert means["python"][0]["dice"]["final"] > 0  # the model does find something
    assert (tmp_path / "step3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "runs" / "python" / "cases" / "pet_000").glob("*.nii.gz"))) == 11
    site = tmp_path / "site"
    assert (site / "index.html").exists() and len(list(site.glob("case-*.html"))) == 2
