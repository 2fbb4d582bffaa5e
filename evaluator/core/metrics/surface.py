"""Surfels and their areas: the surface of a mask as DeepMind's surface-distance sees it.

SPEC "Metrics": every metric is spacing-aware and per class. Arrays are (z, y, x) and
``spacing_mm`` is in the same order (2-D arrays: (y, x)).

The surface of a mask lives on the grid of 2x2x2 voxel neighbourhoods ("cells", the dual grid
whose points sit at voxel corners). A cell whose 8 voxels are neither all inside nor all outside
holds a surface element ("surfel"). Its 8-bit neighbour code selects the area of the piece of
marching-cubes surface inside that cell: the same triangles as DeepMind's table (Nikolov et al.
2021, github.com/google-deepmind/surface-distance), generated below by a documented construction
and scaled by the voxel spacing.

The distances between surfels (and everything NSD, HD, HD95 and ASSD compute from them) are the
job of :mod:`segloop.core.metrics.surface_engine`, the one place that computes surface
distances (issue 16: its cost follows the disagreeing surface, not the volume).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np


def _polygon_triangulations(
    ring: Sequence[Any],
) -> list[list[tuple[Any, Any, Any]]]:
    """All triangulations of a polygon given by its vertices in ring order (Catalan many)."""
    if len(ring) < 3:
        return [[]]
    out = []
    for k in range(1, len(ring) - 1):  # the triangle on the edge (ring[-1], ring[0]) has apex k
        for left in _polygon_triangulations(ring[: k + 1]):
            for right in _polygon_triangulations(ring[k:]):
                out.append(left + right + [(ring[0], ring[k], ring[-1])])
    return out


def _triangle_vector(points: np.ndarray) -> np.ndarray:
    """Area vectors 0.5 (q - p) x (r - p) of triangles given as an (m, 3, 3) array."""
    return 0.5 * np.cross(points[:, 1] - points[:, 0], points[:, 2] - points[:, 0])


def _cell_pieces(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-cell geometry of every neighbour code, built by the rules above.

    Returns (vectors, codes): in 3-D, vectors[k] is the area vector of a triangle of code
    codes[k]; in 2-D, the vector from one end of a contour segment to the other. Voxel units,
    array axis order.
    """
    corners = list(itertools.product((0, 1), repeat=ndim))

    def bit(corner: tuple[int, ...]) -> int:
        return sum(c << (ndim - 1 - a) for a, c in enumerate(corner))

    edges = []
    for corner in corners:
        for axis in range(ndim):
            if corner[axis] == 0:
                other = tuple(1 if a == axis else c for a, c in enumerate(corner))
                edges.append((corner, other))
    if ndim == 2:
        faces = [edges]
    else:
        faces = [
            [e for e in edges if e[0][axis] == value and e[1][axis] == value]
            for axis in range(ndim)
            for value in (0, 1)
        ]

    def midpoint(edge: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[float, ...]:
        return tuple((p + q) / 2 for p, q in zip(edge[0], edge[1], strict=True))

    all_codes = (1 << len(corners)) - 1
    vectors: list[np.ndarray] = []
    codes: list[int] = []
    for code in range(1 << len(corners)):
        built = code if bin(code).count("1") <= len(corners) // 2 else all_codes ^ code  # rule 2
        inside = {c: bool((built >> bit(c)) & 1) for c in corners}
        segments = []
        for face in faces:  # rule 3
            crossed = [e for e in face if inside[e[0]] != inside[e[1]]]
            if len(crossed) == 2:
                segments.append((crossed[0], crossed[1]))
            elif len(crossed) == 4:
                face_corners = {c for e in face for c in e}
                for corner in sorted(c for c in face_corners if inside[c]):
                    touching = [e for e in crossed if corner in e]
                    segments.append((touching[0], touching[1]))
        if ndim == 2:
            for a, b in segments:
                vectors.append(np.subtract(midpoint(b), midpoint(a)))
                codes.append(code)
            continue
        neighbours: dict[Any, list[Any]] = {}
        for a, b in segments:
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
        unvisited = set(neighbours)
        for start in sorted(neighbours):
            if start not in unvisited:
                continue
            ring = [start]
            unvisited.discard(start)
            previous, current = None, start
            while True:
                following = next(n for n in neighbours[current] if n != previous)
                if following == start:
                    break
                ring.append(following)
                unvisited.discard(following)
                previous, current = current, following
            best_area, best = -1.0, np.zeros((0, 3))
            for triangulation in _polygon_triangulations([midpoint(e) for e in ring]):  # rule 4
                triangle_vectors = _triangle_vector(np.array(triangulation, dtype=np.float64))
                area = float(np.linalg.norm(triangle_vectors, axis=1).sum())
                if area > best_area + 1e-9:  # ties keep the first (equal areas at any spacing)
                    best_area, best = area, triangle_vectors
            vectors.extend(best)
            codes.extend([code] * len(best))
    return np.array(vectors, dtype=np.float64), np.array(codes, dtype=np.int64)


_CELL_PIECES = {ndim: _cell_pieces(ndim) for ndim in (2, 3)}


def surfel_area_table(spacing_mm: Sequence[float]) -> np.ndarray:
    """Surface area in mm^2 (3-D) or contour length in mm (2-D) of every neighbour code.

    Index = neighbour code of a 2x2x2 (2x2) cell, see the construction above; 256 (16) entries.
    3-D: sum over the code's triangles of |(v0 s1 s2, v1 s0 s2, v2 s0 s1)|, v the triangle's
    area vector in the unit cell and s = ``spacing_mm`` (DeepMind's formula); 2-D: sum of the
    segment lengths |(d0 s0, d1 s1)|. Equals DeepMind's
    ``create_table_neighbour_code_to_surface_area`` (``..._contour_length``) up to rounding,
    with the code's bits reversed (their corner order).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    ndim = spacing.size
    vectors, codes = _CELL_PIECES[ndim]
    if ndim == 3:
        scale = np.array(
            [spacing[1] * spacing[2], spacing[0] * spacing[2], spacing[0] * spacing[1]]
        )
    else:
        scale = spacing
    sizes = np.linalg.norm(vectors * scale, axis=1)
    return np.bincount(codes, weights=sizes, minlength=1 << (1 << ndim))
