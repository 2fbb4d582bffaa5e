"""The Sakinis / MedSegFM reactive robot user."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.base import rng_for
from segloop.protocols.sakinis import (
    SakinisUser,
    medsegfm_box,
    sakinis_click,
    sakinis_click_naive,
    sakinis_clicks,
)


def make_case(label: np.ndarray, case_id: str = "c0", spacing=(2.0, 1.0, 1.0)) -> Case:
    image = label.astype(np.float32)
    return Case(case_id, (image,), label, Geometry(spacing))


def blobs(rng, shape, density, smooth):
    noise = ndimage.gaussian_filter(rng.random(shape), smooth)
    return noise > np.quantile(noise, 1 - density)


def sphere(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


@pytest.mark.parametrize("spacing", [None, (3.0, 0.7, 0.9)])
def test_crop_click_equals_naive_on_random_cases(spacing):
    rng = np.random.default_rng(2024)
    for trial in range(60):
        shape = tuple(int(v) for v in rng.integers(6, 20, 3))
        gt = blobs(rng, shape, rng.uniform(0.05, 0.6), rng.uniform(0.5, 2.5))
        pred = blobs(rng, shape, rng.uniform(0.0, 0.6), rng.uniform(0.5, 2.5))
        if trial % 5 == 0:
            pred = gt.copy()
        if trial % 7 == 0:
            pred = np.zeros(shape, bool)
        assert sakinis_click(gt, pred, spacing) == sakinis_click_naive(gt, pred, spacing)


def test_crop_click_equals_naive_on_synthetic_shapes():
    shape = (20, 24, 28)
    gt = sphere(shape, (10, 12, 14), 7)
    cases = [
        np.zeros(shape, bool),  # empty prediction: click in the gt centre
        sphere(shape, (10, 12, 17), 7),  # shifted
        sphere(shape, (10, 12, 14), 4),  # under-segmentation shell
        sphere(shape, (10, 12, 14), 9),  # over-segmentation shell
        np.ones(shape, bool),  # everything: error touches the image border
    ]
    for pred in cases:
        assert sakinis_click(gt, pred) == sakinis_click_naive(gt, pred)
    # a structure cut by the field of view: border counts as background in both
    edge = np.zeros(shape, bool)
    edge[:6, :, :5] = True
    assert sakinis_click(edge, np.zeros(shape, bool)) == sakinis_click_naive(
        edge, np.zeros(shape, bool)
    )


def test_click_sign_follows_ground_truth():
    shape = (16, 16, 16)
    gt = sphere(shape, (8, 8, 8), 5)
    point, positive = sakinis_click(gt, np.zeros(shape, bool))
    assert positive and gt[point]
    big = sphere(shape, (8, 8, 8), 7)
    far = big.copy()
    far[0:3] = True  # a large false-positive slab
    point, positive = sakinis_click(gt, far)
    assert not positive and not gt[point] and far[point]


def test_user_step0_boxes_then_clicks():
    shape = (12, 40, 40)
    label = np.zeros(shape, np.uint8)
    label[sphere(shape, (6, 12, 12), 4)] = 1
    label[sphere(shape, (6, 28, 28), 5)] = 2
    case = make_case(label)
    user = SakinisUser()
    classes = {1: "a", 2: "b", 3: "absent"}
    boxes = user.interactions(case, classes, 0, None, seed=0)
    assert [b.kind for b in boxes] == ["box", "box"]
    assert [b.class_id for b in boxes] == [1, 2]
    for box in boxes:
        (z0, y0, x0), (z1, y1, x1) = box.coords
        zs, ys, xs = np.nonzero(label == box.class_id)
        assert (z0, z1) == (zs.min(), zs.max())  # full z-extent, not enlarged
        assert y0 <= ys.min() and x0 <= xs.min() and y1 >= ys.max() and x1 >= xs.max()
        assert 0 <= y0 and 0 <= x0 and y1 < shape[1] and x1 < shape[2]
    # click step on the empty prediction: a positive click per present class, none for absent
    clicks = user.interactions(case, classes, 1, np.zeros(shape, np.uint8), seed=0)
    assert [(c.class_id, c.positive, c.step) for c in clicks] == [(1, True, 1), (2, True, 1)]
    for click in clicks:
        assert label[click.coords[0]] == click.class_id
    # a failed step (None) counts as empty
    assert user.interactions(case, classes, 1, None, seed=0) == clicks
    # perfect prediction: no clicks at all
    assert user.interactions(case, classes, 2, label.copy(), seed=0) == ()
    # class absent from gt but predicted: no click, as CVPR25 loops over the GT's classes only
    # (issue 15, D5); the old behaviour, a background click for it, is an option
    pred = label.copy()
    pred[0:2, 0:5, 0:5] = 3
    assert user.interactions(case, classes, 3, pred, seed=0) == ()
    clicks = SakinisUser(click_absent_classes=True).interactions(case, classes, 3, pred, seed=0)
    assert [(c.class_id, c.positive) for c in clicks] == [(3, False)]


def test_box_mid_slice_and_shift():
    mask = np.zeros((10, 256, 256), bool)
    mask[2, 100:110, 100:110] = True
    mask[3:9, 50:60, 60:70] = True
    box = medsegfm_box(mask, rng_for(0, "c", 1, 0), shift_max=0)
    # z-extent 2..8; median voxel lies in slices 3..8 (600 voxels there vs 100 in slice 2)
    assert box[0][0] == 2 and box[1][0] == 8
    assert box[0][1:] == (50, 60) and box[1][1:] == (59, 69)
    shifts = set()
    for k in range(50):
        (_, y0, x0), (_, y1, x1) = medsegfm_box(mask, rng_for(0, "c", 1, k), shift_max=5)
        assert 50 - y0 == y1 - 59 == 60 - x0 == x1 - 69
        shifts.add(50 - y0)
    assert shifts == {0, 1, 2, 3, 4, 5}
    # clipped at the image border
    edge = np.zeros((4, 256, 256), bool)
    edge[1, 0:3, 250:256] = True
    (_, y0, x0), (_, y1, x1) = medsegfm_box(edge, rng_for(0, "c", 1, 3), shift_max=5)
    assert y0 == 0 and x1 == 255


def test_user_is_deterministic_and_validates():
    rng = np.random.default_rng(0)
    label = blobs(rng, (10, 30, 30), 0.2, 1.5).astype(np.uint8)
    case = make_case(label, "deterministic")
    user = SakinisUser()
    first = user.interactions(case, {1: "x"}, 0, None, seed=3)
    assert first == SakinisUser().interactions(case, {1: "x"}, 0, None, seed=3)
    with pytest.raises(SegloopError, match="deterministic"):
        user.interactions(case, {1: "x"}, 1, np.zeros((2, 2, 2), np.uint8), seed=3)
    with pytest.raises(SegloopError):
        SakinisUser(initial="lasso")
    assert user.to_json()["protocol"] == "sakinis"


def test_initial_click_and_none():
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:6, 2:6, 2:6] = 1
    case = make_case(label)
    assert SakinisUser(initial="none").interactions(case, {1: "x"}, 0, None, 0) == ()
    (click,) = SakinisUser(initial="click").interactions(case, {1: "x"}, 0, None, 0)
    assert click.kind == "click" and click.positive and label[click.coords[0]] == 1


def _sakinis_steps(case_id: str) -> list:
    rng = np.random.default_rng(int(case_id[-1]))
    label = blobs(rng, (10, 24, 24), 0.2, 1.5).astype(np.uint8)
    case = make_case(label, case_id)
    prediction = blobs(rng, (10, 24, 24), 0.2, 1.5).astype(np.uint8)
    user = SakinisUser()
    return [
        [i.to_json() for i in user.interactions(case, {1: "x"}, s, prediction, seed=5)]
        for s in range(3)
    ]


def test_same_interactions_in_a_process_pool_and_any_order():
    from concurrent.futures import ProcessPoolExecutor

    ids = ["pool_1", "pool_2", "pool_3"]
    local = {i: _sakinis_steps(i) for i in ids}
    with ProcessPoolExecutor(max_workers=2) as pool:
        remote = dict(zip(ids[::-1], pool.map(_sakinis_steps, ids[::-1]), strict=True))
    assert remote == local


def test_no_clicks_for_classes_absent_from_the_ground_truth():
    """Issue 15, D5: CVPR25_iter_eval.py clicks the classes of np.unique(gts)[1:] only; segloop
    gave a background click to a task class the model predicted but the GT lacks."""
    from tests.challenge_reference import cvpr25_classes, cvpr25_click

    shape = (10, 30, 30)
    label = np.zeros(shape, np.uint8)
    label[sphere(shape, (5, 10, 10), 4)] = 1
    pred = np.zeros(shape, np.uint8)
    pred[sphere(shape, (5, 10, 10), 2)] = 1  # under-segmented: a foreground click
    pred[2:6, 20:27, 18:29] = 2  # class 2: predicted, absent from the GT, a large error
    case = make_case(label)
    clicks = SakinisUser().interactions(case, {1: "a", 2: "b"}, 1, pred, seed=0)
    assert [c.class_id for c in clicks] == cvpr25_classes(label) == [1]
    assert clicks[0].positive and cvpr25_click(label, pred, 1)[1] == "fg"
    assert cvpr25_click(label, pred, 2) is not None  # CVPR25 would click it, were it in the GT
    with_absent = SakinisUser(click_absent_classes=True)
    assert [c.class_id for c in with_absent.interactions(case, {1: "a", 2: "b"}, 1, pred, 0)] == [
        1,
        2,
    ]


def test_box_mid_slice_default_is_get_boxes_head():
    """Issue 15, D4: get_boxes.py at HEAD takes np.unique(z)[len // 2] (the middle distinct
    foreground slice), segloop defaulted to the z of the median voxel. A mask whose voxels pile
    up in its last slices tells them apart."""
    from segloop.protocols.sakinis import box_mid_slice
    from tests.challenge_reference import (
        get_boxes_box,
        get_boxes_mid_slice,
        get_boxes_mid_slice_before_may_2025,
    )

    mask = np.zeros((12, 64, 64), bool)
    mask[1:8, 30:34, 30:34] = True  # seven thin slices
    mask[8:10, 5:60, 5:60] = True  # two wide ones
    mask[4, 20:40, 10:12] = True  # slice 4 wider than its neighbours
    assert get_boxes_mid_slice(mask) == 5 != get_boxes_mid_slice_before_may_2025(mask) == 8
    assert box_mid_slice(mask) == 5
    assert box_mid_slice(mask, "voxel_median") == 8
    box = medsegfm_box(mask, rng_for(0, "c", 1, 0), shift_max=0)
    reference = get_boxes_box(mask, shift=0)
    assert box == (
        (reference["z_min"], reference["z_mid_y_min"], reference["z_mid_x_min"]),
        (reference["z_max"], reference["z_mid_y_max"], reference["z_mid_x_max"]),
    )
    assert SakinisUser().box_mid_slice == "slice_median"
    with pytest.raises(SegloopError, match="box_mid_slice"):
        SakinisUser(box_mid_slice="middle")
    rng = np.random.default_rng(40)
    for _ in range(40):  # random masks: always get_boxes.py's slice
        shape = (int(rng.integers(3, 16)), 20, 20)
        random_mask = blobs(rng, shape, rng.uniform(0.02, 0.3), rng.uniform(0.5, 2.0))
        assert box_mid_slice(random_mask) == get_boxes_mid_slice(random_mask)
        assert box_mid_slice(random_mask, "voxel_median") == get_boxes_mid_slice_before_may_2025(
            random_mask
        )


def _parcellation(rng, shape, n_classes):
    """A Voronoi-like label map of ``n_classes`` classes (some absent) and a prediction that
    shifts, erodes and relabels parts of it (errors of every kind per class)."""
    seeds = rng.integers(0, np.array(shape), size=(n_classes, 3))
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    nearest = np.argmin(((grid[..., None, :] - seeds) ** 2).sum(axis=-1), axis=-1)
    label = (nearest + 1).astype(np.uint8)
    label[rng.random(shape) < 0.02] = 0
    label[label == 3] = 0  # a task class absent from the ground truth
    prediction = np.roll(label, 2, axis=1)
    prediction[ndimage.binary_erosion(prediction == 5, iterations=2)] = 0
    prediction[label == 7] = 3  # predicted where the ground truth lacks the class
    return label, prediction


@pytest.mark.parametrize("spacing", [None, (2.5, 0.8, 1.1)])
@pytest.mark.parametrize("seed", range(3))
def test_all_classes_in_one_pass_equal_class_by_class_clicks(spacing, seed):
    rng = np.random.default_rng(seed)
    label, prediction = _parcellation(rng, (18, 30, 26), 12)
    ids = list(range(1, 14))
    clicks = sakinis_clicks(label, prediction, ids, spacing)
    assert len(clicks) >= 10  # the one-pass path (more than FEW_CLASSES classes) was taken
    expected = []
    for class_id in ids:
        click = sakinis_click(label, prediction, spacing, class_id=class_id)
        if click is not None:
            naive = sakinis_click_naive(label == class_id, prediction == class_id, spacing)
            assert click == naive
            expected.append((class_id, click[0], click[1], bool((label == class_id).any())))
    assert [(c.class_id, c.point, c.positive, c.in_label) for c in clicks] == expected
    assert any(not c.in_label for c in clicks)  # class 3: clicked, absent from the label


def test_many_class_user_clicks_only_ground_truth_classes_unless_asked():
    label, prediction = _parcellation(np.random.default_rng(5), (18, 30, 26), 12)
    case = make_case(label)
    classes = {c: f"c{c}" for c in range(1, 14)}
    clicks = SakinisUser().interactions(case, classes, 1, prediction, seed=0)
    present = set(np.unique(label).tolist()) - {0}
    assert [c.class_id for c in clicks] == [
        c for c in range(1, 14) if c in present and sakinis_click(label, prediction, class_id=c)
    ]
    everyone = SakinisUser(click_absent_classes=True).interactions(case, classes, 1, prediction, 0)
    assert 3 in [c.class_id for c in everyone] and 3 not in [c.class_id for c in clicks]


@pytest.mark.parametrize("mid_slice", ["slice_median", "voxel_median"])
def test_many_class_boxes_from_one_pass_equal_full_mask_boxes(mid_slice):
    label, _ = _parcellation(np.random.default_rng(6), (18, 30, 26), 12)
    case = make_case(label)
    classes = {c: f"c{c}" for c in range(1, 14)}
    user = SakinisUser(box_mid_slice=mid_slice, box_shift_max=40)  # shifts move the corners
    boxes = user.interactions(case, classes, 0, None, seed=3)
    expected = []
    for class_id in range(1, 14):
        rng = rng_for(3, case.case_id, class_id, 0, "medsegfm-box")
        box = medsegfm_box(label == class_id, rng, 40, 256, mid_slice)
        if box is not None:
            expected.append((class_id, box))
    assert [(b.class_id, tuple(b.coords)) for b in boxes] == expected
    assert len(expected) >= 10 and 3 not in [c for c, _ in expected]


def test_class_boxes_equal_the_one_pass_statistics():
    """The clicks' cheaper box pass (two find_objects) gives the boxes and presence of the full
    one-pass statistics, in 3-D and 2-D, with classes absent from either map."""
    from segloop.core.metrics.surface_engine import class_boxes, multiclass_overlap

    rng = np.random.default_rng(4)
    for shape in ((12, 20, 24), (30, 40)):
        gt = rng.integers(0, 9, size=shape).astype(np.uint8)
        gt[gt == 7] = 0  # class 7 only in the prediction
        pred = np.roll(gt, 1, axis=0)
        pred[pred == 5] = 0  # class 5 only in the ground truth
        ids = list(range(1, 10))  # class 9 in neither
        stats = multiclass_overlap(pred, gt, ids)
        boxes = class_boxes(pred, gt, ids)
        assert set(boxes) == set(ids)
        for class_id in ids:
            assert boxes[class_id] == (stats[class_id].box, stats[class_id].gt_voxels > 0)
        assert boxes[9] == (None, False) and boxes[7][1] is False and boxes[5][1] is True
