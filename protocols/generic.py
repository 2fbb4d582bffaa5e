"""Generic robot users on an eligibility mask (thesis §8.2.3.2; ScribblePrompt §3.2, App. 0.B.1).

A robot user picks its interaction from an eligibility mask M = f(image, label, prediction).
Every user here works in two regimes:

- initially (step 0): M = the class's ground truth, and the interactions are positive;
- reactively (steps >= 1 with ``reactive=True``): M = the error region of the class's last
  prediction (a missing prediction counts as empty); a click's sign is the ground truth at
  the click (as Sakinis), a scribble/polygon's sign is that of the error type it is drawn on
  (false negative -> positive, false positive -> negative), whichever has the larger component.

``reactive=False`` means the same for every kind (clicks, boxes, scribbles, polygons): the
user interacts at step 0 only and gives nothing at later steps. Every request holds all
interactions so far, so the step-0 prompt stays with the model; repeating it at each step would
only duplicate it (a centre click is the same voxel every time) or add prompts whose number
grows with the step count instead of with the model's errors. A prompt schedule fixed in
advance is what the challenge protocols (autoPET, TriALS, ToothFairy3) are; ``SequenceUser``
combines a step-0 user with a reactive one.

Users:
- ``EligibilityClickUser``: {largest, random} component x {center, boundary, random} point
  on the label (initial) or the error (reactive), or on any region a task writes as
  ``eligibility`` (``segloop.protocols.eligibility``: label, error, extra masks, channel
  thresholds and their set operations; the click's sign is the ground truth where it lands)
  (six styles; center = argmax EDT(M), boundary = argmin(EDT(M) ⊙ M)), ``clicks_per_step``
  clicks per class and step, one per component (largest first, or in random order). Of
  several EDT maxima (a flat lesion: every voxel of a 2-slice slab is 1 voxel from the
  background) the centre is the one nearest the component's centroid, remaining ties the first
  in C order (``center_tie_order="centroid"``; "zyx" / "xyz" take the first maximum in that
  array order), so the click lands where a person would put it, not on a corner.
- ``BoxUser``: perfect (the exact bounding box), careful (every side pushed outwards by
  U[5 %, 10 %] of the extent, rounded up, the same on both sides of an axis) or sloppy (every
  side moved independently by U[5 %, 10 %] of the extent, rounded, at least one voxel, inwards
  or outwards at random; an axis one voxel thick cannot shrink); at step 0
  around the class's ground truth; with ``reactive=True`` also at later steps, around the
  largest component of the larger error type (a positive box on missed foreground, a negative
  box on a false positive), none for a perfect prediction.
- ``ScribbleUser`` (ScribblePrompt): line (a straight line between two random points of M, kept
  where it lies in M), centerline (the Zhang-Suen skeleton of M) and contour (the boundary of
  {min(M, G_k * M) >= h}, h random) in the axial slice where M is largest; centerline and
  contour scribbles are broken into pieces by a smooth random mask (each piece one scribble).
  Zhang-Suen thinning erases some small or compact shapes entirely (a 2x2 square, a 4x5 block
  minus a corner, small ellipses): a piece of M whose skeleton vanished gets its centre pixel
  (the 2D EDT maximum nearest its centroid) as its centerline, so a present target always gets
  a scribble.
  ScribblePrompt's random elastic deformation is not applied: our scribbles stay exactly in M.
- ``PolygonUser``: N vertices evenly spaced (random phase) along the traced outer boundary of
  M's largest component in one slice (2D data: the only slice).
- ``SequenceUser``: one user for step 0 (e.g. a box), another for the later steps.
- ``TogetherUser``: several users' interactions at the same step.
Every random draw comes from ``rng_for(seed, case, class, step, <style>)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from segloop.core.records import Case, Interaction, SegloopError
from segloop.protocols.base import (
    TIE_ORDERS,
    Component,
    boundary_point,
    bounding_box,
    center_point,
    connected_components,
    largest_component,
    random_point,
    rng_for,
)
from segloop.protocols.eligibility import check_region, region_mask
from segloop.protocols.sampling import border_band, jittered_box, spread_clicks

Coord2 = tuple[int, int]
#: center/boundary/random: one click per component (largest or random first); uniform/border:
#: ScribblePrompt's random and interior-border clicks over the whole region (protocols.sampling)
PLACEMENTS = ("center", "boundary", "random", "uniform", "border")


def _prediction(case: Case, previous_prediction: np.ndarray | None) -> np.ndarray:
    if previous_prediction is None:
        return np.zeros(case.shape, dtype=np.uint8)
    if tuple(previous_prediction.shape) != case.shape:
        raise SegloopError(
            f"case {case.case_id}: previous prediction has shape "
            f"{tuple(previous_prediction.shape)}, the image {case.shape}"
        )
    return previous_prediction


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise SegloopError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _to_json(user: Any, protocol: str) -> dict[str, Any]:
    data = {k: v for k, v in asdict(user).items() if not k.startswith("_") and k != "name"}
    return {"protocol": protocol, **data}


# --------------------------------------------------------------------------- clicks
@dataclass(frozen=True)
class EligibilityClickUser:
    """Six click styles on the label (initial) or the error region (reactive)."""

    component: str = "largest"
    placement: str = "center"
    clicks_per_step: int = 1
    reactive: bool = True
    edt_spacing_aware: bool = False
    center_tie_order: str = "centroid"
    eligibility: Any = None  # a region (protocols.eligibility) instead of label, then error
    count_range: tuple[int, int] | None = None  # uniform/border: n ~ U{min..max} per step
    min_spacing_voxels: float = 0.0  # uniform/border: between the clicks of one step
    border_sigma_voxels: float = 2.0  # border: the Gaussian blur of the region
    name: str = "clicks"

    def __post_init__(self) -> None:
        _check(self.component, ("largest", "random"), "clicks: component")
        _check(self.placement, PLACEMENTS, "clicks: placement")
        if self.count_range is not None:
            values = tuple(self.count_range) if isinstance(self.count_range, list | tuple) else ()
            integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            if len(values) != 2 or not integers or not 0 <= values[0] <= values[1]:
                raise SegloopError(
                    f"clicks: count_range must be [min, max], 0 <= min <= max, not {self.count_range!r}"
                )
            object.__setattr__(self, "count_range", values)
        if not self.min_spacing_voxels >= 0 or not self.border_sigma_voxels > 0:
            raise SegloopError("clicks: min_spacing_voxels must be >= 0, border_sigma_voxels > 0")
        _check(self.center_tie_order, TIE_ORDERS, "clicks: center_tie_order")
        if self.eligibility is not None:
            check_region(self.eligibility, "clicks: eligibility")

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, "clicks")

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        reactive = self.reactive and step > 0
        if step > 0 and not reactive:
            return ()  # non-reactive: step 0 only (module docstring)
        prediction = _prediction(case, previous_prediction) if reactive else None
        spacing = case.spacing_mm if self.edt_spacing_aware else None
        out = []
        for class_id in sorted(classes):
            truth = case.label == class_id
            if self.eligibility is not None:
                mask = region_mask(self.eligibility, case, class_id, prediction)
            else:
                mask = (prediction == class_id) != truth if reactive else truth
            rng = rng_for(
                seed, case.case_id, class_id, step, f"clicks/{self.component}/{self.placement}"
            )
            if self.placement in ("uniform", "border"):  # ScribblePrompt: the whole region
                count = self.clicks_per_step
                if self.count_range is not None:
                    count = int(rng.integers(self.count_range[0], self.count_range[1] + 1))
                region = mask
                if self.placement == "border":
                    region = border_band(mask, rng, self.border_sigma_voxels)
                for point in spread_clicks(region, count, rng, self.min_spacing_voxels):
                    positive = bool(truth[point])
                    out.append(Interaction("click", int(class_id), positive, step, (point,)))
                continue
            for component in self._components(mask, rng):
                if self.placement == "center":
                    point = center_point(component, spacing, tie_order=self.center_tie_order)
                elif self.placement == "boundary":
                    point = boundary_point(component, rng, spacing)
                else:
                    point = random_point(component, rng)
                positive = bool(truth[point])
                out.append(Interaction("click", int(class_id), positive, step, (point,)))
        return tuple(out)

    def _components(self, mask: np.ndarray, rng: np.random.Generator) -> list[Component]:
        components = list(connected_components(mask))
        if self.component == "largest":
            order = sorted(range(len(components)), key=lambda i: -components[i].size)  # stable
        else:
            order = [int(i) for i in rng.permutation(len(components))]
        return [components[i] for i in order[: max(0, self.clicks_per_step)]]


# --------------------------------------------------------------------------- boxes
def styled_box(
    mask: np.ndarray, style: str, rng: np.random.Generator
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Inclusive (lo, hi) corners of the mask's bounding box in the given style (§8.2.3.2)."""
    box = bounding_box(mask)
    if box is None:
        return None
    lo = np.asarray(box[0], dtype=float)
    hi = np.asarray(box[1], dtype=float) - 1
    extent = hi - lo + 1
    if style == "careful":
        grow = np.ceil(rng.uniform(0.05, 0.10, mask.ndim) * extent)
        lo, hi = lo - grow, hi + grow
    elif style == "sloppy":
        # at least one voxel, as careful boxes: 5-10 % of 5 voxels or less rounds to 0
        moves = np.maximum(1.0, np.rint(rng.uniform(0.05, 0.10, (2, mask.ndim)) * extent))
        signs = rng.choice([-1.0, 1.0], size=(2, mask.ndim))
        lo, hi = lo + signs[0] * moves[0], hi + signs[1] * moves[1]
        crossed = lo > hi
        middle = np.floor((lo + hi) / 2)
        lo[crossed], hi[crossed] = middle[crossed], middle[crossed]
    elif style != "perfect":
        raise SegloopError(f"box style must be perfect, careful or sloppy, not {style!r}")
    upper = np.asarray(mask.shape) - 1
    lo = np.clip(lo, 0, upper).astype(int)
    hi = np.clip(hi, 0, upper).astype(int)
    return tuple(int(v) for v in lo), tuple(int(v) for v in hi)


@dataclass(frozen=True)
class BoxUser:
    """One box per class present in the ground truth at step 0 (and per error, if reactive)."""

    style: str = "perfect"
    reactive: bool = False
    jitter_voxels: int = 20  # style "jitter" (ScribblePrompt): each dimension + U{0..20}
    name: str = "box"

    def __post_init__(self) -> None:
        _check(self.style, ("perfect", "careful", "sloppy", "jitter"), "box: style")
        if not isinstance(self.jitter_voxels, int) or self.jitter_voxels < 0:
            raise SegloopError(
                f"box: jitter_voxels must be an integer >= 0, not {self.jitter_voxels!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, "box")

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        reactive = self.reactive and step > 0
        if step > 0 and not reactive:
            return ()  # non-reactive: step 0 only (module docstring)
        prediction = _prediction(case, previous_prediction) if reactive else None
        out = []
        for class_id in sorted(classes):
            truth = case.label == class_id
            if reactive:
                region, positive = _reactive_region(truth, prediction == class_id)
                component = largest_component(region)
                mask = None if component is None else component.full_mask()
            else:
                mask, positive = truth, True
            if mask is None:
                continue
            rng = rng_for(seed, case.case_id, class_id, step, f"box/{self.style}")
            if self.style == "jitter":
                box = jittered_box(mask, rng, self.jitter_voxels)
            else:
                box = styled_box(mask, self.style, rng)
            if box is not None:
                out.append(Interaction("box", int(class_id), positive, step, box))  # type: ignore[arg-type]
        return tuple(out)


# --------------------------------------------------------------------------- 2D helpers
NEIGHBOURS_CW = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))


def _moore_step(padded: np.ndarray, current: Coord2, back: int) -> tuple[Coord2, int] | None:
    """From ``current`` (backtrack direction ``back``), the next boundary pixel clockwise."""
    for k in range(1, 9):
        d = (back + k) % 8
        candidate = (current[0] + NEIGHBOURS_CW[d][0], current[1] + NEIGHBOURS_CW[d][1])
        if padded[candidate]:
            before = NEIGHBOURS_CW[(d - 1) % 8]
            prev = (current[0] + before[0], current[1] + before[1])
            return candidate, NEIGHBOURS_CW.index((prev[0] - candidate[0], prev[1] - candidate[1]))
    return None


def trace_boundary(mask2d: np.ndarray) -> list[Coord2]:
    """Ordered outer boundary of the component holding the first pixel in raster order.

    Moore-neighbour tracing with Jacob's stopping criterion (back at the start pixel about to
    repeat the first move).
    """
    padded = np.pad(np.asarray(mask2d, dtype=bool), 1)
    if not padded.any():
        return []
    start = tuple(int(v) for v in np.unravel_index(int(np.argmax(padded)), padded.shape))
    contour = [start]
    first = _moore_step(padded, start, 0)  # the west neighbour of the first pixel is background
    if first is not None:
        current, back = first
        for _ in range(4 * padded.size):
            if current == start:
                again = _moore_step(padded, current, back)
                if again is not None and again[0] == contour[1]:
                    break
            contour.append(current)
            current, back = _moore_step(padded, current, back)  # type: ignore[misc]
    return [(y - 1, x - 1) for y, x in contour]  # type: ignore[misc]


def zhang_suen_skeleton(mask2d: np.ndarray) -> np.ndarray:
    """1-pixel-wide skeleton (Zhang & Suen 1984 thinning), the thinning ScribblePrompt cites."""
    image = np.pad(np.asarray(mask2d, dtype=np.uint8), 1)
    while True:
        changed = False
        for phase in (0, 1):
            p = image
            n = [
                p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2],
            ]  # fmt: skip
            p2, p3, p4, p5, p6, p7, p8, p9 = (v.astype(np.int16) for v in n)
            count = p2 + p3 + p4 + p5 + p6 + p7 + p8 + p9
            seq = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            transitions = sum(
                ((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int16) for i in range(8)
            )
            if phase == 0:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (p[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & cond
            if remove.any():
                image[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


def centerline_pixels(plane: np.ndarray) -> np.ndarray:
    """The Zhang-Suen skeleton of a 2D mask, with a fallback for pieces it erases entirely.

    Thinning deletes every pixel of some small or compact shapes (a 2x2 square, a 4x5 block
    minus a corner, 13 % of ellipses of radius 1-3.5 px): each 8-connected piece of the mask
    left without a skeleton pixel gets its centre pixel instead, the maximum of its 2D EDT
    nearest its centroid (``center_point``, ``tie_order="centroid"``).
    """
    plane = np.asarray(plane, dtype=bool)
    skeleton = zhang_suen_skeleton(plane)
    for piece in connected_components(plane, connectivity=8):
        if not (skeleton[piece.slices] & piece.mask).any():
            skeleton[center_point(piece, tie_order="centroid")] = True
    return skeleton


def line_pixels(a: Coord2, b: Coord2) -> list[Coord2]:
    """Pixels of the segment a-b (Bresenham), from a to b."""
    (y0, x0), (y1, x1) = a, b
    count = max(abs(y1 - y0), abs(x1 - x0)) + 1
    ys = np.rint(np.linspace(y0, y1, count)).astype(int)
    xs = np.rint(np.linspace(x0, x1, count)).astype(int)
    return [(int(y), int(x)) for y, x in zip(ys, xs, strict=True)]


def order_pixels(pixels: np.ndarray) -> list[list[Coord2]]:
    """Split a set of pixels into 8-connected pieces, each ordered as a walk from one end."""
    pieces = []
    for component in connected_components(pixels, connectivity=8):
        full = component.full_mask()
        remaining = {tuple(int(v) for v in p) for p in np.argwhere(full)}

        def degree(q: Coord2, pool: set = remaining) -> int:
            return sum((q[0] + dy, q[1] + dx) in pool for dy, dx in NEIGHBOURS_CW)

        start = min(remaining, key=lambda q: (degree(q) != 1, q))
        path = [start]
        remaining.discard(start)
        while remaining:
            y, x = path[-1]
            nxt = [(y + dy, x + dx) for dy, dx in NEIGHBOURS_CW if (y + dy, x + dx) in remaining]
            if not nxt:
                break  # a branch ends: the rest becomes its own piece below
            step = min(nxt, key=lambda q: (abs(q[0] - y) + abs(q[1] - x), q))
            path.append(step)
            remaining.discard(step)
        pieces.append(path)
        if remaining:
            rest = np.zeros(pixels.shape, bool)
            for q in remaining:
                rest[q] = True
            pieces.extend(order_pixels(rest))
    return pieces


def smooth_keep_mask(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """ScribblePrompt's breaking mask: blurred N(0, 1) noise thresholded at its mean (0)."""
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), sigma)
    return noise > 0


def _best_slice(mask: np.ndarray) -> int | None:
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.any() else None


def _reactive_region(truth: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, bool]:
    """The error type (false negatives -> positive, false positives -> negative) with the larger component."""
    missed = truth & ~prediction
    extra = prediction & ~truth
    sizes = []
    for region in (missed, extra):
        components = connected_components(region)
        sizes.append(max((c.size for c in components), default=0))
    return (missed, True) if sizes[0] >= sizes[1] else (extra, False)


# --------------------------------------------------------------------------- scribbles
def scribble_pixels(
    plane: np.ndarray, style: str, rng: np.random.Generator, fragment: bool
) -> np.ndarray:
    """The pixels of one scribble of the given style in a 2D mask (subset of the mask)."""
    if style == "line":
        points = np.argwhere(plane)
        a, b = (tuple(int(v) for v in points[int(rng.integers(len(points)))]) for _ in range(2))
        out = np.zeros(plane.shape, bool)
        for q in line_pixels(a, b):  # type: ignore[arg-type]
            out[q] = True
        return out & plane
    if style == "centerline":
        out = centerline_pixels(plane)
    elif style == "contour":
        sigma = max(1.0, 0.05 * max(plane.shape))
        blurred = np.minimum(
            plane.astype(float), ndimage.gaussian_filter(plane.astype(float), sigma)
        )
        inside = blurred[plane]
        level = (
            rng.uniform(inside.min(), inside.max()) if inside.max() > inside.min() else inside.min()
        )
        region = plane & (blurred >= level)
        if not region.any():
            region = plane
        out = region & ~ndimage.binary_erosion(region, border_value=0)
    else:
        raise SegloopError(f"scribble style must be line, centerline or contour, not {style!r}")
    if fragment and out.sum() > 4:
        broken = out & smooth_keep_mask(plane.shape, rng, sigma=max(1.0, 0.1 * max(plane.shape)))
        if broken.any():
            out = broken
    return out & plane


@dataclass(frozen=True)
class ScribbleUser:
    """ScribblePrompt-style scribbles in the axial slice where the eligibility mask is largest."""

    style: str = "line"
    fragment: bool = True
    reactive: bool = True
    name: str = "scribble"

    def __post_init__(self) -> None:
        _check(self.style, ("line", "centerline", "contour"), "scribble: style")

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, "scribble")

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        reactive = self.reactive and step > 0
        if step > 0 and not reactive:
            return ()  # non-reactive: step 0 only (module docstring)
        prediction = _prediction(case, previous_prediction) if reactive else None
        out = []
        for class_id in sorted(classes):
            truth = case.label == class_id
            mask, positive = (
                _reactive_region(truth, prediction == class_id) if reactive else (truth, True)
            )
            z = _best_slice(mask)
            if z is None:
                continue
            rng = rng_for(seed, case.case_id, class_id, step, f"scribble/{self.style}")
            pixels = scribble_pixels(mask[z], self.style, rng, self.fragment)
            for piece in order_pixels(pixels):
                coords = tuple((z, y, x) for y, x in piece)
                out.append(Interaction("scribble", int(class_id), positive, step, coords))
        return tuple(out)


# --------------------------------------------------------------------------- polygons
def polygon_vertices(plane: np.ndarray, count: int, rng: np.random.Generator) -> list[Coord2]:
    """``count`` vertices evenly spaced (random phase) along the largest component's boundary."""
    components = connected_components(plane, connectivity=8)
    if not components:
        return []
    largest = max(components, key=lambda c: c.size)
    contour = trace_boundary(largest.full_mask())
    if len(contour) <= count:
        return contour
    phase = rng.uniform(0.0, len(contour) / count)
    picks = (phase + np.arange(count) * len(contour) / count).astype(int) % len(contour)
    return [contour[int(i)] for i in picks]


@dataclass(frozen=True)
class PolygonUser:
    """N polygon vertices on the boundary of the eligibility mask, in one slice (2D data)."""

    num_vertices: int = 12
    reactive: bool = False
    name: str = "polygon"

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, "polygon")

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        reactive = self.reactive and step > 0
        if step > 0 and not reactive:
            return ()  # non-reactive: step 0 only (module docstring)
        prediction = _prediction(case, previous_prediction) if reactive else None
        out = []
        for class_id in sorted(classes):
            truth = case.label == class_id
            mask, positive = (
                _reactive_region(truth, prediction == class_id) if reactive else (truth, True)
            )
            z = _best_slice(mask)
            if z is None:
                continue
            rng = rng_for(seed, case.case_id, class_id, step, "polygon")
            vertices = polygon_vertices(mask[z], self.num_vertices, rng)
            if vertices:
                coords = tuple((z, y, x) for y, x in vertices)
                out.append(Interaction("polygon", int(class_id), positive, step, coords))
        return tuple(out)


# --------------------------------------------------------------------------- composition
@dataclass(frozen=True)
class SequenceUser:
    """``initial`` at step 0, ``then`` at every later step (e.g. a careful box, then clicks)."""

    initial: Any = field(default_factory=BoxUser)
    then: Any = field(default_factory=EligibilityClickUser)
    name: str = "sequence"

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": "sequence",
            "initial": self.initial.to_json(),
            "then": self.then.to_json(),
        }

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        user = self.initial if step == 0 else self.then
        return tuple(user.interactions(case, classes, step, previous_prediction, seed))


@dataclass(frozen=True)
class TogetherUser:
    """Several users at once: every user's interactions of the step, in order (e.g.
    ScribblePrompt's warm start, three random positive and three random negative clicks)."""

    users: tuple[Any, ...] = ()
    name: str = "together"

    def __post_init__(self) -> None:
        if not self.users:
            raise SegloopError("together: give at least one user in 'users'")
        object.__setattr__(self, "users", tuple(self.users))

    def to_json(self) -> dict[str, Any]:
        return {"protocol": "together", "users": [u.to_json() for u in self.users]}

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        return tuple(
            interaction
            for user in self.users
            for interaction in user.interactions(case, classes, step, previous_prediction, seed)
        )
