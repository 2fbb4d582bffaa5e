"""Property tests of every task's robot user on the built-in phantoms (small grids)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from segloop.app import phantoms
from segloop.protocols.autopet import high_uptake_background
from segloop.protocols.realistic import RealisticUser
from segloop.protocols.tasks import get_task

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


@pytest.mark.parametrize("case", ABDOMEN[:2] + PET[:1], ids=lambda c: c.case_id)
def test_medsegfm_counts_one_box_then_one_click_per_class_and_step(case):
    task = get_task("medsegfm", classes={1: "lesion", 2: "absent"})
    steps = run_user(task, case)  # the model predicts nothing, every step
    present = sorted(int(c) for c in np.unique(case.label) if c in task.classes)
    assert [(i.kind, i.class_id) for i in steps[0]] == [("box", c) for c in present]
    for step, interactions in enumerate(steps[1:], start=1):
        assert [(i.kind, i.class_id, i.step) for i in interactions] == [
            ("click", c, step) for c in present
        ]
        assert all(i.positive for i in interactions)  # an empty prediction only misses


def test_trials_and_toothfairy3_empty_ground_truth():
    case = ABDOMEN[0]
    empty = replace(case, label=np.zeros_like(case.label))
    steps = run_user(get_task("trials"), empty)
    flat = [i for s in steps for i in s]
    assert len(flat) == 10 and not any(i.positive for i in flat)  # background clicks only
    assert all(case.extra_masks["liver"][i.coords[0]] for i in flat)
    jaw = JAW[0]
    no_canal = replace(jaw, label=np.zeros_like(jaw.label))
    assert all(s == () for s in run_user(get_task("toothfairy3"), no_canal))


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "clicks", "component": "random", "placement": "random"},
        {"name": "scribble", "style": "contour"},
        {"name": "scribble", "style": "line"},
        {"name": "polygon", "reactive": True},
        {"name": "box", "style": "sloppy", "reactive": True},
        {"name": "realistic", "base": {"name": "sakinis"}},
    ],
    ids=["clicks", "scribble-contour", "scribble-line", "polygon", "box", "r5-sakinis"],
)
def test_reactive_users_give_nothing_for_a_perfect_prediction(spec):
    from segloop.protocols.tasks import robot_user_from_json

    user = robot_user_from_json(spec)
    for case in (ABDOMEN[0], JAW[0]):
        classes = {int(c): f"c{c}" for c in np.unique(case.label) if c}
        assert user.interactions(case, classes, 1, np.zeros_like(case.label), 0)  # errors: yes
        assert user.interactions(case, classes, 2, case.label.copy(), 0) == ()  # none: no


def test_r5_over_autopet_clicks_leave_the_mask_only_by_a_deliberate_draw():
    """p_perturb = 0: a click is the autoPET click (in its eligibility mask) or an R5 draw s~."""
    from segloop.protocols.realistic import high_uptake_outside_label

    base = get_task("autopet").robot_user
    user = RealisticUser(base, p_perturb=0.0, p_system=0.3)
    drawn = 0
    for case in PET[:4]:
        eligible = high_uptake_background(case.channels[1], case.label == 0, 99.75)
        region = np.zeros(case.label.size, bool)
        region[high_uptake_outside_label(case.channels[1], case.label, 95.0)] = True
        region = region.reshape(case.shape)
        for step in range(1, 11):
            original = base.interactions(case, {1: "tumor"}, step, None, 0)
            realistic = user.interactions(case, {1: "tumor"}, step, None, 0)
            for a, b in zip(original, realistic, strict=True):
                point = b.coords[0]
                if a.coords == b.coords:
                    assert (case.label[point] == 1) if a.positive else eligible[point]
                else:
                    drawn += 1
                    assert region[point] and case.label[point] == 0
    assert drawn > 0
