"""Tests of segloop.core.metrics: known answers, brute-force references, crop invariance, AUC."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from segloop.core.metrics import binary, crops, curves, registry, scoring, surface
from segloop.core.metrics import surface_engine as engine
from segloop.core.records import EmptyMaskPolicy, SegloopError

CUSTOM_POLICY = EmptyMaskPolicy(
    both_empty_overlap=0.5,
    both_empty_distance_mm=7.0,
    one_empty_overlap=0.25,
    one_empty_distance_mm=123.0,
)


def box_mask(shape, lo, hi):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


def ball(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2


def random_mask(rng, shape, fill):
    """Blobby random mask: smoothed noise, thresholded (touches the array edges often)."""
    noise = ndimage.uniform_filter(rng.random(shape), size=3, mode="constant")
    return noise > np.quantile(noise, 1.0 - fill)


def surface_lists(pred, gt, spacing):
    """Every surfel's distance and area, both directions, from the engine: sorted by
    (distance, area) as DeepMind's ``compute_surface_distances`` sorts them."""
    sd = engine.surfel_distances(pred, gt, spacing)
    d_p, a_p = engine.sorted_lists(sd.pred_to_gt, sd.areas_mm2)
    d_g, a_g = engine.sorted_lists(sd.gt_to_pred, sd.areas_mm2)
    return SimpleNamespace(
        distances_pred_to_gt_mm=d_p,
        areas_pred_mm2=a_p,
        distances_gt_to_pred_mm=d_g,
        areas_gt_mm2=a_g,
    )


# --- reference implementation (dense, no crop, no blocks, no k-d tree) -----------------------


def reference_surfels(mask, spacing):
    """Cells (full-array cell coords, C order) and areas, by explicit corner loop on the padded
    array; the cell grid of a padded array of shape n+2 has n+1 cells per axis."""
    padded = np.pad(mask.astype(np.int64), 1)
    ndim = mask.ndim
    cells_shape = tuple(n + 1 for n in mask.shape)
    codes = np.zeros(cells_shape, dtype=np.int64)
    for corner in np.ndindex(*(2,) * ndim):
        bit = sum(c << (ndim - 1 - a) for a, c in enumerate(corner))
        view = padded[tuple(slice(c, c + n) for c, n in zip(corner, cells_shape, strict=True))]
        codes += view << bit
    border = (codes != 0) & (codes != (1 << (1 << ndim)) - 1)
    table = surface.surfel_area_table(spacing)
    return border, np.argwhere(border), table[codes[border]]


def brute_force_distances(mask_a, mask_b, spacing):
    """For every surfel of a: distance to the nearest surfel of b, by all pairwise distances."""
    _, cells_a, areas_a = reference_surfels(mask_a, spacing)
    _, cells_b, _ = reference_surfels(mask_b, spacing)
    pairwise = cdist(cells_a * np.asarray(spacing), cells_b * np.asarray(spacing))
    return pairwise.min(axis=1), areas_a


def edt_distances(mask_a, mask_b, spacing):
    """Same quantity the DeepMind way: scipy EDT of b's surfel cells on the full volume."""
    _, _, areas_a = reference_surfels(mask_a, spacing)
    border_a, _, _ = reference_surfels(mask_a, spacing)
    border_b, _, _ = reference_surfels(mask_b, spacing)
    distance_map = ndimage.distance_transform_edt(~border_b, sampling=spacing)
    return distance_map[border_a], areas_a


def weighted_percentile(distances, areas, percent):
    """Smallest distance d whose surfels at distance <= d hold >= percent % of the area."""
    for d in np.unique(distances):
        if areas[distances <= d].sum() / areas.sum() >= percent / 100.0 - 1e-12:
            return d
    return distances.max()


# --- known answers -------------------------------------------------------------------------


def test_dice_of_two_overlapping_cubes_is_from_counts():
    a = box_mask((10, 10, 10), (1, 1, 1), (5, 5, 5))  # 64 voxels
    b = box_mask((10, 10, 10), (2, 2, 2), (6, 6, 6))  # 64 voxels, 27 shared
    assert binary.dice(a, b) == pytest.approx(2 * 27 / 128, abs=1e-15)
    assert binary.dice(a, a) == 1.0


def test_identical_masks_have_nsd_one_and_zero_distances():
    a = ball((16, 16, 16), (8, 7, 8), 5)
    spacing = (2.5, 1.0, 0.7)
    assert binary.normalised_surface_dice(a, a, spacing, 0.0) == 1.0
    assert binary.hausdorff_distance_mm(a, a, spacing) == 0.0
    assert binary.hausdorff_distance_mm(a, a, spacing, percentile=95) == 0.0
    assert binary.average_symmetric_surface_distance_mm(a, a, spacing) == 0.0


@pytest.mark.parametrize("axis, k", [(0, 1), (0, 3), (1, 2), (2, 4)])
def test_cube_shifted_along_an_anisotropic_axis(axis, k):
    spacing = (3.0, 1.25, 0.5)
    lo = [4, 4, 4]
    hi = [10, 10, 10]
    a = box_mask((18, 18, 18), lo, hi)
    lo[axis] += k
    hi[axis] += k
    b = box_mask((18, 18, 18), lo, hi)
    shift_mm = k * spacing[axis]
    assert binary.hausdorff_distance_mm(a, b, spacing) == pytest.approx(shift_mm, abs=1e-12)
    assert binary.hausdorff_distance_mm(b, a, spacing) == pytest.approx(shift_mm, abs=1e-12)
    assert binary.normalised_surface_dice(a, b, spacing, shift_mm) == 1.0
    below = binary.normalised_surface_dice(a, b, spacing, shift_mm - 1e-6)
    assert 0.0 < below < 1.0
    assert 0.0 < binary.average_symmetric_surface_distance_mm(a, b, spacing) < shift_mm


def test_sphere_against_shifted_sphere():
    spacing = (2.0, 1.0, 1.5)
    a = ball((30, 30, 30), (15, 15, 15), 8)
    b = ball((30, 30, 30), (15, 15, 17), 8)  # shifted by 2 voxels along x
    both = np.count_nonzero(a & b)
    assert binary.dice(a, b) == pytest.approx(2 * both / (a.sum() + b.sum()), abs=1e-15)
    hd = binary.hausdorff_distance_mm(a, b, spacing)
    assert hd == pytest.approx(2 * 1.5, abs=1e-12)
    hd95 = binary.hausdorff_distance_mm(a, b, spacing, percentile=95)
    assert 0 < hd95 <= hd
    assert 0 < binary.average_symmetric_surface_distance_mm(a, b, spacing) < hd
    assert binary.normalised_surface_dice(a, b, spacing, 3.0) == 1.0
    assert binary.normalised_surface_dice(a, b, spacing, 1.0) < 1.0


def test_surfel_areas_of_a_box_match_the_closed_form():
    # box of A x B x C voxels: flat faces, chamfered edges (rectangles), corner triangles
    sz, sy, sx = 2.0, 0.75, 1.25
    a_, b_, c_ = 7, 5, 9
    mask = box_mask((12, 10, 14), (2, 3, 1), (2 + a_, 3 + b_, 1 + c_))
    faces = 2 * ((b_ - 1) * (c_ - 1) * sy * sx + (a_ - 1) * (c_ - 1) * sz * sx)
    faces += 2 * (a_ - 1) * (b_ - 1) * sz * sy
    edges = 4 * (
        (a_ - 1) * sz * math.hypot(sy, sx) / 2
        + (b_ - 1) * sy * math.hypot(sz, sx) / 2
        + (c_ - 1) * sx * math.hypot(sz, sy) / 2
    )
    corners = 8 * 0.5 * math.sqrt((sy * sx / 4) ** 2 + (sz * sx / 4) ** 2 + (sz * sy / 4) ** 2)
    sd = surface_lists(mask, mask, (sz, sy, sx))
    assert sd.areas_pred_mm2.sum() == pytest.approx(faces + edges + corners, rel=1e-12)


def test_surfel_area_of_a_single_voxel_and_2d_perimeter():
    voxel = box_mask((3, 3, 3), (1, 1, 1), (2, 2, 2))
    sd = surface_lists(voxel, voxel, (1.0, 1.0, 1.0))
    assert sd.areas_gt_mm2.sum() == pytest.approx(math.sqrt(3), rel=1e-12)  # octahedron
    rect = box_mask((10, 12), (2, 3), (7, 11))  # 5 x 8 pixels
    sy, sx = 1.5, 0.5
    sd2 = surface_lists(rect, rect, (sy, sx))
    expected = 2 * (4 * sy + 7 * sx) + 4 * 0.5 * math.hypot(sy, sx)
    assert sd2.areas_pred_mm2.sum() == pytest.approx(expected, rel=1e-12)


def test_voxels_meeting_along_an_edge_keep_separate_surfaces():
    # ambiguous faces (inside corners on a diagonal) cut each inside corner off on its own,
    # so two voxels sharing only an edge have the surfaces of two single voxels
    pair = np.zeros((3, 4, 4), dtype=bool)
    pair[1, 1, 1] = pair[1, 2, 2] = True
    sd = surface_lists(pair, pair, (1.0, 1.0, 1.0))
    assert sd.areas_pred_mm2.sum() == pytest.approx(2 * math.sqrt(3), rel=1e-12)


def test_sphere_surface_area_is_close_to_four_pi_r_squared():
    # midpoint marching cubes on a digital ball overestimates the smooth area by a few %;
    # counting voxel faces (the staircase) would overestimate it by about 50 %
    mask = ball((34, 34, 34), (17, 17, 17), 14)
    area = surface_lists(mask, mask, (1.0, 1.0, 1.0)).areas_pred_mm2.sum()
    radius = (3 * mask.sum() / (4 * math.pi)) ** (1 / 3)  # radius of the same volume
    assert 1.0 < area / (4 * math.pi * radius**2) < 1.1


# --- the surfel area table: construction and DeepMind's table --------------------------------

SQRT2, SQRT3 = math.sqrt(2.0), math.sqrt(3.0)


def corner_bit(corner):
    """Bit of a cell corner (tuple of 0/1 in axis order) in our neighbour code."""
    return sum(c << (len(corner) - 1 - a) for a, c in enumerate(corner))


def code_of(corners):
    """Our neighbour code of a cell whose inside corners are ``corners``."""
    return sum(1 << corner_bit(corner) for corner in corners)


def reversed_bits(code, bits):
    """DeepMind's code of the same cell: their corner numbering is ours mirrored (bits reversed)."""
    return int(format(code, f"0{bits}b")[::-1], 2)


def test_surfel_area_table_of_the_marching_cubes_pieces():
    # unit cell: corner triangle, edge rectangle, face square, two corners on a face diagonal
    # (cut off separately), three corners of a face (pentagon of the classic triangulation:
    # 1/2 + sqrt(3)/4 + sqrt(3)/8, the centroid fan would give 1.087), a corner with its three
    # neighbours (hexagon, 3 sqrt(3)/4), a zigzag of four corners ((sqrt(3) + sqrt(2)) / 2)
    table = surface.surfel_area_table((1.0, 1.0, 1.0))
    expected = {
        ((0, 0, 0),): SQRT3 / 8,
        ((0, 0, 0), (0, 0, 1)): SQRT2 / 2,
        ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)): 1.0,
        ((0, 0, 0), (0, 1, 1)): SQRT3 / 4,
        ((0, 0, 0), (0, 0, 1), (0, 1, 0)): 0.5 + 3 * SQRT3 / 8,
        ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)): 3 * SQRT3 / 4,
        ((0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)): (SQRT3 + SQRT2) / 2,
    }
    for corners, area in expected.items():
        assert table[code_of(corners)] == pytest.approx(area, rel=1e-14), corners
    assert table[0] == table[255] == 0.0
    # a configuration and its complement share their surface
    np.testing.assert_allclose(table, table[::-1], rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_surfel_area_table_follows_the_symmetries_of_the_cell(seed):
    # permuting (and mirroring) the axes of the cell permutes the spacing the same way
    rng = np.random.default_rng(500 + seed)
    spacing = rng.uniform(0.2, 4.0, size=3)
    table = surface.surfel_area_table(spacing)
    corners = list(np.ndindex(2, 2, 2))
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        flips = rng.integers(0, 2, size=3)
        moved = surface.surfel_area_table(spacing[list(perm)])
        for code in range(256):
            inside = [c for c in corners if (code >> corner_bit(c)) & 1]
            image = [tuple(int(c[perm[a]] ^ flips[a]) for a in range(3)) for c in inside]
            assert moved[code_of(image)] == pytest.approx(table[code], rel=1e-13)


@pytest.fixture(scope="module")
def deepmind():
    """DeepMind's ``surface-distance`` package (PyPI, version 0.1; in the ``test`` extra)."""
    return pytest.importorskip(
        "surface_distance",
        reason="DeepMind's surface-distance package is not installed "
        "(pip install surface-distance, or the project's test extra)",
    )


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
def test_surfel_area_table_equals_deepmind_for_every_code(deepmind):
    rng = np.random.default_rng(7)
    spacings = [(1.0, 1.0, 1.0), (3.0, 2.0, 2.0), (0.5, 0.5, 5.0)]
    spacings += [tuple(rng.uniform(0.1, 6.0, size=3)) for _ in range(20)]
    for spacing in spacings:
        ours = surface.surfel_area_table(spacing)
        theirs = deepmind.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        theirs = theirs[[reversed_bits(code, 8) for code in range(256)]]
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0, err_msg=str(spacing))
    for spacing in [(1.0, 1.0), (3.0, 2.0)] + [tuple(rng.uniform(0.1, 6.0, 2)) for _ in range(10)]:
        ours = surface.surfel_area_table(spacing)
        theirs = deepmind.lookup_tables.create_table_neighbour_code_to_contour_length(spacing)
        theirs = theirs[[reversed_bits(code, 4) for code in range(16)]]
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0, err_msg=str(spacing))


def sparse_mask(rng, shape, fill):
    """Scattered voxels and short runs: every kind of 2x2x2 neighbourhood, thin structures."""
    mask = rng.random(shape) < fill
    return mask | np.roll(mask & (rng.random(shape) < 0.5), 1, axis=int(rng.integers(len(shape))))


def physical_ball(shape, centre_mm, radius_mm, spacing):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (
        sum(((g * s) - c) ** 2 for g, s, c in zip(grids, spacing, centre_mm, strict=True))
        <= radius_mm**2
    )


def assert_same_as_deepmind(deepmind, pred, gt, spacing, tolerances=(0.5, 1.0, 2.0, 3.0)):
    """Every surface metric (and the sorted per-surfel arrays) against DeepMind's package."""
    ref = deepmind.compute_surface_distances(gt, pred, spacing)  # their order: (gt, pred)
    sd = surface_lists(pred, gt, spacing)
    for ours_d, ours_a, key in (
        (sd.distances_gt_to_pred_mm, sd.areas_gt_mm2, "gt_to_pred"),
        (sd.distances_pred_to_gt_mm, sd.areas_pred_mm2, "pred_to_gt"),
    ):
        order = np.lexsort((ours_a, ours_d))  # theirs are sorted by (distance, area)
        np.testing.assert_allclose(ours_d[order], ref[f"distances_{key}"], rtol=1e-12, atol=0)
        theirs_a = ref[f"surfel_areas_{key.split('_')[0]}"]
        np.testing.assert_allclose(ours_a[order], theirs_a, rtol=1e-12, atol=0)
    for tolerance in tolerances:
        theirs = deepmind.compute_surface_dice_at_tolerance(ref, tolerance)
        assert binary.normalised_surface_dice(pred, gt, spacing, tolerance) == pytest.approx(
            theirs, rel=1e-12
        )
    for percentile in (50, 95, 100):
        theirs = deepmind.compute_robust_hausdorff(ref, percentile)
        assert binary.hausdorff_distance_mm(pred, gt, spacing, percentile) == pytest.approx(
            theirs, rel=1e-12
        )
    # ASSD: theirs are the two directed averages; ours pools both surfaces, weighted by area
    asd_gt, asd_pred = deepmind.compute_average_surface_distance(ref)
    area_gt, area_pred = ref["surfel_areas_gt"].sum(), ref["surfel_areas_pred"].sum()
    pooled = (area_gt * asd_gt + area_pred * asd_pred) / (area_gt + area_pred)
    assert binary.average_symmetric_surface_distance_mm(pred, gt, spacing) == pytest.approx(
        pooled, rel=1e-12
    )
    # score_classes (NSD alone prunes the search at the tolerance; with HD it does not)
    label, prediction = gt.astype(np.uint8), pred.astype(np.uint8)
    names = [f"nsd@{t}" for t in tolerances]
    for metric_names in (names, [*names, "hd95", "hd"]):
        scores = scoring.score_classes(prediction, label, [1], spacing, metric_names)
        for t, name in zip(tolerances, names, strict=True):
            theirs = deepmind.compute_surface_dice_at_tolerance(ref, t)
            assert scores[name]["mean"] == pytest.approx(theirs, rel=1e-12)
    theirs_hd95 = deepmind.compute_robust_hausdorff(ref, 95)
    assert scores["hd95"]["mean"] == pytest.approx(theirs_hd95, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
@pytest.mark.parametrize("seed", range(24))
def test_metrics_equal_deepmind_on_random_masks(deepmind, seed):
    rng = np.random.default_rng(600 + seed)
    shape = tuple(int(n) for n in rng.integers(6, 13, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 4.0, size=3))
    if seed % 2:
        pred = sparse_mask(rng, shape, rng.uniform(0.05, 0.3))
        gt = sparse_mask(rng, shape, rng.uniform(0.05, 0.3))
    else:
        pred = random_mask(rng, shape, rng.uniform(0.05, 0.4))
        gt = random_mask(rng, shape, rng.uniform(0.05, 0.4))
    assert pred.any() and gt.any()
    assert_same_as_deepmind(deepmind, pred, gt, spacing)


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
@pytest.mark.parametrize(
    "spacing",
    [(3.0, 2.0, 2.0), (1.0, 1.0, 1.0), (2.5, 0.8, 1.3), (0.7, 1.9, 0.45)],
)
def test_metrics_equal_deepmind_on_spheres(deepmind, spacing):
    # spheres in mm (ellipsoids in voxels), shifted and resized; spacings (3, 2, 2) and 1 mm
    # put surfels at exactly the 2 mm and 3 mm tolerances
    shape = (22, 26, 24)
    centre_mm = np.array(shape) * np.array(spacing) / 2
    gt = physical_ball(shape, centre_mm, 9.0 * min(spacing), spacing)
    pred = physical_ball(shape, centre_mm + spacing[2], 8.0 * min(spacing), spacing)
    assert gt.any() and pred.any()
    assert_same_as_deepmind(deepmind, pred, gt, spacing, tolerances=(1.0, 2.0, 3.0, 4.5))


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
@pytest.mark.parametrize("seed", range(6))
def test_2d_metrics_equal_deepmind(deepmind, seed):
    rng = np.random.default_rng(700 + seed)
    shape = tuple(int(n) for n in rng.integers(8, 20, size=2))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 4.0, size=2))
    mask = sparse_mask if seed % 2 else random_mask
    pred = mask(rng, shape, 0.2)
    gt = mask(rng, shape, 0.3)
    assert pred.any() and gt.any()
    assert_same_as_deepmind(deepmind, pred, gt, spacing)


# --- empty masks -------------------------------------------------------------------------


def _all_metrics(pred, gt, spacing, policy):
    return {
        "dice": binary.dice(pred, gt, policy),
        "nsd": binary.normalised_surface_dice(pred, gt, spacing, 2.0, policy),
        "hd95": binary.hausdorff_distance_mm(pred, gt, spacing, 95.0, policy),
        "hd": binary.hausdorff_distance_mm(pred, gt, spacing, 100.0, policy),
        "assd": binary.average_symmetric_surface_distance_mm(pred, gt, spacing, policy),
    }


def test_empty_masks_under_the_default_policy():
    shape, spacing = (6, 8, 10), (3.0, 2.0, 1.0)
    diagonal = math.sqrt(18.0**2 + 16.0**2 + 10.0**2)
    assert crops.image_diagonal_mm(shape, spacing) == pytest.approx(diagonal)
    empty = np.zeros(shape, dtype=bool)
    full = box_mask(shape, (1, 1, 1), (4, 4, 4))
    assert _all_metrics(empty, empty, spacing, EmptyMaskPolicy()) == {
        "dice": 1.0,
        "nsd": 1.0,
        "hd95": 0.0,
        "hd": 0.0,
        "assd": 0.0,
    }
    for pred, gt in ((empty, full), (full, empty)):
        values = _all_metrics(pred, gt, spacing, EmptyMaskPolicy())
        assert values["dice"] == 0.0 and values["nsd"] == 0.0
        for name in ("hd95", "hd", "assd"):
            assert values[name] == pytest.approx(diagonal)
    assert binary.false_positive_volume_ml(empty, empty, spacing) == 0.0
    assert binary.false_negative_volume_ml(empty, empty, spacing) == 0.0
    assert binary.false_positive_volume_ml(full, empty, spacing) == pytest.approx(27 * 6.0 / 1000)
    assert binary.false_negative_volume_ml(full, empty, spacing) == 0.0
    assert binary.false_negative_volume_ml(empty, full, spacing) == pytest.approx(27 * 6.0 / 1000)


def test_empty_masks_under_a_custom_policy():
    shape, spacing = (6, 8, 10), (3.0, 2.0, 1.0)
    empty = np.zeros(shape, dtype=bool)
    full = box_mask(shape, (1, 1, 1), (4, 4, 4))
    assert _all_metrics(empty, empty, spacing, CUSTOM_POLICY) == {
        "dice": 0.5,
        "nsd": 0.5,
        "hd95": 7.0,
        "hd": 7.0,
        "assd": 7.0,
    }
    for pred, gt in ((empty, full), (full, empty)):
        assert _all_metrics(pred, gt, spacing, CUSTOM_POLICY) == {
            "dice": 0.25,
            "nsd": 0.25,
            "hd95": 123.0,
            "hd": 123.0,
            "assd": 123.0,
        }
    scores = scoring.score_classes(
        np.zeros(shape, np.uint8),
        full.astype(np.uint8),
        [1, 2],
        spacing,
        ["dice", "hd95"],
        policy=CUSTOM_POLICY,
    )
    assert scores["dice"]["per_class"] == {"1": 0.25, "2": 0.5}
    assert scores["hd95"]["per_class"] == {"1": 123.0, "2": 7.0}
    assert scores["hd95"]["mean"] == pytest.approx(65.0)


def test_surface_distances_against_an_empty_mask_are_infinite():
    a = box_mask((6, 6, 6), (1, 1, 1), (3, 3, 3))
    sd = surface_lists(a, np.zeros_like(a), (1.0, 1.0, 1.0))
    assert sd.distances_gt_to_pred_mm.size == 0 and sd.areas_gt_mm2.size == 0
    assert sd.distances_pred_to_gt_mm.size > 0 and np.isinf(sd.distances_pred_to_gt_mm).all()


# --- false positive / false negative volumes -----------------------------------------------


def test_fpv_counts_only_components_touching_no_ground_truth_18_connected():
    spacing = (2.0, 1.5, 0.5)  # 1.5 mm^3 per voxel
    gt = np.zeros((12, 12, 12), dtype=bool)
    gt[2:4, 2:4, 2:4] = True
    pred = np.zeros_like(gt)
    pred[3:6, 3:6, 3:6] = True  # overlaps the GT: not a false positive
    pred[6, 6, 6] = True  # meets pred[5, 5, 5] only at a corner: its own 18-component
    pred[9, 9, 9] = True  # far away ...
    pred[9, 9, 10] = True  # ... with a face neighbour ...
    pred[10, 10, 9] = True  # ... and an edge neighbour: one 18-component of 3 voxels
    assert binary.false_positive_volume_ml(pred, gt, spacing) == pytest.approx(4 * 1.5 / 1000)
    # the same voxel moved to share an edge with pred[5, 5, 5] joins the touching component
    pred[6, 6, 6] = False
    pred[6, 6, 5] = True
    assert binary.false_positive_volume_ml(pred, gt, spacing) == pytest.approx(3 * 1.5 / 1000)
    assert binary.false_negative_volume_ml(pred, gt, spacing) == 0.0


def test_fnv_counts_ground_truth_components_hit_by_no_prediction():
    spacing = (3.0, 2.0, 2.0)  # 12 mm^3 per voxel
    gt = np.zeros((10, 10, 10), dtype=bool)
    gt[1:3, 1:3, 1:3] = True  # 8 voxels, hit
    gt[6:9, 6:8, 6:8] = True  # 12 voxels, missed
    gt[1, 8, 8] = True  # 1 voxel, missed
    pred = np.zeros_like(gt)
    pred[2, 2, 2] = True
    pred[0, 0, 9] = True
    assert binary.false_negative_volume_ml(pred, gt, spacing) == pytest.approx(13 * 12 / 1000)
    assert binary.false_positive_volume_ml(pred, gt, spacing) == pytest.approx(1 * 12 / 1000)


# --- brute-force references and crop invariance ----------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_masks_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(8, 13, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 3.0, size=3))
    pred = random_mask(rng, shape, rng.uniform(0.05, 0.4))
    gt = random_mask(rng, shape, rng.uniform(0.05, 0.4))

    both = np.count_nonzero(pred & gt)
    assert binary.dice(pred, gt) == pytest.approx(2 * both / (pred.sum() + gt.sum()), abs=1e-15)

    sd = surface_lists(pred, gt, spacing)
    d_pg, a_p = brute_force_distances(pred, gt, spacing)
    d_gp, a_g = brute_force_distances(gt, pred, spacing)
    # same distances and areas (cdist and the EDT formula may differ in the last bit, which
    # reorders surfels at equal distances: areas compared as multisets, plus sum(d a))
    for ours_d, ours_a, ref_d, ref_a in (
        (sd.distances_pred_to_gt_mm, sd.areas_pred_mm2, d_pg, a_p),
        (sd.distances_gt_to_pred_mm, sd.areas_gt_mm2, d_gp, a_g),
    ):
        np.testing.assert_allclose(ours_d, np.sort(ref_d), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.sort(ours_a), np.sort(ref_a))
        assert np.sum(ours_d * ours_a) == pytest.approx(np.sum(ref_d * ref_a), rel=1e-12)

    hd = max(d_pg.max(), d_gp.max())
    assert binary.hausdorff_distance_mm(pred, gt, spacing) == pytest.approx(hd, rel=1e-12)
    hd95 = max(weighted_percentile(d_pg, a_p, 95), weighted_percentile(d_gp, a_g, 95))
    assert binary.hausdorff_distance_mm(pred, gt, spacing, 95) == pytest.approx(hd95, rel=1e-12)
    assd = ((d_pg * a_p).sum() + (d_gp * a_g).sum()) / (a_p.sum() + a_g.sum())
    assert binary.average_symmetric_surface_distance_mm(pred, gt, spacing) == pytest.approx(assd)
    for tolerance in (0.5, 1.0, 2.0, 4.0):
        nsd = (a_p[d_pg <= tolerance].sum() + a_g[d_gp <= tolerance].sum()) / (
            a_p.sum() + a_g.sum()
        )
        assert binary.normalised_surface_dice(pred, gt, spacing, tolerance) == pytest.approx(nsd)


@pytest.mark.parametrize("seed", range(8))
def test_cropping_changes_nothing_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(n) for n in rng.integers(8, 13, size=3))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=3))
    pred = np.zeros(shape, dtype=bool)
    gt = np.zeros(shape, dtype=bool)
    # small objects away from (and sometimes on) the array edges, so the crop really crops
    for mask in (pred, gt):
        for _ in range(2):
            lo = rng.integers(0, np.array(shape) - 2)
            hi = lo + rng.integers(1, 4, size=3)
            mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    # the engine crops to the box of pred | gt: the same masks in a larger, shifted array
    cropped = surface_lists(pred, gt, spacing)
    full = surface_lists(
        np.pad(pred, ((3, 1), (0, 5), (2, 2))), np.pad(gt, ((3, 1), (0, 5), (2, 2))), spacing
    )
    for field in (
        "distances_pred_to_gt_mm",
        "areas_pred_mm2",
        "distances_gt_to_pred_mm",
        "areas_gt_mm2",
    ):
        np.testing.assert_array_equal(getattr(cropped, field), getattr(full, field))


@pytest.mark.parametrize("seed", range(6))
def test_distances_equal_scipy_edt_on_the_full_volume(seed):
    # spacings whose products and squares are exact in binary floating point, so even
    # equidistant nearest surfels give bit-identical distances
    rng = np.random.default_rng(200 + seed)
    shape = tuple(int(n) for n in rng.integers(8, 13, size=3))
    spacing = tuple(float(s) for s in rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], size=3))
    pred = random_mask(rng, shape, 0.15)
    gt = random_mask(rng, shape, 0.25)
    sd = surface_lists(pred, gt, spacing)
    d_pg, _ = edt_distances(pred, gt, spacing)
    d_gp, _ = edt_distances(gt, pred, spacing)
    np.testing.assert_array_equal(sd.distances_pred_to_gt_mm, np.sort(d_pg))
    np.testing.assert_array_equal(sd.distances_gt_to_pred_mm, np.sort(d_gp))


@pytest.mark.parametrize("offsets", [8, 60, 400, 5000])
def test_the_search_radius_does_not_change_results(monkeypatch, offsets):
    # the shells searched before the k-d tree takes over: few (nearly all by the tree) to many
    spacing = (1.5, 1.0, 0.75)
    pred = ball((30, 28, 26), (14, 13, 12), 11)
    gt = box_mask((30, 28, 26), (4, 5, 3), (25, 23, 24))
    gt[10:14, 10:14, 10:14] = False  # a cavity deep inside
    reference = surface_lists(pred, gt, spacing)
    monkeypatch.setattr(engine, "SEARCH_OFFSETS", offsets)
    other = surface_lists(pred, gt, spacing)
    np.testing.assert_array_equal(other.distances_pred_to_gt_mm, reference.distances_pred_to_gt_mm)
    np.testing.assert_array_equal(other.distances_gt_to_pred_mm, reference.distances_gt_to_pred_mm)
    np.testing.assert_array_equal(other.areas_gt_mm2, reference.areas_gt_mm2)
    _, cells, areas = reference_surfels(gt, spacing)
    np.testing.assert_array_equal(np.sort(other.areas_gt_mm2), np.sort(areas))


@pytest.mark.parametrize("seed", range(4))
def test_2d_masks_against_brute_force(seed):
    rng = np.random.default_rng(300 + seed)
    shape = tuple(int(n) for n in rng.integers(8, 15, size=2))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 3.0, size=2))
    pred = random_mask(rng, shape, 0.3)
    gt = random_mask(rng, shape, 0.3)
    d_pg, a_p = brute_force_distances(pred, gt, spacing)
    d_gp, a_g = brute_force_distances(gt, pred, spacing)
    hd = max(d_pg.max(), d_gp.max())
    assert binary.hausdorff_distance_mm(pred, gt, spacing) == pytest.approx(hd, rel=1e-12)
    nsd = (a_p[d_pg <= 1.0].sum() + a_g[d_gp <= 1.0].sum()) / (a_p.sum() + a_g.sum())
    assert binary.normalised_surface_dice(pred, gt, spacing, 1.0) == pytest.approx(nsd)


# --- score_classes ----------------------------------------------------------------------------


def _label_maps():
    shape = (20, 22, 24)
    label = np.zeros(shape, dtype=np.uint8)
    label[ball(shape, (6, 7, 8), 4)] = 1
    label[box_mask(shape, (10, 12, 12), (17, 19, 21))] = 2
    prediction = np.zeros(shape, dtype=np.uint8)
    prediction[ball(shape, (7, 7, 9), 4)] = 1
    prediction[box_mask(shape, (11, 12, 12), (17, 20, 21))] = 2
    prediction[1:3, 18:21, 1:3] = 3  # class 3 predicted, absent from the label
    return prediction, label


def test_score_classes_matches_the_single_mask_functions():
    prediction, label = _label_maps()
    spacing = (2.0, 1.0, 1.5)
    names = ["dice", "nsd@2", "nsd@0.5", "hd95", "hd", "assd", "fpv", "fnv"]
    scores = scoring.score_classes(prediction, label, [1, 2, 3, 4], spacing, names)
    for c in (1, 2, 3, 4):
        p, g = prediction == c, label == c
        expected = {
            "dice": binary.dice(p, g),
            "nsd@2": binary.normalised_surface_dice(p, g, spacing, 2.0),
            "nsd@0.5": binary.normalised_surface_dice(p, g, spacing, 0.5),
            "hd95": binary.hausdorff_distance_mm(p, g, spacing, 95),
            "hd": binary.hausdorff_distance_mm(p, g, spacing),
            "assd": binary.average_symmetric_surface_distance_mm(p, g, spacing),
            "fpv": binary.false_positive_volume_ml(p, g, spacing),
            "fnv": binary.false_negative_volume_ml(p, g, spacing),
        }
        for name in names:
            assert scores[name]["per_class"][str(c)] == pytest.approx(expected[name], abs=1e-12)
    for name in names:
        per_class = scores[name]["per_class"]
        assert scores[name]["mean"] == pytest.approx(sum(per_class.values()) / 4)
    assert scores["dice"]["per_class"]["4"] == 1.0  # absent from both: policy value
    assert scores["dice"]["per_class"]["3"] == 0.0
    json.dumps(scores, allow_nan=False)


@pytest.mark.parametrize("seed", range(4))
def test_score_classes_nsd_alone_equals_the_unbounded_nsd(seed):
    # NSD-only scoring prunes the nearest-surfel search at the largest tolerance; tolerances
    # equal to exact lattice distances check that surfels at exactly the tolerance still count
    rng = np.random.default_rng(400 + seed)
    shape = (12, 11, 10)
    spacing = (2.0, 1.0, 1.5)
    prediction = random_mask(rng, shape, 0.2).astype(np.uint8)
    label = random_mask(rng, shape, 0.2).astype(np.uint8)
    names = ["nsd@1", "nsd@2", "nsd@2.5", "nsd@3"]
    scores = scoring.score_classes(prediction, label, [1], spacing, names)
    for name in names:
        tolerance = registry.parse_metric_name(name).tolerance_mm
        expected = binary.normalised_surface_dice(prediction, label, spacing, tolerance)
        assert scores[name]["mean"] == expected


def test_score_classes_computes_surface_distances_once_per_class(monkeypatch):
    prediction, label = _label_maps()
    calls = []
    original = engine.surfel_distances

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "surfel_distances", counting)
    scoring.score_classes(
        prediction, label, [1, 2], (1.0, 1.0, 1.0), ["nsd@1", "nsd@2", "hd95", "hd"]
    )
    assert len(calls) == 2
    calls.clear()
    scoring.score_classes(prediction, label, [1, 2], (1.0, 1.0, 1.0), ["dice", "fpv"])
    assert calls == []


def test_nsd_is_zeroed_where_dice_is_at_most_the_threshold():
    shape = (20, 20, 30)
    label = box_mask(shape, (5, 5, 5), (15, 15, 15)).astype(np.uint8)
    prediction = box_mask(shape, (5, 5, 13), (15, 15, 23)).astype(np.uint8)  # dice 400/2000
    spacing = (1.0, 1.0, 1.0)
    plain = scoring.score_classes(prediction, label, [1], spacing, ["nsd@2"])
    assert plain["nsd@2"]["mean"] > 0
    ruled = scoring.score_classes(
        prediction, label, [1], spacing, ["nsd@2"], nsd_zero_below_dice=0.2
    )
    assert ruled["nsd@2"]["mean"] == 0.0
    assert binary.dice(prediction, label) == pytest.approx(0.2)
    lenient = scoring.score_classes(
        prediction, label, [1], spacing, ["nsd@2"], nsd_zero_below_dice=0.1
    )
    assert lenient["nsd@2"]["mean"] == plain["nsd@2"]["mean"]


def two_class_case() -> tuple[np.ndarray, np.ndarray]:
    """Class 1 predicted perfectly (Dice 1), class 2 at Dice 0.1: case mean Dice 0.55."""
    shape = (20, 20, 40)
    label = box_mask(shape, (5, 5, 2), (15, 15, 12)).astype(np.uint8)
    label[box_mask(shape, (5, 5, 20), (15, 15, 30))] = 2
    prediction = box_mask(shape, (5, 5, 2), (15, 15, 12)).astype(np.uint8)
    prediction[box_mask(shape, (5, 5, 29), (15, 15, 39))] = 2  # 1 of 10 columns overlaps
    return prediction, label


def test_nsd_rule_on_the_case_dice_as_cvpr25_or_per_class():
    prediction, label = two_class_case()
    spacing = (1.0, 1.0, 1.0)
    names = ["dice", "nsd@2"]
    plain = scoring.score_classes(prediction, label, [1, 2], spacing, names)
    assert plain["dice"]["per_class"]["2"] == pytest.approx(0.1)
    assert plain["nsd@2"]["per_class"]["2"] > 0
    # CVPR25_iter_eval.py: the case's Dice (0.55) is above 0.2, so no NSD is zeroed
    case = scoring.score_classes(prediction, label, [1, 2], spacing, names, nsd_zero_below_dice=0.2)
    assert case["nsd@2"] == plain["nsd@2"]
    per_class = scoring.score_classes(
        prediction, label, [1, 2], spacing, names, nsd_zero_below_dice=0.2, nsd_zero_scope="class"
    )
    assert per_class["nsd@2"]["per_class"] == {"1": 1.0, "2": 0.0}
    # a case Dice at or below the threshold zeroes every class's NSD, the perfect one too
    strict = scoring.score_classes(
        prediction, label, [1, 2], spacing, names, nsd_zero_below_dice=0.55
    )
    assert strict["nsd@2"] == {"mean": 0.0, "per_class": {"1": 0.0, "2": 0.0}}


def test_present_classes_only_skips_classes_absent_from_the_ground_truth():
    prediction, label = two_class_case()
    spacing = (1.0, 1.0, 1.0)
    every = scoring.score_classes(prediction, label, [1, 2, 3], spacing, ["dice"])
    assert every["dice"]["per_class"]["3"] == 1.0  # both empty: the policy's 1
    present = scoring.score_classes(prediction, label, [1, 2, 3], spacing, ["dice"],
                              present_classes_only=True)  # fmt: skip
    assert set(present["dice"]["per_class"]) == {"1", "2"}
    assert present["dice"]["mean"] == pytest.approx(0.55)
    prediction[0, 0, 0] = 3  # a class the GT lacks, predicted anyway: still not scored
    again = scoring.score_classes(prediction, label, [1, 2, 3], spacing, ["dice"],
                            present_classes_only=True)  # fmt: skip
    assert again["dice"] == present["dice"]


def test_non_finite_values_become_none():
    policy = EmptyMaskPolicy(one_empty_distance_mm=float("nan"))
    label = box_mask((8, 8, 8), (2, 2, 2), (5, 5, 5)).astype(np.uint8)
    prediction = np.zeros_like(label)
    prediction[label == 1] = 2
    scores = scoring.score_classes(
        prediction, label, [1, 2], (1.0, 1.0, 1.0), ["hd", "dice"], policy
    )
    assert scores["hd"] == {"mean": None, "per_class": {"1": None, "2": None}}
    assert scores["dice"]["mean"] == 0.0
    json.dumps(scores, allow_nan=False)
    assert scoring.score_classes(prediction, label, [], (1.0, 1.0, 1.0), ["dice"])["dice"] == {
        "mean": None,
        "per_class": {},
    }


def test_shape_mismatch_and_bad_spacing_are_user_errors():
    with pytest.raises(SegloopError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        binary.dice(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(SegloopError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        scoring.score_classes(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), [1], (1, 1, 1), ["dice"])
    with pytest.raises(SegloopError, match="spacing"):
        binary.hausdorff_distance_mm(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 1.0))
    with pytest.raises(SegloopError, match="spacing"):
        binary.hausdorff_distance_mm(np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1.0, 0.0, 1.0))


# --- metric names ------------------------------------------------------------------------------


def test_parse_metric_names():
    assert registry.parse_metric_name("dice").kind == "dice"
    assert registry.parse_metric_name("nsd@2").tolerance_mm == 2.0
    assert registry.parse_metric_name("nsd@1.5").tolerance_mm == 1.5
    assert [registry.parse_metric_name(n).title for n in ("nsd@2", "hd95", "hd")] == [
        "NSD@2 mm",
        "HD95",
        "HD",
    ]
    assert [registry.parse_metric_name(n).unit for n in ("dice", "hd95", "fpv")] == ["", "mm", "ml"]
    assert registry.parse_metric_name("nsd@2").metric.bounds == (0.0, 1.0)
    assert [registry.parse_metric_name(n).kind for n in ("assd", "fpv", "fnv")] == [
        "assd",
        "fpv",
        "fnv",
    ]
    for bad in ("dsc", "nsd", "nsd@", "nsd@x", "nsd@-1", "nsd@inf", "hd99"):
        with pytest.raises(SegloopError):
            registry.parse_metric_name(bad)
    assert [registry.higher_is_better(n) for n in ("dice", "nsd@2")] == [True, True]
    assert not any(registry.higher_is_better(n) for n in ("hd95", "hd", "assd", "fpv", "fnv"))


# --- AUC and curves ----------------------------------------------------------------------------


def test_auc_trapezoid_and_normalisation():
    assert curves.auc([0.0, 1.0, 1.0], [0, 1, 2]) == (1.5, 0.75)
    raw, normalised = curves.auc([0.2, 0.6, 0.8, 0.9], [0, 1, 3, 4])
    expected = (0.2 + 0.6) / 2 + 2 * (0.6 + 0.8) / 2 + (0.8 + 0.9) / 2
    assert raw == pytest.approx(expected)
    assert normalised == pytest.approx(expected / 4)
    assert curves.auc([0.7], [3]) == (0.0, 0.7)
    assert curves.auc([0.5, None, 0.7], [0, 1, 2]) == (None, None)
    assert curves.auc([0.5, float("nan")], [0, 1]) == (None, None)
    with pytest.raises(SegloopError):
        curves.auc([0.5, 0.6], [0, 1, 2])


def test_summarise_curve_uses_the_auc_steps_and_the_last_step():
    values = [0.1, 0.2, 0.4, 0.6, 0.7, 0.8]  # box step, then 5 click steps (MedSegFM)
    summary = curves.summarise_curve(values, [1, 2, 3, 4, 5], [0, 1, 2, 3, 4])
    raw = (0.2 + 0.4) / 2 + (0.4 + 0.6) / 2 + (0.6 + 0.7) / 2 + (0.7 + 0.8) / 2
    assert summary["auc_raw"] == pytest.approx(raw)
    assert summary["auc_normalised"] == pytest.approx(raw / 4)
    assert summary["final"] == 0.8
    with_none = curves.summarise_curve([0.1, None, 0.3], [0, 1, 2], [0, 1, 2])
    assert with_none == {"auc_raw": None, "auc_normalised": None, "final": 0.3}
    assert curves.summarise_curve([0.1, 0.2, None], [0, 1], [0, 1])["final"] is None
    with pytest.raises(SegloopError):
        curves.summarise_curve([0.1, 0.2], [0, 1, 2], [0, 1, 2])


def test_score_classes_refuses_non_integer_maps_with_one_line():
    label = np.zeros((4, 5, 6), dtype=np.uint8)
    label[1:3, 1:4, 2:5] = 1
    with pytest.raises(SegloopError, match="prediction must be an integer label map, not float"):
        scoring.score_classes(label.astype(np.float32), label, [1], (1.0, 1.0, 1.0), ["dice"])
