"""autoPET (Alg. 1), TriALS (Alg. 3) and ToothFairy3 (Alg. 2) robot users on synthetic cases."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from scipy import ndimage

from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.autopet import AutoPETUser, component_clicks, high_uptake_background
from segloop.protocols.base import rng_for
from segloop.protocols.toothfairy import ToothFairyUser
from segloop.protocols.trials import TriALSUser


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def pet_case(case_id: str, lesion_count: int, seed: int = 0, shape=(24, 40, 40)) -> Case:
    """CT + PET channels; ``lesion_count`` spherical lesions and a few hot non-lesion organs."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    pet = rng.normal(1.0, 0.1, shape).astype(np.float32)
    for _ in range(lesion_count):
        centre = [int(rng.integers(3, s - 3)) for s in shape]
        blob = ball(shape, centre, float(rng.uniform(1.0, 3.0)))
        label[blob] = 1
        pet[blob] += 8.0
    for _ in range(3):
        centre = [int(rng.integers(3, s - 3)) for s in shape]
        organ = ball(shape, centre, 2.5) & (label == 0)
        pet[organ] += 6.0
    ct = rng.normal(0.0, 1.0, shape).astype(np.float32)
    return Case(case_id, (ct, pet), label, Geometry((3.0, 2.0, 2.0)))


def all_clicks(user, case, classes, steps, seed=0):
    return [user.interactions(case, classes, s, None, seed) for s in range(steps)]


def component_count(mask):
    return ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]


@pytest.mark.parametrize("lesions", [0, 1, 3, 14])
def test_autopet_counts_and_eligibility(lesions):
    case = pet_case(f"pet{lesions}", lesions, seed=lesions)
    user = AutoPETUser()
    steps = all_clicks(user, case, {1: "tumor"}, 11)
    assert steps[0] == ()
    positives = [i for s in steps for i in s if i.positive]
    negatives = [i for s in steps for i in s if not i.positive]
    expected_lesion_clicks = 10 if case.label.any() else 0
    assert len(positives) == expected_lesion_clicks
    eligible = high_uptake_background(case.channels[1], case.label == 0, 99.75)
    assert len(negatives) == 10
    for step, interactions in enumerate(steps):
        assert all(i.step == step and i.kind == "click" and i.class_id == 1 for i in interactions)
        assert sum(i.positive for i in interactions) <= 1
        assert sum(not i.positive for i in interactions) <= 1
    for click in positives:
        assert case.label[click.coords[0]] == 1
    for click in negatives:
        assert eligible[click.coords[0]] and case.label[click.coords[0]] == 0


def test_autopet_boundary_clicks_when_components_are_few():
    case = pet_case("few", 2, seed=5)
    lesion = case.label > 0
    count = component_count(lesion)
    assert 1 <= count < 10
    clicks = component_clicks(lesion, 10, rng_for(0, "few", 1, 0))
    assert len(clicks) == 10
    edt = ndimage.distance_transform_edt(np.pad(lesion, 1))[1:-1, 1:-1, 1:-1]
    centres = clicks[:count]
    boundaries = clicks[count:]
    # centre clicks: the deepest voxel of distinct components; the rest lie on the boundary
    labels = ndimage.label(lesion, structure=np.ones((3, 3, 3)))[0]
    assert len({labels[c] for c in centres}) == count
    for c in centres:
        assert edt[c] == edt[labels == labels[c]].max()
    assert all(edt[b] == 1.0 for b in boundaries)


def test_autopet_empty_ground_truth_gets_background_only():
    case = pet_case("empty", 0, seed=9)
    steps = all_clicks(AutoPETUser(), case, {1: "tumor"}, 11)
    flat = [i for s in steps for i in s]
    assert flat and not any(i.positive for i in flat)


def test_autopet_single_channel_and_bad_channel():
    case = pet_case("one", 2)
    single = Case("one", (case.channels[1],), case.label, case.geometry)
    a = all_clicks(AutoPETUser(), case, {1: "t"}, 11)
    b = all_clicks(AutoPETUser(), single, {1: "t"}, 11)
    assert a == b  # PET is channel 1 of two, channel 0 of one
    with pytest.raises(SegloopError, match="one"):
        AutoPETUser(pet_channel=4).interactions(case, {1: "t"}, 1, None, 0)


def test_autopet_perturbation_keeps_lesion_clicks_inside():
    case = pet_case("sigma", 4, seed=2)
    steps = all_clicks(AutoPETUser(sigma_voxels=2.0), case, {1: "t"}, 11)
    plain = all_clicks(AutoPETUser(), case, {1: "t"}, 11)
    assert steps != plain
    for click in (i for s in steps for i in s if i.positive):
        assert case.label[click.coords[0]] == 1


def test_precomputed_determinism_cache_and_order():
    cases = [pet_case(f"det{k}", k + 1, seed=k) for k in range(4)]
    user = AutoPETUser()
    first = {c.case_id: all_clicks(user, c, {1: "t"}, 11, seed=3) for c in cases}
    again = {c.case_id: all_clicks(AutoPETUser(), c, {1: "t"}, 11, seed=3) for c in reversed(cases)}
    assert first == again
    # steps asked in any order (cache or not) give the same interactions
    fresh = AutoPETUser()
    backwards = [fresh.interactions(cases[0], {1: "t"}, s, None, 3) for s in reversed(range(11))]
    assert list(reversed(backwards)) == first["det0"]
    assert all_clicks(user, cases[0], {1: "t"}, 11, seed=4) != first["det0"]
    # a pickled user carries no cached arrays
    assert pickle.loads(pickle.dumps(user))._cache == {}


def _clicks_in_worker(args):
    case_id, lesions, seed = args
    case = pet_case(case_id, lesions, seed=seed)
    return [
        [i.to_json() for i in s]
        for s in all_clicks(AutoPETUser(sigma_voxels=1.0), case, {1: "t"}, 11, seed=1)
    ]


def test_same_clicks_in_a_process_pool():
    jobs = [("pool0", 2, 0), ("pool1", 5, 1), ("pool2", 0, 2)]
    local = [_clicks_in_worker(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=2) as pool:
        remote = list(pool.map(_clicks_in_worker, list(reversed(jobs))))
    assert list(reversed(remote)) == local


def trials_case(case_id="liver", lesions=3, with_liver=True):
    shape = (20, 32, 32)
    liver = ball(shape, (10, 16, 16), 9)
    label = np.zeros(shape, np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(lesions):
        centre = [int(v) for v in rng.integers(7, 13, 3)] if lesions else None
        label[ball(shape, (centre[0], centre[1] + 3, centre[2]), 2) & liver] = 1
    masks = {"liver": liver} if with_liver else {}
    return Case(case_id, (label.astype(np.float32),), label, Geometry((2.0, 1.0, 1.0)), masks)


def test_trials_lesion_and_liver_clicks():
    case = trials_case()
    steps = all_clicks(TriALSUser(), case, {1: "lesion"}, 11)
    positives = [i.coords[0] for s in steps for i in s if i.positive]
    negatives = [i.coords[0] for s in steps for i in s if not i.positive]
    assert len(positives) == 10 and len(negatives) == 10
    assert all(case.label[p] == 1 for p in positives)
    liver = case.extra_masks["liver"]
    assert all(liver[n] and case.label[n] == 0 for n in negatives)
    assert len(set(negatives)) == 10  # without replacement


def test_trials_needs_liver_mask():
    with pytest.raises(SegloopError, match="nolive.*liver"):
        TriALSUser().interactions(
            trials_case("nolive", with_liver=False), {1: "lesion"}, 1, None, 0
        )


def jaw_case(case_id="jaw", shape=(30, 40, 50)):
    """Two tube-like canals running along z with a slow in-plane drift."""
    label = np.zeros(shape, np.uint8)
    zz = np.arange(4, 26)
    for z in zz:
        for class_id, x0 in ((1, 12), (2, 36)):
            y, x = 20 + (z - 15) // 4, x0 + (z - 15) // 5
            label[z][ball(shape[1:], (y, x), 2.2)] = class_id
    return Case(case_id, (label.astype(np.float32),), label, Geometry((0.3, 0.3, 0.3)))


def test_toothfairy_clicks_inside_each_canal_and_spread():
    case = jaw_case()
    classes = {1: "Left_IAC", 2: "Right_IAC"}
    steps = all_clicks(ToothFairyUser(), case, classes, 6)
    assert steps[0] == ()
    for step in steps[1:]:
        assert [(i.class_id, i.positive) for i in step] == [(1, True), (2, True)]
    for class_id in (1, 2):
        clicks = [i.coords[0] for s in steps for i in s if i.class_id == class_id]
        assert len(clicks) == 5
        assert all(case.label[c] == class_id for c in clicks)
        zs = sorted(c[0] for c in clicks)
        extent = np.flatnonzero((case.label == class_id).any(axis=(1, 2)))
        span = extent[-1] - extent[0]
        assert zs[0] <= extent[0] + span / 5 and zs[-1] >= extent[-1] - span / 5
        assert len(set(zs)) == 5


def test_toothfairy_short_canal_and_missing_canal():
    case = jaw_case()
    label = case.label.copy()
    label[(label == 2) & (np.indices(label.shape)[0] > 6)] = 0  # right canal: 3 slices left
    short = Case("short", case.channels, label, case.geometry)
    steps = all_clicks(ToothFairyUser(), short, {1: "L", 2: "R", 3: "absent"}, 6)
    right = [i for s in steps for i in s if i.class_id == 2]
    assert len(right) == 3
    assert not any(i.class_id == 3 for s in steps for i in s)


def two_cube_lesion(shape=(16, 24, 24)) -> np.ndarray:
    """One 26-connected lesion whose EDT has 16 tied maxima: the first in (z, y, x) order is
    (5, 9, 13), the first in nibabel's (x, y, z) order (7, 9, 9)."""
    mask = np.zeros(shape, bool)
    mask[4:8, 8:12, 12:16] = True
    mask[6:10, 8:12, 8:12] = True
    return mask


def test_autopet_and_trials_centre_ties_go_to_the_first_in_nibabel_order():
    """Issue 15, D6: the scripts took cp.argmax of the EDT on nibabel (x, y, z) arrays; segloop
    took the first maximum of its (z, y, x) array. The centre click now equals the re-derived
    script's (tests/challenge_reference.py); center_tie_order="zyx" keeps the old one."""
    from tests.challenge_reference import autopet_center_click, trials_center_click

    lesion = two_cube_lesion()
    pet = np.ones(lesion.shape, np.float32)
    pet[lesion] = 9.0
    label = lesion.astype(np.uint8)
    case = Case("ties", (pet, pet), label, Geometry((3.0, 2.0, 2.0)), {"liver": ~lesion})
    expected = autopet_center_click(lesion)
    assert expected == trials_center_click(lesion) == (7, 9, 9)
    for user in (AutoPETUser(), TriALSUser()):
        (click,) = [i for i in user.interactions(case, {1: "tumor"}, 1, None, 0) if i.positive]
        assert click.coords == (expected,)
    old = AutoPETUser(center_tie_order="zyx").interactions(case, {1: "tumor"}, 1, None, 0)
    assert [i.coords for i in old if i.positive] == [((5, 9, 13),)]
    assert component_clicks(lesion, 1, rng_for(0, "c", 1, 0)) == [expected]
    with pytest.raises(SegloopError, match="tie order"):
        TriALSUser(center_tie_order="random")


def test_autopet_centre_clicks_equal_the_script_on_random_lesions():
    """Random single lesions (away from the image border, where the script's full-volume EDT
    and segloop's crop EDT agree): every centre equals the re-derived script's click."""
    from segloop.protocols.base import center_point, connected_components
    from tests.challenge_reference import autopet_center_click

    rng = np.random.default_rng(6)
    compared = 0
    for _ in range(60):
        shape = (14, 18, 18)
        noise = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.6, 1.6))
        mask = np.zeros(shape, bool)
        mask[2:-2, 2:-2, 2:-2] = (noise > np.quantile(noise, 0.8))[2:-2, 2:-2, 2:-2]
        for component in connected_components(mask, connectivity=26):
            expected = autopet_center_click(component.full_mask())
            assert center_point(component, tie_order="xyz") == expected
            compared += 1
    assert compared > 100
