"""The region-growing baseline: its two threshold rules on synthetic arrays, and the real loop.

The loop tests run every challenge task on its phantom (small volumes, in memory) through
``segloop.loop.run_case`` and check that the mean Dice rises with the interactions; the CT
ones (ToothFairy3 on the jaw, TriALS and MedSegFM on the abdomen) also check a final Dice above
0.5, which the confidence-band rule this one replaced did not reach (demo phantoms: 0.17, 0.04
and 0.04; these smaller ones: below 0.5 too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from segloop.app import phantoms
from segloop.baselines import region_growing
from segloop.baselines.region_growing import grow_from_seed, segment
from segloop.containers.local import InProcessBackend
from segloop.loop import run_case
from segloop.protocols.tasks import get_task


@dataclass(frozen=True)
class Prompt:
    """The fields of segloop.core.records.Interaction that segment() reads."""

    kind: str
    class_id: int
    positive: bool
    coords: tuple


def click(point, class_id=1, positive=True) -> Prompt:
    return Prompt("click", class_id, positive, (tuple(point),))


def box(lo, hi, class_id=1) -> Prompt:
    return Prompt("box", class_id, True, (tuple(lo), tuple(hi)))


def ball(shape, centre, radius_mm, spacing_mm) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (
        sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing_mm, strict=True))
        <= radius_mm**2
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def full_region(shape, crop, region) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[crop] = region
    return out


SPACING = (2.0, 0.8, 0.8)  # anisotropic, as abdominal CT
SHAPE = (24, 64, 64)


def liver_ct(rng: np.random.Generator, noise_hu: float = 8.0) -> np.ndarray:
    """A 110 HU block ("liver") inside -100 HU fat, Gaussian noise: a CT-like (negative) image."""
    image = np.full(SHAPE, -100.0, dtype=np.float32)
    image[2:-2, 6:-6, 6:-6] = 110.0
    return image + rng.normal(0.0, noise_hu, SHAPE).astype(np.float32)


# ----------------------------------------------------------------------------- single rules


def test_bright_sphere_on_a_non_negative_image_uses_the_40_percent_rule():
    rng = np.random.default_rng(0)
    spacing = (2.0, 2.0, 2.0)
    sphere = ball((32, 32, 32), (16, 16, 16), 8.0, spacing)
    image = (1.0 + 0.05 * rng.standard_normal((32, 32, 32))).astype(np.float32)
    image[sphere] = 8.0 + 0.3 * rng.standard_normal(int(sphere.sum()))
    image = np.clip(image, 0.0, None)
    crop, region, band = grow_from_seed(image, (16, 16, 16), spacing)
    grown = full_region(image.shape, crop, region)
    assert band is None  # the PET rule has no band
    assert dice(grown, sphere) > 0.95
    assert not (grown & ~ball((32, 32, 32), (16, 16, 16), 10.0, spacing)).any()


@pytest.mark.parametrize("radius_mm", [3.0, 9.0])
def test_dark_sphere_in_a_negative_valued_image(radius_mm):
    """A hypodense lesion in the liver block: found at both sizes, no leak into the fat."""
    rng = np.random.default_rng(1)
    image = liver_ct(rng)
    centre = (12, 32, 32)
    lesion = ball(SHAPE, centre, radius_mm, SPACING)
    image[lesion] -= 50.0
    crop, region, band = grow_from_seed(image, centre, SPACING)
    grown = full_region(SHAPE, crop, region)
    assert band is not None and band[1] > band[0]  # target darker than its surround
    assert dice(grown, lesion) > 0.85
    assert not (grown & (image < -50)).any()  # never into the fat


def test_click_on_the_edge_of_a_small_lesion_finds_the_lesion():
    """A click on the blurred rim (as the EDT-centre clicks of one-slice lesions land)."""
    rng = np.random.default_rng(2)
    image = liver_ct(rng)
    lesion = ball(SHAPE, (12, 32, 32), 2.5, SPACING)
    image[lesion] -= 50.0
    rim = (12, 32 - 3, 32)  # the lesion's first voxel in C order on that slice
    assert lesion[rim] and not lesion[12, 32 - 4, 32]
    crop, region, _ = grow_from_seed(image, rim, SPACING)
    assert dice(full_region(SHAPE, crop, region), lesion) > 0.7


def test_thin_dark_tube_in_bone_is_followed_along_its_length():
    """A canal (radius 1.2 mm) in bright bone: one click grows most of its length."""
    rng = np.random.default_rng(3)
    spacing = (0.6, 0.4, 0.4)
    shape = (48, 40, 40)
    image = np.full(shape, -1000.0, dtype=np.float32)
    y, x = np.ogrid[: shape[1], : shape[2]]
    radius_sq = ((y - 20) * 0.4) ** 2 + ((x - 20) * 0.4) ** 2
    image[:, radius_sq <= 5.0**2] = 600.0  # bone
    canal = np.broadcast_to(radius_sq <= 1.2**2, shape)
    image[:, (radius_sq > 1.2**2) & (radius_sq <= 1.6**2)] = 1200.0  # cortical rim
    image[canal] = 80.0
    image += rng.normal(0.0, 50.0, shape).astype(np.float32)
    crop, region, band = grow_from_seed(image, (24, 20, 21), spacing)
    grown = full_region(shape, crop, region)
    assert band is not None and band[1] > band[0]
    assert dice(grown, canal) > 0.8
    assert grown[[2, 45], 20, 20].all()  # both ends, 13 mm from the click


def test_click_without_contrast_keeps_a_small_ball():
    """No shell contrasts (homogeneous noisy tissue): no band, a ball of SEED_RADIUS_MM."""
    rng = np.random.default_rng(4)
    image = (110.0 + rng.normal(0.0, 8.0, SHAPE)).astype(np.float32)
    crop, region, band = grow_from_seed(image, (12, 32, 32), SPACING, ct_like=True)
    assert band is None
    assert region.sum() == 5  # the click and its in-plane neighbours (0.8 mm <= 1 mm)


def test_click_in_an_organ_surrounded_by_fat_grows_the_organ():
    """The same tissue inside fat: the first contrasting shell is the fat, the organ is brighter."""
    rng = np.random.default_rng(4)
    image = liver_ct(rng)
    organ = np.zeros(SHAPE, dtype=bool)
    organ[2:-2, 6:-6, 6:-6] = True
    crop, region, band = grow_from_seed(image, (12, 32, 32), SPACING)
    assert band is not None and band[1] < band[0]  # target brighter than its surround
    assert dice(full_region(SHAPE, crop, region), organ) > 0.95


def test_background_click_in_the_organ_rejects_a_band_grown_into_it():
    """A background click brighter than the seed level of a bright band: the band was the organ's."""
    rng = np.random.default_rng(4)
    image = liver_ct(rng)
    seed = (12, 32, 32)
    _, region, band = grow_from_seed(image, seed, SPACING)
    assert band is not None and region.sum() > 10_000
    smoothed = ndimage.gaussian_filter(image, region_growing.SMOOTH_SIGMA_VOXELS)
    brightest = np.unravel_index(int(np.argmax(smoothed)), SHAPE)  # beyond the seed level
    assert smoothed[brightest] > band[0]
    _, region, band = grow_from_seed(image, seed, SPACING, background_zyx=(brightest,))
    assert band is None and region.sum() == 5


# ----------------------------------------------------------------------- segment(): prompts


def test_background_click_removes_a_false_region_but_not_the_target():
    """A darker lesion touching a less dark region: the band takes both; a background click in
    the false region cuts a ball of half its distance to the click (3.2 mm), the lesion stays."""
    rng = np.random.default_rng(5)
    image = liver_ct(rng, noise_hu=2.0)
    lesion = ball(SHAPE, (12, 32, 26), 3.0, SPACING)
    false_region = ball(SHAPE, (12, 32, 33), 3.5, SPACING) & ~lesion
    image[lesion] = 40.0 + rng.normal(0.0, 2.0, int(lesion.sum()))
    image[false_region] = 60.0 + rng.normal(0.0, 2.0, int(false_region.sum()))
    positive, background = click((12, 32, 26)), (12, 32, 34)  # 6.4 mm apart
    without = segment(image, SPACING, [1], [positive]) == 1
    assert (without & false_region).sum() > 0.6 * false_region.sum()  # leaked into it
    labels = segment(image, SPACING, [1], [positive, click(background, positive=False)]) == 1
    assert not (labels & ball(SHAPE, background, 3.2, SPACING)).any()
    assert (labels & false_region).sum() < 0.5 * false_region.sum()
    assert (labels & lesion).sum() == lesion.sum()
    assert dice(labels, lesion) > dice(without, lesion) + 0.1


def test_background_click_inside_the_target_cuts_only_a_ball_short_of_the_click():
    rng = np.random.default_rng(6)
    spacing = (2.0, 2.0, 2.0)
    sphere = ball((32, 32, 32), (16, 16, 16), 12.0, spacing)
    image = (1.0 + 0.05 * rng.standard_normal((32, 32, 32))).astype(np.float32)
    image[sphere] = 8.0
    seed, background = (16, 16, 16), (16, 16, 20)  # 8 mm apart
    labels = segment(image, spacing, [1], [click(seed), click(background, positive=False)])
    removed = sphere & (labels == 0)
    assert labels[seed] == 1 and labels[background] == 0
    assert removed.any()
    assert not (removed & ~ball((32, 32, 32), background, 4.0, spacing)).any()  # half of 8 mm


def test_box_restricts_growth_to_the_box():
    """A dark bar crossing a box: the box's region stays inside it, a click's does not."""
    rng = np.random.default_rng(7)
    image = liver_ct(rng)
    bar = np.zeros(SHAPE, dtype=bool)
    bar[10:14, 29:35, 10:54] = True
    image[bar] -= 50.0
    lo, hi = (9, 26, 24), (14, 37, 40)
    inside = np.zeros(SHAPE, dtype=bool)
    inside[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    boxed = segment(image, SPACING, [1], [box(lo, hi)]) == 1
    assert not (boxed & ~inside).any()
    assert dice(boxed, bar & inside) > 0.85
    clicked = segment(image, SPACING, [1], [click((12, 32, 32))]) == 1
    assert (clicked & ~inside).sum() > 100  # without the box the bar grows beyond it


def test_two_classes_each_get_their_own_target():
    rng = np.random.default_rng(8)
    image = liver_ct(rng)
    left = ball(SHAPE, (12, 32, 20), 3.0, SPACING)
    right = ball(SHAPE, (12, 32, 44), 3.0, SPACING)
    image[left] -= 50.0
    image[right] -= 40.0
    labels = segment(image, SPACING, [1, 2], [click((12, 32, 20), 1), click((12, 32, 44), 2)])
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}
    assert dice(labels == 1, left) > 0.85
    assert dice(labels == 2, right) > 0.85


def test_ct_box_with_no_contrast_marks_only_its_seed():
    rng = np.random.default_rng(9)
    image = liver_ct(rng, noise_hu=0.0)
    labels = segment(image, SPACING, [1], [box((8, 24, 24), (16, 40, 40))])
    assert (labels == 1).sum() == 1


# ------------------------------------------------------------------------------ real loop

LOOP_CASES = [
    # task, phantom kind, shape, phantom seed, final Dice the CT rule must exceed
    ("autopet", "pet", (32, 48, 48), 1, None),
    ("medsegfm", "pet", (32, 48, 48), 1, None),
    ("toothfairy3", "jaw", (40, 56, 56), 0, 0.5),
    ("trials", "abdomen", (32, 72, 72), 0, 0.5),
    ("medsegfm", "abdomen", (32, 72, 72), 0, 0.5),
]


@pytest.mark.parametrize(("task_name", "kind", "shape", "seed", "final_above"), LOOP_CASES)
def test_dice_rises_with_the_interactions(task_name, kind, shape, seed, final_above):
    task = get_task(task_name)
    curves = []
    for index in range(3):
        case = phantoms.PHANTOM_KINDS[kind](index, seed, shape=shape)
        if not case.label.any():
            continue
        outcome = run_case(case, task, InProcessBackend(region_growing.predict))
        assert all(step.failure is None for step in outcome.steps)
        curves.append([step.metrics["dice"]["mean"] for step in outcome.steps])
    assert len(curves) >= 2
    mean = np.mean(curves, axis=0)
    assert len(mean) == task.num_steps
    assert mean[-1] > mean[0] + 0.1
    assert mean[-1] >= max(mean) - 0.05  # no collapse after the best step
    if final_above is not None:
        assert mean[-1] > final_above
