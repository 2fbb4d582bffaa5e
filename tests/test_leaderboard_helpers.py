"""Test helpers for the leaderboard tests.

- ``write_run``: a run folder written by hand in the store's exact format (RUN_FOLDER.md), for
  tests that need chosen numbers rather than a model's;
- ``phantom_runs``: real runs (phantom PET cases through the autoPET loop) of three submissions,
  one with a hostile team name and a model that fails with HTML in its error message; built
  once per test session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core import results, store
from segloop.core.records import EmptyMaskPolicy, Interaction, StepFailure

DEFAULT_POLICY = {
    "both_empty_overlap": 1.0,
    "both_empty_distance_mm": 0.0,
    "one_empty_overlap": 0.0,
    "one_empty_distance_mm": "image_diagonal",
}


def task_json(
    name: str,
    metrics: Sequence[str],
    num_steps: int,
    auc_steps: Sequence[int] | None = None,
    auc_x: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    steps = list(auc_steps) if auc_steps is not None else list(range(num_steps))
    return {
        "name": name,
        "description": f"{name} (hand-written test task)",
        "robot_user": {"name": "fixed-clicks"},
        "num_steps": num_steps,
        "classes": {"1": "tumor"},
        "metrics": list(metrics),
        "auc_steps": steps,
        "auc_x": [float(v) for v in (auc_x if auc_x is not None else range(len(steps)))],
        "empty_mask_policy": DEFAULT_POLICY,
        "nsd_zero_below_dice": None,
        "send_previous_prediction": False,
        "seed": seed,
    }


def write_run(
    run_dir: Path,
    submission: str,
    curves: Mapping[str, Mapping[str, Sequence[float | None]]],
    task: str = "autopet",
    failures: Mapping[tuple[str, int], Mapping[str, str]] | None = None,
    step_time_s: float = 0.5,
    seed: int = 0,
) -> Path:
    """A run folder: ``curves[case_id][metric]`` is the metric's value at each step.

    ``failures[(case_id, step)]`` = {"reason", "detail", "log_tail"} marks a failed step.
    """
    failures = failures or {}
    first = next(iter(curves.values()))
    metrics = list(first)
    num_steps = len(first[metrics[0]])
    task_info = task_json(task, metrics, num_steps, seed=seed)
    config = {"submission": submission, "model": "python:tests:fake", "task": task_info}
    run_dir = Path(run_dir)
    store.write_json_atomic(
        run_dir / "run.json",
        {
            "format": "segloop-run",
            "version": 1,
            **config,
            "dataset": "/nowhere",
            "config_hash": store.config_hash(config),
            "segloop_version": "0.1.0",
        },
    )
    for case_id, case_curves in curves.items():
        steps = [
            results.StepRecord(
                step,
                {
                    m: results.MetricValue(case_curves[m][step], {"1": case_curves[m][step]})
                    for m in metrics
                },
                StepFailure.from_json(failures[(case_id, step)])
                if (case_id, step) in failures
                else None,
                (Interaction("click", 1, True, step, ((1, 2, 3),)),),
            )
            for step in range(num_steps)
        ]
        result = results.case_result(
            case_id,
            steps,
            task=task,
            metrics=metrics,
            classes={1: "tumor"},
            auc_steps=task_info["auc_steps"],
            auc_x=task_info["auc_x"],
            empty_mask_policy=EmptyMaskPolicy(),
            submission=submission,
            config_hash=store.config_hash(config),
        )
        timing = {
            "case_id": case_id,
            "model_wall_time_s": [step_time_s] * num_steps,
            "case_wall_time_s": step_time_s * num_steps + 0.25,
        }
        store.write_case_result(run_dir, result, timing)
    return run_dir


def flat_curves(
    dice_by_case: Mapping[str, float], num_steps: int = 3, fpv: float = 1.0
) -> dict[str, dict[str, list[float]]]:
    """Constant curves: dice = the given value at every step, fpv and fnv constant."""
    return {
        case_id: {
            "dice": [dice] * num_steps,
            "fpv": [fpv] * num_steps,
            "fnv": [2.0] * num_steps,
        }
        for case_id, dice in dice_by_case.items()
    }


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


SMALL_PET = (32, 48, 48)
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_ERROR = '<img src=x onerror="alert(2)"> & <script>alert(3)</script>'
PHANTOM_SUBMISSIONS = {
    "region-growing": "python:segloop.baselines.region_growing:predict",
    "empty": "python:segloop.baselines.trivial:empty",
    HOSTILE_NAME: "python:tests.test_leaderboard_helpers:hostile_model",
}


def hostile_model(case, request) -> np.ndarray:
    """Region growing that fails at step 2 with HTML in its error message."""
    from segloop.baselines import region_growing

    if request.step == 2:
        raise RuntimeError(HOSTILE_ERROR)
    return region_growing.predict(case, request)


def phantom_runs(tmp_path_factory, num_cases: int = 3) -> tuple[Path, Path]:
    """(dataset folder, folder holding one run folder per submission) of the autoPET task on
    small PET phantoms; built on first use, then reused for the rest of the session."""
    from segloop.app import phantoms
    from segloop.cli.commands import execute_run

    root = tmp_path_factory.getbasetemp() / "leaderboard-phantom-runs"
    data, runs = root / "data", root / "runs"
    if (root / "done").exists():
        return data, runs
    phantoms.write_phantom_dataset(data, "pet", num_cases, seed=1, shape=SMALL_PET)
    for index, (name, model) in enumerate(PHANTOM_SUBMISSIONS.items()):
        execute_run(
            data,
            "autopet",
            model,
            runs / f"run{index}",
            name,
            show_progress=False,
            save_predictions=name != "empty",  # case pages for two of the three
        )
    (root / "done").touch()
    return data, runs
