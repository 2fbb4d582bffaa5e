"""Property tests of every task's robot user on the built-in phantoms (small grids)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from evaluator import phantoms
from protocols.autopet import high_uptake_background
from protocols.realistic import RealisticUser
from protocols.tasks import get_task

PET = [phantoms.pet_phantom(i, shape=(32, 48, 48)) for i in range(5)]  # pet_004 has no lesion
JAW = [phantoms.jaw_phantom(i, shape=(32, 40, 40)) for i in range(3)]
ABDOMEN = [phantoms.abdomen_phantom(i, shape=(24, 48, 48)) for i in range(3)]


def run_user(task, case, prediction_of=None):
    steps = []
    previous = None
    for step in range(task.num_steps):
        steps.append(task.robot_user.interactions(case, task.classes, step, previous, task.seed))
        previous = prediction_of(step) if prediction_of else np.zeros(case.shape, np.uint8)
    return steps


@pytest.mark.parametrize("case", PET, ids=lambda c: c.case_id)
def test_autopet_on_pet_phantoms(case):
    task = get_task("autopet")
    steps = run_user(task, case)
    assert steps[0] == ()
    positives = [i.coords[0] for s in steps for i in s if i.positive]
    negatives = [i.coords[0] for s in steps for i in s if not i.positive]
    assert len(positives) == (10 if case.label.any() else 0)
    assert len(negatives) == 10
    assert all(case.label[p] == 1 for p in positives)
    eligible = high_uptake_background(case.channels[1], case.label == 0, 99.75)
    assert all(eligible[n] for n in negatives)
    components = ndimage.label(case.label > 0, structure=np.ones((3, 3, 3)))[1]
    if 0 < components < 10:
        distinct = {tuple(p) for p in positives}
        assert len(distinct) > components  # boundary clicks were added


@pytest.mark.parametrize("case", JAW, ids=lambda c: c.case_id)
def test_toothfairy3_on_jaw_phantoms(case):
    task = get_task("toothfairy3")
    steps = run_user(task, case)
    for class_id in (1, 2):
        clicks = [i.coords[0] for s in steps for i in s if i.class_id == class_id]
        assert len(clicks) == 5 and all(case.label[c] == class_id for c in clicks)
        extent = np.flatnonzero((case.label == class_id).any(axis=(1, 2)))
        zs = sorted(c[0] for c in clicks)
        span = extent[-1] - extent[0] + 1
        assert zs[0] < extent[0] + span / 5 + 1 and zs[-1] > extent[-1] - span / 5 - 1


@pytest.mark.parametrize("case", ABDOMEN, ids=lambda c: c.case_id)
def test_trials_on_abdomen_phantoms(case):
    task = get_task("trials")
    steps = run_user(task, case)
    positives = [i.coords[0] for s in steps for i in s if i.positive]
    negatives = [i.coords[0] for s in steps for i in s if not i.positive]
    assert len(positives) == (10 if case.label.any() else 0) and len(negatives) == 10
    assert all(case.label[p] == 1 for p in positives)
    assert all(case.extra_masks["liver"][n] and case.label[n] == 0 for n in negatives)


@pytest.mark.parametrize("case", ABDOMEN + PET[:2], ids=lambda c: c.case_id)
def test_medsegfm_on_phantoms(case):
    task = get_task("medsegfm")
    perfect = run_user(task, case, prediction_of=lambda step: case.label)
    assert all(s == () for s in perfect[1:])  # a perfect prediction gets no click
    steps = run_user(task, case)
    assert [i.kind for i in steps[0]] == (["box"] if case.label.any() else [])
    for step in steps[1:]:
        for click in step:
            assert click.positive == bool(case.label[click.coords[0]] == click.class_id)


def test_r5_on_pet_phantoms_rates():
    cases = [phantoms.pet_phantom(i, shape=(32, 48, 48)) for i in range(12)]
    base = get_task("autopet").robot_user
    user = RealisticUser(base)
    moved = total = 0
    for case in cases:
        for step in range(1, 11):
            original = base.interactions(case, {1: "tumor"}, step, None, 0)
            realistic = user.interactions(case, {1: "tumor"}, step, None, 0)
            assert [(i.class_id, i.positive) for i in original] == [
                (i.class_id, i.positive) for i in realistic
            ]
            total += len(original)
            moved += sum(a.coords != b.coords for a, b in zip(original, realistic, strict=True))
    expected = 1 - (1 - 0.134) ** 2
    assert abs(moved / total - expected) <= 4.5 * np.sqrt(expected * (1 - expected) / total)
