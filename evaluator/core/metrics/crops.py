"""Input checks and the boxes that crop a volume to where a class lives (speed only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segloop.core.records import SegloopError

Box = tuple[slice, ...]


def check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    pred_array = np.asarray(pred)
    gt_array = np.asarray(gt)
    if pred_array.shape != gt_array.shape:
        raise SegloopError(
            f"prediction shape {pred_array.shape} differs from ground-truth shape {gt_array.shape}"
        )
    if pred_array.ndim not in (2, 3):
        raise SegloopError(f"masks must be 2-D or 3-D arrays, got shape {pred_array.shape}")
    return pred_array, gt_array


def as_bool(array: np.ndarray) -> np.ndarray:
    return array if array.dtype == bool else array.astype(bool)


def check_spacing(spacing_mm: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != ndim:
        raise SegloopError(
            f"spacing_mm {spacing} has {len(spacing)} values but the masks have {ndim} axes"
        )
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise SegloopError(f"spacing_mm {spacing} must be finite and > 0 on every axis")
    return spacing


def image_diagonal_mm(shape: Sequence[int], spacing_mm: Sequence[float]) -> float:
    """Length of the image diagonal, ``sqrt(sum((shape_i * spacing_i) ** 2))`` in mm (SPEC)."""
    return math.sqrt(sum((int(n) * float(s)) ** 2 for n, s in zip(shape, spacing_mm, strict=True)))


def nonzero_box(array: np.ndarray) -> Box | None:
    """Bounding box (slices) of the non-zero voxels, or None when there are none.

    Axis by axis with max-projections over contiguous slabs (much faster than
    ``ndimage.find_objects`` or boolean ``any`` on a 56 M voxel volume).
    """
    if array.size == 0:
        return None
    if array.dtype == bool:
        array = array.view(np.uint8)
    signed = np.issubdtype(array.dtype, np.signedinteger) or np.issubdtype(array.dtype, np.floating)
    box: list[slice] = []
    current = array
    for _ in range(array.ndim):
        flat = current.reshape(current.shape[0], -1)
        present = flat.max(axis=1) != 0
        if signed:
            present |= flat.min(axis=1) != 0
        hits = np.flatnonzero(present)
        if hits.size == 0:
            return None
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        box.append(slice(lo, hi))
        current = current[lo:hi]
        if current.ndim > 1:
            reduced = current.max(axis=0)
            if signed:
                reduced = np.where(reduced != 0, reduced, current.min(axis=0))
            current = reduced
    return tuple(box)


def union_box(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(
        slice(min(sa.start, sb.start), max(sa.stop, sb.stop)) for sa, sb in zip(a, b, strict=True)
    )
