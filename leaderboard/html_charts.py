"""The static site's charts: SVG line charts of the mean curves, drawn as markup (no script),
with series kept apart by a small offset, marker shapes and dash patterns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from segloop.core.metrics.registry import parse_metric_name
from segloop.core.results import aggregate
from segloop.leaderboard.board import Leaderboard
from segloop.leaderboard.html_cells import (
    PALETTE,
    column_label,
    direction_hint,
    format_number,
    is_missing,
    metric_label,
)
from segloop.leaderboard.html_tables import (
    task_classes,
)


def class_charts(board: Leaderboard, task: str) -> list[dict[str, Any]]:
    """For a multi-class task, one chart per metric and class: the class's mean over cases at
    each step, one line per submission."""
    classes = task_classes(board, task)
    if len(classes) < 2:
        return []
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    order = list(board.rankings[task].table()["submission"])
    charts = []
    for metric in metrics:
        for key, name in classes.items():
            series = []
            for submission in order:
                results = list(board.record(task, submission).cases.values())
                steps = max((len(r.steps) for r in results), default=0)
                points = []
                for step in range(steps):
                    values = [
                        r.steps[step].metrics[metric].per_class.get(key)
                        for r in results
                        if step < len(r.steps) and metric in r.steps[step].metrics
                    ]
                    points.append((float(step), aggregate(values).mean))
                series.append((submission, points))
            charts.append(
                line_chart(
                    f"{metric_label(metric)}, {name} (class {key}), mean over cases",
                    "step (interactions given)",
                    f"{column_label(metric)}, {direction_hint(metric)}",
                    series,
                    metric_range(metric),
                )
            )
    return charts


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick value with as many decimals as the tick spacing needs (0.004 -> "0.004")."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    digits = max(0, math.ceil(-math.log10(step) - 1e-9)) if step > 0 else 0
    if digits and not math.isclose(round(step, digits), step, rel_tol=1e-6):
        digits += 1  # steps of 2.5 x 10^k need one more
    return f"{value:.{digits}f}"


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]],
    y_range: tuple[float, float] | None = None,
    width: int = 560,  # two charts side by side on a 1280-pixel screen
    height: int = 320,
) -> dict[str, Any]:
    """Geometry of an SVG line chart: one polyline per series (a gap where y is missing),
    ticks on both axes, axis labels. Everything numeric is computed here; the template only
    places it and escapes the labels."""
    left, right, top, bottom = 64, 16, 28, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for _, points in series for x, _ in points]
    ys = [y for _, points in series for _, y in points if not is_missing(y)]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_high == x_low:
        x_high = x_low + 1
    if y_range is not None:
        y_ticks = nice_ticks(*y_range)
    elif ys:
        low, high = min(ys), max(ys)
        if low >= 0:  # non-negative data: the axis starts at 0 (and spans 0..1 if all are 0)
            low, high = 0.0, high if high > 0 else 1.0
        y_ticks = nice_ticks(low, high)
    else:
        y_ticks = nice_ticks(0.0, 1.0)
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return round(left + (x - x_low) / (x_high - x_low) * plot_w, 2)

    def py(y: float) -> float:
        return round(top + plot_h - (y - y_low) / (y_high - y_low) * plot_h, 2)

    x_values = sorted(set(xs))
    stride = max(1, math.ceil(len(x_values) / 12))
    # Identical curves must stay apart: each series is shifted sideways by a few pixels (less
    # than a quarter of a step, so no point moves towards another step) and has its own marker
    # shape and dash pattern; the legend toggles each series.
    step_px = plot_w / max(len(x_values) - 1, 1)
    spread = min(SERIES_OFFSET_PX, step_px / 4 / max(len(series), 1))
    lines = []
    for index, (label, points) in enumerate(series):
        dx = round((index - (len(series) - 1) / 2) * spread, 2)
        shape = MARKER_SHAPES[index % len(MARKER_SHAPES)]
        segments, current, markers = [], [], []
        for x, y in sorted(points):
            if is_missing(y):
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            cx, cy = round(px(x) + dx, 2), py(y)
            current.append(f"{cx},{cy}")
            markers.append(
                {
                    "path": marker_path(shape, cx, cy),
                    "title": f"{label}: step {format_number(x)}, {format_number(y, 4)}",
                }
            )
        if current:
            segments.append(" ".join(current))
        lines.append(
            {
                "label": label,
                "color": PALETTE[index % len(PALETTE)],
                "dash": DASHES[(index // len(PALETTE)) % len(DASHES)]
                if index >= len(PALETTE)
                else DASHES[index % len(DASHES)],
                "segments": segments,
                "markers": markers,
                "legend_marker": marker_path(shape, 7.0, 6.0),
                "index": index,
            }
        )
    return {
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "right_edge": left + plot_w,
        "bottom_edge": top + plot_h,
        "mid_x": left + plot_w / 2,
        "mid_y": top + plot_h / 2,
        "x_ticks": [{"pos": px(x), "label": format_number(x)} for x in x_values[::stride]],
        "y_ticks": [{"pos": py(y), "label": tick_label(y, y_ticks)} for y in y_ticks],
        "lines": lines,
    }


SERIES_OFFSET_PX = 3.0


MARKER_SHAPES = ("circle", "square", "triangle", "diamond", "triangle-down", "plus")


DASHES = ("", "6 3", "2 2", "8 3 2 3")


MARKER_RADIUS_PX = 3.5


def marker_path(shape: str, cx: float, cy: float, r: float = MARKER_RADIUS_PX) -> str:
    """SVG path data of a marker centred on (cx, cy)."""
    if shape == "circle":
        return f"M{cx - r:.2f},{cy:.2f}a{r},{r} 0 1,0 {2 * r},0a{r},{r} 0 1,0 {-2 * r},0Z"
    if shape == "square":
        a = r * 0.85
        return f"M{cx - a:.2f},{cy - a:.2f}h{2 * a:.2f}v{2 * a:.2f}h{-2 * a:.2f}Z"
    if shape in ("triangle", "triangle-down"):
        sign = 1 if shape == "triangle" else -1
        return (
            f"M{cx:.2f},{cy - sign * r:.2f}L{cx + r:.2f},{cy + sign * r * 0.8:.2f}"
            f"L{cx - r:.2f},{cy + sign * r * 0.8:.2f}Z"
        )
    if shape == "diamond":
        return f"M{cx:.2f},{cy - r:.2f}L{cx + r:.2f},{cy:.2f}L{cx:.2f},{cy + r:.2f}L{cx - r:.2f},{cy:.2f}Z"
    a, b = r, r * 0.35  # plus
    return (
        f"M{cx - b:.2f},{cy - a:.2f}h{2 * b:.2f}v{a - b:.2f}h{a - b:.2f}v{2 * b:.2f}h{b - a:.2f}"
        f"v{a - b:.2f}h{-2 * b:.2f}v{b - a:.2f}h{b - a:.2f}v{-2 * b:.2f}h{a - b:.2f}Z"
    )


def metric_range(metric: str) -> tuple[float, float] | None:
    """The y range of a metric's chart: its registry bounds when it has both."""
    low, high = parse_metric_name(metric).metric.bounds
    return (low, high) if low is not None and high is not None else None


def task_charts(board: Leaderboard, task: str) -> list[dict[str, Any]]:
    """One chart per metric: the mean over cases at each step, one line per submission."""
    curves = board.curves[board.curves["task"] == task]
    ranking = board.rankings[task]
    order = list(ranking.table()["submission"])
    charts = []
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    for metric in [m for m in metrics if m in set(curves["metric"])]:
        rows = curves[curves["metric"] == metric]
        series = [
            (s, [(float(r.step), r.mean) for r in rows[rows["submission"] == s].itertuples()])
            for s in order
        ]
        charts.append(
            line_chart(
                f"{metric_label(metric)} vs step (mean over cases)",
                "step (interactions given)",
                f"{column_label(metric)}, {direction_hint(metric)}",
                series,
                metric_range(metric),
            )
        )
    return charts


def submission_chart(board: Leaderboard, task: str, submission: str) -> dict[str, Any] | None:
    """The first metric's curve of every case of one submission."""
    steps = board.steps[(board.steps["task"] == task) & (board.steps["submission"] == submission)]
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    if steps.empty or not metrics:
        return None
    metric = metrics[0]
    series = [
        (
            case_id,
            [(float(r.step), r.value) for r in rows.rename(columns={metric: "value"}).itertuples()],
        )
        for case_id, rows in steps.groupby("case_id", sort=True)
    ]
    return line_chart(
        f"{metric_label(metric)} vs step, per case",
        "step (interactions given)",
        column_label(metric),
        series,
        metric_range(metric),
    )
