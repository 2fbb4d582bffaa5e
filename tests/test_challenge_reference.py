"""The re-derived challenge formulas (tests/challenge_reference.py) checked independently.

Each reference is compared with a computation that does not share its method (brute-force
distances between border voxels, hand-counted volumes, medpy's and DeepMind's documented
values), so that later challenge-mode tests can trust it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from tests import challenge_reference as ref


def brute_border(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Border voxels found by looking at every neighbour of the structure (outside = background)."""
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    padded = np.pad(mask, 1)
    border = np.zeros(mask.shape, bool)
    centre = np.array([1] * mask.ndim)
    for offset in np.argwhere(structure) - centre:
        window = tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, mask.shape, strict=True))
        border |= mask & ~padded[window]
    return border


def brute_distances(a, b, spacing, connectivity):
    pa = np.argwhere(brute_border(a, connectivity)) * np.asarray(spacing)
    pb = np.argwhere(brute_border(b, connectivity)) * np.asarray(spacing)
    return cdist(pa, pb).min(axis=1)


def random_pair(rng, shape):
    def blob():
        noise = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.6, 1.5))
        return noise > np.quantile(noise, 1 - rng.uniform(0.1, 0.4))

    return blob(), blob()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_medpy_distances_equal_brute_force_on_anisotropic_pairs(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(15):
        shape = tuple(int(v) for v in rng.integers(5, 12, 3))
        spacing = tuple(float(v) for v in rng.uniform(0.3, 3.0, 3))
        a, b = random_pair(rng, shape)
        ab = brute_distances(a, b, spacing, connectivity)
        ba = brute_distances(b, a, spacing, connectivity)
        ours = ref.medpy_surface_distances(a, b, spacing, connectivity)
        np.testing.assert_allclose(np.sort(ours), np.sort(ab), rtol=1e-12)
        assert ref.medpy_hd(a, b, spacing, connectivity) == pytest.approx(
            max(ab.max(), ba.max()), rel=1e-12
        )
        pooled = np.concatenate([ab, ba])
        assert ref.medpy_hd95(a, b, spacing, connectivity) == pytest.approx(
            np.percentile(pooled, 95), rel=1e-12
        )
        assert ref.medpy_assd(a, b, spacing, connectivity) == pytest.approx(
            pooled.mean(), rel=1e-12
        )


def test_medpy_documented_connectivity_example():
    """medpy's ``asd`` docstring: cross vs 3x3 square, 0.0 with connectivity 1, 0.2 with 2."""
    cross = ndimage.generate_binary_structure(2, 1)
    square = np.ones((3, 3), bool)
    assert ref.medpy_surface_distances(cross, square, connectivity=1).mean() == 0.0
    assert ref.medpy_surface_distances(cross, square, connectivity=2).mean() == pytest.approx(0.2)
    with pytest.raises(RuntimeError):
        ref.medpy_hd(np.zeros((3, 3), bool), square)
    assert ref.medpy_dc(np.zeros(4, bool), np.zeros(4, bool)) == 1.0


def test_autopet_metrics_by_hand():
    spacing = (3.0, 2.0, 2.0)  # 12 mm^3 = 0.012 ml per voxel
    gt = np.zeros((6, 8, 8), np.uint8)
    gt[1, 1, 1] = 1  # two GT lesions touching only at a corner: 18-connectivity splits them
    gt[2, 2, 2] = 1
    gt[4, 5:7, 5:7] = 1  # a third, 4 voxels
    pred = np.zeros_like(gt)
    pred[1, 1, 1] = 1  # finds the first
    pred[0, 6:8, 0:3] = 1  # a 6-voxel false positive
    dice, fpv, fnv = ref.autopet_metrics(gt, pred, spacing)
    assert dice == pytest.approx(2 * 1 / (6 + 7))
    assert ref.autopet_false_positive_voxels(gt, pred) == 6
    assert ref.autopet_false_negative_voxels(gt, pred) == 5  # 1 + 4: untouched lesions
    assert fpv == pytest.approx(6 * 0.012, rel=1e-6) and fnv == pytest.approx(5 * 0.012, rel=1e-6)
    assert ref.autopet_voxel_volume_ml((0.8, 0.8, 0.8)) == float(
        np.float32(0.8) ** 3 / np.float32(1000)
    )
    empty = np.zeros_like(gt)
    d, p, n = ref.autopet_metrics(empty, pred, spacing)  # negative case
    assert math.isnan(d) and math.isnan(n) and p == pytest.approx(7 * 0.012, rel=1e-6)
    d, p, n = ref.autopet_metrics(empty, empty, spacing)
    assert math.isnan(d) and p == 0 and math.isnan(n)
    d, p, n = ref.autopet_metrics(gt, empty, spacing)
    assert d == 0 and p == 0 and n == pytest.approx(6 * 0.012, rel=1e-6)


def test_curves_and_means():
    assert ref.trapezoid_auc([0, 1, 1]) == 1.5
    assert math.isnan(ref.trapezoid_auc([math.nan, 1.0, 1.0]))
    assert ref.pandas_mean_skipna([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(ref.pandas_mean_skipna([math.nan]))
    assert ref.cvpr25_auc_final([9, 0, 1, 1, 1, 0.5]) == (3.25, 0.5)  # step 0 left out


def test_trials_conventions():
    assert ref.trials_text_sorted_steps(11) == [0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9]
    values = [float(k) for k in range(11)]
    auc, final = ref.trials_auc_final(values)
    assert final == 9.0 and auc == ref.trapezoid_auc([0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9])
    gt = np.zeros((8, 8, 8), np.uint8)
    gt[2:6, 2:6, 2:6] = 1
    scores = ref.trials_object_scores(np.zeros_like(gt), gt, (1.0, 1.0, 1.0))
    assert scores == {"dice": [0.0], "assd": [9001.0], "msd": [9001.0]}
    assert ref.trials_object_scores(gt, np.zeros_like(gt), (1.0,) * 3) == {
        "dice": [],
        "assd": [],
        "msd": [],
    }  # no reference object: nothing scored (the script then fails)
    shifted = np.roll(gt, 1, axis=2)
    scores = ref.trials_object_scores(shifted, gt, (2.0, 1.0, 0.5))
    assert scores["assd"][0] == pytest.approx(
        ref.medpy_assd(shifted == 1, gt == 1, (2.0, 1.0, 0.5), connectivity=2)
    )


def test_toothfairy3_conventions():
    gt = np.zeros((10, 12, 14), np.uint8)
    gt[2:8, 3:5, 3:5] = 1
    assert ref.toothfairy3_hd95(np.zeros_like(gt), gt) == pytest.approx(math.sqrt(100 + 144 + 196))
    assert ref.toothfairy3_hd95(np.zeros_like(gt), np.zeros_like(gt)) == 0.0
    shifted = np.roll(gt, 2, axis=0)
    assert ref.toothfairy3_hd95(shifted, gt) == ref.medpy_hd95(shifted, gt, None, 1)
    dice, hd95 = ref.toothfairy3_case(gt, gt)  # canal 2 absent from both: Dice 1, HD95 0
    assert (dice, hd95) == (1.0, 0.0)


def test_cvpr25_conventions():
    assert [ref.cvpr25_tie_index(n) for n in (2, 3, 5, 10)] == [0, 2, 3, 6]
    gts = np.zeros((10, 10, 10), np.uint8)
    gts[2:6, 2:6, 2:6] = 1
    gts[6:9, 6:9, 6:9] = 3
    assert ref.cvpr25_classes(gts) == [1, 3]
    assert math.isnan(ref.cvpr25_dice(np.zeros(3, bool), np.zeros(3, bool)))
    segs = np.zeros_like(gts)
    segs[gts == 1] = 1  # class 3 missed: DSC 0.5 > 0.2, NSD (1 + 0) / 2
    dsc, nsd = ref.cvpr25_step_scores(gts, segs, (1.0, 1.0, 1.0))
    assert dsc == 0.5 and nsd == 0.5
    segs = np.zeros_like(gts)
    segs[2:3, 2:4, 2:4] = 1  # DSC 0.06: NSD not computed, 0
    assert ref.cvpr25_step_scores(gts, segs, (1.0, 1.0, 1.0))[1] == 0.0
    assert ref.cvpr25_click(gts, gts, 1) is None
    (centre, kind) = ref.cvpr25_click(gts, np.zeros_like(gts), 3)
    assert centre == (7, 7, 7) and kind == "fg"
    line = np.zeros((5, 5, 5), np.uint8)
    line[2, 2, 1:3] = 1  # two tied maxima: index RandomState(42).randint(2) = 0
    assert ref.cvpr25_click(line, np.zeros_like(line), 1) == ((2, 2, 1), "fg")


def test_get_boxes_rules_and_box():
    mask = np.zeros((10, 20, 30), bool)
    mask[1, 5:7, 5:7] = True
    mask[2:4, 8:12, 10:20] = True
    mask[7, 3:4, 3:4] = True  # distinct slices 1, 2, 3, 7: the middle is index 2 -> slice 3
    assert ref.get_boxes_mid_slice(mask) == 3
    assert ref.get_boxes_mid_slice_before_may_2025(mask) == 2  # the bulk of the voxels
    box = ref.get_boxes_box(mask, shift=5)  # int(5 * 20/256) = 0, int(5 * 30/256) = 0
    assert box == {
        "z_min": 1,
        "z_max": 7,
        "z_mid": 3,
        "z_mid_x_min": 10,
        "z_mid_y_min": 8,
        "z_mid_x_max": 19,
        "z_mid_y_max": 11,
    }
    wide = np.zeros((3, 256, 512), bool)
    wide[1, 100:110, 200:210] = True
    box = ref.get_boxes_box(wide, shift=5)
    assert (box["z_mid_y_min"], box["z_mid_x_min"]) == (95, 190)


def test_nibabel_first_argmax_is_the_reversed_axes_argmax():
    values = np.zeros((3, 4, 5))
    values[2, 0, 0] = values[0, 0, 4] = 1.0
    assert ref.nibabel_first_argmax(values) == (2, 0, 0)  # x = 0 comes first
    assert np.unravel_index(int(np.argmax(values)), values.shape) == (0, 0, 4)
