"""Pictures of a case: what the model predicted, where the robot user clicked, how it scored.

Pure drawing: every function takes arrays and records that the caller has already read (a case
result's ``steps[].new_interactions`` and ``steps[].metrics``, the image, label and kept
predictions) and returns a :class:`matplotlib.figure.Figure`. Figures are built directly on
matplotlib's Agg canvas, never through ``pyplot``, so no global state is touched, no display is
needed, and figures can be drawn from several threads at once.

Arrays are in the project's (z, y, x) order, and so is ``spacing_mm``. The slices are shown in
array orientation, which for SimpleITK's LPS images with an identity direction is the
radiological one: axial with x (patient left) to the right and y (posterior) down, coronal and
sagittal with z (superior for head-up scans) up.

Colours (constants below) were chosen to stay apart on a grey image and for most colour-blind
readers: the ground truth is a yellow contour, the prediction a translucent blue fill with a
blue contour, positive clicks green plus signs, negative clicks red crosses (shape as well as
colour tells them apart).
"""

from __future__ import annotations

import base64
import io
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cc3d
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from scipy import ndimage

from segloop.core.metrics.registry import parse_metric_name
from segloop.core.records import Interaction, SegloopError
from segloop.core.results import CaseResult

Voxel = tuple[int, int, int]
ViewName = Literal["axial", "coronal", "sagittal"]

GT_COLOUR = "#ffd400"
PREDICTION_COLOUR = "#1e90ff"
POSITIVE_COLOUR = "#22dd22"
NEGATIVE_COLOUR = "#ff2a2a"
PREDICTION_ALPHA = 0.38
FADED_ALPHA = 0.3
# A click is "on" the shown slice when it lies at most this many voxels off it; interactions
# farther away are drawn faded, so the reader sees where they are without mistaking them.
NEAR_SLICE_VOXELS = 1
# The default grey window fits the pixels this close to the objects (see _window_pixels).
WINDOW_RADIUS_MM = 10.0
# PNG metadata matplotlib would otherwise fill with its version: dropping it makes the bytes
# depend on the picture alone (Agg writes no timestamp into PNGs).
PNG_METADATA: dict[str, str | None] = {"Software": None}


@dataclass(frozen=True)
class _View:
    """One orthogonal plane: the array axis it cuts, the axes it shows, and which way is up."""

    name: str
    normal: int
    rows: int
    cols: int
    origin: Literal["upper", "lower"]


VIEWS: dict[str, _View] = {
    "axial": _View("axial", normal=0, rows=1, cols=2, origin="upper"),
    "coronal": _View("coronal", normal=1, rows=0, cols=2, origin="lower"),
    "sagittal": _View("sagittal", normal=2, rows=0, cols=1, origin="lower"),
}
_AXIS_NAMES = ("z", "y", "x")


# --------------------------------------------------------------------------- record helpers


def format_metrics(
    step_metrics: Mapping[str, Mapping[str, Any]], names: Sequence[str] | None = None
) -> str:
    """One line of a step's metrics, e.g. ``"Dice 0.83 · NSD@2 0.91 · HD95 3.2 mm"``.

    ``step_metrics`` is a case result's ``steps[k].metrics`` (metric -> {"mean": value, ...});
    ``names`` picks and orders the metrics (default: all, in the record's order). A missing or
    None value prints as "n/a".
    """
    parts = []
    for name in names if names is not None else list(step_metrics):
        value = (step_metrics.get(name) or {}).get("mean")
        parts.append(f"{_metric_label(name)} {_metric_value(name, value)}")
    return " · ".join(parts)


def _metric_label(name: str) -> str:
    return parse_metric_name(name).title.removesuffix(" mm")


def _metric_value(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    unit = parse_metric_name(name).unit
    return f"{value:.3g} {unit}" if unit else f"{value:.2f}"


def interactions_of(case_result: CaseResult, up_to_step: int | None = None) -> list[Interaction]:
    """The interactions of a case result (``steps[].new_interactions``) given up to a step."""
    return [
        interaction
        for step in case_result.steps
        if up_to_step is None or step.step <= up_to_step
        for interaction in step.new_interactions or ()
    ]


# --------------------------------------------------------------------------- what to show


def intensity_window(
    values: np.ndarray, low: float = 1.0, high: float = 99.0
) -> tuple[float, float]:
    """A robust grey window: the ``low``-th and ``high``-th percentiles of the finite values.

    The figures pass the pixels they show, so a crop into the liver gets a liver window rather
    than one stretched from air to bone. Large arrays are subsampled with a fixed stride
    (deterministic) to about a million values, which moves percentiles by far less than a grey
    level.
    """
    flat = np.asarray(values).ravel()
    stride = max(1, flat.size // 1_000_000)
    sample = flat[::stride].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    vmin, vmax = (float(v) for v in np.percentile(sample, [low, high]))
    if vmax <= vmin:  # a flat image: any window shows it; keep it non-degenerate
        vmax = vmin + 1.0
    return vmin, vmax


def _window_pixels(
    image: np.ndarray,
    label: np.ndarray,
    cuts: Sequence[tuple[_View, int, tuple[int, int, int, int], np.ndarray | None]],
    spacing_mm: Sequence[float],
    radius_mm: float = WINDOW_RADIUS_MM,
) -> np.ndarray:
    """The image values a grey window should fit: the shown pixels near the objects.

    cuts: (view, slice index, extent, prediction) per panel. Pixels within ``radius_mm`` of
    the ground truth or the prediction in the shown crops, so a liver lesion is judged against
    the liver, not against air and bone; all shown pixels when the panels hold (almost) no
    object.
    """
    near_parts, all_parts = [], []
    for view, index, (row_lo, row_hi, col_lo, col_hi), prediction in cuts:
        crop = (slice(row_lo, row_hi + 1), slice(col_lo, col_hi + 1))
        values = _slice(image, view, index)[crop]
        objects = _slice(label, view, index)[crop] != 0
        if prediction is not None:
            objects |= _slice(prediction, view, index)[crop] != 0
        all_parts.append(values.ravel())
        if objects.any():
            sampling = (spacing_mm[view.rows], spacing_mm[view.cols])
            near = ndimage.distance_transform_edt(~objects, sampling=sampling) <= radius_mm
            near_parts.append(values[near])
    near_values = np.concatenate(near_parts) if near_parts else np.empty(0)
    return near_values if near_values.size >= 64 else np.concatenate(all_parts)


def interaction_anchor(interaction: Interaction) -> Voxel:
    """The voxel that stands for an interaction: a click's point, a box's centre, the middle
    voxel of a scribble, a polygon's vertex mean (all in its own slice)."""
    coords = np.asarray(interaction.coords, dtype=np.float64)
    if interaction.kind == "click" or len(coords) == 1:
        point = coords[0]
    elif interaction.kind == "box":
        point = coords.mean(axis=0)
    elif interaction.kind == "scribble":
        point = coords[len(coords) // 2]
    else:
        point = coords.mean(axis=0)
    return tuple(int(round(v)) for v in point)  # type: ignore[return-value]


def focus_voxel(
    label: np.ndarray,
    prediction: np.ndarray | None,
    interactions: Sequence[Interaction],
    step: int,
    spacing_mm: Sequence[float],
    prefer: Literal["click", "error"] = "click",
) -> Voxel:
    """Where a step's picture cuts the volume.

    The newest interaction of ``step`` (the robot user's reaction to the previous prediction,
    so the place the reader wants to see; its newest positive one if it has any); without one, or with ``prefer="error"``, the centre
    of the largest connected error region (prediction differs from label); without errors, the
    centre of the largest ground-truth object; else the volume centre. A "centre" is the
    region's voxel closest to its centroid, so it lies inside even a curved region.
    """
    own = [i for i in interactions if i.step == step]
    if own and prefer == "click":
        # A step that adds a positive and a negative click (autoPET, TriALS) is shown through
        # the positive one: it lies on the target, the negative one often far off in background.
        positive = [i for i in own if i.positive]
        return _clip_voxel(interaction_anchor((positive or own)[-1]), label.shape)
    if prediction is not None:
        error = np.asarray(prediction) != np.asarray(label)
        if error.any():
            return _largest_region_centre(error, spacing_mm)
    if np.any(label):
        return _largest_region_centre(np.asarray(label) != 0, spacing_mm)
    return tuple(n // 2 for n in label.shape)  # type: ignore[return-value]


def _clip_voxel(point: Sequence[int], shape: Sequence[int]) -> Voxel:
    clipped = (int(min(max(p, 0), n - 1)) for p, n in zip(point, shape, strict=True))
    return tuple(clipped)  # type: ignore[return-value]


def _largest_region_centre(mask: np.ndarray, spacing_mm: Sequence[float]) -> Voxel:
    components = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    counts = np.bincount(components.ravel())
    counts[0] = 0
    voxels = np.argwhere(components == int(np.argmax(counts)))
    scale = np.asarray(spacing_mm, dtype=np.float64)
    centroid = voxels.mean(axis=0)
    nearest = np.argmin((((voxels - centroid) * scale) ** 2).sum(axis=1))
    return tuple(int(v) for v in voxels[nearest])  # type: ignore[return-value]


def _view_window(
    view: _View,
    shape: Sequence[int],
    spacing_mm: Sequence[float],
    masks: Sequence[np.ndarray],
    points: Sequence[Sequence[int]],
    zoom: bool,
) -> tuple[int, int, int, int]:
    """Rows and columns shown (inclusive: row_lo, row_hi, col_lo, col_hi) for one view.

    With ``zoom``, the bounding box of the masks' projection and the points, widened by half
    its size and at least 15 mm a side, so small objects are not lost in a large slice; an
    axis whose window would cover most of the slice is shown whole.
    """
    full = (0, shape[view.rows] - 1, 0, shape[view.cols] - 1)
    if not zoom:
        return full
    lows, highs = [], []
    for mask in masks:
        if mask is not None and np.any(mask):
            projected = np.any(mask, axis=view.normal)
            rows = np.flatnonzero(projected.any(axis=1))
            cols = np.flatnonzero(projected.any(axis=0))
            lows.append((rows[0], cols[0]))
            highs.append((rows[-1], cols[-1]))
    for point in points:
        lows.append((point[view.rows], point[view.cols]))
        highs.append((point[view.rows], point[view.cols]))
    if not lows:
        return full
    window = []
    for index, axis in enumerate((view.rows, view.cols)):
        lo = min(p[index] for p in lows)
        hi = max(p[index] for p in highs)
        size = shape[axis]
        margin = max(0.5 * (hi - lo + 1), 15.0 / spacing_mm[axis])
        lo, hi = int(math.floor(lo - margin)), int(math.ceil(hi + margin))
        if hi - lo + 1 >= 0.7 * size:
            lo, hi = 0, size - 1
        else:  # slide the window back inside the image rather than cutting it
            lo, hi = max(lo, 0) - max(hi - (size - 1), 0), min(hi, size - 1) - min(lo, 0)
            lo, hi = max(lo, 0), min(hi, size - 1)
        window.extend((lo, hi))
    return tuple(window)  # type: ignore[return-value]


# --------------------------------------------------------------------------- drawing one panel


def _slice(volume: np.ndarray, view: _View, index: int) -> np.ndarray:
    # np.take keeps the remaining axes in increasing order, which is (rows, cols) for VIEWS.
    return np.take(volume, index, axis=view.normal)


def _draw_mask_contours(
    ax: Axes, plane: np.ndarray, colour: str, linewidth: float, halo: bool = False
) -> None:
    """Outline each class of a 2-D label plane at the voxel borders (level 0.5 between centres).

    The plane is padded by one background voxel so objects touching the image edge, and planes
    one voxel thick (a flat volume's coronal view), still get closed outlines. ``halo`` puts a
    thin black edge on both sides of the line, so a yellow line stays visible on bright tissue.
    """
    effects = (
        [patheffects.withStroke(linewidth=linewidth + 1.6, foreground="black")] if halo else []
    )
    for class_id in np.unique(plane):
        if class_id == 0:
            continue
        padded = np.pad((plane == class_id).astype(np.float32), 1)
        rows = np.arange(-1, plane.shape[0] + 1)
        cols = np.arange(-1, plane.shape[1] + 1)
        contours = ax.contour(
            cols, rows, padded, levels=[0.5], colors=[colour], linewidths=linewidth, zorder=3
        )
        contours.set_path_effects(effects)


def _interaction_style(interaction: Interaction) -> tuple[str, str]:
    """(colour, marker) of an interaction's polarity: green plus to include, red cross not to."""
    if interaction.positive:
        return POSITIVE_COLOUR, "P"
    return NEGATIVE_COLOUR, "X"


def _draw_interactions(
    ax: Axes,
    view: _View,
    index: int,
    interactions: Sequence[Interaction],
    current_step: int,
    marker_size: float,
) -> None:
    """Clicks as markers numbered by step, boxes as rectangles, scribbles/polygons as lines.

    Interactions of ``current_step`` get a white edge (the newest), older ones a black edge;
    those more than NEAR_SLICE_VOXELS off the slice are faded and unnumbered.
    """
    outline = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for interaction in interactions:
        colour, marker = _interaction_style(interaction)
        edge = "white" if interaction.step == current_step else "black"
        coords = np.asarray(interaction.coords, dtype=np.float64)
        offsets = np.abs(coords[:, view.normal] - index)
        if interaction.kind == "box":
            lo, hi = coords.min(axis=0), coords.max(axis=0)
            near = (
                lo[view.normal] - NEAR_SLICE_VOXELS <= index <= hi[view.normal] + NEAR_SLICE_VOXELS
            )
            ax.add_patch(
                Rectangle(
                    (lo[view.cols] - 0.5, lo[view.rows] - 0.5),
                    hi[view.cols] - lo[view.cols] + 1,
                    hi[view.rows] - lo[view.rows] + 1,
                    fill=False,
                    edgecolor=colour,
                    linewidth=1.8,
                    linestyle="-" if near else "--",
                    alpha=1.0 if near else FADED_ALPHA,
                    zorder=4,
                )
            )
            anchor, is_near = (lo[view.cols] - 0.5, lo[view.rows] - 0.5), near
        elif interaction.kind in ("scribble", "polygon"):
            closed = interaction.kind == "polygon"
            cols, rows = coords[:, view.cols], coords[:, view.rows]
            if closed:
                cols, rows, offsets = (np.append(a, a[0]) for a in (cols, rows, offsets))
            ax.plot(cols, rows, color=colour, linewidth=1.5, alpha=FADED_ALPHA, zorder=4)
            # Overdraw the part on the slice at full strength (NaN breaks the line elsewhere).
            on = offsets <= NEAR_SLICE_VOXELS
            ax.plot(
                np.where(on, cols, np.nan),
                np.where(on, rows, np.nan),
                color=colour,
                linewidth=2.2,
                zorder=5,
                path_effects=outline,
            )
            middle = len(cols) // 2
            anchor, is_near = (cols[middle], rows[middle]), bool(on.any())
        else:
            point = coords[0]
            is_near = bool(offsets[0] <= NEAR_SLICE_VOXELS)
            anchor = (point[view.cols], point[view.rows])
            ax.plot(
                [anchor[0]],
                [anchor[1]],
                marker=marker,
                markersize=marker_size if is_near else marker_size * 0.7,
                markerfacecolor=colour,
                markeredgecolor=edge,
                markeredgewidth=1.2,
                linestyle="none",
                alpha=1.0 if is_near else FADED_ALPHA,
                zorder=6 if is_near else 3,
            )
        if is_near:
            ax.annotate(
                str(interaction.step),
                anchor,
                xytext=(0.45 * marker_size, 0.45 * marker_size),
                textcoords="offset points",
                color="white",
                fontsize=max(6.0, 0.75 * marker_size),
                fontweight="bold",
                path_effects=outline,
                zorder=7,
            )


def grey_rgb(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """A 2-D slice as RGB grey levels (uint8) in ``window``. matplotlib would scale float
    pixels itself, in float arithmetic whose last bit varied with the process's history (the
    same figure drew one grey level apart, in the first of two identical sites); uint8 RGB is
    drawn as is, so the same slice gives the same PNG bytes."""
    low, high = float(window[0]), float(window[1])
    scaled = (np.asarray(plane, dtype=np.float64) - low) / (high - low if high > low else 1.0)
    grey = np.round(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _draw_panel(
    ax: Axes,
    view: _View,
    index: int,
    image: np.ndarray,
    label: np.ndarray,
    prediction: np.ndarray | None,
    interactions: Sequence[Interaction],
    spacing_mm: Sequence[float],
    window: tuple[float, float],
    extent: tuple[int, int, int, int],
    current_step: int,
    marker_size: float,
) -> None:
    """One slice: grey image, translucent prediction, GT contour, interactions, fixed limits."""
    aspect = spacing_mm[view.rows] / spacing_mm[view.cols]
    common = {"aspect": aspect, "origin": view.origin, "interpolation": "nearest"}
    ax.imshow(grey_rgb(_slice(image, view, index), window), **common)
    if prediction is not None:
        predicted = _slice(prediction, view, index)
        if np.any(predicted):
            fill = np.ma.masked_equal((predicted != 0).astype(np.uint8), 0)
            ax.imshow(
                fill,
                cmap=ListedColormap([PREDICTION_COLOUR]),
                vmin=0,
                vmax=1,
                alpha=PREDICTION_ALPHA,
                **common,
            )
            _draw_mask_contours(ax, predicted, PREDICTION_COLOUR, 1.0)
    _draw_mask_contours(ax, _slice(label, view, index), GT_COLOUR, 1.8, halo=True)
    _draw_interactions(ax, view, index, interactions, current_step, marker_size)
    row_lo, row_hi, col_lo, col_hi = extent
    ax.set_xlim(col_lo - 0.5, col_hi + 0.5)
    if view.origin == "upper":
        ax.set_ylim(row_hi + 0.5, row_lo - 0.5)
    else:
        ax.set_ylim(row_lo - 0.5, row_hi + 0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _physical_ratio(
    view: _View, extent: tuple[int, int, int, int], spacing_mm: Sequence[float]
) -> float:
    """Width / height in mm of a panel, clamped so a one-slice volume still gets a panel."""
    row_lo, row_hi, col_lo, col_hi = extent
    width = (col_hi - col_lo + 1) * spacing_mm[view.cols]
    height = (row_hi - row_lo + 1) * spacing_mm[view.rows]
    return min(max(width / height, 0.25), 4.0)


def _legend_handles(interactions: Sequence[Interaction], has_prediction: bool) -> list[Any]:
    """Legend entries for what a figure can show (boxes and scribbles only when present)."""
    gt_line = Line2D([], [], color=GT_COLOUR, linewidth=1.8, label="ground truth")
    gt_line.set_path_effects([patheffects.withStroke(linewidth=3.4, foreground="black")])
    handles: list[Any] = [gt_line]
    if has_prediction:
        handles.append(
            Patch(
                facecolor=(*_rgb(PREDICTION_COLOUR), PREDICTION_ALPHA),
                edgecolor=PREDICTION_COLOUR,
                label="prediction",
            )
        )
    for positive in (True, False):
        handles.append(
            Line2D(
                [],
                [],
                marker="P" if positive else "X",
                markersize=9,
                markerfacecolor=POSITIVE_COLOUR if positive else NEGATIVE_COLOUR,
                markeredgecolor="black",
                linestyle="none",
                label=("positive" if positive else "negative") + " click (number: step)",
            )
        )
    kinds = {i.kind for i in interactions}
    if "box" in kinds:
        handles.append(Line2D([], [], color="grey", linewidth=1.8, label="box"))
    if kinds & {"scribble", "polygon"}:
        handles.append(Line2D([], [], color="grey", linewidth=2.2, label="scribble"))
    handles.append(
        Line2D(
            [],
            [],
            marker="P",
            markersize=7,
            markerfacecolor="grey",
            markeredgecolor="black",
            alpha=FADED_ALPHA,
            linestyle="none",
            label=f"faded: > {NEAR_SLICE_VOXELS} voxel off the slice",
        )
    )
    return handles


def _legend_columns(figure: Figure, count: int) -> int:
    """As many legend entries side by side as fit the figure's width (about 190 px each)."""
    width_px = figure.get_size_inches()[0] * figure.dpi
    return max(1, min(count, int(width_px // 190)))


def _rgb(colour: str) -> tuple[float, float, float]:
    value = int(colour.lstrip("#"), 16)
    return ((value >> 16) / 255, ((value >> 8) & 255) / 255, (value & 255) / 255)


def _check_arrays(image: np.ndarray, label: np.ndarray, *others: np.ndarray | None) -> None:
    if image.ndim != 3:
        raise SegloopError(f"picture: the image must be 3-D (z, y, x), got shape {image.shape}")
    for name, array in (("label", label), *((f"prediction {k}", a) for k, a in enumerate(others))):
        if array is not None and array.shape != image.shape:
            raise SegloopError(f"picture: {name} has shape {array.shape}, the image {image.shape}")


def _new_figure(width_in: float, height_in: float, dpi: int) -> Figure:
    """A figure on its own Agg canvas (no pyplot), sized to whole pixels."""
    width_px, height_px = int(round(width_in * dpi)), int(round(height_in * dpi))
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    figure.patch.set_facecolor("white")
    return figure


def _freeze_layout(figure: Figure) -> Figure:
    """Lay the figure out once and keep that layout.

    The constrained layout engine starts again from the current positions at every draw and
    moves them slightly, so a figure saved twice would give two different PNGs; frozen after
    one layout pass, every save is the same and the axes' transforms are final (the tests map
    voxels to pixels through them).
    """
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    # Snap every axes to whole pixels: the layout solver's positions differ in their last bits
    # with the process's font-cache history, which moved contours and image edges by a grey
    # level between two otherwise identical runs; whole pixels are the same every time.
    width_px, height_px = figure.canvas.get_width_height()
    for ax in figure.axes:
        box = ax.get_position(original=True)
        x0, x1 = round(box.x0 * width_px) / width_px, round(box.x1 * width_px) / width_px
        y0, y1 = round(box.y0 * height_px) / height_px, round(box.y1 * height_px) / height_px
        ax.set_position((x0, y0, x1 - x0, y1 - y0), which="both")
    return figure


# --------------------------------------------------------------------------- public figures


def case_step_figure(
    image: np.ndarray,
    label: np.ndarray,
    prediction: np.ndarray | None,
    interactions: Sequence[Interaction],
    spacing_mm: Sequence[float],
    step: int,
    metrics_text: str = "",
    *,
    case_id: str = "",
    focus: Sequence[int] | None = None,
    prefer: Literal["click", "error"] = "click",
    window: tuple[float, float] | None = None,
    zoom: bool = True,
    width_px: int = 1200,
    dpi: int = 100,
) -> Figure:
    """Axial, coronal and sagittal slices of one step of a case, through its newest click.

    image: one channel, (z, y, x); label: ground truth; prediction: the step's prediction
    (None if not kept: only the ground truth is drawn). interactions: those given so far
    (later steps' are ignored, so a case's full list may be passed). spacing_mm: (z, y, x),
    for the panels' physical aspect ratio. metrics_text: put in the title (see
    :func:`format_metrics`). focus: the voxel to cut through (default :func:`focus_voxel` with
    ``prefer``). window: grey levels (default :func:`intensity_window` of the shown pixels near
    the objects). zoom: crop every view to the objects and clicks with a margin (False: whole
    slices). The figure is ``width_px`` wide; its height follows from the panels' proportions.
    """
    image, label = np.asarray(image), np.asarray(label)
    prediction = None if prediction is None else np.asarray(prediction)
    _check_arrays(image, label, prediction)
    spacing = tuple(float(s) for s in spacing_mm)
    shown = [i for i in interactions if i.step <= step]
    if focus is None:
        focus = focus_voxel(label, prediction, shown, step, spacing, prefer)
    centre = _clip_voxel(focus, image.shape)
    points = [_clip_voxel(p, image.shape) for i in shown for p in i.coords] + [centre]
    views = [VIEWS[name] for name in ("axial", "coronal", "sagittal")]
    extents = [
        _view_window(v, image.shape, spacing, [label, prediction], points, zoom) for v in views
    ]
    cuts = [(v, centre[v.normal], e) for v, e in zip(views, extents, strict=True)]
    if window is None:
        pixels = _window_pixels(image, label, [(*c, prediction) for c in cuts], spacing)
        window = intensity_window(pixels)
    ratios = [_physical_ratio(v, e, spacing) for v, e in zip(views, extents, strict=True)]

    width_in = width_px / dpi
    panel_height_in = min((width_in - 0.4) / sum(ratios), 6.0)
    figure = _new_figure(width_in, panel_height_in + 1.2, dpi)
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": ratios})
    for ax, (view, index, extent) in zip(axes, cuts, strict=True):
        _draw_panel(
            ax, view, index, image, label, prediction, shown, spacing, window, extent, step, 11.0
        )
        ax.set_title(f"{view.name}  {_AXIS_NAMES[view.normal]} = {index}", fontsize=10)
    title = " · ".join(t for t in (case_id, f"step {step}", metrics_text) if t)
    figure.suptitle(title, fontsize=13, fontweight="bold")
    handles = _legend_handles(shown, prediction is not None)
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=_legend_columns(figure, len(handles)),
        fontsize=9,
        frameon=False,
        handletextpad=0.5,
        columnspacing=1.2,
    )
    return _freeze_layout(figure)


def case_strip_figure(
    image: np.ndarray,
    label: np.ndarray,
    predictions: Sequence[np.ndarray | None],
    interactions: Sequence[Interaction],
    spacing_mm: Sequence[float],
    captions: Sequence[str] | None = None,
    *,
    steps: Sequence[int] | None = None,
    case_id: str = "",
    view: ViewName = "axial",
    prefer: Literal["click", "error"] = "click",
    window: tuple[float, float] | None = None,
    zoom: bool = True,
    max_columns: int = 6,
    panel_px: int = 200,
    dpi: int = 100,
) -> Figure:
    """One small panel per step: the ``view`` slice through that step's focus (its newest
    click, or its largest error with ``prefer="error"``; see :func:`focus_voxel`) with the
    ground truth, that step's prediction and the clicks so far; ``captions[k]`` (e.g.
    ``format_metrics(metrics, ["dice"])``) under panel k.

    predictions[k] belongs to ``steps[k]`` (default: steps 0, 1, ...). All panels share one
    crop (``zoom``: the objects of every step and all clicks) and one grey window, so they
    compare directly. Panels wrap after ``max_columns``; each is ``panel_px`` wide.
    """
    image, label = np.asarray(image), np.asarray(label)
    predictions = [None if p is None else np.asarray(p) for p in predictions]
    _check_arrays(image, label, *predictions)
    if not predictions:
        raise SegloopError("picture: a strip needs at least one step's prediction")
    step_numbers = list(steps) if steps is not None else list(range(len(predictions)))
    if len(step_numbers) != len(predictions) or (
        captions is not None and len(captions) != len(predictions)
    ):
        raise SegloopError(
            f"picture: {len(predictions)} predictions, {len(step_numbers)} steps and "
            f"{len(captions) if captions is not None else 'no'} captions do not match"
        )
    spacing = tuple(float(s) for s in spacing_mm)
    plane = VIEWS[view]
    points = [_clip_voxel(p, image.shape) for i in interactions for p in i.coords]
    extent = _view_window(plane, image.shape, spacing, [label, *predictions], points, zoom)
    panels = []  # (step, prediction, interactions so far, slice index)
    for step, prediction in zip(step_numbers, predictions, strict=True):
        shown = [i for i in interactions if i.step <= step]
        centre = focus_voxel(label, prediction, shown, step, spacing, prefer)
        panels.append((step, prediction, shown, centre[plane.normal]))
    if window is None:
        cuts = [(plane, index, extent, prediction) for _, prediction, _, index in panels]
        window = intensity_window(_window_pixels(image, label, cuts, spacing))
    ratio = _physical_ratio(plane, extent, spacing)

    columns = min(len(panels), max(1, max_columns))
    rows = math.ceil(len(panels) / columns)
    panel_w = panel_px / dpi
    panel_h = panel_w / ratio + 0.55  # room for the step title and the caption
    figure = _new_figure(columns * panel_w + 0.2, rows * panel_h + 0.9, dpi)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for k, (ax, (step, prediction, shown, index)) in enumerate(zip(axes, panels, strict=False)):
        _draw_panel(
            ax, plane, index, image, label, prediction, shown, spacing, window, extent, step, 8.0
        )
        ax.set_title(f"step {step}  ({_AXIS_NAMES[plane.normal]} = {index})", fontsize=8.5)
        if captions is not None:
            ax.set_xlabel(captions[k], fontsize=9, fontweight="bold")
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    focus_words = "newest click" if prefer == "click" else "largest error"
    subject = f"{view} slice through each step's {focus_words}"
    title = " · ".join(t for t in (case_id, subject) if t)
    figure.suptitle(title, fontsize=11, fontweight="bold")
    handles = _legend_handles(interactions, any(p is not None for p in predictions))
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=_legend_columns(figure, len(handles)),
        fontsize=8,
        frameon=False,
    )
    return _freeze_layout(figure)


# --------------------------------------------------------------------------- output


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes at its own size and dpi.

    In a notebook, ``IPython.display.Image(png_bytes(figure))`` shows it inline whatever the
    matplotlib backend. Same figure content -> same bytes: the PNG carries no software version
    or time.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, metadata=PNG_METADATA)
    return buffer.getvalue()


def png_data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for an HTML ``<img src=...>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(figure)).decode("ascii")


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure as a PNG (via a temporary file, so a reader never sees half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Process and thread in the name: two threads saving one path never share a temporary.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(png_bytes(figure))
    os.replace(temporary, path)
    return path
