"""ScribblePrompt's click and box sampling (Wong et al., ScribblePrompt §3.2, App. 0.B.1).

- Random clicks: drawn uniformly from every voxel of the region (all components together).
- Interior border region clicks: the region y is blurred, ỹ = min(y, y ∘ G_k), and clicks are
  drawn uniformly from {ỹ ∈ [a, b]} inside y, with a, b ~ U[ỹ_min, ỹ_max) over y (sorted):
  a band just inside the boundary whose depth varies from draw to draw. The paper gives no
  kernel size; ``sigma_voxels`` (default 2) is ours. A draw [a, b] that falls between two levels
  of ỹ is widened to the next level above a, so the band is never empty.
- "Since users are inclined to spread out their clicks, we impose a minimum separation of a few
  pixels": a candidate closer than ``min_spacing_voxels`` to a click already drawn this step is
  redrawn (at most ``MAX_TRIES`` candidates per click; fewer clicks when the region is full).
- Bounding boxes: the minimum box, each dimension enlarged by r ~ U{0..jitter_voxels} (20 in the
  paper, pixels), r split at random between the two sides, clipped to the image.

Every draw comes from the generator the caller passes (``rng_for(...)``): deterministic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segloop.protocols.base import Coord, bounding_box

MAX_TRIES = 100


def border_band(region: np.ndarray, rng: np.random.Generator, sigma_voxels: float) -> np.ndarray:
    """The interior border band {ỹ ∈ [a, b]} ∩ region of ScribblePrompt's border clicks."""
    box = bounding_box(region)
    band = np.zeros(region.shape, dtype=bool)
    if box is None:
        return band
    margin = int(np.ceil(4 * sigma_voxels)) + 1  # the blur's reach: outside it ỹ is exact
    lo = [max(0, a - margin) for a in box[0]]
    hi = [min(n, b + margin) for n, b in zip(region.shape, box[1], strict=True)]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    y = region[crop].astype(np.float64)
    blurred = np.minimum(y, ndimage.gaussian_filter(y, sigma_voxels, mode="constant"))
    values = blurred[y > 0]
    low, high = float(values.min()), float(values.max())
    a, b = np.sort(rng.uniform(low, high, 2)) if high > low else (low, high)
    if not ((values >= a) & (values <= b)).any():
        b = values[values >= a].min()  # [a, b] between two levels: widen it to the next level
    band[crop] = (y > 0) & (blurred >= a) & (blurred <= b)
    return band


def spread_clicks(
    region: np.ndarray, count: int, rng: np.random.Generator, min_spacing_voxels: float = 0.0
) -> list[Coord]:
    """Up to ``count`` voxels of ``region`` drawn uniformly, each at least
    ``min_spacing_voxels`` (Euclidean, voxel units) from those drawn before it."""
    candidates = np.flatnonzero(np.asarray(region, dtype=bool).ravel())
    picked: list[Coord] = []
    if candidates.size == 0:
        return picked
    tries = 0
    while len(picked) < count and tries < MAX_TRIES * max(count, 1):
        tries += 1
        point = np.unravel_index(int(candidates[int(rng.integers(candidates.size))]), region.shape)
        coord = tuple(int(v) for v in point)
        if all(
            np.hypot.reduce(np.subtract(coord, other)) >= min_spacing_voxels and coord != other
            for other in picked
        ):
            picked.append(coord)  # type: ignore[arg-type]
    return picked


def jittered_box(
    mask: np.ndarray, rng: np.random.Generator, jitter_voxels: int = 20
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Inclusive (lo, hi) corners of the mask's box, each dimension enlarged by U{0..jitter}."""
    box = bounding_box(mask)
    if box is None:
        return None
    lo = np.asarray(box[0])
    hi = np.asarray(box[1]) - 1
    grow = rng.integers(0, jitter_voxels + 1, mask.ndim)
    low_share = np.array([rng.integers(0, g + 1) for g in grow])
    upper = np.asarray(mask.shape) - 1
    lo = np.clip(lo - low_share, 0, upper)
    hi = np.clip(hi + (grow - low_share), 0, upper)
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi)
