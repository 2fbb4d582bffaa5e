"""Exact surface distances whose cost follows the disagreeing surface (issue 16, items 1 and 2).

Two kinds of surface, one engine:

* **Surfels** (DeepMind surface-distance, Nikolov et al. 2021; github.com/google-deepmind/
  surface-distance, ``surface_distance/metrics.py``, ``compute_surface_distances``): the cells
  of the 2x2x2 dual grid whose 8 voxels are neither all inside nor all outside the mask, each
  weighted by the area of its marching-cubes piece (:func:`segloop.core.metrics.surfel_area_table`,
  indexed by our neighbour code). A surfel's distance is the Euclidean distance in mm from its
  cell to the nearest surfel cell of the other mask; DeepMind reads it from
  ``scipy.ndimage.distance_transform_edt(~borders, sampling=spacing_mm)``.
* **Boundary voxels** (medpy, github.com/loli/medpy, ``medpy/metric/binary.py``,
  ``__surface_distances``): ``mask ^ binary_erosion(mask, generate_binary_structure(ndim,
  connectivity), iterations=1)`` with zeros outside the array; a boundary voxel's distance is
  ``distance_transform_edt(~other_boundary, sampling=voxelspacing)`` at its centre.

Both are nearest-point distances between two sets of integer grid points A and B, with the
formula of ``scipy.ndimage.distance_transform_edt`` (``scipy/ndimage/_morphology.py``: feature
transform, then ``sqrt`` of the sum over axes, in axis order, of ``((b_i - a_i) * s_i) ** 2``).
We compute them without an EDT over the volume:

1. A point of A that is also a point of B is at distance 0 (no search). Two masks that agree on
   part of their surface share those surfels (a cell whose 8 voxels agree in both masks has the
   same code in both).
2. The other points search "shells": all integer offsets o with ``d(o) <= R``, grouped by
   their exact float distance, in increasing order (``R`` = the radius whose ball holds about
   :data:`SEARCH_OFFSETS` offsets at this spacing, ~6 voxels when isotropic, or the NSD
   tolerance if that is smaller and all the metrics need). For
   each shell, every unresolved point looks its offsets up in a dense boolean map of B (flat
   indices into a buffer padded by the shells' reach, so no bounds checks). The first shell
   with a hit gives the exact distance: every nearer offset was tried. The cost is the number
   of points still unresolved times the shell sizes: it follows the disagreeing surface and
   its distance from the other one, not the volume.
3. Points farther than ``R`` (far false positives, missed parts, an NSD tolerance beyond
   ``R``) ask a k-d tree over B for their nearest point (bounded by the tolerance when only NSD
   needs them); the distance is then computed from the integer offset by the same formula.

The search stops as soon as the requested metrics are determined: NSD at tolerance t needs the
shells up to t; a percentile needs the resolved points to hold that fraction of the area (or of
the count, medpy); HD (the maximum) and ASSD need every distance. Distances come out as
histograms per surfel code (:class:`DirectedDistances`), from which the metrics are computed the
way the reference computes them from its sorted lists (same sorting, same sums): NSD, HD, HD95
and ASSD equal surface-distance's and medpy's up to floating-point rounding (tests/
test_surface.py checks 1e-12). Ties: where several nearest points have mathematically equal
distances, the EDT and we may pick different ones, whose float distances can differ in the last
bit.

Cost beyond the search: a few dense 1-D passes over the bounding box of ``pred | gt`` (the
neighbour codes or the erosion). :func:`multiclass_overlap` finds the boxes, voxel counts and
intersections of all classes of two label maps in one pass, so
:func:`segloop.core.metrics.scoring.score_classes` then works on per-class crops. Measured by
``segloop bench --real`` (:mod:`segloop.app.bench_surface`; figures in the README's
Performance section).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from segloop.core.metrics.crops import nonzero_box
from segloop.core.metrics.surface import surfel_area_table

Box = tuple[slice, ...]

SEARCH_OFFSETS = 1000  # offsets searched before the k-d tree takes over (speed, not results)
FEW_CLASSES = 2  # up to this many classes, one comparison pass per class beats the one-pass code
SLAB_SLICES = 8  # slices per slab of the one-pass class statistics (bounds its temporaries)
ASSD_POOLINGS = ("directed_means", "pooled")
_QUANTILE_MARGIN = 1e-9  # a percentile this close to the resolved fraction: keep searching


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class DirectedDistances:
    """Distances (mm) from the points of one set (surfels or boundary voxels of one mask) to the
    nearest point of the other set, as a histogram.

    ``counts[i, k]``: points of kind k (the surfel's neighbour code; 0 for boundary voxels) at
    distance ``distances_mm[i]`` (ascending, distinct; 0 for the points both sets share; ``inf``
    when the other set is empty, DeepMind's convention). ``beyond[k]``: points of kind k whose
    distance was not computed because the requested metrics did not need it; all of them are at
    ``>= known_below_mm``, and every point nearer than ``known_below_mm`` is in ``counts``.
    """

    distances_mm: np.ndarray
    counts: np.ndarray
    beyond: np.ndarray
    known_below_mm: float

    @property
    def complete(self) -> bool:
        return not bool(self.beyond.any())

    @property
    def totals(self) -> np.ndarray:
        """Points per kind, resolved or not."""
        return self.counts.sum(axis=0) + self.beyond


@dataclass(frozen=True)
class SurfelDistances:
    """Both directions of the surfel distances and the area (mm^2; 2-D: length in mm) of each
    neighbour code at this spacing (:func:`segloop.core.metrics.surfel_area_table`)."""

    pred_to_gt: DirectedDistances
    gt_to_pred: DirectedDistances
    areas_mm2: np.ndarray


@dataclass(frozen=True)
class BoundaryDistances:
    """Both directions of the boundary-voxel (medpy) distances, for one ``connectivity``."""

    pred_to_gt: DirectedDistances
    gt_to_pred: DirectedDistances
    connectivity: int


@dataclass(frozen=True)
class ClassStats:
    """One class of two label maps: voxel counts, their intersection and bounding boxes (slices
    in array order; None when the class is absent from that map)."""

    class_id: int
    pred_voxels: int
    gt_voxels: int
    intersection_voxels: int
    pred_box: Box | None
    gt_box: Box | None

    @property
    def box(self) -> Box | None:
        """Bounding box of the class in either map."""
        return _union_box(self.pred_box, self.gt_box)


@dataclass(frozen=True)
class _Need:
    """What the metrics need from the search: every distance up to ``radius_mm`` (NSD), the
    quantiles ``fractions`` (per direction by area, or of both directions pooled by count as
    medpy does), or every distance (``complete``: HD, ASSD)."""

    radius_mm: float = -1.0
    fractions: tuple[float, ...] = ()
    pooled: bool = False
    complete: bool = False


@dataclass(frozen=True)
class _Shells:
    """Integer offsets with distance <= radius, sorted by their float distance and grouped:
    ``offsets[starts[i]:starts[i + 1]]`` are at ``distances_mm[i]``; ``reach`` = the largest
    |offset| per axis (the padding the search needs)."""

    distances_mm: np.ndarray
    starts: np.ndarray
    offsets: np.ndarray
    reach: tuple[int, ...]
    radius_mm: float


# --------------------------------------------------------------------------------------------
# Small geometry helpers


def _spacing_tuple(spacing_mm: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != ndim:
        raise ValueError(f"spacing_mm {spacing} has {len(spacing)} values for {ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm {spacing} must be finite and > 0 on every axis")
    return spacing


def _bool_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground-truth shape {g.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be 2-D or 3-D, got shape {p.shape}")
    return (p if p.dtype == bool else p != 0), (g if g.dtype == bool else g != 0)


def _mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of a boolean mask, by max-projections over contiguous slabs, axis by axis
    (much faster than ``np.argwhere`` or ``ndimage.find_objects`` on a large volume)."""
    if _fortran_only(mask):
        return _reversed(_mask_box(mask.T))
    current = np.ascontiguousarray(mask).view(np.uint8)
    box: list[slice] = []
    for _ in range(mask.ndim):
        present = np.flatnonzero(current.reshape(current.shape[0], -1).max(axis=1))
        if present.size == 0:
            return None
        lo, hi = int(present[0]), int(present[-1]) + 1
        box.append(slice(lo, hi))
        current = current[lo:hi]
        if current.ndim > 1:
            current = current.max(axis=0)
    return tuple(box)


def _union_box(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True)
    )


def edt_distance_mm(offsets: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Length in mm of integer offsets (rows), the way ``scipy.ndimage.distance_transform_edt``
    computes it (``scipy/ndimage/_morphology.py``): each axis's offset times its spacing,
    squared, summed in axis order, square root. Same operations, same rounding."""
    scaled = np.asarray(offsets, dtype=np.float64) * np.asarray(spacing_mm, dtype=np.float64)
    squared = scaled[:, 0] * scaled[:, 0]
    for axis in range(1, scaled.shape[1]):
        squared = squared + scaled[:, axis] * scaled[:, axis]
    return np.sqrt(squared)


@functools.lru_cache(maxsize=32)
def _shells(spacing_mm: tuple[float, ...], radius_mm: float) -> _Shells:
    # one more than radius / spacing per axis, so float rounding cannot drop an offset whose
    # distance is <= radius; the distance filter below decides
    reach = tuple(int(math.floor(radius_mm / s)) + 1 for s in spacing_mm)
    axes = [np.arange(-r, r + 1) for r in reach]
    offsets = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    distances = edt_distance_mm(offsets, spacing_mm)
    keep = (distances > 0) & (distances <= radius_mm)
    offsets, distances = offsets[keep], distances[keep]
    order = np.argsort(distances, kind="stable")
    offsets, distances = offsets[order], distances[order]
    distinct, starts = np.unique(distances, return_index=True)
    reach = (
        tuple(int(v) for v in np.abs(offsets).max(axis=0))
        if len(offsets)
        else (0,) * len(spacing_mm)
    )
    return _Shells(
        distances_mm=distinct,
        starts=np.append(starts, len(offsets)),
        offsets=offsets,
        reach=reach,
        radius_mm=radius_mm,
    )


def distance_shells(
    spacing_mm: Sequence[float], radius_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every integer offset o with ``0 < d(o) <= radius_mm`` (:func:`edt_distance_mm`),
    grouped by its exact float distance in increasing order: (distances_mm, starts, offsets),
    ``offsets[starts[i]:starts[i + 1]]`` being the offsets at ``distances_mm[i]``. The search
    order of the engine; the robot users' click search uses it too."""
    shells = _shells(tuple(float(v) for v in spacing_mm), float(radius_mm))
    return shells.distances_mm, shells.starts, shells.offsets


def search_radius_mm(spacing_mm: Sequence[float]) -> float:
    """Radius (mm) of the ball that holds about ``SEARCH_OFFSETS`` grid offsets at this
    spacing: ``(SEARCH_OFFSETS * prod(s) / unit-ball volume) ** (1 / ndim)``. Beyond it a
    point's search costs more than asking a k-d tree (the shells grow with the radius cubed);
    by volume, not by the finest spacing, so that thin slices do not shrink it to nothing."""
    ndim = len(spacing_mm)
    ball = math.pi ** (ndim / 2) / math.gamma(ndim / 2 + 1)
    return (SEARCH_OFFSETS * math.prod(spacing_mm) / ball) ** (1.0 / ndim)


def _search_shells(spacing: tuple[float, ...], need: _Need) -> _Shells:
    """The shells to search: up to :func:`search_radius_mm`, or only up to the NSD radius when
    that is all the metrics need (a smaller padding)."""
    cap = search_radius_mm(spacing)
    if need.complete or need.fractions:
        return _shells(spacing, float(cap))
    return _shells(spacing, float(min(max(need.radius_mm, 0.0), cap)))


@dataclass(frozen=True)
class _PointSet:
    """Points (surfel cells or boundary voxels) of one mask: a boolean map on the padded
    buffer, the ascending flat indices of its set cells and their kinds (codes)."""

    map: np.ndarray
    flat: np.ndarray
    kinds: np.ndarray


# The masks are written once into zero buffers padded by (shells' reach + 1) voxels on every
# side. Every later dense step is then a 1-D operation on the flattened buffer, shifted by a
# flat stride: contiguous, with no per-row loop. The padding makes the wrap-around harmless
# (a voxel's neighbour one row or plane further is padding, i.e. 0), and the shells' flat
# offsets stay inside the buffer.


def _buffer(labels: np.ndarray, class_id: int | None, pad: Sequence[int]) -> np.ndarray:
    """``labels == class_id`` (``labels != 0`` when ``class_id`` is None) in a zero boolean
    buffer with ``pad`` voxels on each side, in one pass."""
    out = np.zeros(tuple(n + 2 * p for n, p in zip(labels.shape, pad, strict=True)), dtype=bool)
    inner = out[tuple(slice(p, p + n) for n, p in zip(labels.shape, pad, strict=True))]
    if class_id is None:
        np.not_equal(labels, 0, out=inner)
    else:
        np.equal(labels, class_id, out=inner)
    return out


def _flat_strides(shape: Sequence[int]) -> list[int]:
    """Elements between neighbours along each axis of a C-ordered array of ``shape``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= int(n)
    return strides[::-1]


def _buffer_codes(buffer: np.ndarray) -> np.ndarray:
    """Neighbour code of every cell of a padded buffer, same shape: cell j covers voxels j and
    j + 1 on every axis (our cell j is DeepMind's cell j + 1; only differences matter). Bits as
    :func:`surfel_codes`."""
    codes = buffer.view(np.uint8).ravel()
    out = np.zeros(buffer.size, dtype=np.uint8)
    strides = _flat_strides(buffer.shape)
    bit = 1
    for step, axis in enumerate(reversed(range(buffer.ndim))):
        n = codes.size - strides[axis]
        target = out[:n] if step == buffer.ndim - 1 else None
        # a multiply by 2**k: numpy vectorises it, not the uint8 left shift (10x slower)
        shifted = np.multiply(codes[strides[axis] :], np.uint8(1 << bit), out=target)
        codes = np.bitwise_or(codes[:n], shifted, out=shifted)
        bit *= 2
    return out.reshape(buffer.shape)


def surfel_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour code of every cell of the dual grid of ``mask`` (shape + 1 per axis).

    Cell j covers voxels j - 1 and j on every axis (outside the array = 0). Corner c (c_a in
    {0, 1}) sets bit ``sum(c_a * 2 ** (ndim - 1 - a))``: the convention of
    :func:`segloop.core.metrics.surfel_area_table` (DeepMind's codes have the bits reversed).
    A cell holds a surfel when its code is neither 0 nor all ones.
    """
    mask = np.asarray(mask)
    codes = _buffer_codes(_buffer(mask, None, (1,) * mask.ndim))
    return codes[tuple(slice(0, n + 1) for n in mask.shape)]


def _surfel_set(buffer: np.ndarray) -> _PointSet:
    """Surfel cells and their codes of a padded buffer (:func:`_buffer`)."""
    codes = _buffer_codes(buffer)
    full = (1 << (1 << buffer.ndim)) - 1
    # code - 1 wraps 0 to 255: surfel <=> code - 1 < full - 1 (one compare instead of two)
    cells = (codes - np.uint8(1)) < np.uint8(full - 1)
    flat = np.flatnonzero(cells)
    return _PointSet(map=cells, flat=flat, kinds=codes.ravel()[flat])


#: Block edge (cells) of the sparse surfel search, and the share of visited blocks above which
#: one dense pass over the box is faster (speed only: both give the same surfels).
SURFEL_BLOCK = 16
SPARSE_BLOCK_SHARE = 0.25


def _block_reduce(mask: np.ndarray, block: int, ufunc: np.ufunc) -> np.ndarray:
    """``ufunc`` (max or min) over blocks of ``block`` voxels per axis (last block partial)."""
    out = mask
    for axis in range(mask.ndim):
        moved = np.moveaxis(out, axis, 0)
        count = moved.shape[0] // block
        parts = []
        if count:
            whole = moved[: count * block].reshape(count, block, *moved.shape[1:])
            parts.append(ufunc.reduce(whole, axis=1))
        if moved.shape[0] % block:
            parts.append(ufunc.reduce(moved[count * block :], axis=0, keepdims=True))
        out = np.moveaxis(np.concatenate(parts, axis=0), 0, axis)
    return out


def _with_predecessors(blocks: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Combine every block with its predecessor on each axis (``ufunc``; outside = 0)."""
    out = blocks
    for axis in range(blocks.ndim):
        shifted = np.zeros_like(out)
        target = [slice(None)] * out.ndim
        source = [slice(None)] * out.ndim
        target[axis] = slice(1, None)
        source[axis] = slice(None, -1)
        shifted[tuple(target)] = out[tuple(source)]
        out = ufunc(out, shifted)
    return out


def _sparse_surfel_set(mask: np.ndarray, pad: Sequence[int]) -> _PointSet | None:
    """The surfel set of :func:`_surfel_set` (``_surfel_set(_buffer(mask, None, pad))``),
    computed only in the blocks of ``SURFEL_BLOCK`` cells that can hold surface: next to a
    voxel of the mask and not deep inside it. A few lesions in a whole-body box cost their
    surface, not the box (the dense pass's cost). None when more than ``SPARSE_BLOCK_SHARE``
    of the blocks need a visit: then the dense pass is faster.

    Cell g of the mask's dual grid covers voxels g - 1 and g (g in 0..n per axis): cell
    g - 1 + pad of the padded buffer. Its map is allocated as zeros (untouched pages cost
    nothing) and set at the surfels only."""
    if mask.size == 0:
        return None  # an empty box: the dense pass has nothing to pay for
    ndim = mask.ndim
    n = np.array(mask.shape)
    voxels = mask.view(np.uint8)
    b = SURFEL_BLOCK
    cell_blocks = tuple(int(v) for v in -(-(n + 1) // b))  # cells 0..n on every axis
    occupied = np.zeros(cell_blocks, dtype=np.uint8)
    solid = np.zeros(cell_blocks, dtype=np.uint8)
    block_max = _block_reduce(voxels, b, np.maximum)
    block_min = _block_reduce(voxels, b, np.minimum)
    for axis in range(ndim):  # a partial last block is never solid (its cells see outside)
        if n[axis] % b:
            index = [slice(None)] * ndim
            index[axis] = -1
            block_min[tuple(index)] = 0
    occupied[tuple(slice(0, k) for k in block_max.shape)] = block_max
    solid[tuple(slice(0, k) for k in block_min.shape)] = block_min
    # cell block k needs voxels [k*b - 1, (k+1)*b): voxel blocks k-1 and k on every axis
    visit = _with_predecessors(occupied, np.maximum) & ~_with_predecessors(
        solid, np.minimum
    ).astype(bool)
    blocks = np.argwhere(visit)
    if len(blocks) > SPARSE_BLOCK_SHARE * visit.size:
        return None
    shape = tuple(int(v + 2 * p) for v, p in zip(n, pad, strict=True))
    strides = np.array(_flat_strides(shape))
    full = (1 << (1 << ndim)) - 1
    flats, kinds = [], []
    for block in blocks:
        c0 = block * b
        c1 = np.minimum(c0 + b, n + 1)
        window = np.zeros(tuple(c1 - c0 + 1), dtype=bool)
        lo = np.maximum(c0 - 1, 0)
        hi = np.minimum(c1, n)
        at = lo - (c0 - 1)
        window[tuple(slice(a, a + (h - low)) for a, low, h in zip(at, lo, hi, strict=True))] = mask[
            tuple(slice(low, h) for low, h in zip(lo, hi, strict=True))
        ]
        codes = _buffer_codes(window)[(slice(0, -1),) * ndim]  # the far faces wrap around
        positions = np.nonzero((codes != 0) & (codes != full))
        if positions[0].size:
            cells = np.stack(positions, axis=1) + (c0 - 1 + np.asarray(pad))
            flats.append(cells @ strides)
            kinds.append(codes[positions])
    cell_map = np.zeros(shape, dtype=bool)
    if not flats:
        return _PointSet(cell_map, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8))
    flat = np.concatenate(flats)
    order = np.argsort(flat, kind="stable")
    flat = flat[order]
    cell_map.ravel()[flat] = True
    return _PointSet(map=cell_map, flat=flat, kinds=np.concatenate(kinds)[order])


def _buffer_boundary(buffer: np.ndarray, connectivity: int) -> np.ndarray:
    """medpy's boundary voxels of a padded buffer: the voxels of the mask that the erosion by
    ``generate_binary_structure(ndim, connectivity)`` removes (an AND over the structure's
    flat shifts; outside the mask's box everything is 0, as ``binary_erosion``'s border)."""
    ndim = buffer.ndim
    if not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be 1..{ndim}, not {connectivity}")
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    strides = np.array(_flat_strides(buffer.shape))
    flat = buffer.ravel()
    eroded = flat.copy()
    for offset in np.argwhere(structure) - 1:
        shift = int(offset @ strides)
        # the cut-off ends are padding (0) in ``flat`` and so stay 0 in ``eroded``
        if shift > 0:
            np.logical_and(eroded[:-shift], flat[shift:], out=eroded[:-shift])
        elif shift < 0:
            np.logical_and(eroded[-shift:], flat[:shift], out=eroded[-shift:])
    return (flat & ~eroded).reshape(buffer.shape)


def boundary_voxels(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """medpy's surface voxels: ``mask ^ binary_erosion(mask, structure, iterations=1)`` with
    ``structure = generate_binary_structure(ndim, connectivity)`` and 0 outside the array
    (``binary_erosion``'s default ``border_value``); medpy/metric/binary.py,
    ``__surface_distances``."""
    mask = np.asarray(mask)
    boundary = _buffer_boundary(_buffer(mask, None, (1,) * mask.ndim), connectivity)
    return boundary[tuple(slice(1, n + 1) for n in mask.shape)]


def _boundary_set(buffer: np.ndarray, connectivity: int) -> _PointSet:
    voxels = _buffer_boundary(buffer, connectivity)
    flat = np.flatnonzero(voxels)
    return _PointSet(map=voxels, flat=flat, kinds=np.zeros(flat.size, dtype=np.uint8))


def _pad_for(shells: _Shells) -> tuple[int, ...]:
    return tuple(r + 1 for r in shells.reach)


# --------------------------------------------------------------------------------------------
# The search


def any_at_offsets(target: np.ndarray, points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """For each flat index in ``points``: is ``target`` set at any of the flat ``offsets``?"""
    hit = np.zeros(points.size, dtype=bool)
    index = np.empty_like(points)
    for offset in offsets:
        np.add(points, offset, out=index)
        hit |= target[index]
    return hit


def _histogram(
    distances: list[float], rows: list[np.ndarray], beyond: np.ndarray, known_below_mm: float
) -> DirectedDistances:
    return DirectedDistances(
        distances_mm=np.asarray(distances, dtype=np.float64),
        counts=np.asarray(rows, dtype=np.int64).reshape(len(rows), beyond.size),
        beyond=beyond,
        known_below_mm=float(known_below_mm) if beyond.any() else math.inf,
    )


def _quantile_known(d: DirectedDistances, weights: np.ndarray, fraction: float) -> bool:
    """Does the resolved part hold ``fraction`` of the weight, with a margin for rounding?"""
    if d.complete:
        return True
    known = float(d.counts.sum(axis=0) @ weights)
    total = float(d.totals @ weights)
    return known >= fraction * total * (1.0 + _QUANTILE_MARGIN)


def _pooled_quantile_known(a: DirectedDistances, b: DirectedDistances, fraction: float) -> bool:
    """numpy's linear percentile reads the sorted values at floor(h) and floor(h) + 1,
    h = fraction * (n - 1): both must be resolved (the search runs both directions in step)."""
    if a.complete and b.complete:
        return True
    n = int(a.totals.sum() + b.totals.sum())
    known = int(a.counts.sum() + b.counts.sum())
    return math.floor(fraction * (n - 1)) + 2 <= known


def _determined(
    need: _Need, a: DirectedDistances, b: DirectedDistances, weights: np.ndarray
) -> bool:
    """Are all metrics of ``need`` computable from these partial histograms?"""
    if a.complete and b.complete:
        return True
    if need.complete:
        return False
    if need.radius_mm >= min(a.known_below_mm, b.known_below_mm):
        return False
    for fraction in need.fractions:
        if need.pooled:
            if not _pooled_quantile_known(a, b, fraction):
                return False
        elif not (_quantile_known(a, weights, fraction) and _quantile_known(b, weights, fraction)):
            return False
    return True


def _start_points(
    points: _PointSet, other: _PointSet, n_kinds: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unresolved flat indices, their kinds, counts of the shared points, counts of all)."""
    shared = other.map.ravel()[points.flat]
    totals = np.bincount(points.kinds, minlength=n_kinds)
    zero = np.bincount(points.kinds[shared], minlength=n_kinds)
    return points.flat[~shared], points.kinds[~shared], zero, totals


def _nearest_by_tree(
    query: np.ndarray,
    target_flat: np.ndarray,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    bound_mm: float,
) -> np.ndarray:
    """Exact distance (mm) from the flat indices ``query`` to the nearest of the flat indices
    ``target_flat`` in an array of ``shape`` (inf beyond ``bound_mm``): the k-d tree finds the
    nearest point, :func:`edt_distance_mm` measures it."""
    target = np.stack(np.unravel_index(target_flat, shape), axis=1)
    points = np.stack(np.unravel_index(query, shape), axis=1)
    scale = np.asarray(spacing, dtype=np.float64)
    tree = cKDTree(target * scale, balanced_tree=False, compact_nodes=False)
    if math.isinf(bound_mm):
        _, nearest = tree.query(points * scale, k=1)
    else:
        # a margin so that rounding inside the tree cannot lose a point at the bound; the exact
        # distances decide below
        _, nearest = tree.query(points * scale, k=1, distance_upper_bound=bound_mm * 1.000001)
    distances = np.full(len(query), np.inf)
    found = nearest < len(target)
    distances[found] = edt_distance_mm(points[found] - target[nearest[found]], spacing)
    distances[distances > bound_mm] = np.inf
    return distances


def _pair_search(
    a: _PointSet,
    b: _PointSet,
    spacing: tuple[float, ...],
    shells: _Shells,
    n_kinds: int,
    weights: np.ndarray,
    need: _Need,
) -> tuple[DirectedDistances, DirectedDistances]:
    """Distances a -> b and b -> a between two point sets on maps of the same shape, padded
    by at least ``shells.reach`` (see the module docstring)."""
    sides = [_start_points(a, b, n_kinds), _start_points(b, a, n_kinds)]
    if sides[0][3].sum() == 0 or sides[1][3].sum() == 0:
        return _with_empty(sides, n_kinds)
    targets = (b.map.ravel(), a.map.ravel())
    fronts = [(s[0], s[1]) for s in sides]
    rows: list[list[np.ndarray]] = [[sides[0][2]], [sides[1][2]]]
    distances = [0.0]
    totals = (sides[0][3], sides[1][3])
    shape = a.map.shape
    strides = np.array([int(np.prod(shape[i + 1 :])) for i in range(len(shape))])
    flat_offsets = shells.offsets @ strides

    def partial(side: int, known_below: float) -> DirectedDistances:
        counted = np.sum(rows[side], axis=0)
        return _histogram(distances, rows[side], totals[side] - counted, known_below)

    known_below = math.inf
    for shell in range(len(shells.distances_mm)):
        known_below = shells.distances_mm[shell]
        unresolved = fronts[0][0].size + fronts[1][0].size
        # (the radius test first: it is free, and most shells stop there)
        if unresolved == 0 or (
            need.radius_mm < known_below
            and _determined(need, partial(0, known_below), partial(1, known_below), weights)
        ):
            break
        offsets = flat_offsets[shells.starts[shell] : shells.starts[shell + 1]]
        for side in (0, 1):
            points, kinds = fronts[side]
            if points.size == 0:
                rows[side].append(np.zeros(n_kinds, dtype=np.int64))
                continue
            hit = any_at_offsets(targets[side], points, offsets)
            rows[side].append(np.bincount(kinds[hit], minlength=n_kinds))
            fronts[side] = (points[~hit], kinds[~hit])
        distances.append(float(shells.distances_mm[shell]))
    else:
        known_below = float(np.nextafter(shells.radius_mm, np.inf))
    a_to_b, b_to_a = partial(0, known_below), partial(1, known_below)
    if _determined(need, a_to_b, b_to_a, weights):
        return a_to_b, b_to_a
    # beyond the shells: a k-d tree, unbounded unless only NSD tolerances remain to be covered
    unbounded = need.complete or not _determined(
        replace(need, radius_mm=-1.0), a_to_b, b_to_a, weights
    )
    bound = math.inf if unbounded else need.radius_mm
    targets_flat = (b.flat, a.flat)
    out = []
    for side, d in ((0, a_to_b), (1, b_to_a)):
        points, kinds = fronts[side]
        if points.size == 0:
            out.append(replace(d, known_below_mm=math.inf))
            continue
        tail = _nearest_by_tree(points, targets_flat[side], shape, spacing, bound)
        found = np.isfinite(tail)
        values, inverse = np.unique(tail[found], return_inverse=True)
        extra = np.bincount(
            inverse * n_kinds + kinds[found], minlength=values.size * n_kinds
        ).reshape(values.size, n_kinds)
        beyond = np.bincount(kinds[~found], minlength=n_kinds)
        out.append(
            DirectedDistances(
                distances_mm=np.concatenate([d.distances_mm, values]),
                counts=np.concatenate([d.counts, extra]),
                beyond=beyond,
                known_below_mm=math.inf if unbounded else float(np.nextafter(bound, np.inf)),
            )
        )
    return out[0], out[1]


def _with_empty(sides: list[tuple], n_kinds: int) -> tuple[DirectedDistances, DirectedDistances]:
    """DeepMind's convention when a set is empty: its list is empty, the other's all inf."""
    out = []
    for side in (0, 1):
        totals = sides[side][3]
        if totals.sum() == 0:
            counts = np.zeros((0, n_kinds), dtype=np.int64)
            distances = np.zeros(0)
        else:
            counts = totals[np.newaxis].astype(np.int64)
            distances = np.array([np.inf])
        out.append(DirectedDistances(distances, counts, np.zeros(n_kinds, np.int64), math.inf))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# Surfel distances (DeepMind) and boundary-voxel distances (medpy)


def _surfel_need(
    tolerances_mm: Iterable[float], percentiles: Iterable[float], complete: bool
) -> _Need:
    tolerances = [float(t) for t in tolerances_mm]
    fractions = tuple(float(p) / 100.0 for p in percentiles)
    return _Need(
        radius_mm=max(tolerances, default=-1.0),
        fractions=fractions,
        complete=complete or any(f >= 1.0 for f in fractions),
    )


def _surfel_points(mask: np.ndarray, pad: Sequence[int]) -> _PointSet:
    """The surfels of a mask (cropped to where it lives), sparse or dense, whichever is
    cheaper for it (the same set either way)."""
    sparse = _sparse_surfel_set(mask, pad)
    return sparse if sparse is not None else _surfel_set(_buffer(mask, None, pad))


def surfel_distances(
    pred: Any,
    gt: Any,
    spacing_mm: Sequence[float],
    *,
    tolerances_mm: Iterable[float] = (),
    percentiles: Iterable[float] = (),
    complete: bool = True,
    box: Box | None = None,
) -> SurfelDistances:
    """Surfel distances of two masks (2-D or 3-D, ``spacing_mm`` in array axis order), DeepMind
    style (``compute_surface_distances``; see the module docstring).

    By default every distance is computed. With ``complete=False`` only what NSD at
    ``tolerances_mm`` and the Hausdorff ``percentiles`` need (100 = HD implies complete).
    ``box``: a box holding both masks, if the caller knows one (else the masks' own box).
    """
    p, g = _bool_pair(pred, gt)
    spacing = _spacing_tuple(spacing_mm, p.ndim)
    if box is None:
        box = _union_box(_mask_box(p), _mask_box(g))
    if box is None:
        box = tuple(slice(0, 0) for _ in p.shape)
    need = _surfel_need(tolerances_mm, percentiles, complete)
    shells = _search_shells(spacing, need)
    pad = _pad_for(shells)
    n_kinds = 1 << (1 << p.ndim)
    areas = surfel_area_table(spacing)
    a, b = _surfel_points(p[box], pad), _surfel_points(g[box], pad)
    pg, gp = _pair_search(a, b, spacing, shells, n_kinds, areas, need)
    return SurfelDistances(pred_to_gt=pg, gt_to_pred=gp, areas_mm2=areas)


def boundary_distances(
    pred: Any,
    gt: Any,
    spacing_mm: Sequence[float],
    connectivity: int = 1,
    *,
    percentiles: Iterable[float] = (),
    complete: bool = True,
) -> BoundaryDistances:
    """Boundary-voxel distances of two masks, medpy style (medpy/metric/binary.py,
    ``__surface_distances``, both directions; see the module docstring). ``connectivity``: 1
    (6-neighbourhood in 3-D), 2 (18) or 3 (26), as medpy's argument.

    By default every distance is computed; with ``complete=False`` only what the pooled
    ``percentiles`` need (:func:`medpy_percentile_hausdorff_mm`).
    """
    p, g = _bool_pair(pred, gt)
    spacing = _spacing_tuple(spacing_mm, p.ndim)
    box = _union_box(_mask_box(p), _mask_box(g))
    if box is None:
        box = tuple(slice(0, 0) for _ in p.shape)
    need = _boundary_need(percentiles, complete)
    shells = _search_shells(spacing, need)
    pad = _pad_for(shells)
    return _boundary_distances_buffers(
        _buffer(p[box], None, pad), _buffer(g[box], None, pad), spacing, connectivity, shells, need
    )


def _boundary_need(percentiles: Iterable[float], complete: bool) -> _Need:
    fractions = tuple(float(q) / 100.0 for q in percentiles)
    return _Need(
        fractions=fractions, pooled=True, complete=complete or any(f >= 1 for f in fractions)
    )


def _boundary_distances_buffers(
    p: np.ndarray,
    g: np.ndarray,
    spacing: tuple[float, ...],
    connectivity: int,
    shells: _Shells,
    need: _Need,
) -> BoundaryDistances:
    a, b = _boundary_set(p, connectivity), _boundary_set(g, connectivity)
    pg, gp = _pair_search(a, b, spacing, shells, 1, np.ones(1), need)
    return BoundaryDistances(pred_to_gt=pg, gt_to_pred=gp, connectivity=connectivity)


# --------------------------------------------------------------------------------------------
# Metrics from the distances: DeepMind's formulas on DeepMind's sorted lists


def sorted_lists(d: DirectedDistances, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, weights) of every point, sorted by distance then weight, as DeepMind's
    ``compute_surface_distances`` returns them (``_sort_distances_surfels``). Points not
    computed (``beyond``) come last with distance ``inf``."""
    order = np.argsort(weights, kind="stable")
    counts = np.concatenate([d.counts, d.beyond[np.newaxis]])[:, order].ravel()
    group_distances = np.append(d.distances_mm, np.inf)
    distances = np.repeat(np.repeat(group_distances, order.size), counts)
    values = np.repeat(np.tile(weights[order], group_distances.size), counts)
    return distances, values


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(
            f"{what} needs distances that were not computed; ask surfel_distances / "
            "boundary_distances for them (tolerances_mm, percentiles or complete=True)"
        )


def surface_dice(sd: SurfelDistances, tolerance_mm: float) -> float:
    """NSD at ``tolerance_mm``: ``(sum_{d_g <= t} a_g + sum_{d_p <= t} a_p) / (sum a_g +
    sum a_p)``, DeepMind ``compute_surface_dice_at_tolerance`` (NaN when both are empty)."""
    t = float(tolerance_mm)
    _require(t < min(sd.pred_to_gt.known_below_mm, sd.gt_to_pred.known_below_mm), "NSD")
    d_g, a_g = sorted_lists(sd.gt_to_pred, sd.areas_mm2)
    d_p, a_p = sorted_lists(sd.pred_to_gt, sd.areas_mm2)
    overlap_gt = np.sum(a_g[d_g <= t])
    overlap_pred = np.sum(a_p[d_p <= t])
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((overlap_gt + overlap_pred) / (np.sum(a_g) + np.sum(a_p)))


def _directed_percentile(d: DirectedDistances, weights: np.ndarray, percentile: float) -> float:
    """DeepMind ``compute_robust_hausdorff``, one direction: the first sorted distance whose
    cumulated weight fraction reaches ``percentile / 100``; inf for an empty list."""
    distances, values = sorted_lists(d, weights)
    if distances.size == 0:
        return math.inf
    cumulated = np.cumsum(values) / np.sum(values)
    index = int(np.searchsorted(cumulated, percentile / 100.0))
    index = min(index, distances.size - 1)
    _require(index < distances.size - int(d.beyond.sum()), f"the {percentile}th percentile")
    return float(distances[index])


def robust_hausdorff_mm(sd: SurfelDistances, percentile: float) -> float:
    """Hausdorff distance at ``percentile`` (95 = HD95, 100 = HD), area-weighted per direction,
    the larger of the two (DeepMind ``compute_robust_hausdorff``)."""
    return max(
        _directed_percentile(sd.gt_to_pred, sd.areas_mm2, float(percentile)),
        _directed_percentile(sd.pred_to_gt, sd.areas_mm2, float(percentile)),
    )


def average_surface_distances_mm(sd: SurfelDistances) -> tuple[float, float]:
    """(gt -> pred, pred -> gt) area-weighted mean distances, ``sum(d a) / sum(a)`` per
    direction (DeepMind ``compute_average_surface_distance``, same order)."""
    _require(sd.gt_to_pred.complete and sd.pred_to_gt.complete, "the average distance")
    out = []
    for d in (sd.gt_to_pred, sd.pred_to_gt):
        distances, values = sorted_lists(d, sd.areas_mm2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(float(np.sum(distances * values) / np.sum(values)))
    return out[0], out[1]


def assd_mm(sd: SurfelDistances) -> float:
    """ASSD as :func:`segloop.core.metrics.average_symmetric_surface_distance_mm` defines it: the
    surfel distances of both surfaces pooled and weighted by area, ``(sum a_p d_p + sum a_g d_g)
    / (sum a_p + sum a_g)`` (DeepMind's two directed means weighted by the surface areas)."""
    _require(sd.gt_to_pred.complete and sd.pred_to_gt.complete, "ASSD")
    d_p, a_p = sorted_lists(sd.pred_to_gt, sd.areas_mm2)
    d_g, a_g = sorted_lists(sd.gt_to_pred, sd.areas_mm2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float((np.sum(d_p * a_p) + np.sum(d_g * a_g)) / (np.sum(a_p) + np.sum(a_g)))


def _voxel_lists(bd: BoundaryDistances) -> tuple[np.ndarray, np.ndarray]:
    ones = np.ones(1)
    return sorted_lists(bd.pred_to_gt, ones)[0], sorted_lists(bd.gt_to_pred, ones)[0]


def medpy_hausdorff_mm(bd: BoundaryDistances) -> float:
    """medpy ``hd``: the largest boundary-voxel distance of both directions."""
    _require(bd.pred_to_gt.complete and bd.gt_to_pred.complete, "HD")
    a, b = _voxel_lists(bd)
    return float(max(a.max(initial=-math.inf), b.max(initial=-math.inf)))


def medpy_percentile_hausdorff_mm(bd: BoundaryDistances, percentile: float = 95.0) -> float:
    """medpy ``hd95``: ``numpy.percentile`` (linear interpolation) of the boundary-voxel
    distances of both directions pooled (``hstack``)."""
    a, b = _voxel_lists(bd)
    ok = (bd.pred_to_gt.complete and bd.gt_to_pred.complete) or _pooled_quantile_known(
        bd.pred_to_gt, bd.gt_to_pred, float(percentile) / 100.0
    )
    _require(ok, f"the pooled {percentile}th percentile")
    return float(np.percentile(np.concatenate([a, b]), float(percentile)))


def medpy_assd_mm(bd: BoundaryDistances, pooling: str = "directed_means") -> float:
    """medpy ``assd``. ``pooling="directed_means"``: ``mean((asd(a, b), asd(b, a)))``, the mean
    of the two directed mean distances (medpy <= 0.4.0, and what the challenges' scripts pinned
    to it compute); ``"pooled"``: the mean of both directions' distances concatenated (medpy
    0.5.2, commit a1a4466 "Issue #131 fix"; they differ when the boundaries have different
    sizes)."""
    if pooling not in ASSD_POOLINGS:
        raise ValueError(f"pooling must be one of {ASSD_POOLINGS}, not {pooling!r}")
    _require(bd.pred_to_gt.complete and bd.gt_to_pred.complete, "ASSD")
    a, b = _voxel_lists(bd)
    if pooling == "pooled":
        return float(np.concatenate([a, b]).mean())
    return float(np.mean((a.mean(), b.mean())))


# --------------------------------------------------------------------------------------------
# Many classes: one pass for counts, intersections and boxes; then per-class crops


def _box_of_slices(slices: tuple[slice, ...], z0: int) -> Box:
    return (slice(slices[0].start + z0, slices[0].stop + z0),) + tuple(slices[1:])


def _class_index_map(labels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Compact class indices: 1 + position in ``class_ids`` for those labels, 0 for any other.
    A lookup table for 8- and 16-bit unsigned labels, else a sorted search."""
    ids = np.asarray(class_ids, dtype=np.int64)
    dtype = np.uint8 if len(ids) < 255 else np.uint16
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if labels.dtype in (np.uint8, np.uint16):
        size = 1 << (8 * labels.dtype.itemsize)
        valid = (ids >= 0) & (ids < size)
        table = np.zeros(size, dtype=dtype)
        table[ids[valid]] = (np.flatnonzero(valid) + 1).astype(dtype)
        return np.take(table, labels)
    order = np.argsort(ids)
    sorted_ids = ids[order]
    where = np.clip(np.searchsorted(sorted_ids, labels), 0, len(ids) - 1)
    found = sorted_ids[where] == labels
    return np.where(found, order[where] + 1, 0).astype(dtype)


def _check_label_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred)
    g = np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground-truth shape {g.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"label maps must be 2-D or 3-D, got shape {p.shape}")
    for name, array in (("prediction", p), ("ground truth", g)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise ValueError(f"{name} label map must be integer, not {array.dtype}")
    return p, g


def _offset(box: Box | None, outer: Box) -> Box | None:
    """``box`` (in the coordinates of the crop ``outer``) in the full array's."""
    if box is None:
        return None
    return tuple(
        slice(o.start + b.start, o.start + b.stop) for b, o in zip(box, outer, strict=True)
    )


def _stats_per_class_pass(p: np.ndarray, g: np.ndarray, class_id: int) -> ClassStats:
    """One class's statistics by comparisons, on the box of both maps' non-zero voxels when the
    class is not 0 (it lives there; max-projections find that box without a full-volume
    temporary, which matters for a few lesions in a whole-body volume)."""
    outer = tuple(slice(0, n) for n in p.shape)
    if class_id != 0:
        found = _union_box(nonzero_box(p), nonzero_box(g))
        if found is None:
            return ClassStats(int(class_id), 0, 0, 0, None, None)
        outer = found
    pm = p[outer] == class_id
    gm = g[outer] == class_id
    pred_box, gt_box = _mask_box(pm), _mask_box(gm)
    box = _union_box(pred_box, gt_box)
    both = int(np.count_nonzero(pm[box] & gm[box])) if box is not None else 0
    return ClassStats(
        class_id=int(class_id),
        pred_voxels=int(np.count_nonzero(pm[pred_box])) if pred_box is not None else 0,
        gt_voxels=int(np.count_nonzero(gm[gt_box])) if gt_box is not None else 0,
        intersection_voxels=both,
        pred_box=_offset(pred_box, outer),
        gt_box=_offset(gt_box, outer),
    )


def _slab_codes(
    p: np.ndarray, g: np.ndarray, ids: Sequence[int], k: int, identity: bool
) -> np.ndarray:
    """The codes ``i_pred * k + i_gt`` of a slab (see :func:`multiclass_overlap`)."""
    if identity:  # uint8 maps whose classes are their own indices: no remapping pass
        codes = p.astype(np.uint16)
        np.multiply(codes, np.uint16(k), out=codes)
        return np.add(codes, g, out=codes)
    code_dtype = np.uint16 if k * k <= 1 << 16 else np.uint32
    codes = _class_index_map(p, ids).astype(code_dtype)
    np.multiply(codes, code_dtype(k), out=codes)
    return np.add(codes, _class_index_map(g, ids), out=codes)


def multiclass_overlap(pred: Any, gt: Any, class_ids: Sequence[int]) -> dict[int, ClassStats]:
    """Voxel counts, intersections and bounding boxes of every class in ``class_ids`` of two
    label maps (same shape; 2-D maps count as one slice), from one pass over the volume.

    The pass goes slab by slab (``SLAB_SLICES`` slices, so the temporaries stay small): each
    voxel gets the code ``i_pred * k + i_gt`` (i = 1 + position of its label in ``class_ids``
    and k = K + 1 for K classes, 0 for other labels; for uint8 maps and classes 1..255 simply
    i = label and k = 256); ``np.bincount`` of the codes is the confusion matrix (counts: its
    row and column sums; intersection: its diagonal) and ``ndimage.find_objects`` of the codes
    gives the box of every (pred class, gt class) pair, whose unions are the class boxes. With
    at most ``FEW_CLASSES`` classes one comparison pass per class is faster, same result.
    """
    p, g = _check_label_pair(pred, gt)
    ids = [int(c) for c in class_ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"class_ids {ids} repeat a class")
    if len(ids) <= FEW_CLASSES:
        return {c: _stats_per_class_pass(p, g, c) for c in ids}
    if p.ndim == 3 and _fortran_only(p) and _fortran_only(g):
        # nibabel's arrays: slabs along the last axis are the contiguous ones
        stats = multiclass_overlap(p.T, g.T, ids)
        return {
            c: replace(s, pred_box=_reversed(s.pred_box), gt_box=_reversed(s.gt_box))
            for c, s in stats.items()
        }
    volume_p = p if p.ndim == 3 else p[np.newaxis]
    volume_g = g if g.ndim == 3 else g[np.newaxis]
    identity = p.dtype == np.uint8 and g.dtype == np.uint8 and all(0 < c < 256 for c in ids)
    k = 256 if identity else len(ids) + 1
    index_of = {c: (c if identity else i + 1) for i, c in enumerate(ids)}
    confusion = np.zeros(k * k, dtype=np.int64)
    pair_boxes: dict[int, Box] = {}
    for z0 in range(0, volume_p.shape[0], SLAB_SLICES):
        slab = slice(z0, z0 + SLAB_SLICES)
        codes = _slab_codes(volume_p[slab], volume_g[slab], ids, k, identity)
        counts = np.bincount(codes.ravel(), minlength=k * k)
        confusion += counts
        objects = ndimage.find_objects(codes, max_label=k * k - 1)
        for code in np.flatnonzero(counts[1:]) + 1:
            found = _box_of_slices(objects[code - 1], z0)
            pair_boxes[int(code)] = _union_box(pair_boxes.get(int(code)), found)
    matrix = confusion.reshape(k, k)
    pred_boxes: dict[int, Box | None] = {}
    gt_boxes: dict[int, Box | None] = {}
    for code, box in pair_boxes.items():
        pred_boxes[code // k] = _union_box(pred_boxes.get(code // k), box)
        gt_boxes[code % k] = _union_box(gt_boxes.get(code % k), box)
    out = {}
    for class_id in ids:
        index = index_of[class_id]
        pred_box, gt_box = pred_boxes.get(index), gt_boxes.get(index)
        if p.ndim == 2:
            pred_box = None if pred_box is None else pred_box[1:]
            gt_box = None if gt_box is None else gt_box[1:]
        out[class_id] = ClassStats(
            class_id=class_id,
            pred_voxels=int(matrix[index].sum()),
            gt_voxels=int(matrix[:, index].sum()),
            intersection_voxels=int(matrix[index, index]),
            pred_box=pred_box,
            gt_box=gt_box,
        )
    return out


def class_boxes(pred: Any, gt: Any, class_ids: Sequence[int]) -> dict[int, tuple[Box | None, bool]]:
    """Per class of ``class_ids``: (the box holding the class in both maps, whether the ground
    truth has it), from one ``ndimage.find_objects`` pass over each map.

    What the Sakinis user needs of many classes (its clicks depend only on the class's masks
    inside a box that holds them): cheaper than :func:`multiclass_overlap`, which also counts
    the intersections (about a third of its time on a 100-class 512 x 512 x 300 map). Labels
    that are not positive integers (none in practice) fall back to it.
    """
    p, g = _check_label_pair(pred, gt)
    ids = [int(c) for c in class_ids]
    if not ids or min(ids) < 1 or p.dtype == bool or g.dtype == bool:
        stats = multiclass_overlap(p, g, ids)
        return {c: (stats[c].box, stats[c].gt_voxels > 0) for c in ids}
    top = max(ids)
    pred_objects = ndimage.find_objects(p, max_label=top)
    gt_objects = ndimage.find_objects(g, max_label=top)
    out = {}
    for class_id in ids:
        in_pred, in_gt = pred_objects[class_id - 1], gt_objects[class_id - 1]
        out[class_id] = (_union_box(in_pred, in_gt), in_gt is not None)
    return out


def _fortran_only(array: np.ndarray) -> bool:
    return array.flags.f_contiguous and not array.flags.c_contiguous


def _reversed(box: Box | None) -> Box | None:
    return None if box is None else tuple(reversed(box))
