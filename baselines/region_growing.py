"""A classical interactive segmenter participants can read as an example.

Per foreground click: take a window of ``window_mm`` around it, find the local maximum near the
click, keep the voxels above ``fraction`` of that maximum (the 40 % SUVmax rule clinicians use
on PET) and grow the region connected to the click. The rule is background-adapted: the
threshold is ``background + fraction * (peak - background)`` with the window's median as the
background, so a faint lesion (peak twice the background) does not leak into normal tissue;
for a hot lesion it is the plain 40 % rule. A box seeds the same rule from its hottest
voxel, restricted to the box. Background clicks then remove what they hit: the grown component
under a background click, or only a ball around it when that component also holds a foreground
click. Everything works on crops, so a step costs milliseconds, not seconds.

The 40 % rule assumes a non-negative uptake image. For CT-like images (any negative value,
i.e. Hounsfield units), where a target can be darker than its surroundings (a liver lesion, a
canal in CBCT), the region is instead the voxels connected to the seed whose intensity lies
within ``band_sigmas`` standard deviations of the seed neighbourhood's mean, re-estimated once
from the grown region (the "confidence connected" rule of ITK).

The entry point has the participant signature ``predict(case, request) -> label map``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FRACTION_OF_LOCAL_MAX = 0.4
WINDOW_MM = 60.0
PEAK_SEARCH_MM = 6.0
BACKGROUND_BALL_MM = 6.0
BAND_SIGMAS = 1.5
SEED_NEIGHBOURHOOD_MM = 1.0


def _window(
    centre: tuple[int, ...], half_size_voxels: np.ndarray, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, c - h), min(n, c + h + 1))
        for c, h, n in zip(centre, half_size_voxels.tolist(), shape, strict=True)
    )


def grow_from_seed(
    image: np.ndarray,
    seed_zyx: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    fraction: float = FRACTION_OF_LOCAL_MAX,
    window_mm: float = WINDOW_MM,
    peak_search_mm: float = PEAK_SEARCH_MM,
    allowed: tuple[slice, ...] | None = None,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Region connected to ``seed_zyx`` with intensity >= bg + fraction * (local max - bg).

    ``bg`` is the median of the window (background-adapted 40 % rule, see the module docstring).

    Returns the crop (slices into ``image``) and the bool region inside it. ``allowed``
    restricts the crop further (a box).
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    crop = _window(seed_zyx, np.ceil(window_mm / 2 / spacing).astype(int), image.shape)
    if allowed is not None:
        crop = tuple(
            slice(max(a.start, b.start), min(a.stop, b.stop))
            for a, b in zip(crop, allowed, strict=True)
        )
    values = image[crop].astype(np.float32)
    seed_local = tuple(c - s.start for c, s in zip(seed_zyx, crop, strict=True))
    if values.min() < 0:
        above = _confidence_band(values, seed_local, spacing)
    else:
        near = _window(seed_local, np.ceil(peak_search_mm / spacing).astype(int), values.shape)
        background = float(np.median(values))
        peak = float(values[near].max())
        above = values >= background + fraction * max(peak - background, 0.0)
    above[seed_local] = True
    components, _ = ndimage.label(above)
    return crop, components == components[seed_local]


def _confidence_band(
    values: np.ndarray, seed_local: tuple[int, ...], spacing: np.ndarray, iterations: int = 2
) -> np.ndarray:
    """Voxels within BAND_SIGMAS std of the mean of the seed's neighbourhood (then the region's)."""
    near = _window(seed_local, np.ceil(SEED_NEIGHBOURHOOD_MM / spacing).astype(int), values.shape)
    sample = values[near]
    inside = np.ones(values.shape, dtype=bool)
    for _ in range(iterations):
        mean, std = (
            float(sample.mean()),
            max(float(sample.std()), 1e-3 * abs(float(sample.mean())) + 1e-6),
        )
        inside = np.abs(values - mean) <= BAND_SIGMAS * std
        inside[seed_local] = True
        components, _ = ndimage.label(inside)
        inside = components == components[seed_local]
        sample = values[inside]
    return inside


def segment(
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    class_ids: list[int],
    interactions: list,
) -> np.ndarray:
    """Label map from clicks and boxes (interactions with .kind, .class_id, .positive, .coords)."""
    labels = np.zeros(image.shape, dtype=np.uint8 if max(class_ids, default=0) < 256 else np.uint16)
    seeds: list[tuple[int, ...]] = []
    for interaction in interactions:
        if not interaction.positive or interaction.kind not in ("click", "box"):
            continue
        if interaction.kind == "click":
            seed, allowed = tuple(interaction.coords[0]), None
        else:
            lo, hi = interaction.coords[0], interaction.coords[1]
            allowed = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
            seed = _box_seed(image, allowed)
        crop, region = grow_from_seed(image, seed, spacing_mm, allowed=allowed)
        labels[crop][region] = interaction.class_id
        seeds.append(seed)
    for interaction in interactions:
        if interaction.positive or interaction.kind != "click":
            continue
        _remove_background(labels, tuple(interaction.coords[0]), spacing_mm, seeds)
    return labels


def _box_seed(image: np.ndarray, box: tuple[slice, ...]) -> tuple[int, ...]:
    """PET: the hottest voxel of the box; CT-like images: the box centre."""
    values = image[box]
    if image.min() < 0:
        local = tuple(n // 2 for n in values.shape)
    else:
        local = np.unravel_index(np.argmax(values), values.shape)
    return tuple(int(v) + s.start for v, s in zip(local, box, strict=True))


def _remove_background(
    labels: np.ndarray,
    point: tuple[int, ...],
    spacing_mm: tuple[float, float, float],
    seeds: list[tuple[int, ...]],
) -> None:
    """Remove the component under ``point``, or only a ball there if it holds a seed."""
    value = labels[point]
    if value == 0:
        return
    spacing = np.asarray(spacing_mm, dtype=float)
    crop = _window(point, np.ceil(WINDOW_MM / 2 / spacing).astype(int), labels.shape)
    local = labels[crop]
    components, _ = ndimage.label(local == value)
    hit = components == components[tuple(p - s.start for p, s in zip(point, crop, strict=True))]
    holds_seed = any(
        all(s.start <= c < s.stop for c, s in zip(seed, crop, strict=True))
        and hit[tuple(c - s.start for c, s in zip(seed, crop, strict=True))]
        for seed in seeds
    )
    if holds_seed:  # keep the structure, cut out a ball around the background click
        grid = np.ogrid[
            tuple(slice(s.start - p, s.stop - p) for p, s in zip(point, crop, strict=True))
        ]
        distance_sq = sum((g * d) ** 2 for g, d in zip(grid, spacing, strict=True))
        hit &= distance_sq <= BACKGROUND_BALL_MM**2
    local[hit] = 0


def pet_channel(channels: tuple[np.ndarray, ...]) -> np.ndarray:
    """autoPET order: channel 0 CT, channel 1 PET; single-channel cases use channel 0."""
    return channels[1] if len(channels) > 1 else channels[0]


def predict(case, request) -> np.ndarray:
    """Participant entry point: region growing on the PET (or only) channel."""
    return segment(
        pet_channel(case.channels),
        tuple(case.geometry.spacing_mm),
        sorted(int(c) for c in case.classes),
        list(request.interactions),
    )
