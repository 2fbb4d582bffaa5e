"""Tests of segloop.core.metrics.surface_engine: the organ-scale engine equals DeepMind's surface-distance (surfels)
and a direct medpy-style implementation (boundary voxels, full-volume EDT) to 1e-12, and the
one-pass multi-class statistics equal per-class loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from segloop.app.bench_surface import organ_phantom, parcellation_phantom, perturbed_prediction
from segloop.core.metrics import binary, crops, scoring
from segloop.core.metrics import surface_engine as S
from segloop.core.records import EmptyMaskPolicy

TOL = 1e-12
TOLERANCES_MM = (0.0, 0.5, 1.0, 2.0, 3.3)
PERCENTILES = (50.0, 95.0, 100.0)


@pytest.fixture(scope="module")
def deepmind():
    return pytest.importorskip("surface_distance", reason="needs DeepMind's surface-distance")


def random_mask(rng, shape, fill):
    """Blobby random mask: smoothed noise, thresholded (touches the array edges often)."""
    noise = ndimage.uniform_filter(rng.random(shape), size=3, mode="constant")
    return noise > np.quantile(noise, 1.0 - fill)


def ellipsoid(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def close(a, b):
    a, b = float(a), float(b)
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= TOL


def deepmind_lists(deepmind, pred, gt, spacing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.filters import
        return deepmind.compute_surface_distances(gt, pred, spacing)


def assert_equals_deepmind(deepmind, pred, gt, spacing):
    """Sorted lists, NSD, robust HD, average distances (and metrics' ASSD) against DeepMind,
    from the complete distances and from a search that stops once the metric is known."""
    ref = deepmind_lists(deepmind, pred, gt, spacing)
    sd = S.surfel_distances(pred, gt, spacing)
    for ours, key_d, key_a in (
        (sd.gt_to_pred, "distances_gt_to_pred", "surfel_areas_gt"),
        (sd.pred_to_gt, "distances_pred_to_gt", "surfel_areas_pred"),
    ):
        distances, areas = S.sorted_lists(ours, sd.areas_mm2)
        assert distances.shape == ref[key_d].shape
        assert np.allclose(distances, ref[key_d], rtol=0, atol=TOL)
        assert np.allclose(areas, ref[key_a], rtol=0, atol=TOL)
    for t in TOLERANCES_MM:
        expected = deepmind.compute_surface_dice_at_tolerance(ref, t)
        assert close(S.surface_dice(sd, t), expected), t
        part = S.surfel_distances(pred, gt, spacing, tolerances_mm=[t], complete=False)
        assert close(S.surface_dice(part, t), expected), t
    for q in PERCENTILES:
        expected = deepmind.compute_robust_hausdorff(ref, q)
        assert close(S.robust_hausdorff_mm(sd, q), expected), q
        part = S.surfel_distances(pred, gt, spacing, percentiles=[q], complete=False)
        assert close(S.robust_hausdorff_mm(part, q), expected), q
    expected = deepmind.compute_average_surface_distance(ref)
    ours = S.average_surface_distances_mm(sd)
    assert close(ours[0], expected[0]) and close(ours[1], expected[1])
    assert close(S.assd_mm(sd), binary.average_symmetric_surface_distance_mm(pred, gt, spacing))
    return sd


# --- building blocks -------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.3), (0.3, 3.0, 0.9)])
def test_edt_distance_is_scipys_bit_for_bit(spacing):
    image = np.ones((9, 11, 13), dtype=bool)
    centre = (4, 5, 6)
    image[centre] = False
    expected = ndimage.distance_transform_edt(image, sampling=spacing)
    offsets = np.argwhere(np.ones(image.shape, dtype=bool)) - np.array(centre)
    ours = S.edt_distance_mm(offsets, spacing).reshape(image.shape)
    assert np.array_equal(ours, expected)  # same operations, same rounding


@pytest.mark.parametrize("spacing, radius", [((1.0, 1.0, 1.0), 3.0), ((2.5, 0.7, 1.3), 4.2)])
def test_shells_hold_every_offset_within_the_radius_once_in_order(spacing, radius):
    shells = S._shells(spacing, radius)
    reach = [int(radius / s) + 2 for s in spacing]
    grid = np.argwhere(np.ones([2 * r + 1 for r in reach], dtype=bool)) - np.array(reach)
    distances = S.edt_distance_mm(grid, spacing)
    inside = grid[(distances > 0) & (distances <= radius)]
    assert len(shells.offsets) == len(inside)
    assert {tuple(o) for o in shells.offsets} == {tuple(o) for o in inside}
    per_offset = np.repeat(shells.distances_mm, np.diff(shells.starts))
    assert np.array_equal(per_offset, S.edt_distance_mm(shells.offsets, spacing))
    assert np.all(np.diff(shells.distances_mm) > 0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_surfel_codes_are_the_metrics_neighbour_codes(ndim):
    rng = np.random.default_rng(ndim)
    shape = (7, 9, 6)[:ndim]
    mask = random_mask(rng, shape, 0.4)
    # reference: an explicit loop over the cell corners; corner c sets bit sum(c_a 2^(n-1-a))
    padded = np.pad(mask.astype(np.int64), 1)
    cells = tuple(n + 1 for n in shape)
    expected = np.zeros(cells, dtype=np.int64)
    for corner in np.ndindex(*(2,) * ndim):
        bit = sum(c << (ndim - 1 - a) for a, c in enumerate(corner))
        expected += (
            padded[tuple(slice(c, c + n) for c, n in zip(corner, cells, strict=True))] << bit
        )
    assert np.array_equal(S.surfel_codes(mask), expected)


# --- surfels against DeepMind ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(8))
def test_random_anisotropic_masks_equal_deepmind(deepmind, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(5, 28, 3))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, 3))
    pred = random_mask(rng, shape, rng.uniform(0.05, 0.5))
    gt = random_mask(rng, shape, rng.uniform(0.05, 0.5))
    assert_equals_deepmind(deepmind, pred, gt, spacing)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(4))
def test_2d_masks_equal_deepmind(deepmind, seed):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(n) for n in rng.integers(6, 40, 2))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 2.5, 2))
    pred = random_mask(rng, shape, 0.3)
    gt = random_mask(rng, shape, 0.3)
    assert_equals_deepmind(deepmind, pred, gt, spacing)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "move, spacing",
    [
        ("shift0", (3.0, 0.8, 0.7)),
        ("shift2", (1.0, 1.0, 1.0)),
        ("dilate", (2.5, 0.6, 0.6)),
        ("erode", (0.9, 1.1, 1.7)),
    ],
)
def test_shifted_and_dilated_organ_shapes_equal_deepmind(deepmind, move, spacing):
    shape = (40, 56, 52)
    gt = ellipsoid(shape, (20, 27, 25), (14, 20, 17)) & ~ellipsoid(shape, (20, 30, 20), (5, 8, 6))
    if move == "shift0":
        pred = np.roll(gt, 3, axis=0)
    elif move == "shift2":
        pred = np.roll(gt, -2, axis=2)
    elif move == "dilate":
        pred = ndimage.binary_dilation(gt, iterations=2)
    else:
        pred = ndimage.binary_erosion(gt)
    sd = assert_equals_deepmind(deepmind, pred, gt, spacing)
    # a shifted organ keeps the surfels parallel to the shift: found without any search
    shared = int(sd.pred_to_gt.counts[0].sum())
    assert shared > 0 if move.startswith("shift") else shared < sd.pred_to_gt.totals.sum()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_one_voxel_objects_and_masks_touching_the_border(deepmind):
    spacing = (2.0, 0.5, 1.25)
    shape = (6, 9, 7)
    one = np.zeros(shape, dtype=bool)
    one[0, 0, 0] = True  # a corner voxel
    other = np.zeros(shape, dtype=bool)
    other[5, 8, 6] = True  # the opposite corner
    assert_equals_deepmind(deepmind, one, other, spacing)
    assert_equals_deepmind(deepmind, one, one, spacing)
    full = np.ones(shape, dtype=bool)  # touches every border
    assert_equals_deepmind(deepmind, full, one, spacing)
    slab = np.zeros(shape, dtype=bool)
    slab[:, :3] = True
    assert_equals_deepmind(deepmind, full, slab, spacing)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_far_apart_objects_go_to_the_tree_and_stay_exact(deepmind):
    shape = (30, 50, 45)
    pred = np.zeros(shape, dtype=bool)
    gt = np.zeros(shape, dtype=bool)
    gt[5:12, 5:15, 5:12] = True
    pred[6:12, 5:14, 5:12] = True
    pred[20:24, 38:45, 30:40] = True  # a false positive far beyond the shells
    spacing = (1.5, 0.8, 0.9)
    sd = assert_equals_deepmind(deepmind, pred, gt, spacing)
    beyond_shells = S.search_radius_mm(spacing)
    assert sd.pred_to_gt.distances_mm.max() > beyond_shells
    # an NSD tolerance beyond the shells: the bounded tree covers the rest
    ref = deepmind_lists(deepmind, pred, gt, spacing)
    part = S.surfel_distances(pred, gt, spacing, tolerances_mm=[12.0], complete=False)
    assert close(S.surface_dice(part, 12.0), deepmind.compute_surface_dice_at_tolerance(ref, 12.0))
    assert not part.pred_to_gt.complete  # the farthest surfels were not needed


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(3))
def test_tiny_shells_leave_nearly_everything_to_the_tree(deepmind, monkeypatch, seed):
    monkeypatch.setattr(S, "SEARCH_OFFSETS", 8)
    rng = np.random.default_rng(200 + seed)
    shape = (18, 22, 20)
    spacing = tuple(float(s) for s in rng.uniform(0.5, 2.0, 3))
    assert_equals_deepmind(
        deepmind, random_mask(rng, shape, 0.2), random_mask(rng, shape, 0.3), spacing
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_organ_scale_phantom_equals_deepmind(deepmind):
    label, prediction = organ_phantom((150, 160, 150), seed=3)
    spacing = (1.2, 0.9, 0.8)
    ref = deepmind_lists(deepmind, prediction, label, spacing)
    sd = S.surfel_distances(prediction, label, spacing)
    for ours, key_d, key_a in (
        (sd.gt_to_pred, "distances_gt_to_pred", "surfel_areas_gt"),
        (sd.pred_to_gt, "distances_pred_to_gt", "surfel_areas_pred"),
    ):
        distances, areas = S.sorted_lists(ours, sd.areas_mm2)
        assert distances.size > 100_000  # organ scale: a large, folded surface
        assert np.allclose(distances, ref[key_d], rtol=0, atol=TOL)
        assert np.allclose(areas, ref[key_a], rtol=0, atol=TOL)
    assert close(S.surface_dice(sd, 2.0), deepmind.compute_surface_dice_at_tolerance(ref, 2.0))
    for q in (95.0, 100.0):
        assert close(S.robust_hausdorff_mm(sd, q), deepmind.compute_robust_hausdorff(ref, q))
    # the lazy search of a metrics step (what a run computes) gives the same values
    names = ["dice", "nsd@2", "hd95", "assd"]
    scores = scoring.score_classes(
        prediction.view(np.uint8), label.view(np.uint8), [1], spacing, names
    )
    assert close(scores["nsd@2"]["mean"], deepmind.compute_surface_dice_at_tolerance(ref, 2.0))
    assert close(scores["hd95"]["mean"], deepmind.compute_robust_hausdorff(ref, 95.0))
    assert close(scores["assd"]["mean"], S.assd_mm(sd))
    assert close(scores["dice"]["mean"], deepmind.compute_dice_coefficient(label, prediction))
    assert 0.75 < scores["dice"]["mean"] < 0.9  # the issue's kind of prediction (Dice ~0.83)


def test_empty_masks_follow_deepmind_conventions():
    shape = (8, 9, 10)
    some = np.zeros(shape, dtype=bool)
    some[2:5, 3:6, 4:8] = True
    none = np.zeros(shape, dtype=bool)
    sd = S.surfel_distances(some, none, (1.0, 2.0, 1.5))
    distances, _ = S.sorted_lists(sd.pred_to_gt, sd.areas_mm2)
    assert distances.size > 0 and np.all(np.isinf(distances))
    assert S.sorted_lists(sd.gt_to_pred, sd.areas_mm2)[0].size == 0
    assert S.surface_dice(sd, 2.0) == 0.0
    assert S.robust_hausdorff_mm(sd, 95) == math.inf
    both = S.surfel_distances(none, none, (1.0, 2.0, 1.5))
    assert math.isnan(S.surface_dice(both, 2.0))


def test_metrics_that_were_not_computed_are_refused():
    shape = (20, 24, 22)
    gt = np.zeros(shape, dtype=bool)
    gt[3:8, 3:8, 3:8] = True
    pred = gt.copy()
    pred[14:18, 16:20, 15:19] = True  # far from gt: beyond a 1 mm search
    part = S.surfel_distances(pred, gt, (1.0, 1.0, 1.0), tolerances_mm=[1.0], complete=False)
    assert not part.pred_to_gt.complete
    assert 0.0 < S.surface_dice(part, 1.0) < 1.0
    with pytest.raises(ValueError, match="not computed"):
        S.surface_dice(part, 5.0)
    with pytest.raises(ValueError, match="not computed"):
        S.assd_mm(part)
    with pytest.raises(ValueError, match="not computed"):
        S.robust_hausdorff_mm(part, 100.0)


# --- boundary voxels against a direct medpy-style implementation -----------------------------


def medpy_direct(pred, gt, spacing, connectivity):
    """medpy/metric/binary.py's recipe on the full volume: border = mask ^ erosion, distances
    from the EDT of the other border's complement; (hd, hd95, assd of the directed means,
    assd pooled)."""
    structure = ndimage.generate_binary_structure(pred.ndim, connectivity)
    border_p = pred ^ ndimage.binary_erosion(pred, structure=structure, iterations=1)
    border_g = gt ^ ndimage.binary_erosion(gt, structure=structure, iterations=1)
    d_pg = ndimage.distance_transform_edt(~border_g, sampling=spacing)[border_p]
    d_gp = ndimage.distance_transform_edt(~border_p, sampling=spacing)[border_g]
    pooled = np.hstack((d_pg, d_gp))
    return (
        max(d_pg.max(), d_gp.max()),
        np.percentile(pooled, 95),
        np.mean((d_pg.mean(), d_gp.mean())),
        pooled.mean(),
    )


@pytest.mark.parametrize("ndim, connectivity", [(3, 1), (3, 2), (3, 3), (2, 1), (2, 2)])
def test_boundary_voxels_are_medpys(ndim, connectivity):
    rng = np.random.default_rng(10 * ndim + connectivity)
    mask = random_mask(rng, (12, 15, 11)[:ndim], 0.5)
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    expected = mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)
    assert np.array_equal(S.boundary_voxels(mask, connectivity), expected)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_boundary_metrics_equal_a_direct_full_volume_edt(seed, connectivity):
    rng = np.random.default_rng(300 + seed)
    shape = tuple(int(n) for n in rng.integers(6, 26, 3))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 2.5, 3))
    pred = random_mask(rng, shape, rng.uniform(0.1, 0.5))
    gt = random_mask(rng, shape, rng.uniform(0.1, 0.5))
    hd, hd95, assd_means, assd_pooled = medpy_direct(pred, gt, spacing, connectivity)
    bd = S.boundary_distances(pred, gt, spacing, connectivity)
    assert close(S.medpy_hausdorff_mm(bd), hd)
    assert close(S.medpy_percentile_hausdorff_mm(bd, 95.0), hd95)
    assert close(S.medpy_assd_mm(bd), assd_means)
    assert close(S.medpy_assd_mm(bd, "pooled"), assd_pooled)
    part = S.boundary_distances(pred, gt, spacing, connectivity, percentiles=[95], complete=False)
    assert close(S.medpy_percentile_hausdorff_mm(part, 95.0), hd95)


def test_boundary_metrics_on_an_organ_phantom_and_in_2d():
    label, prediction = organ_phantom((64, 72, 64), seed=5)
    spacing = (1.5, 0.7, 0.7)
    for connectivity in (1, 2):
        expected = medpy_direct(prediction, label, spacing, connectivity)
        bd = S.boundary_distances(prediction, label, spacing, connectivity)
        assert close(S.medpy_hausdorff_mm(bd), expected[0])
        assert close(S.medpy_percentile_hausdorff_mm(bd), expected[1])
        assert close(S.medpy_assd_mm(bd), expected[2])
    rng = np.random.default_rng(7)
    pred2, gt2 = random_mask(rng, (30, 41), 0.3), random_mask(rng, (30, 41), 0.3)
    expected = medpy_direct(pred2, gt2, (0.8, 1.3), 2)
    bd2 = S.boundary_distances(pred2, gt2, (0.8, 1.3), 2)
    assert close(S.medpy_percentile_hausdorff_mm(bd2), expected[1])
    assert close(S.medpy_assd_mm(bd2, "pooled"), expected[3])


def test_a_pooled_percentile_waits_for_both_values_it_interpolates():
    # 2 x 56 boundary voxels at distance 0 and one far voxel: the percentile's position falls
    # between the last 0 and the far distance, so the lazy search must find that one too
    gt = np.zeros((12, 12, 12), dtype=bool)
    gt[1:5, 1:5, 1:5] = True
    pred = gt.copy()
    pred[10, 9, 10] = True
    spacing = (1.0, 1.0, 1.0)
    n = 2 * 56 + 1
    percentile = 100.0 * (n - 1.5) / (n - 1)
    expected = np.percentile(medpy_pooled(pred, gt, spacing, 1), percentile)
    assert 0 < expected < math.inf
    part = S.boundary_distances(pred, gt, spacing, 1, percentiles=[percentile], complete=False)
    assert close(S.medpy_percentile_hausdorff_mm(part, percentile), expected)


def medpy_pooled(pred, gt, spacing, connectivity):
    structure = ndimage.generate_binary_structure(pred.ndim, connectivity)
    border_p = pred ^ ndimage.binary_erosion(pred, structure=structure)
    border_g = gt ^ ndimage.binary_erosion(gt, structure=structure)
    return np.hstack(
        (
            ndimage.distance_transform_edt(~border_g, sampling=spacing)[border_p],
            ndimage.distance_transform_edt(~border_p, sampling=spacing)[border_g],
        )
    )


def test_the_two_medpy_assd_definitions_differ_when_the_boundaries_do():
    # a 1-voxel prediction in a 5^3 cube: 1 boundary voxel against 98
    gt = np.zeros((7, 7, 7), dtype=bool)
    gt[1:6, 1:6, 1:6] = True
    pred = np.zeros_like(gt)
    pred[3, 3, 3] = True
    bd = S.boundary_distances(pred, gt, (1.0, 1.0, 1.0), 1)
    directed_means = S.medpy_assd_mm(bd)
    pooled = S.medpy_assd_mm(bd, "pooled")
    assert directed_means == pytest.approx(medpy_direct(pred, gt, (1.0, 1.0, 1.0), 1)[2], abs=TOL)
    assert abs(directed_means - pooled) > 0.1
    with pytest.raises(ValueError, match="pooling"):
        S.medpy_assd_mm(bd, "mean")


# --- many classes ----------------------------------------------------------------------------


def loop_stats(pred, gt, class_id):
    """Counts, intersection and boxes of one class by brute force."""

    def box(mask):
        if not mask.any():
            return None
        where = np.argwhere(mask)
        return tuple(
            slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0), strict=True)
        )

    p, g = pred == class_id, gt == class_id
    return (int(p.sum()), int(g.sum()), int((p & g).sum()), box(p), box(g))


def as_tuple(stats: S.ClassStats):
    return (
        stats.pred_voxels,
        stats.gt_voxels,
        stats.intersection_voxels,
        stats.pred_box,
        stats.gt_box,
    )


@pytest.fixture(scope="module")
def label_maps():
    gt, pred = parcellation_phantom((30, 48, 44), n_classes=12, seed=1)
    pred = pred.copy()
    pred[pred == 7] = 3  # class 7 missing from the prediction
    gt = gt.copy()
    pred[2:5, 20:26, 20:25] = 13  # class 13 only in the prediction
    return pred, gt


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int16])
@pytest.mark.parametrize("ids", [list(range(1, 15)), [0, 3, 7, 13, 40], [5, 2]])
def test_multiclass_overlap_equals_per_class_loops(label_maps, dtype, ids):
    pred, gt = (a.astype(dtype) for a in label_maps)
    stats = S.multiclass_overlap(pred, gt, ids)
    assert list(stats) == ids
    for class_id in ids:
        assert as_tuple(stats[class_id]) == loop_stats(pred, gt, class_id), class_id


def test_multiclass_overlap_in_2d_and_on_fortran_ordered_maps(label_maps):
    pred, gt = label_maps
    ids = list(range(0, 15))
    fortran = S.multiclass_overlap(np.asfortranarray(pred), np.asfortranarray(gt), ids)
    for class_id in ids:
        assert as_tuple(fortran[class_id]) == loop_stats(pred, gt, class_id)
    flat_pred, flat_gt = pred[12], gt[12]
    flat = S.multiclass_overlap(flat_pred, flat_gt, ids)
    for class_id in ids:
        assert as_tuple(flat[class_id]) == loop_stats(flat_pred, flat_gt, class_id)
    with pytest.raises(ValueError, match="repeat"):
        S.multiclass_overlap(pred, gt, [1, 2, 1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_score_classes_of_many_classes_equals_deepmind_per_class(deepmind, label_maps):
    """One pass for the class statistics, then each class on its box: every class's values
    equal DeepMind's on that class's full-volume masks."""
    pred, gt = label_maps
    spacing = (2.0, 0.8, 0.7)
    ids = list(range(1, 15))
    names = ["dice", "nsd@1", "nsd@2", "hd95", "hd", "assd"]
    scores = scoring.score_classes(pred, gt, ids, spacing, names)
    per_class = {name: scores[name]["per_class"] for name in names}
    for class_id in ids:
        p, g, key = pred == class_id, gt == class_id, str(class_id)
        if not (p.any() and g.any()):
            continue
        ref = deepmind_lists(deepmind, p, g, spacing)
        sd = S.surfel_distances(p, g, spacing)
        assert close(per_class["dice"][key], deepmind.compute_dice_coefficient(g, p))
        for t in (1.0, 2.0):
            expected = deepmind.compute_surface_dice_at_tolerance(ref, t)
            assert close(per_class[f"nsd@{t:g}"][key], expected)
        assert close(per_class["hd95"][key], deepmind.compute_robust_hausdorff(ref, 95.0))
        assert close(per_class["hd"][key], deepmind.compute_robust_hausdorff(ref, 100.0))
        assert close(per_class["assd"][key], S.assd_mm(sd))
    diagonal = crops.image_diagonal_mm(pred.shape, spacing)
    assert per_class["dice"]["7"] == 0.0 and per_class["nsd@2"]["7"] == 0.0  # not predicted
    assert per_class["hd95"]["7"] == diagonal
    assert per_class["dice"]["14"] == 1.0 and per_class["assd"]["14"] == 0.0  # in neither


def test_score_classes_policy_and_boundary_voxel_metrics(label_maps):
    pred, gt = label_maps
    spacing = (1.0, 1.2, 0.9)
    policy = EmptyMaskPolicy(0.5, 7.0, 0.25, 123.0)
    names = ["dice", "nsd@2", "hd95", "assd"]
    scores = scoring.score_classes(pred, gt, [7, 13, 14], spacing, names, policy)
    values = {name: scores[name]["per_class"] for name in names}
    assert (values["dice"]["7"], values["nsd@2"]["7"], values["hd95"]["7"]) == (0.25, 0.25, 123.0)
    assert values["assd"]["13"] == 123.0
    assert (values["dice"]["14"], values["nsd@2"]["14"], values["assd"]["14"]) == (0.5, 0.5, 7.0)
    medpy_names = [f"{kind}_voxel_boundary_n18" for kind in ("hd", "hd95", "assd")]
    medpy = scoring.score_classes(pred, gt, [1, 4], spacing, medpy_names)
    for class_id in (1, 4):
        expected = medpy_direct(pred == class_id, gt == class_id, spacing, 2)
        found = [medpy[name]["per_class"][str(class_id)] for name in medpy_names]
        assert close(found[0], expected[0])
        assert close(found[1], expected[1])
        assert close(found[2], expected[3])  # the registry's ASSD pools both directions


def test_perturbed_prediction_is_the_issues_kind_of_error():
    label, _ = organ_phantom((48, 52, 48), seed=2)
    prediction = perturbed_prediction(label, np.random.default_rng(0))
    dice = 2 * (label & prediction).sum() / (label.sum() + prediction.sum())
    assert 0.6 < dice < 0.9
    assert not np.array_equal(prediction, ndimage.binary_dilation(np.roll(label, 2, axis=1)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", range(6))
def test_sparse_and_dense_surfels_are_the_same_set(deepmind, monkeypatch, seed):
    """The block-sparse surfel search (few lesions in a big box) and the dense pass find the
    same surfels, codes and distances; forced either way, in 2-D and 3-D, blocks of 3-5 cells."""
    rng = np.random.default_rng(700 + seed)
    ndim = 2 if seed % 3 == 0 else 3
    shape = tuple(int(n) for n in rng.integers(14, 30, size=ndim))
    spacing = tuple(float(v) for v in rng.uniform(0.5, 2.5, size=ndim))
    pred = np.zeros(shape, dtype=bool)
    gt = np.zeros(shape, dtype=bool)
    for mask in (pred, gt):  # small blobs, some touching the array's faces
        for _ in range(3):
            lo = rng.integers(0, np.array(shape) - 2)
            hi = lo + rng.integers(1, 7, size=ndim)
            mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    gt[tuple(slice(2, 9) for _ in range(ndim))] = True  # a solid block: skipped inside
    monkeypatch.setattr(S, "SURFEL_BLOCK", int(rng.integers(3, 6)))
    monkeypatch.setattr(S, "SPARSE_BLOCK_SHARE", 2.0)  # always sparse
    sparse = assert_equals_deepmind(deepmind, pred, gt, spacing)
    monkeypatch.setattr(S, "SPARSE_BLOCK_SHARE", -1.0)  # always dense
    dense = S.surfel_distances(pred, gt, spacing)
    for a, b in ((sparse.pred_to_gt, dense.pred_to_gt), (sparse.gt_to_pred, dense.gt_to_pred)):
        assert np.array_equal(a.distances_mm, b.distances_mm)
        assert np.array_equal(a.counts, b.counts)
