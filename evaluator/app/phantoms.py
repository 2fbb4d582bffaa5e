"""Deterministic synthetic cases (phantoms) for the demo and the tests.

Three kinds, one per challenge family, each small enough for CI by default (sizes and spacing
configurable, spacing anisotropic):

* ``pet`` (autoPET-like whole body): channel 0 = CT-like (HU), channel 1 = PET-like (SUV), as
  autoPET's ``_0000`` CT and ``_0001`` PET. Physiological high uptake (brain, heart, kidneys,
  bladder, liver) is NOT labelled; lesions (label 1, 1-8 ellipsoids from ~1.5 voxels to a few
  cm, separate from each other and from the hot organs, varying uptake) are. Every 5th case
  (``case_index % 5 == 4``) has no lesion, so empty ground truth is covered.
* ``jaw`` (ToothFairy-like CBCT, one channel): a U-shaped mandible whose two arms run along the
  z axis (chin at z = 0), so each axial slice cuts both arms; inside each arm an inferior
  alveolar canal, a curved tube of radius ~1.2 mm: left canal (patient left = +x, as in
  SimpleITK's LPS) label 1, right canal label 2. Each canal crosses most z-slices, so the
  slice-wise clicks of ToothFairy3 (thesis Algorithm 2) have a canal section in every slice.
* ``abdomen`` (TriALS-like portal-venous CT, one channel): body with fat rim, spine, aorta,
  spleen, kidneys, stomach and a liver; hypodense lesions (label 1) lie inside the liver, whose
  mask (lesions included) is the extra mask ``"liver"``.

Determinism: every random draw comes from ``numpy.random.default_rng([seed, kind, index])``
(kind as a fixed small integer), so the same arguments give the same arrays and, through
:func:`write_phantom_dataset`, the same file bytes. Geometry: identity direction, origin chosen
so the volume centre is at (0, 0, 0) mm. Anatomy is mapped onto the axes for the simulation's
needs; it is not meant to follow patient orientation beyond the left/right of the canals.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from segloop.core.dataset import write_case
from segloop.core.records import Case, Geometry, SegloopError

Shape = tuple[int, int, int]
Spacing = tuple[float, float, float]

_KIND_CODES = {"pet": 1, "jaw": 2, "abdomen": 3}
MIN_SIZE = 8  # voxels per axis; smaller volumes cannot hold the anatomy


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, kind: str, case_index: int) -> np.random.Generator:
    if int(seed) < 0 or int(case_index) < 0:
        raise SegloopError(f"phantom seed {seed} and case index {case_index} must be >= 0")
    return np.random.default_rng([int(seed), _KIND_CODES[kind], int(case_index)])


def _check_grid(shape: Sequence[int], spacing_mm: Sequence[float]) -> tuple[Shape, Spacing]:
    shape = tuple(int(v) for v in shape)
    spacing = tuple(float(v) for v in spacing_mm)
    if len(shape) != 3 or min(shape) < MIN_SIZE:
        raise SegloopError(f"phantom shape {shape}: need three sizes (z, y, x), each >= {MIN_SIZE}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise SegloopError(f"phantom spacing {spacing} mm: need three positive values (z, y, x)")
    return shape, spacing  # type: ignore[return-value]


def _centred_geometry(shape: Shape, spacing_mm: Spacing) -> Geometry:
    """Identity direction; origin (x, y, z order) such that the volume centre is at 0 mm."""
    origin_zyx = [-(n - 1) / 2 * s for n, s in zip(shape, spacing_mm, strict=True)]
    return Geometry(spacing_mm=spacing_mm, origin_mm=tuple(reversed(origin_zyx)))


def _axes_mm(shape: Shape, spacing_mm: Spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-grid (z, y, x) coordinates in mm relative to the volume centre (float32)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return tuple(  # type: ignore[return-value]
        ((axis - (n - 1) / 2) * s).astype(np.float32)
        for axis, n, s in zip((z, y, x), shape, spacing_mm, strict=True)
    )


def _half_extent_mm(shape: Shape, spacing_mm: Spacing) -> np.ndarray:
    return np.array([(n - 1) / 2 * s for n, s in zip(shape, spacing_mm, strict=True)])


def _ellipsoid_r2(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    centre_mm: Sequence[float],
    semi_axes_mm: Sequence[float],
) -> np.ndarray:
    """Normalised squared radius sum(((p - c) / a)^2): <= 1 inside the ellipsoid."""
    z, y, x = axes
    cz, cy, cx = (np.float32(v) for v in centre_mm)
    az, ay, ax = (np.float32(max(v, 1e-3)) for v in semi_axes_mm)
    return ((z - cz) / az) ** 2 + ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2


def _smooth_noise(
    rng: np.random.Generator, shape: Shape, sigma_voxels: float | Sequence[float]
) -> np.ndarray:
    """Unit-variance Gaussian noise, spatially correlated by a Gaussian blur."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if np.any(np.asarray(sigma_voxels) > 0):
        noise = ndimage.gaussian_filter(noise, sigma_voxels)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def _place_ellipsoids(
    rng: np.random.Generator,
    allowed_distance_mm: np.ndarray,
    shape: Shape,
    spacing_mm: Spacing,
    count: int,
    radius_range_mm: tuple[float, float],
    gap_mm: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Draw up to ``count`` separate ellipsoids (centre mm, semi-axes mm) at voxel centres.

    A centre is eligible when ``allowed_distance_mm`` there exceeds the largest semi-axis (plus
    ``gap_mm``), so the ellipsoid stays inside the allowed region; two ellipsoids keep their
    bounding spheres ``gap_mm`` apart. Radii are log-uniform in ``radius_range_mm``; a radius
    with no eligible centre is shrunk towards the lower end.
    """
    low, high = radius_range_mm
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    flat_distance = allowed_distance_mm.ravel()
    for _ in range(count):
        radius = float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))
        semi_axes = radius * rng.uniform(0.75, 1.25, size=3)
        for _attempt in range(6):
            reach = float(semi_axes.max())
            eligible = np.flatnonzero(flat_distance > reach + gap_mm)
            if eligible.size:
                centres_vox = np.stack(np.unravel_index(eligible, shape), axis=1)
                centres_mm = (centres_vox - (np.array(shape) - 1) / 2) * np.array(spacing_mm)
                for other_centre, other_axes in placed:
                    far = np.linalg.norm(centres_mm - other_centre, axis=1) > (
                        reach + float(other_axes.max()) + gap_mm
                    )
                    centres_mm = centres_mm[far]
                if len(centres_mm):
                    centre = centres_mm[rng.integers(len(centres_mm))]
                    placed.append((centre, semi_axes))
                    break
            semi_axes = np.maximum(semi_axes * 0.6, low * 0.5)
    return placed


# --------------------------------------------------------------------------- PET/CT


def pet_phantom(
    case_index: int,
    seed: int = 0,
    shape: Sequence[int] = (64, 96, 96),
    spacing_mm: Sequence[float] = (3.0, 2.0, 2.0),
) -> Case:
    """autoPET-like whole-body case ``pet_<index>``: channel 0 CT (HU), channel 1 PET (SUV).

    z runs feet (index 0) to head. Lesions are labelled 1; no lesion when case_index % 5 == 4.
    """
    shape, spacing = _check_grid(shape, spacing_mm)
    rng = _rng(seed, "pet", case_index)
    axes = _axes_mm(shape, spacing)
    half = _half_extent_mm(shape, spacing)
    z, y, x = axes
    hz, hy, hx = half

    # Body: barrel-shaped, elliptic cross-section (y anterior-posterior, x left-right).
    body_y, body_x = hy * rng.uniform(0.55, 0.65), hx * rng.uniform(0.8, 0.9)
    taper = 1.0 - (z / np.float32(hz * 0.98)) ** 4
    body = (y / np.float32(body_y)) ** 2 + (x / np.float32(body_x)) ** 2 <= taper

    def organ_r2(cz: float, cy: float, cx: float, az: float, ay: float, ax: float) -> np.ndarray:
        jitter = rng.uniform(-0.03, 0.03, size=3)
        centre = (hz * (cz + jitter[0]), body_y * (cy + jitter[1]), body_x * (cx + jitter[2]))
        scale = rng.uniform(0.9, 1.1)
        return _ellipsoid_r2(
            axes, centre, (hz * az * scale, body_y * ay * scale, body_x * ax * scale)
        )

    def organ(*position_and_size: float) -> np.ndarray:
        return (organ_r2(*position_and_size) <= 1) & body

    head_r2 = organ_r2(0.8, -0.05, 0.0, 0.12, 0.55, 0.35)
    brain = (head_r2 <= 1) & body
    skull = (head_r2 <= 1.25**2) & body & ~brain
    lungs = organ(0.38, 0.0, -0.45, 0.2, 0.6, 0.3) | organ(0.38, 0.0, 0.45, 0.2, 0.6, 0.3)
    heart = organ(0.33, -0.25, 0.1, 0.09, 0.3, 0.2)
    lungs &= ~heart
    liver = organ(0.12, -0.05, -0.35, 0.12, 0.5, 0.35) & ~lungs
    kidneys = organ(0.0, 0.45, -0.35, 0.07, 0.2, 0.12) | organ(0.0, 0.45, 0.35, 0.07, 0.2, 0.12)
    bladder = organ(-0.75, -0.3, 0.0, 0.07, 0.25, 0.2)
    spine = ((y - np.float32(body_y * 0.7)) ** 2 + x**2 <= np.float32(body_x * 0.08) ** 2) & body
    spine = spine & ~brain & ~skull

    background_suv = rng.uniform(0.8, 1.2)
    activity = np.zeros(shape, dtype=np.float32)
    activity[body] = background_suv
    activity[lungs] = 0.35 * background_suv
    activity[spine] = 1.4 * background_suv
    activity[liver] = rng.uniform(1.8, 2.4) * background_suv
    activity[brain] = rng.uniform(6.0, 9.0)
    activity[heart] = rng.uniform(3.0, 7.0)
    activity[kidneys] = rng.uniform(4.0, 6.5)
    activity[bladder] = rng.uniform(8.0, 20.0)

    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct[body] = 40.0
    ct[lungs] = -820.0
    ct[liver] = 60.0
    ct[kidneys] = 32.0
    ct[heart] = 45.0
    ct[bladder] = 8.0
    ct[brain] = 35.0
    ct[skull | spine] = 700.0

    # Lesions: inside the body (a gap from its surface), away from the hot organs.
    count = 0 if case_index % 5 == 4 else int(rng.integers(1, 9))
    allowed = body & ~(brain | skull | heart | kidneys | bladder | spine)
    distance_mm = ndimage.distance_transform_edt(allowed, sampling=spacing)
    radius_low = 1.5 * min(spacing[1], spacing[2])
    radius_high = max(radius_low, min(25.0, 0.25 * float(min(hy, hx))))
    lesions = _place_ellipsoids(
        rng, distance_mm, shape, spacing, count, (radius_low, radius_high), 2 * max(spacing)
    )
    label = np.zeros(shape, dtype=np.uint8)
    for centre, semi_axes in lesions:
        r2 = _ellipsoid_r2(axes, centre, semi_axes)
        inside = r2 <= 1
        suv = rng.uniform(3.0, 15.0) * background_suv
        activity[inside] = suv * (0.75 + 0.25 * (1.0 - r2[inside]))
        ct[inside] = 45.0 + rng.uniform(-10.0, 20.0)
        label[inside] = 1

    # PET: ~6 mm FWHM blur (sigma 2.5 mm), correlated multiplicative noise, no negative SUV.
    blur = [2.5 / s for s in spacing]
    pet = ndimage.gaussian_filter(activity, blur)
    pet *= 1.0 + 0.12 * _smooth_noise(rng, shape, 0.7)
    pet += 0.03 * np.abs(rng.standard_normal(shape, dtype=np.float32))
    np.clip(pet, 0.0, None, out=pet)
    ct += 12.0 * rng.standard_normal(shape, dtype=np.float32)
    return Case(
        case_id=f"pet_{case_index:03d}",
        channels=(ct.astype(np.float32), pet.astype(np.float32)),
        label=label,
        geometry=_centred_geometry(shape, spacing),
    )


# --------------------------------------------------------------------------- CBCT jaw


def jaw_phantom(
    case_index: int,
    seed: int = 0,
    shape: Sequence[int] = (64, 80, 80),
    spacing_mm: Sequence[float] = (0.6, 0.4, 0.4),
) -> Case:
    """ToothFairy-like CBCT case ``jaw_<index>`` (one channel, HU-like): left canal 1, right 2.

    The mandible's arms run along z from the chin (z = 0) backwards and apart in x; each canal
    starts near the mental foramen (20-35 % of the z range) and runs to the back of the volume.
    """
    shape, spacing = _check_grid(shape, spacing_mm)
    rng = _rng(seed, "jaw", case_index)
    half = _half_extent_mm(shape, spacing)
    _, hy, hx = half
    _, y, x = _axes_mm(shape, spacing)
    t = np.linspace(0.0, 1.0, shape[0], dtype=np.float32)[:, None, None]  # 0 chin .. 1 back

    bone_y = float(hy * rng.uniform(0.28, 0.34))  # arm cross-section semi-axes, mm
    bone_x = float(hx * rng.uniform(0.18, 0.22))
    spread_front, spread_back = rng.uniform(0.08, 0.12), rng.uniform(0.55, 0.62)
    arm_y = np.float32(hy * rng.uniform(-0.05, 0.1)) + np.float32(hy * 0.08) * np.sin(np.pi * t)
    canal_radius = float(min(1.2 * rng.uniform(0.85, 1.15), 0.35 * min(bone_x, bone_y)))

    ct = np.full(shape, -1000.0, dtype=np.float32)
    soft_x = np.float32(hx * (spread_back + 0.2)) * (0.45 + 0.55 * t)
    soft = (((y - arm_y) / np.float32(bone_y + 0.35 * hy)) ** 2 + (x / soft_x) ** 2) <= 1
    ct[soft] = 60.0
    label = np.zeros(shape, dtype=np.uint8)
    cortical_hu, trabecular_hu = rng.uniform(1300, 1700), rng.uniform(450, 700)
    canal_start = rng.uniform(0.2, 0.35)
    axes = _axes_mm(shape, spacing)
    for side, class_id in ((1.0, 1), (-1.0, 2)):  # +x = patient left (LPS) = label 1
        arm_x = np.float32(side * hx) * (spread_front + (spread_back - spread_front) * t**0.6)
        arm_r2 = ((y - arm_y) / np.float32(bone_y)) ** 2 + ((x - arm_x) / np.float32(bone_x)) ** 2
        cortex = arm_r2 <= 1
        ct[cortex] = cortical_hu
        ct[arm_r2 <= 0.72**2] = trabecular_hu
        # Teeth on the upper (-y) side of the arm, every ~12 % of its length, some missing.
        for t_tooth in np.arange(0.06, 0.8, 0.12):
            if rng.random() < 0.2:
                continue
            index = min(int(round(t_tooth * (shape[0] - 1))), shape[0] - 1)
            centre_y = float(arm_y[index, 0, 0]) - bone_y * 1.05
            centre_x = float(arm_x[index, 0, 0])
            centre_z = (index - (shape[0] - 1) / 2) * spacing[0]
            tooth = (
                _ellipsoid_r2(
                    axes, (centre_z, centre_y, centre_x), (0.05 * 2 * half[0], bone_y * 0.5, bone_x)
                )
                <= 1
            )
            ct[tooth] = rng.uniform(2200, 2800)
        # Canal: a tube whose slice-wise centre drifts inside the arm, below the tooth roots.
        phase = rng.uniform(0, 2 * np.pi)
        depth = rng.uniform(0.1, 0.3)
        canal_y = arm_y + np.float32(bone_y) * (depth + 0.12 * np.sin(np.pi * t + phase))
        canal_x = arm_x + np.float32(side * bone_x * 0.12) * np.sin(2 * np.pi * t + phase)
        canal_d2 = (y - canal_y) ** 2 + (x - canal_x) ** 2
        present = t >= canal_start
        ct[(canal_d2 <= np.float32(canal_radius + 0.4) ** 2) & present] = cortical_hu * 0.8
        canal = (canal_d2 <= np.float32(canal_radius) ** 2) & present
        ct[canal] = rng.uniform(40.0, 120.0)
        label[canal] = class_id

    ct = ndimage.gaussian_filter(ct, 0.6)
    ct += 70.0 * _smooth_noise(rng, shape, 0.5)
    return Case(
        case_id=f"jaw_{case_index:03d}",
        channels=(ct.astype(np.float32),),
        label=label,
        geometry=_centred_geometry(shape, spacing),
    )


# --------------------------------------------------------------------------- abdomen CT


def abdomen_phantom(
    case_index: int,
    seed: int = 0,
    shape: Sequence[int] = (48, 96, 96),
    spacing_mm: Sequence[float] = (2.5, 0.8, 0.8),
) -> Case:
    """TriALS-like portal-venous CT case ``abdomen_<index>``: liver lesions 1, mask "liver"."""
    shape, spacing = _check_grid(shape, spacing_mm)
    rng = _rng(seed, "abdomen", case_index)
    axes = _axes_mm(shape, spacing)
    hz, hy, hx = _half_extent_mm(shape, spacing)
    _, y, x = axes

    body_y, body_x = hy * rng.uniform(0.7, 0.8), hx * rng.uniform(0.88, 0.95)
    body_r2 = (y / np.float32(body_y)) ** 2 + (x / np.float32(body_x)) ** 2
    body = np.broadcast_to(body_r2 <= 1, shape)

    def organ(cz: float, cy: float, cx: float, az: float, ay: float, ax: float) -> np.ndarray:
        jitter = rng.uniform(-0.04, 0.04, size=3)
        centre = (hz * (cz + jitter[0]), body_y * (cy + jitter[1]), body_x * (cx + jitter[2]))
        scale = rng.uniform(0.9, 1.1)
        semi = (hz * az * scale, body_y * ay * scale, body_x * ax * scale)
        return (_ellipsoid_r2(axes, centre, semi) <= 1) & body

    ct = np.full(shape, -1000.0, dtype=np.float32)
    ct[body] = -90.0  # fat
    ct[np.broadcast_to(body_r2 <= 0.85**2, shape)] = 35.0  # muscle / soft tissue
    spine = np.broadcast_to(
        (y - np.float32(body_y * 0.62)) ** 2 + x**2 <= (body_x * 0.13) ** 2, shape
    )
    aorta = np.broadcast_to(
        (y - np.float32(body_y * 0.32)) ** 2 + (x - np.float32(body_x * 0.06)) ** 2
        <= (body_x * 0.06) ** 2,
        shape,
    )
    kidneys = organ(-0.35, 0.42, -0.42, 0.35, 0.22, 0.14) | organ(
        -0.4, 0.42, 0.42, 0.35, 0.22, 0.14
    )
    spleen = organ(0.35, 0.3, 0.6, 0.3, 0.28, 0.18)
    stomach = organ(0.4, -0.35, 0.3, 0.3, 0.3, 0.25)
    liver = organ(0.25, -0.05, -0.42, 0.6, 0.6, 0.42) & ~spine & ~aorta & ~kidneys
    liver_hu = rng.uniform(95.0, 125.0)
    ct[stomach] = 15.0
    ct[spleen] = liver_hu + rng.uniform(-5.0, 15.0)
    ct[kidneys] = rng.uniform(140.0, 180.0)
    ct[liver] = liver_hu
    ct[aorta] = rng.uniform(160.0, 200.0)
    ct[spine] = 500.0

    count = int(rng.integers(1, 6))
    distance_mm = ndimage.distance_transform_edt(liver, sampling=spacing)
    radius_low = 1.5 * min(spacing[1], spacing[2])
    radius_high = max(radius_low, min(15.0, 0.5 * float(distance_mm.max())))
    lesions = _place_ellipsoids(
        rng, distance_mm, shape, spacing, count, (radius_low, radius_high), 0.5 * max(spacing)
    )
    label = np.zeros(shape, dtype=np.uint8)
    for centre, semi_axes in lesions:
        inside = (_ellipsoid_r2(axes, centre, semi_axes) <= 1) & liver
        ct[inside] = liver_hu - rng.uniform(30.0, 70.0)
        label[inside] = 1

    ct = ndimage.gaussian_filter(ct, (0.3, 0.6, 0.6))
    ct += 10.0 * _smooth_noise(rng, shape, 0.5)
    return Case(
        case_id=f"abdomen_{case_index:03d}",
        channels=(ct.astype(np.float32),),
        label=label,
        geometry=_centred_geometry(shape, spacing),
        extra_masks={"liver": np.ascontiguousarray(liver)},
    )


# --------------------------------------------------------------------------- datasets

PhantomFunction = Callable[..., Case]

PHANTOM_KINDS: dict[str, PhantomFunction] = {
    "pet": pet_phantom,
    "jaw": jaw_phantom,
    "abdomen": abdomen_phantom,
}

_DATASET_INFO = {
    "pet": {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "lesion": 1},
    },
    "jaw": {
        "channel_names": {"0": "CBCT"},
        "labels": {"background": 0, "Left_IAC": 1, "Right_IAC": 2},
    },
    "abdomen": {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "lesion": 1},
        "extra_masks": ["liver"],
    },
}


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    kind: str,
    num_cases: int,
    seed: int = 0,
    shape: Sequence[int] | None = None,
) -> list[str]:
    """Write ``num_cases`` phantoms of ``kind`` in the nnU-Net layout; return their case ids.

    Files: imagesTs/<kind>_<NNN>_<CCCC>.nii.gz, labelsTs/<kind>_<NNN>.nii.gz, for abdomen
    masksTs/liver/<kind>_<NNN>.nii.gz, plus a dataset.json describing channels and labels.
    ``shape`` (z, y, x) overrides the kind's default size. Same arguments -> same bytes.
    """
    if kind not in PHANTOM_KINDS:
        raise SegloopError(f"unknown phantom kind {kind!r}; choose one of {sorted(PHANTOM_KINDS)}")
    if int(num_cases) < 1:
        raise SegloopError(f"number of phantom cases must be >= 1, got {num_cases}")
    generate = PHANTOM_KINDS[kind]
    out = Path(out_dir)
    case_ids = []
    grid: dict[str, list] = {}
    for index in range(int(num_cases)):
        case = generate(index, seed) if shape is None else generate(index, seed, shape=tuple(shape))
        write_case(out, case)
        case_ids.append(case.case_id)
        grid = {"shape": list(case.shape), "spacing_mm": list(case.spacing_mm)}
    info = {
        "name": f"segloop-phantom-{kind}",
        "description": f"segloop synthetic {kind} phantoms (evaluator/phantoms.py)",
        **_DATASET_INFO[kind],
        "numTest": len(case_ids),
        "file_ending": ".nii.gz",
        "segloop_phantom": {"kind": kind, "seed": int(seed), **grid},
    }
    temporary = out / f".dataset.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, out / "dataset.json")
    return case_ids
