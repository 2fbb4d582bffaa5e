"""A classical interactive segmenter participants can read as an example.

Every positive click (or box) seeds a region grown on a crop around it; background clicks then
remove what they hit. Everything works on crops, so a step costs milliseconds, not seconds.
Two threshold rules, chosen once per image (by its minimum):

PET (no negative value: an uptake image). Per foreground click: take a window of ``window_mm``
around it, find the local maximum ``peak`` within ``peak_search_mm`` of the click and keep the
voxels connected to the click with

    intensity >= background + fraction * (peak - background),   fraction = 0.4,

with the window's median as ``background`` (the 40 % SUVmax rule clinicians use on PET, made
background-adapted so that a faint lesion, peak twice the background, does not leak into normal
tissue; for a hot lesion it is the plain 40 % rule). A box seeds the same rule from its hottest
voxel, restricted to the box.

CT-like images (any negative value, i.e. Hounsfield units), where the target may be darker than
its surroundings (a liver lesion, a canal in CBCT): the *half-contrast rule*, the CT analogue of
the rule above, on the crop smoothed by a Gaussian of ``SMOOTH_SIGMA_VOXELS``:

1. noise: ``sigma_n = 1.4826 * MAD(S[x+1] - S[x]) / sqrt(2)`` over the nonzero neighbour
   differences of the smoothed crop ``S`` (robust: edges are outliers among them; exact zeros
   are constant padding, not noise);
2. candidate seed levels: ``dark`` and ``bright``, the 10th and 90th percentiles
   (``SEED_PERCENTILE``) of ``S`` within ``SEED_RADIUS_MM`` of the click (a local extreme, the
   "peak" of the PET rule, robust to a click on the blurred edge of a small target);
3. surround ``B``: the median of the first *contrasting* spherical shell ``r < d <= 2 r``
   around the click, ``r`` starting at ``SHELL_START_VOXELS`` finest voxels (so the first
   shell clears the blurred edge of a thin target) and doubling. A shell contrasts when
   ``B - dark`` or ``bright - B`` exceeds ``NOISE_SIGMAS * sigma_n``; the larger of the two
   gives the polarity (target darker or brighter than its surround) and ``L`` (``dark`` or
   ``bright``). Shells that do not contrast are still the target (or there is no target):
   look further out; no contrasting shell within the crop, no band;
4. threshold ``T = L + CT_FRACTION * (B - L)`` with ``CT_FRACTION = 0.5`` (half contrast: a
   blurred step edge sits at half its height), and the region is the voxels connected to the
   click with ``|S - L| < |T - L|``: a band around the seed level, like ITK's
   "confidence connected" filter, but half the local contrast wide instead of a multiple of a
   standard deviation; its far side keeps the region out of tissue much darker or brighter than
   the target (fat next to a liver lesion, soft tissue next to a canal).

Clicks of one class share evidence: the band of the class's first click (or box) that found
one is reused by a later click of that class that finds none, or finds the other polarity (a
click on the blurred rim of a small lesion may see only liver around it). A background click
of the class inside a band's region at a level beyond ``L`` (on the target's far side: a band
around ``L`` cannot exclude it) drops the band: it was the surrounding organ's, e.g. a lesion
click whose first contrasting shell was the fat around the liver, so the band grew the liver.
A click left without a band keeps a ball of
``SEED_RADIUS_MM``. On CT a box takes its surround ``B`` from the median of its faces and its
seed at the darkest or brightest voxel of its central half (the tail farther from ``B``), and
grows the band region inside the box only.

Background clicks remove the grown component they hit, or, when that component also holds a
foreground click, only a ball around the background click of ``BACKGROUND_BALL_MM`` or half the
distance to the nearest such foreground click, whichever is smaller. Classes are painted in the
order of their interactions (a later class overwrites an earlier one where they overlap).

The entry point has the participant signature ``predict(case, request) -> label map``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FRACTION_OF_LOCAL_MAX = 0.4
WINDOW_MM = 60.0
PEAK_SEARCH_MM = 6.0
BACKGROUND_BALL_MM = 6.0
# CT-like images: the half-contrast rule.
CT_FRACTION = 0.5
SMOOTH_SIGMA_VOXELS = 0.5
SEED_RADIUS_MM = 1.0
SHELL_START_VOXELS = 3.0
NOISE_SIGMAS = 3.0
SEED_PERCENTILE = 10

Band = tuple[float, float]  # (seed level L, threshold T) of the half-contrast rule


def _window(
    centre: tuple[int, ...], half_size_voxels: np.ndarray, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, c - h), min(n, c + h + 1))
        for c, h, n in zip(centre, half_size_voxels.tolist(), shape, strict=True)
    )


def _distance_mm(point: tuple[int, ...], shape: tuple[int, ...], spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance in mm of every voxel of an array of ``shape`` from ``point``."""
    grid = np.ogrid[tuple(slice(-c, n - c) for c, n in zip(point, shape, strict=True))]
    return np.sqrt(sum((g * d) ** 2 for g, d in zip(grid, spacing, strict=True)))


def _component_of(mask: np.ndarray, point: tuple[int, ...]) -> np.ndarray:
    """The 6-connected component of ``mask`` holding ``point`` (``point`` forced in)."""
    mask[point] = True
    components, _ = ndimage.label(mask)
    return components == components[point]


def grow_from_seed(
    image: np.ndarray,
    seed_zyx: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    fraction: float = FRACTION_OF_LOCAL_MAX,
    window_mm: float = WINDOW_MM,
    peak_search_mm: float = PEAK_SEARCH_MM,
    allowed: tuple[slice, ...] | None = None,
    ct_like: bool | None = None,
    class_band: Band | None = None,
    background_zyx: tuple[tuple[int, ...], ...] = (),
) -> tuple[tuple[slice, ...], np.ndarray, Band | None]:
    """Region grown from ``seed_zyx`` by the PET 40 % rule or the CT half-contrast rule.

    ``ct_like`` picks the rule (default: the crop has a negative value); ``class_band`` is the
    band of an earlier click of the same class, used by the CT rule when this click's shells
    give none or the other polarity; ``background_zyx`` are the class's background clicks, which
    can drop the CT band (module docstring). ``allowed`` restricts the crop (a box).

    Returns the crop (slices into ``image``), the bool region inside it and the CT band used
    (None for PET, or when the click found no band: then the region is a small ball).
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
    if ct_like if ct_like is not None else values.min() < 0:
        smoothed = ndimage.gaussian_filter(values, SMOOTH_SIGMA_VOXELS)
        band = _half_contrast_band(smoothed, seed_local, spacing)
        if class_band is not None and (band is None or _polarity(band) != _polarity(class_band)):
            band = class_band
        if band is not None:
            region = _band_region(smoothed, seed_local, band)
            if any(
                _beyond_level(band, float(smoothed[p]))
                for p in _points_in(background_zyx, crop)
                if region[p]
            ):
                band = None  # a background click the band cannot exclude: it was the organ's
        if band is None:
            return crop, _distance_mm(seed_local, values.shape, spacing) <= SEED_RADIUS_MM, None
        return crop, region, band
    near = _window(seed_local, np.ceil(peak_search_mm / spacing).astype(int), values.shape)
    background = float(np.median(values))
    peak = float(values[near].max())
    above = values >= background + fraction * max(peak - background, 0.0)
    return crop, _component_of(above, seed_local), None


def _polarity(band: Band) -> int:
    """+1 when the target is darker than its surround (threshold above the level), else -1."""
    return 1 if band[1] > band[0] else -1


def _beyond_level(band: Band, value: float) -> bool:
    """True when ``value`` lies beyond L on the target's far side (a band around L keeps it)."""
    return (value - band[0]) * _polarity(band) <= 0


def _points_in(points, crop: tuple[slice, ...]) -> list[tuple[int, ...]]:
    """The ``points`` inside ``crop``, in crop coordinates."""
    return [
        tuple(p - s.start for p, s in zip(point, crop, strict=True))
        for point in points
        if all(s.start <= p < s.stop for p, s in zip(point, crop, strict=True))
    ]


def _band_region(smoothed: np.ndarray, seed_local: tuple[int, ...], band: Band) -> np.ndarray:
    """Voxels connected to the seed with ``|S - L| < |T - L|``."""
    level, threshold = band
    return _component_of(np.abs(smoothed - level) < abs(threshold - level), seed_local)


def _noise_sigma(smoothed: np.ndarray) -> float:
    """Robust noise: 1.4826 * MAD of the nonzero neighbour differences along x, over sqrt(2)."""
    differences = np.diff(smoothed, axis=-1)
    differences = differences[differences != 0]  # constant padding is not noise
    if differences.size == 0:
        return 0.0
    mad = float(np.median(np.abs(differences - np.median(differences))))
    return 1.4826 * mad / np.sqrt(2.0)


def _half_contrast_band(
    smoothed: np.ndarray, seed_local: tuple[int, ...], spacing: np.ndarray
) -> Band | None:
    """(L, T) of the half-contrast rule (module docstring, steps 1-4), None if no shell fits."""
    distance = _distance_mm(seed_local, smoothed.shape, spacing)
    noise = _noise_sigma(smoothed)
    ball = smoothed[distance <= SEED_RADIUS_MM]
    dark = float(np.percentile(ball, SEED_PERCENTILE))
    bright = float(np.percentile(ball, 100 - SEED_PERCENTILE))
    radius = SHELL_START_VOXELS * float(spacing.min())
    while radius < distance.max():
        shell = smoothed[(distance > radius) & (distance <= 2 * radius)]
        radius *= 2
        if shell.size == 0:
            continue
        surround = float(np.median(shell))
        darker, brighter = surround - dark, bright - surround  # target darker / brighter
        if max(darker, brighter) <= NOISE_SIGMAS * noise:
            continue  # still the target (or no contrast): look further out
        sign = 1 if darker >= brighter else -1
        level = dark if sign > 0 else bright
        return level, level + CT_FRACTION * (surround - level)
    return None


def _box_band(smoothed: np.ndarray, spacing: np.ndarray) -> tuple[tuple[int, ...], Band | None]:
    """CT box: seed and (L, T) with the surround B = the median of the box's faces.

    The seed is the darkest or the brightest voxel of the box's central half, whichever lies
    farther from B; L is the 10th (90th) percentile within SEED_RADIUS_MM of it, as for a click.
    """
    faces = np.ones(smoothed.shape, dtype=bool)
    faces[tuple(slice(1, -1) if n > 2 else slice(None) for n in smoothed.shape)] = False
    central = tuple(slice(n // 4, n - n // 4) for n in smoothed.shape)
    inner = smoothed[central]
    darkest = np.unravel_index(int(inner.argmin()), inner.shape)
    brightest = np.unravel_index(int(inner.argmax()), inner.shape)
    surround = float(np.median(smoothed[faces])) if faces.any() else float(np.median(inner))
    darker = surround - inner[darkest] > inner[brightest] - surround
    local = darkest if darker else brightest
    seed = tuple(int(v) + s.start for v, s in zip(local, central, strict=True))
    ball = smoothed[_distance_mm(seed, smoothed.shape, spacing) <= SEED_RADIUS_MM]
    level = float(np.percentile(ball, SEED_PERCENTILE if darker else 100 - SEED_PERCENTILE))
    if (surround - level) * (1 if darker else -1) <= 0:
        return seed, None  # no contrast between the box's centre and its faces
    return seed, (level, level + CT_FRACTION * (surround - level))


def segment(
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    class_ids: list[int],
    interactions: list,
) -> np.ndarray:
    """Label map from clicks and boxes (interactions with .kind, .class_id, .positive, .coords)."""
    labels = np.zeros(image.shape, dtype=np.uint8 if max(class_ids, default=0) < 256 else np.uint16)
    ct_like = bool(image.min() < 0)
    bands: dict[int, Band] = {}  # CT: the band of each class's first successful click or box
    seeds: list[tuple[int, ...]] = []
    background: dict[int, tuple[tuple[int, ...], ...]] = {
        class_id: tuple(
            tuple(int(v) for v in i.coords[0])
            for i in interactions
            if i.kind == "click" and not i.positive and i.class_id == class_id
        )
        for class_id in class_ids
    }
    for interaction in interactions:
        if not interaction.positive or interaction.kind not in ("click", "box"):
            continue
        class_id = interaction.class_id
        if interaction.kind == "click":
            seed = tuple(int(v) for v in interaction.coords[0])
            crop, region, band = grow_from_seed(
                image,
                seed,
                spacing_mm,
                ct_like=ct_like,
                class_band=bands.get(class_id),
                background_zyx=background.get(class_id, ()),
            )
        else:
            lo, hi = interaction.coords[0], interaction.coords[1]
            box = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))
            seed, crop, region, band = _grow_box(image, box, spacing_mm, ct_like)
        labels[crop][region] = class_id
        if band is not None:
            bands.setdefault(class_id, band)
        seeds.append(seed)
    for interaction in interactions:
        if interaction.positive or interaction.kind != "click":
            continue
        point = tuple(int(v) for v in interaction.coords[0])
        _remove_background(labels, point, spacing_mm, seeds)
    return labels


def _grow_box(
    image: np.ndarray,
    box: tuple[slice, ...],
    spacing_mm: tuple[float, float, float],
    ct_like: bool,
) -> tuple[tuple[int, ...], tuple[slice, ...], np.ndarray, Band | None]:
    """A box's seed, crop, region inside the crop and CT band; the region stays in the box."""
    if not ct_like:  # PET: the 40 % rule from the box's hottest voxel
        values = image[box]
        local = np.unravel_index(int(np.argmax(values)), values.shape)
        seed = tuple(int(v) + s.start for v, s in zip(local, box, strict=True))
        crop, region, _ = grow_from_seed(image, seed, spacing_mm, allowed=box, ct_like=False)
        return seed, crop, region, None
    smoothed = ndimage.gaussian_filter(image[box].astype(np.float32), SMOOTH_SIGMA_VOXELS)
    local, band = _box_band(smoothed, np.asarray(spacing_mm, dtype=float))
    seed = tuple(int(v) + s.start for v, s in zip(local, box, strict=True))
    if band is None:
        region = np.zeros(smoothed.shape, dtype=bool)
        region[local] = True
        return seed, box, region, None
    return seed, box, _band_region(smoothed, local, band), band


def _remove_background(
    labels: np.ndarray,
    point: tuple[int, ...],
    spacing_mm: tuple[float, float, float],
    seeds: list[tuple[int, ...]],
) -> None:
    """Remove the component under ``point``, or only a ball there if it holds a seed.

    The ball's radius is BACKGROUND_BALL_MM or half the distance to the nearest seed in the
    component, whichever is smaller, so a background click never cuts away the clicked target.
    """
    value = labels[point]
    if value == 0:
        return
    spacing = np.asarray(spacing_mm, dtype=float)
    crop = _window(point, np.ceil(WINDOW_MM / 2 / spacing).astype(int), labels.shape)
    local = labels[crop]
    local_point = tuple(p - s.start for p, s in zip(point, crop, strict=True))
    components, _ = ndimage.label(local == value)
    hit = components == components[local_point]
    seed_distances_mm = [
        float(np.linalg.norm((np.subtract(seed, point)) * spacing))
        for seed in seeds
        if all(s.start <= c < s.stop for c, s in zip(seed, crop, strict=True))
        and hit[tuple(c - s.start for c, s in zip(seed, crop, strict=True))]
    ]
    if seed_distances_mm:  # keep the structure, cut out a ball around the background click
        radius_mm = min(BACKGROUND_BALL_MM, 0.5 * min(seed_distances_mm))
        hit &= _distance_mm(local_point, local.shape, spacing) <= radius_mm
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
