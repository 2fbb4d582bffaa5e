"""The thesis robot users R1-R4 (eqs. 17-20) and R5 over R1 (eq. 28): property tests on
generated data (eligible region, polarity, determinism, empty cases, perfect predictions), the
distributions of R3 and R4, R2's uncertainty input, and their registration as protocols/presets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segloop.core.challenges import CHALLENGES
from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.base import center_point, largest_component
from segloop.protocols.realistic import RealisticUser, high_uptake_outside_label
from segloop.protocols.tasks import (
    get_task,
    is_reactive,
    robot_user_from_json,
)
from segloop.protocols.thesis import R1User, R2User, R3User, R4User

CLASSES = {1: "lesion", 2: "node"}
SAMPLERS = {"r1": R1User(), "r3": R3User(), "r4": R4User()}


def blobs(rng: np.random.Generator, shape, count: int, classes=(1, 2)) -> np.ndarray:
    """A label map of ``count`` random boxes with random classes (may touch or overlap)."""
    label = np.zeros(shape, np.uint8)
    for _ in range(count):
        lo = [int(rng.integers(0, n - 1)) for n in shape]
        hi = [min(n, a + int(rng.integers(1, 5))) for a, n in zip(lo, shape, strict=True)]
        label[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.choice(classes)
    return label


def make_case(seed: int, shape=(10, 14, 12), count: int = 4, empty: bool = False) -> Case:
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8) if empty else blobs(rng, shape, count)
    image = rng.gamma(2.0, 1.0, shape).astype(np.float32) + 5 * (label > 0)
    return Case(f"gen_{seed:03d}", (image,), label, Geometry((2.0, 1.5, 1.0)))


def imperfect(label: np.ndarray, seed: int) -> np.ndarray:
    """A prediction that misses some voxels and adds others (both error kinds)."""
    rng = np.random.default_rng(seed)
    out = np.where(rng.random(label.shape) < 0.15, 0, label).astype(np.uint8)
    out = np.roll(out, 1, axis=2)
    out[blobs(rng, label.shape, 2) > 0] = 1
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), step=st.integers(0, 4), empty=st.booleans())
def test_clicks_lie_in_their_region_with_the_right_polarity(seed, step, empty):
    case = make_case(seed, empty=empty and seed % 2 == 0)
    prediction = imperfect(case.label, seed + 1)
    for name, user in SAMPLERS.items():
        clicks = user.interactions(case, CLASSES, step, prediction, seed)
        if step == 0:
            assert clicks == (), name
            continue
        kinds = set()
        for click in clicks:
            (point,) = click.coords
            truth = case.label[point] == click.class_id
            predicted = prediction[point] == click.class_id
            assert click.kind == "click" and click.step == step
            assert click.positive == bool(truth), name  # polarity = the ground truth there
            if step > 1:  # from the error: a lesion click on a miss, a background one on extra
                assert truth != predicted, (name, click)
            kinds.add((click.class_id, click.positive))
        assert len(kinds) == len(clicks)  # at most one lesion and one background click per class
        for class_id in CLASSES:
            truth = case.label == class_id
            if step == 1:
                expected = {True} if truth.any() else set()
                expected |= {False} if (~truth).any() else set()
            else:
                predicted = prediction == class_id
                expected = {True} if (truth & ~predicted).any() else set()
                expected |= {False} if (predicted & ~truth).any() else set()
            given_ = {c.positive for c in clicks if c.class_id == class_id}
            assert given_ == expected, (name, class_id, step)


def test_r1_takes_the_centre_of_the_largest_label_then_error_component():
    case = make_case(11, shape=(12, 16, 16), count=5)
    truth = case.label == 1
    (lesion, background) = R1User().interactions(case, {1: "x"}, 1, None, 0)
    assert lesion.coords[0] == center_point(largest_component(truth))
    assert background.coords[0] == center_point(largest_component(~truth))
    prediction = imperfect(case.label, 3)
    clicks = R1User().interactions(case, {1: "x"}, 2, prediction, 0)
    missed, extra = truth & (prediction != 1), (prediction == 1) & ~truth
    assert [c.coords[0] for c in clicks] == [
        center_point(largest_component(missed)),
        center_point(largest_component(extra)),
    ]
    # the centre: the EDT maximum of its component (voxel units, border = background)
    component = largest_component(missed)
    edt = ndimage.distance_transform_edt(np.pad(component.full_mask(), 1))[1:-1, 1:-1, 1:-1]
    assert edt[clicks[0].coords[0]] == edt.max()
    spacing_aware = R1User(edt_spacing_aware=True).interactions(case, {1: "x"}, 2, prediction, 0)
    assert spacing_aware[0].coords[0] == center_point(largest_component(missed), case.spacing_mm)


def test_perfect_prediction_and_empty_label():
    case = make_case(5)
    empty = make_case(6, empty=True)
    for name, user in SAMPLERS.items():
        assert user.interactions(case, CLASSES, 3, case.label.copy(), 0) == (), name
        first = user.interactions(empty, CLASSES, 1, None, 0)
        assert [(c.class_id, c.positive) for c in first] == [(1, False), (2, False)], name
        assert user.interactions(empty, CLASSES, 2, np.zeros_like(empty.label), 0) == (), name
        # a failed model step (no prediction) counts as an empty prediction: only misses
        assert all(c.positive for c in user.interactions(case, CLASSES, 2, None, 0)), name
        none = replace(user, initial_background="none").interactions(case, CLASSES, 1, None, 0)
        assert none and all(c.positive for c in none), name


def test_first_step_is_configurable_and_checked():
    case = make_case(7)
    user = R4User(first_step=0)
    assert user.interactions(case, CLASSES, 0, None, 1)  # label clicks at step 0
    assert R4User().interactions(case, CLASSES, 0, None, 1) == ()
    with pytest.raises(SegloopError, match="first_step"):
        R1User(first_step=-1)
    with pytest.raises(SegloopError, match="initial_background"):
        R3User(initial_background="error")
    with pytest.raises(SegloopError, match="shape"):
        R1User().interactions(case, CLASSES, 2, np.zeros((2, 2, 2), np.uint8), 0)


def trace(user, cases, seed, uncertainty=None):
    extra = {} if uncertainty is None else {"uncertainty": uncertainty}
    out = []
    for case in cases:
        for step in range(6):
            prediction = imperfect(case.label, step)
            out.append(user.interactions(case, CLASSES, step, prediction, seed, **extra))
    return out


def test_deterministic_bit_for_bit_and_keyed_by_seed():
    cases = [make_case(s) for s in range(4)]
    u = np.linspace(0, 1, int(np.prod(cases[0].shape))).reshape(cases[0].shape)
    users = {**SAMPLERS, "r2": R2User(), "r5": RealisticUser()}
    for name, user in users.items():
        extra = u if name == "r2" else None
        first = trace(user, cases, 3, extra)
        fresh = type(user)() if name != "r5" else RealisticUser()
        backwards = trace(fresh, cases[::-1], 3, extra)
        # same clicks whatever the order of the cases or the object
        per_case = [first[i : i + 6] for i in range(0, len(first), 6)]
        assert per_case == [backwards[i : i + 6] for i in range(0, len(backwards), 6)][::-1], name
        other_seed = trace(user, cases, 4, extra)
        if name == "r1":
            assert other_seed == first  # R1 draws nothing
        else:
            assert other_seed != first, name


def draw_counts(user, case, prediction, seeds, class_id=1):
    counts: dict[tuple, int] = {}
    for seed in range(seeds):
        for click in user.interactions(case, {class_id: "x"}, 2, prediction, seed):
            if click.positive:
                counts[click.coords[0]] = counts.get(click.coords[0], 0) + 1
    return counts


def within(count, n, p, sds=4.5):
    return abs(count / n - p) <= sds * np.sqrt(p * (1 - p) / n)


def test_r4_every_error_voxel_equally_likely_not_component_first():
    """A missed single voxel next to a missed 3x3x3 cube: 1 of 28 error voxels (component
    first would pick it half the time)."""
    label = np.zeros((9, 9, 9), np.uint8)
    label[1:4, 1:4, 1:4] = 1
    label[7, 7, 7] = 1
    case = Case("u", (label.astype(np.float32),), label, Geometry((1.0, 1.0, 1.0)))
    n = 2000
    counts = draw_counts(R4User(), case, np.zeros_like(label), n)
    assert sum(counts.values()) == n and len(counts) == 28
    assert within(counts[(7, 7, 7)], n, 1 / 28)


def test_r3_draws_proportionally_to_the_edt_of_the_error():
    """A missed 3x3x3 cube: EDT 2 at its centre, 1 on the 26 others -> P(centre) = 2/28."""
    label = np.zeros((7, 7, 7), np.uint8)
    label[2:5, 2:5, 2:5] = 1
    case = Case("e", (label.astype(np.float32),), label, Geometry((1.0, 1.0, 1.0)))
    n = 2000
    counts = draw_counts(R3User(), case, np.zeros_like(label), n)
    assert sum(counts.values()) == n and set(counts) <= set(map(tuple, np.argwhere(label)))
    assert within(counts[(3, 3, 3)], n, 2 / 28)
    assert within(sum(v for k, v in counts.items() if k != (3, 3, 3)), n, 26 / 28)


def test_r2_needs_an_uncertainty_map_and_samples_from_it():
    case = make_case(9)
    label = case.label.copy()
    label[0, 0, 0], label[2:4, 2:4, 2:4] = 0, 1
    case = replace(case, label=label)
    user = R2User()
    with pytest.raises(SegloopError, match="R2 cannot run"):
        user.interactions(case, CLASSES, 0, None, 0)  # refused before any model runs
    assert user.interactions(case, CLASSES, 0, None, 0, uncertainty=None) == ()
    first = user.interactions(case, CLASSES, 1, None, 0, uncertainty=None)  # uniform(L)
    assert first and all(c.positive == (case.label[c.coords[0]] == c.class_id) for c in first)
    with pytest.raises(SegloopError, match="no uncertainty map"):
        user.interactions(case, CLASSES, 2, None, 0, uncertainty=None)
    # all the uncertainty on one lesion voxel and one background voxel: the clicks go there
    lesion = tuple(int(v) for v in np.argwhere(case.label == 1)[0])
    u = np.zeros(case.shape)
    u[lesion] = 1.0
    u[0, 0, 0] = 0.5
    clicks = user.interactions(case, {1: "x"}, 2, case.label, 5, uncertainty=u)
    assert [(c.coords[0], c.positive) for c in clicks] == [(lesion, True), ((0, 0, 0), False)]
    # per class maps; a certain model gives no click
    maps = {1: np.zeros(case.shape), 2: np.zeros(case.shape)}
    assert user.interactions(case, CLASSES, 3, case.label, 5, uncertainty=maps) == ()
    with pytest.raises(SegloopError, match="class 2"):
        user.interactions(case, CLASSES, 3, case.label, 5, uncertainty={1: u})
    with pytest.raises(SegloopError, match=r"\[0, 1\]"):
        user.interactions(case, CLASSES, 3, case.label, 5, uncertainty=u * 2)
    with pytest.raises(SegloopError, match="shape"):
        user.interactions(case, CLASSES, 3, case.label, 5, uncertainty=np.zeros((2, 2, 2)))


def test_r5_is_built_on_r1_with_the_published_parameters():
    user = RealisticUser()
    assert isinstance(user.base, R1User)
    assert (user.p_perturb, user.p_system, user.amplitude_voxels) == (0.134, 0.134, 35)
    case = make_case(12, shape=(16, 20, 20), count=6)
    quiet = RealisticUser(p_perturb=0.0, p_system=0.0)
    for step in range(4):
        prediction = imperfect(case.label, step)
        assert quiet.interactions(case, {1: "x"}, step, prediction, 2) == R1User().interactions(
            case, {1: "x"}, step, prediction, 2
        )
    # with p_system = 1 every click is an off-label high-uptake voxel (keeping its polarity)
    region = np.zeros(case.label.size, bool)
    region[high_uptake_outside_label(case.channels[0], case.label, 95.0)] = True
    off = RealisticUser(p_perturb=0.0, p_system=1.0)
    clicks = off.interactions(case, {1: "x"}, 1, None, 2)
    assert [c.positive for c in clicks] == [True, False]
    assert all(region.reshape(case.shape)[c.coords[0]] for c in clicks)


def test_registered_as_protocols_and_presets(tmp_path):
    for name, cls in (("r1", R1User), ("r2", R2User), ("r3", R3User), ("r4", R4User)):
        user = robot_user_from_json({"name": name, "first_step": 2})
        assert isinstance(user, cls) and user.first_step == 2 and is_reactive(user)
        assert robot_user_from_json(user.to_json()) == user
    for name in ("r1", "r3", "r4", "r5"):
        task = get_task(name, seed=2)
        assert name in CHALLENGES and task.num_steps == 11 and task.seed == 2
        assert task.auc_x == tuple(float(x) for x in range(11))
        assert robot_user_from_json(task.robot_user.to_json()) == task.robot_user
    assert get_task("r5").robot_user == RealisticUser()
    assert "r2" not in CHALLENGES  # it could not run: no uncertainty map in the contract yet
    path = tmp_path / "r3.toml"
    path.write_text(
        'num_steps = 4\nmetrics = ["dice"]\n[protocol]\nname = "r3"\nedt_spacing_aware = true\n',
        encoding="utf-8",
    )
    task = get_task(path)
    assert isinstance(task.robot_user, R3User) and task.robot_user.edt_spacing_aware
    assert task.send_previous_prediction  # a TOML task with a reactive user sends it by default
