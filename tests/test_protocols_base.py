"""Eligibility-mask primitives and seeded generators (segloop.protocols.base)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segloop.protocols.base import (
    boundary_point,
    center_point,
    component_edt,
    connected_components,
    largest_component,
    perturb_point,
    random_component,
    random_point,
    rng_for,
)


def random_blobs(rng: np.random.Generator, shape=(12, 14, 16), density=0.5, smooth=1.0):
    noise = ndimage.gaussian_filter(rng.random(shape), smooth)
    return noise > np.quantile(noise, 1 - density)


def test_rng_for_is_stable_and_keyed():
    a = rng_for(0, "case_1", 1, 2, "x").integers(0, 2**31, 5)
    b = rng_for(0, "case_1", 1, 2, "x").integers(0, 2**31, 5)
    assert np.array_equal(a, b)
    others = [
        rng_for(1, "case_1", 1, 2, "x"),
        rng_for(0, "case_2", 1, 2, "x"),
        rng_for(0, "case_1", 2, 2, "x"),
        rng_for(0, "case_1", 1, 3, "x"),
        rng_for(0, "case_1", 1, 2, "y"),
    ]
    for other in others:
        assert not np.array_equal(a, other.integers(0, 2**31, 5))


def test_rng_for_fixed_value():
    # Pinned: a change of the derivation would silently change every published click.
    assert int(rng_for(0, "c", 1, 0).integers(0, 10**9)) == 470199349
    assert rng_for(7, "case_007", 2, 3, "box").random() == 0.6758160066907074


def test_components_match_scipy_label_order_and_sizes():
    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = random_blobs(rng, density=0.3, smooth=0.8)
        labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        components = connected_components(mask)
        assert len(components) == count
        for index, component in enumerate(components, start=1):
            full = labels == index
            assert component.size == int(full.sum())
            assert np.array_equal(component.full_mask(), full)


def test_empty_mask_has_no_component():
    mask = np.zeros((4, 5, 6), bool)
    assert connected_components(mask) == ()
    assert largest_component(mask) is None
    assert random_component(mask, rng_for(0, "c", 1, 0)) is None


@pytest.mark.parametrize("spacing", [None, (2.5, 0.8, 1.1)])
@pytest.mark.parametrize("border", [True, False])
def test_crop_edt_equals_full_volume_edt(spacing, border):
    rng = np.random.default_rng(7)
    for _ in range(8):
        mask = random_blobs(rng, density=0.4)
        for component in connected_components(mask)[:5]:
            full = component.full_mask()
            sl = component.slices
            reference = full if not border else np.pad(full, 1)
            dist = ndimage.distance_transform_edt(reference, sampling=spacing)
            if border:
                dist = dist[1:-1, 1:-1, 1:-1]
            np.testing.assert_array_equal(
                component_edt(component, spacing, image_border_is_background=border),
                dist[sl] * component.mask,
            )


def test_center_boundary_random_points_lie_in_component():
    rng = np.random.default_rng(11)
    mask = random_blobs(rng, density=0.4)
    for component in connected_components(mask):
        full = component.full_mask()
        for point in (
            center_point(component),
            boundary_point(component, rng_for(0, "c", 1, 0)),
            boundary_point(component),
            random_point(component, rng_for(0, "c", 1, 0)),
        ):
            assert full[point]


def test_center_is_deepest_and_boundary_touches_background():
    mask = np.zeros((9, 9, 9), bool)
    mask[1:8, 1:8, 1:8] = True
    component = largest_component(mask)
    assert center_point(component) == (4, 4, 4)
    edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    for k in range(20):
        point = boundary_point(component, rng_for(0, "c", 1, k))
        assert edt[point] == 1.0


def test_center_ties_first_in_c_order():
    mask = np.zeros((3, 3, 8), bool)
    mask[1, 1, 1:7] = True  # a line: every voxel has EDT 1
    assert center_point(largest_component(mask)) == (1, 1, 1)


def test_largest_component_tie_is_first_in_c_order():
    mask = np.zeros((5, 5, 5), bool)
    mask[3, 3, 3] = True
    mask[0, 0, 0] = True
    assert largest_component(mask).first_voxel == (0, 0, 0)


def test_downsampled_center_stays_inside():
    rng = np.random.default_rng(5)
    mask = random_blobs(rng, shape=(20, 22, 24), density=0.5, smooth=2.0)
    component = largest_component(mask)
    point = center_point(component, downsample_above_voxels=10)
    assert mask[point]


def test_perturbation_kept_inside_and_clipped():
    mask = np.zeros((10, 10, 10), bool)
    mask[3:7, 3:7, 3:7] = True
    for k in range(30):
        point = perturb_point((5, 5, 5), rng_for(0, "c", 1, k), 3.0, mask.shape, keep_inside=mask)
        assert mask[point]
        free = perturb_point((0, 0, 9), rng_for(0, "c", 1, k), 5.0, mask.shape)
        assert all(0 <= v < 10 for v in free)
    assert perturb_point((5, 5, 5), rng_for(0, "c", 1, 0), 0.0, mask.shape) == (5, 5, 5)
