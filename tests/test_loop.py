"""The interaction loop, the run store and the local back-ends, end to end on real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segloop import runs
from segloop.app import phantoms
from segloop.baselines.trivial import OracleBackend
from segloop.cli.commands import execute_run
from segloop.containers.local import SubprocessBackend
from segloop.core import dataset, images
from segloop.core.records import SegloopError
from segloop.loop import run_case
from segloop.protocols.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
CMD_MODEL = ROOT / "tests" / "cmd_model.py"
SMALL_PET = (32, 48, 48)


@pytest.fixture(scope="module")
def pet_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pet")
    phantoms.write_phantom_dataset(folder, "pet", 3, seed=1, shape=SMALL_PET)
    return folder


def case_files(run_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted((run_dir / "cases").glob("*.json"))
        if not p.name.endswith(".timing.json")
    }


def steps_of(run_dir: Path, case_id: str) -> list[dict]:
    return json.loads((run_dir / "cases" / f"{case_id}.json").read_text())["steps"]


def lesion_case_id(data: Path) -> str:
    for case_id in dataset.list_case_ids(data):
        if runs.load_dataset_case(data, case_id).label.any():
            return case_id
    raise AssertionError("the phantom dataset has no case with lesions")


def test_baseline_dice_rises_with_clicks(pet_data, tmp_path):
    summary = execute_run(
        pet_data,
        "autopet",
        "python:segloop.baselines.region_growing:predict",
        tmp_path / "run",
        show_progress=False,
    )
    dice_curve = summary["mean_curve"]["dice"]
    assert len(dice_curve) == 11
    assert dice_curve[-1] > dice_curve[0] + 0.2
    assert summary["failed_steps"] == 0
    figures = summary["mean"]["dice"]
    assert figures["auc_normalised"] == pytest.approx(figures["auc_raw"] / 10)
    assert (tmp_path / "run" / "summary.csv").read_text().count("\n") == 3 + 2  # header, 3, mean


def test_oracle_scores_perfectly(pet_data):
    task = get_task("autopet")
    case = runs.load_dataset_case(pet_data, lesion_case_id(pet_data))
    outcome = run_case(case, task, OracleBackend({case.case_id: case.label}))
    assert all(s.metrics["dice"]["mean"] == 1.0 for s in outcome.steps)
    assert all(s.metrics["fpv_f32"]["mean"] == 0.0 for s in outcome.steps)


def test_same_bytes_twice_and_in_any_case_order(pet_data, tmp_path):
    spec = runs.RunSpec(
        pet_data, "autopet", "python:segloop.baselines.region_growing:predict", "rg", 3
    )
    ids = dataset.list_case_ids(pet_data)
    for name, order in (("a", ids), ("b", ids), ("c", list(reversed(ids)))):
        runs.execute(spec, tmp_path / name, runs.pending_case_ids(spec, tmp_path / name, order))
    first = case_files(tmp_path / "a")
    assert len(first) == 3
    assert first == case_files(tmp_path / "b") == case_files(tmp_path / "c")


@pytest.mark.slow
def test_serial_parallel_and_dask_give_the_same_bytes(pet_data, tmp_path):
    spec = runs.RunSpec(
        pet_data, "autopet", "python:segloop.baselines.region_growing:predict", "rg", 3
    )
    ids = dataset.list_case_ids(pet_data)
    for name, options in (
        ("serial", {}),
        ("jobs", {"jobs": 2}),
        ("dask", {"jobs": 2, "use_dask": True}),
    ):
        runs.execute(
            spec, tmp_path / name, runs.pending_case_ids(spec, tmp_path / name, ids), **options
        )
    serial = case_files(tmp_path / "serial")
    assert len(serial) == 3
    assert serial == case_files(tmp_path / "jobs") == case_files(tmp_path / "dask")


def test_failed_step_is_scored_empty_and_never_reuses_an_older_output(pet_data, tmp_path):
    case_id = lesion_case_id(pet_data)
    execute_run(
        pet_data,
        "autopet",
        "python:tests.models:raises",
        tmp_path / "r",
        case_ids=[case_id],
        show_progress=False,
    )
    steps = steps_of(tmp_path / "r", case_id)
    assert steps[1]["failure"]["reason"] == "exception"
    assert "crashed on purpose" in steps[1]["failure"]["detail"]
    assert steps[1]["metrics"]["dice"]["mean"] == 0.0
    assert steps[2]["failure"] is None and steps[2]["metrics"]["dice"]["mean"] > 0.0

    execute_run(
        pet_data,
        "autopet",
        "python:tests.models:wrong_shape",
        tmp_path / "w",
        case_ids=[case_id],
        show_progress=False,
    )
    failure = steps_of(tmp_path / "w", case_id)[1]["failure"]
    assert failure["reason"] == "invalid_output" and "(3, 3, 3)" in failure["detail"]


def cmd_backend(mode: str, step_limit_s: float = 30.0) -> SubprocessBackend:
    return SubprocessBackend(
        (sys.executable, str(CMD_MODEL), mode, "{input}", "{output}"),
        step_time_limit_s=step_limit_s,
    )


@pytest.mark.parametrize(
    ("mode", "reason", "text"),
    [
        ("exit3", "exit_code", "something went wrong"),
        ("wrong_shape", "invalid_output", "shape"),
        ("nan", "invalid_output", "NaN"),
        ("no_file", "invalid_output", "no prediction.npy"),
    ],
)
def test_subprocess_failures_are_recorded(pet_data, mode, reason, text):
    task = get_task("autopet")
    case = runs.load_dataset_case(pet_data, lesion_case_id(pet_data))
    outcome = run_case(case, task, cmd_backend(mode))
    failure = outcome.steps[1].failure
    assert failure is not None and failure.reason == reason
    assert text in failure.detail + failure.log_tail
    assert all(s.metrics["dice"]["mean"] == 0.0 for s in outcome.steps)


def test_subprocess_timeout_kills_the_step(pet_data):
    task = get_task("autopet")
    case = runs.load_dataset_case(pet_data, lesion_case_id(pet_data))
    short = get_task("autopet")
    object.__setattr__(short, "num_steps", 2)
    object.__setattr__(short, "auc_steps", (0, 1))
    object.__setattr__(short, "auc_x", (0.0, 1.0))
    outcome = run_case(case, short, cmd_backend("sleep", step_limit_s=1.0))
    assert [s.failure.reason for s in outcome.steps] == ["timeout", "timeout"]
    assert "going to sleep" in outcome.steps[0].failure.log_tail
    assert all(s.model_wall_time_s < 10 for s in outcome.steps)
    assert task.num_steps == 11  # the preset itself is untouched


def test_subprocess_contract_gives_clicks_and_scores(pet_data):
    task = get_task("autopet")
    case = runs.load_dataset_case(pet_data, lesion_case_id(pet_data))
    outcome = run_case(case, task, cmd_backend("ok"))
    assert all(s.failure is None for s in outcome.steps)
    assert outcome.steps[0].metrics["dice"]["mean"] == 0.0  # no click yet, nothing predicted
    assert outcome.steps[-1].metrics["dice"]["mean"] > 0.0


def test_subprocess_baseline_equals_in_process(pet_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the step runs in its own folder
    case_id = lesion_case_id(pet_data)
    sdk = f'cmd:"{sys.executable}" -m segloop.containers.sdk.segloop_sdk --predict segloop.baselines.region_growing:predict'
    execute_run(
        pet_data,
        "autopet",
        sdk,
        tmp_path / "cmd",
        submission="rg",
        case_ids=[case_id],
        show_progress=False,
    )
    execute_run(
        pet_data,
        "autopet",
        "python:segloop.baselines.region_growing:predict",
        tmp_path / "py",
        submission="rg",
        case_ids=[case_id],
        show_progress=False,
    )
    cmd_steps, py_steps = steps_of(tmp_path / "cmd", case_id), steps_of(tmp_path / "py", case_id)
    assert [s["failure"] for s in cmd_steps] == [None] * 11
    assert [s["metrics"] for s in cmd_steps] == [s["metrics"] for s in py_steps]


def test_resume_after_kill_minus_9(pet_data, tmp_path):
    ids = dataset.list_case_ids(pet_data)
    marker = tmp_path / "killed-once"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SEGLOOP_TEST_KILL": f"{ids[1]}:4:{marker}"}
    command = [
        sys.executable,
        "-m",
        "segloop",
        "run",
        "--data",
        str(pet_data),
        "--task",
        "autopet",
        "--model",
        "python:tests.models:kills_harness_once",
        "--name",
        "rg",
        "--no-progress",
    ]
    first = subprocess.run(
        [*command, "--out", str(tmp_path / "run")], env=env, capture_output=True, cwd=ROOT
    )
    assert first.returncode == -9 and marker.exists()
    assert set(case_files(tmp_path / "run")) == {f"{ids[0]}.json"}
    kept = (tmp_path / "run" / "cases" / f"{ids[0]}.json").stat().st_mtime_ns

    second = subprocess.run(
        [*command, "--out", str(tmp_path / "run")], env=env, capture_output=True, cwd=ROOT
    )
    assert second.returncode == 0, second.stderr.decode()
    assert (tmp_path / "run" / "cases" / f"{ids[0]}.json").stat().st_mtime_ns == kept
    clean = subprocess.run(
        [*command, "--out", str(tmp_path / "clean")], env=env, capture_output=True, cwd=ROOT
    )
    assert clean.returncode == 0
    assert case_files(tmp_path / "run") == case_files(tmp_path / "clean")
    assert not list((tmp_path / "run" / "cases").glob(".*.tmp"))


def test_run_folder_refuses_another_configuration(pet_data, tmp_path):
    execute_run(
        pet_data,
        "autopet",
        "python:segloop.baselines.trivial:empty",
        tmp_path / "r",
        case_ids=["pet_000"],
        show_progress=False,
    )
    with pytest.raises(SegloopError, match="another configuration"):
        execute_run(
            pet_data,
            "autopet",
            "python:segloop.baselines.trivial:empty",
            tmp_path / "r",
            seed=5,
            case_ids=["pet_000"],
            show_progress=False,
        )


def test_a_case_whose_inputs_changed_runs_again(pet_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(pet_data, data)
    out = tmp_path / "run"

    def run_and_times() -> dict[str, int]:
        execute_run(
            data,
            "autopet",
            "python:segloop.baselines.region_growing:predict",
            out,
            show_progress=False,
        )
        return {p.name: p.stat().st_mtime_ns for p in (out / "cases").glob("*.json")}

    first_times = run_and_times()
    first = case_files(out)
    for path in data.rglob("*.nii.gz"):  # same bytes, other times: a copied dataset
        os.utime(path, ns=(10**9, 10**9))
    assert run_and_times() == first_times
    assert "changed" not in capsys.readouterr().err

    case_id = lesion_case_id(data)
    label_path = data / "labelsTs" / f"{case_id}.nii.gz"
    label, geometry = images.read_image(label_path)
    images.write_image(label_path, np.zeros_like(label), geometry)  # the lesions are gone
    times = run_and_times()
    assert f"case {case_id}: labelsTs/{case_id}.nii.gz changed" in capsys.readouterr().err
    again = case_files(out)
    name = f"{case_id}.json"
    assert again[name] != first[name] and times[name] != first_times[name]
    assert {k: v for k, v in again.items() if k != name} == {
        k: v for k, v in first.items() if k != name
    }
    assert all(times[k] == t for k, t in first_times.items() if not k.startswith(case_id))
    assert (
        json.loads(again[name])["steps"][-1]["metrics"]
        != json.loads(first[name])["steps"][-1]["metrics"]
    )


def test_json_has_no_nan(pet_data, tmp_path):
    execute_run(
        pet_data,
        "autopet",
        "python:segloop.baselines.trivial:empty",
        tmp_path / "r",
        show_progress=False,
    )
    for path in (tmp_path / "r").rglob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
        json.loads(text)


def test_cli_errors_are_one_line(pet_data, tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segloop",
            "run",
            "--data",
            str(missing),
            "--task",
            "autopet",
            "--model",
            "python:segloop.baselines.trivial:empty",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    bad_model = subprocess.run(
        [
            sys.executable,
            "-m",
            "segloop",
            "run",
            "--data",
            str(pet_data),
            "--task",
            "autopet",
            "--model",
            "python:no.such.module:fn",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad_model.returncode == 2 and "Traceback" not in bad_model.stderr
    assert "no.such.module" in bad_model.stderr


@pytest.mark.parametrize("task_name", ["medsegfm", "toothfairy3"])
def test_an_empty_label_is_refused_where_the_robot_user_needs_a_target(task_name):
    case = phantoms.pet_phantom(0, 0, shape=(16, 24, 24))
    empty = replace(case, label=np.zeros_like(case.label))
    with pytest.raises(SegloopError, match="no foreground voxel"):
        run_case(empty, get_task(task_name), OracleBackend({empty.case_id: empty.label}))


def test_an_empty_label_is_a_negative_case_for_autopet():
    case = phantoms.pet_phantom(0, 0, shape=(16, 24, 24))
    empty = replace(case, label=np.zeros_like(case.label))
    outcome = run_case(empty, get_task("autopet"), OracleBackend({empty.case_id: empty.label}))
    clicks = [i for step in outcome.steps for i in step.new_interactions]
    assert clicks and not any(click.positive for click in clicks)


def test_task_limits_apply_and_run_options_override_them(pet_data, tmp_path):
    """A TOML task's [limits] are the run's defaults: its 1 s step limit stops a sleeping
    program; --step-time-limit given on the command line wins over it."""
    task_file = tmp_path / "quick.toml"
    task_file.write_text(
        "base = 'autopet'\nnum_steps = 2\n[limits]\nstep_time_limit_s = 1\nmemory_mb = 2048\n"
    )
    model = f'cmd:"{sys.executable}" "{CMD_MODEL}" sleep {{input}} {{output}}'
    case_id = lesion_case_id(pet_data)

    def run(out: Path, *options: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "segloop", "run", "--data", str(pet_data)]
        command += ["--task", str(task_file), "--model", model, "--out", str(out)]
        command += ["--cases", case_id, "--no-progress", *options]
        return subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = run(tmp_path / "task-limit")
    assert result.returncode == 0, result.stderr
    assert "2 step(s) failed with timeout" in result.stderr
    timing = json.loads((tmp_path / "task-limit" / "cases" / f"{case_id}.timing.json").read_text())
    assert all(seconds < 10 for seconds in timing["model_wall_time_s"])
    # the time budget (issue 16): per step robot user, model and metrics; per case session, I/O
    for part in ("robot_user_s", "model_wall_time_s", "metrics_s"):
        assert len(timing[part]) == 2 and all(seconds >= 0 for seconds in timing[part])
    assert timing["session_s"] >= 0 and timing["io_s"] > 0
    line = re.search(
        r"^time: model (\d+) %, metrics (\d+) %, robot user (\d+) %, I/O (\d+) % of "
        r"[0-9.]+ s in 1 cases$",
        result.stdout,
        re.MULTILINE,
    )
    assert line is not None, result.stdout
    assert 97 <= sum(int(v) for v in line.groups()) <= 103  # rounded shares of one total

    result = run(tmp_path / "option-wins", "--step-time-limit", "0.5", "--case-time-limit", "0.8")
    assert result.returncode == 0, result.stderr
    steps = steps_of(tmp_path / "option-wins", case_id)
    assert [s["failure"]["reason"] for s in steps] == ["timeout", "case_timeout"]

    from segloop.cli.commands import limits_from
    from segloop.cli.main import build_parser

    args = build_parser().parse_args(
        ["run", "--data", "d", "--task", "t", "--model", "m", "--out", "o", "--cpus", "3"]
    )
    chosen = limits_from(args, get_task(task_file).limits)
    assert (chosen.step_time_limit_s, chosen.memory_mb, chosen.cpus) == (1.0, 2048, 3.0)
    assert chosen.pids == runs.Limits().pids  # neither the task nor the run set it


def test_time_budget_sums_the_parts_of_timing_files():
    from segloop.core.timing import TimeBudget, time_budget

    timings = [
        {
            "robot_user_s": [0.5, 0.5],
            "model_wall_time_s": [2.0, None],  # a step without a time counts 0
            "metrics_s": [1.0, 1.0],
            "session_s": 2.0,
            "io_s": 3.0,
        },
        {"model_wall_time_s": [4.0], "metrics_s": "junk"},  # an older or damaged file
    ]
    budget = time_budget(timings)
    assert budget == TimeBudget(model_s=8.0, metrics_s=2.0, robot_user_s=1.0, io_s=3.0, cases=2)
    assert budget.line() == (
        "time: model 57 %, metrics 14 %, robot user 7 %, I/O 21 % of 14.0 s in 2 cases"
    )
    assert TimeBudget(**budget.to_json()) == budget
    assert TimeBudget().shares_percent()["model"] == 0.0


def test_label_values_counts_slab_by_slab(monkeypatch):
    from segloop import loop

    label = np.zeros((5, 6, 7), dtype=np.uint8)
    label[0, 0, 0], label[4, 5, 6], label[2, 3, 1] = 3, 200, 7
    monkeypatch.setattr(loop, "LABEL_SLAB_VOXELS", 16)  # many slabs, values in several
    assert loop.label_values(label) == {0, 3, 7, 200}
    assert loop.label_values(np.zeros((0, 4, 4), dtype=np.uint8)) == set()
