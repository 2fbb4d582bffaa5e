"""The command line as a user meets it: real processes, real files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segloop.core import images
from segloop.core.records import Geometry

ROOT = Path(__file__).resolve().parents[1]


def segloop(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segloop", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def cube(shape, lo, hi) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1
    return mask


def test_score_prints_json_with_known_dice(tmp_path):
    geometry = Geometry(spacing_mm=(3.0, 1.0, 1.0))
    gt = cube((10, 20, 20), (2, 5, 5), (6, 15, 15))  # 4 * 10 * 10 = 400 voxels
    pred = cube((10, 20, 20), (2, 5, 5), (6, 15, 10))  # half of it
    images.write_image(tmp_path / "gt.nii.gz", gt, geometry)
    images.write_image(tmp_path / "pred.mha", pred, geometry)
    result = segloop(
        "score", str(tmp_path / "pred.mha"), str(tmp_path / "gt.nii.gz"), "--metrics", "dice,fnv,hd"
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)["metrics"]
    assert scores["dice"]["mean"] == pytest.approx(2 * 200 / 600)
    assert scores["fnv"]["mean"] == 0.0  # the GT component is touched
    assert scores["hd"]["mean"] == pytest.approx(5.0)  # 5 voxels of 1 mm along x


def test_score_refuses_mismatched_grids_in_one_line(tmp_path):
    images.write_image(
        tmp_path / "gt.nii.gz",
        cube((10, 20, 20), (1, 1, 1), (3, 3, 3)),
        Geometry(spacing_mm=(3.0, 1.0, 1.0)),
    )
    images.write_image(
        tmp_path / "pred.nii.gz",
        cube((10, 20, 21), (1, 1, 1), (3, 3, 3)),
        Geometry(spacing_mm=(3.0, 1.0, 1.0)),
    )
    result = segloop("score", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "pred.nii.gz" in result.stderr and "shape" in result.stderr


def test_score_names_a_corrupt_file(tmp_path):
    (tmp_path / "gt.nii.gz").write_bytes(b"not an image at all")
    images.write_image(
        tmp_path / "pred.nii.gz",
        cube((4, 4, 4), (1, 1, 1), (2, 2, 2)),
        Geometry(spacing_mm=(1.0, 1.0, 1.0)),
    )
    result = segloop("score", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"))
    assert result.returncode == 2 and "gt.nii.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_metric_is_a_clear_error(tmp_path):
    images.write_image(
        tmp_path / "a.nii.gz",
        cube((4, 4, 4), (1, 1, 1), (2, 2, 2)),
        Geometry(spacing_mm=(1.0, 1.0, 1.0)),
    )
    result = segloop(
        "score",
        str(tmp_path / "a.nii.gz"),
        str(tmp_path / "a.nii.gz"),
        "--metrics",
        "dice,jaccardish",
    )
    assert result.returncode == 2 and "jaccardish" in result.stderr


DEMO_TASKS = ("autopet", "medsegfm", "toothfairy3", "trials")


def test_demo_writes_runs_summaries_and_a_leaderboard(tmp_path):
    result = segloop("demo", "--out", str(tmp_path / "demo"), "--cases", "3")
    assert result.returncode == 0, result.stderr
    assert "dice by step" in result.stdout
    summaries = {}
    for task in DEMO_TASKS:
        for submission in ("region-growing", "empty"):
            run = tmp_path / "demo" / "runs" / task / submission
            summary = json.loads((run / "summary.json").read_text())
            assert summary["num_cases"] == 3 and summary["failed_steps"] == 0
            summaries[task, submission] = summary
        dice = summaries[task, "region-growing"]["mean_curve"]["dice"]
        assert dice[-1] > dice[0], (task, dice)
        assert max(summaries[task, "empty"]["mean_curve"]["dice"]) == 0.0
    index = (tmp_path / "demo" / "leaderboard" / "index.html").read_text()
    assert all(task in index for task in DEMO_TASKS)
    # the demo keeps predictions: a case page with pictures per task, submission and case
    case_pages = list((tmp_path / "demo" / "leaderboard").glob("case-*.html"))
    assert len(case_pages) == len(DEMO_TASKS) * 2 * 3
    assert all("data:image/png;base64," in page.read_text() for page in case_pages)
    again = segloop("demo", "--out", str(tmp_path / "demo"), "--cases", "3")
    assert again.returncode == 0  # resumes: nothing left to run, same summaries
    for (task, submission), summary in summaries.items():
        run = tmp_path / "demo" / "runs" / task / submission
        assert json.loads((run / "summary.json").read_text()) == summary


def test_demo_rejects_an_unknown_task(tmp_path):
    result = segloop("demo", "--out", str(tmp_path / "demo"), "--tasks", "autopett")
    assert result.returncode == 2 and "autopett" in result.stderr


@pytest.mark.parametrize(
    "command", ["run", "check", "demo", "phantoms", "score", "tasks", "leaderboard"]
)
def test_every_command_explains_itself(command):
    result = segloop(command, "--help")
    assert result.returncode == 0 and "usage: segloop" in result.stdout


def test_run_cli_jobs_and_classes(tmp_path):
    assert (
        segloop("phantoms", "jaw", "--out", str(tmp_path / "jaw"), "--cases", "2").returncode == 0
    )
    base = [
        "run",
        "--data",
        str(tmp_path / "jaw"),
        "--task",
        "medsegfm",
        "--no-progress",
        "--model",
        "python:segloop.baselines.region_growing:predict",
    ]
    refused = segloop(*base, "--out", str(tmp_path / "r0"))
    assert refused.returncode == 2 and "--classes" in refused.stderr  # class 2 would go unscored
    serial = segloop(*base, "--classes", "1:Left_IAC,2:Right_IAC", "--out", str(tmp_path / "r1"))
    parallel = segloop(
        *base, "--classes", "1:Left_IAC,2:Right_IAC", "--jobs", "2", "--out", str(tmp_path / "r2")
    )
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr
    for case_id in ("jaw_000", "jaw_001"):
        one = (tmp_path / "r1" / "cases" / f"{case_id}.json").read_bytes()
        assert one == (tmp_path / "r2" / "cases" / f"{case_id}.json").read_bytes()
        assert set(json.loads(one)["steps"][0]["metrics"]["dice"]["per_class"]) == {"1", "2"}


def test_run_with_a_broken_model_warns_with_the_reason(tmp_path):
    data = tmp_path / "pet"
    made = segloop("phantoms", "pet", "--out", str(data), "--cases", "1", "--shape", "24,32,32")
    assert made.returncode == 0, made.stderr
    result = segloop(
        "run", "--data", str(data), "--task", "medsegfm", "--out", str(tmp_path / "run"),
        "--model", "cmd:/bin/false {input} {output}", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # failed steps are results, not a crash
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["failed_steps"] == 6
    assert summary["failures"]["exit_code"]["steps"] == 6
    assert "6 step(s) failed with exit_code" in result.stderr
    assert "exit code 1" in result.stderr and "Traceback" not in result.stderr
    # a program that does not exist is a mistyped spec: refused before a run folder is made
    missing = segloop(
        "run", "--data", str(data), "--task", "medsegfm", "--out", str(tmp_path / "run2"),
        "--model", "cmd:/nonexistent/model {input} {output}", "--no-progress",
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr == (
        "segloop: error: cmd model: program '/nonexistent/model' not found (nor executable)\n"
    )
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize(
    "option", [("--jobs", "0"), ("--step-time-limit", "-1"), ("--memory-mb", "0"), ("--gpus", "x")]
)
def test_run_refuses_nonsense_limits(tmp_path, option):
    result = segloop(
        "run", "--data", str(tmp_path), "--task", "autopet", "--out", str(tmp_path / "run"),
        "--model", "python:segloop.baselines.trivial:empty", *option,
    )  # fmt: skip
    assert result.returncode == 2 and option[0] in result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_every_problem_case_before_any_model_runs(tmp_path):
    data = tmp_path / "pet"
    made = segloop("phantoms", "pet", "--out", str(data), "--cases", "3", "--shape", "16,24,24")
    assert made.returncode == 0, made.stderr
    corrupt = data / "imagesTs" / "pet_001_0001.nii.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    label, geometry = images.read_image(data / "labelsTs" / "pet_002.nii.gz")
    images.write_image(data / "labelsTs" / "pet_002.nii.gz", np.zeros_like(label), geometry)

    result = segloop("check", "--data", str(data), "--task", "medsegfm", "--no-progress")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("segloop: problem")]
    assert len(problems) == 2
    assert "pet_001_0001.nii.gz" in problems[0] and "pet_002" in problems[1]
    assert "1 of 3 cases ready" in result.stdout
    assert "Traceback" not in result.stderr
    assert segloop("check", "--data", str(data), "--task", "autopet", "--cases", "pet_000,pet_002",
                   "--no-progress").returncode == 0  # fmt: skip


def test_demo_skips_the_cases_a_task_cannot_run(tmp_path):
    # PET phantom 4 has no lesion: a negative case for autoPET, nothing to prompt for MedSegFM
    result = segloop("demo", "--out", str(tmp_path), "--cases", "5", "--tasks", "medsegfm")
    assert result.returncode == 0, result.stderr
    assert "medsegfm skips pet_004" in result.stdout
    summary = json.loads((tmp_path / "runs/medsegfm/region-growing/summary.json").read_text())
    assert [case["case_id"] for case in summary["cases"]] == [f"pet_00{i}" for i in range(4)]


def test_escape_sequences_from_a_model_are_shown_not_obeyed(tmp_path):
    """A model's error text with terminal escapes (title, clipboard, clear screen) reaches the
    run's warning line as visible escapes; the raw control characters never reach the
    terminal, and the case file keeps the text as it was (JSON escapes it)."""
    data = tmp_path / "data"
    assert segloop("phantoms", "pet", "--out", str(data), "--cases", "1").returncode == 0
    run = segloop(
        "run", "--data", str(data), "--task", "autopet", "--out", str(tmp_path / "run"),
        "--model", "python:tests.models:raises_with_escapes", "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stderr + run.stdout and "\x07" not in run.stderr + run.stdout
    assert "boom\\x1b]0;pwned\\x07" in run.stderr
    (case_file,) = (tmp_path / "run" / "cases").glob("pet_*[0-9].json")
    assert "\x1b]0;pwned" in json.loads(case_file.read_text())["steps"][0]["failure"]["detail"]


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`segloop tasks | head -1`: the pipe closes before segloop writes; no traceback, the
    shell's exit code for a program stopped by a closed pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "segloop", "tasks", "autopet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
