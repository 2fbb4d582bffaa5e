"""The four challenge tasks run end to end and report their AUC on the challenge's x-axis.

SPEC protocol table: autoPET 0..10 raw (max 10), ToothFairy3 0..5, TriALS 0..10, MedSegFM the
5 click steps only at x = 0..4 (max 4); normalised = raw / x-range. MedSegFM: NSD = 0 where
Dice <= 0.2.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from segloop.cli.main import main
from segloop.core.records import Case, Geometry
from segloop.loop import case_result_of, run_case
from segloop.protocols.tasks import get_task

BASELINE = "python:segloop.baselines.region_growing:predict"
# task -> (phantom kind, grid, AUC steps, AUC x-axis)
TASKS = {
    "autopet": ("pet", "32,56,56", list(range(11)), [float(x) for x in range(11)]),
    "toothfairy3": ("jaw", "40,56,56", list(range(6)), [float(x) for x in range(6)]),
    "trials": ("abdomen", "32,64,64", list(range(11)), [float(x) for x in range(11)]),
    "medsegfm": ("abdomen", "32,64,64", [1, 2, 3, 4, 5], [0.0, 1.0, 2.0, 3.0, 4.0]),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_run_on_matching_phantoms_reports_auc_on_the_challenge_axis(tmp_path, task, capsys):
    kind, shape, auc_steps, auc_x = TASKS[task]
    data = tmp_path / kind
    assert main(["phantoms", kind, "--out", str(data), "--cases", "2", "--shape", shape]) == 0
    out = tmp_path / "run"
    argv = ["run", "--data", str(data), "--task", task, "--model", BASELINE, "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    results = sorted(p for p in (out / "cases").glob("*.json") if ".timing." not in p.name)
    assert len(results) == 2
    for path in results:
        result = json.loads(path.read_text())
        assert result["task"] == task and result["failed_steps"] == 0
        assert result["auc_steps"] == auc_steps and result["auc_x"] == auc_x
        steps = result["steps"]
        span = auc_x[-1] - auc_x[0]  # 10, 5, 10, 4
        assert len(steps) == get_task(task).num_steps
        # TriALS' script integrates its steps in text order (0, 1, 10, 2, ...; issue 15)
        text_order = get_task(task).curve_step_order == "text"
        order = sorted(auc_steps, key=str) if text_order else auc_steps
        last = sorted(range(len(steps)), key=str)[-1] if text_order else len(steps) - 1
        assert result["scoring"]["curve_step_order"] == ("text" if text_order else "numeric")
        for metric in get_task(task).metrics:
            curve = [s["metrics"][metric]["mean"] for s in steps]
            summary = result["summary"][metric]
            raw = float(np.trapezoid([curve[s] for s in order], auc_x))
            assert summary["auc_raw"] == pytest.approx(raw, rel=1e-12, abs=1e-12)
            assert summary["auc_normalised"] == pytest.approx(raw / span, rel=1e-12, abs=1e-12)
            assert summary["final"] == curve[last]
        dice = [s["metrics"]["dice"]["mean"] for s in steps]
        assert 0.0 <= result["summary"]["dice"]["auc_normalised"] <= 1.0
        assert result["summary"]["dice"]["auc_raw"] <= span  # raw: at most the x-range
        assert max(dice) > 0.0  # the baseline found something on its matching phantoms
        if task == "medsegfm":  # one class here: the class and the case rule agree
            for step in steps:
                if step["metrics"]["dice"]["mean"] <= 0.2:
                    assert step["metrics"]["nsd@2"]["mean"] == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean"]["dice"]) == {"auc_raw", "auc_normalised", "final"}


class ShellModel:
    """Predicts only the outer shell of the ground truth: NSD near 1, Dice small."""

    name = "shell"

    def __init__(self, label: np.ndarray) -> None:
        self.label = label

    def open_case(self, case_input):
        return self

    def predict(self, request) -> np.ndarray:
        inner = ndimage.binary_erosion(self.label > 0, iterations=1)
        return ((self.label > 0) & ~inner).astype(np.uint8)

    def close(self) -> None:
        pass


def test_medsegfm_nsd_is_zero_where_dice_is_at_most_0_2():
    label = np.zeros((64, 64, 64), np.uint8)
    label[2:62, 2:62, 2:62] = 1  # a 60 mm cube: its 1-voxel shell has Dice ~0.18 with it
    case = Case("cube", (label.astype(np.float32),), label, Geometry((1.0, 1.0, 1.0)))
    task = get_task("medsegfm", classes={1: "lesion"})
    plain = replace(task, nsd_zero_below_dice=None)  # the same task without the rule
    with_rule = run_case(case, task, ShellModel(case.label))
    without = run_case(case, plain, ShellModel(case.label))
    for a, b in zip(with_rule.steps, without.steps, strict=True):
        dice = a.metrics["dice"]["mean"]
        assert 0.0 < dice <= 0.2  # a shell: little volume overlap
        assert b.metrics["nsd@2"]["mean"] > 0.9  # its surface is the ground truth's
        assert a.metrics["nsd@2"]["mean"] == 0.0
    assert case_result_of(with_rule, task, "s", "h").summary["nsd@2"].auc_raw == 0.0
    assert case_result_of(without, plain, "s", "h").summary["nsd@2"].auc_normalised > 0.9
