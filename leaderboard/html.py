"""The static leaderboard site: jinja2 templates (autoescape on), inline CSS, JS and SVG.

The site works offline from the file system: no CDN, no fetch, one folder of HTML pages and a
``data/`` folder with every table as CSV and JSON. Every value that comes from a run (team
names, case ids, failure messages, log tails) goes through jinja2's autoescaping, and the page's
Content-Security-Policy only allows the one inline script whose hash it names, so even an
unescaped ``<script>`` could not run.

Pages: ``index.html`` (tasks, consensus across tasks, downloads), ``task-<slug>.html`` (the
sortable leaderboard, interaction curves, rank stability), ``sub-<task>--<submission>.html``
(per-case results and failures of one submission).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from segloop.core import store
from segloop.core.challenges import ScoreTerm
from segloop.core.metrics.registry import higher_is_better, parse_metric_name
from segloop.core.records import SegloopError
from segloop.core.results import SUMMARY_KINDS, aggregate, class_summaries, column_name
from segloop.leaderboard import case_view, pictures
from segloop.leaderboard.board import Leaderboard, build_leaderboard, write_tables
from segloop.leaderboard.ranking import DEFAULT_BOOTSTRAP_SAMPLES, TaskRanking
from segloop.leaderboard.tables import write_table
from segloop.leaderboard.usershift import UserShiftRow
from segloop.leaderboard.usershift import write_table as write_user_shift

TEMPLATES = Path(__file__).resolve().parent / "templates"
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
KIND_LABELS = {"auc_raw": "AUC raw", "auc_normalised": "AUC", "final": "Final"}
MISSING = "–"


# ---------------------------------------------------------------- formatting and names


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


def format_number(value: Any, digits: int = 3) -> str:
    """A number for a table cell: integers as integers, ``–`` for a missing value."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    number = float(value)
    if number.is_integer() and abs(number) < 1e15 and digits >= 0:
        return str(int(number))
    return f"{number:.{digits}f}"


def sort_key(value: Any) -> str:
    """The ``data-sort`` of a numeric cell (empty when missing: sorted last either way)."""
    return "" if is_missing(value) else repr(float(value))


def slug(name: str) -> str:
    """A file-name-safe slug, unique per name (a short hash of the exact name is appended)."""
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "x"
    return f"{readable}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def task_page(task: str) -> str:
    return f"task-{slug(task)}.html"


def submission_page(task: str, submission: str) -> str:
    return f"sub-{slug(task)}--{slug(submission)}.html"


def case_page(task: str, submission: str, case_id: str) -> str:
    return f"case-{slug(task)}--{slug(submission)}--{slug(case_id)}.html"


def metric_label(metric: str, kind: str | None = None) -> str:
    """The metric's title from the registry (``NSD@2 mm``), with the summary kind if given."""
    base = parse_metric_name(metric).title
    return f"{base} {KIND_LABELS[kind]}" if kind else base


def unit_label(metric: str, kind: str | None = None) -> str:
    """The unit of a metric's values, or of one of its summaries, in parentheses ("" for
    fractions): a normalised AUC is the curve's trapezoid mean, in the metric's own unit; a raw
    AUC is that unit times the x-axis' (clicks)."""
    unit = parse_metric_name(metric).unit
    if kind == "auc_raw":
        return f" ({unit} x clicks)" if unit else " (x clicks)"
    return f" ({unit})" if unit else ""


def column_label(metric: str, kind: str | None = None) -> str:
    """A table column or axis: title, summary kind and unit (``HD95 Final (mm)``)."""
    return metric_label(metric, kind) + unit_label(metric, kind)


def auc_meaning(metric: str) -> str:
    """What the normalised AUC of ``metric`` says, in words a reader can check."""
    spec = parse_metric_name(metric)
    low, high = spec.metric.bounds
    if low is not None and high is not None:
        best = high if spec.higher_is_better else low
        return (
            f"the mean of the curve over the AUC steps (trapezoid), in [{low:g}, {high:g}]; "
            f"{best:g} = perfect at every step"
        )
    unit = f" in {spec.unit}" if spec.unit else ""
    return (
        f"the mean of the curve over the AUC steps (trapezoid){unit}; not bounded above, "
        f"{'higher' if spec.higher_is_better else 'lower'} is better"
    )


def fixed_number(value: Any, digits: int) -> str:
    """Always ``digits`` decimals (``69.0`` beside ``58.0``, never ``69``)."""
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    label: str
    numeric: bool = True
    title: str = ""


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str | None = None
    href: str | None = None
    cls: str = ""
    title: str = ""


def number_cell(value: Any, digits: int = 3, cls: str = "", title: str = "") -> Cell:
    return Cell(format_number(value, digits), sort_key(value), cls=cls, title=title)


def text_cell(text: str, href: str | None = None, cls: str = "") -> Cell:
    return Cell(str(text), str(text), href, cls)


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    table_id: str
    caption: str = ""


SHOWN_KINDS = ("auc_normalised", "final")  # the raw AUC is the AUC cell's tooltip


def summary_cell(row: Any, metric: str, kind: str) -> Cell:
    """A mean AUC (normalised, the raw value on the task's x-axis as tooltip) or Final cell."""
    value = row.get(column_name(metric, kind))
    title = ""
    if kind == "auc_normalised":
        title = f"AUC raw (challenge x-axis): {format_number(row.get(column_name(metric, 'auc_raw')), 4)}"
    return number_cell(value, 4, title=title)


def direction_hint(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"


def leaderboard_table(board: Leaderboard, task: str) -> Table:
    """Rank, submission, score and the mean AUC and Final of every metric first (what a reader
    looks for, visible without scrolling), then cases, failures, times, the term ranks and the
    rank stability."""
    ranking = board.rankings[task]
    ranked = ranking.table().set_index("submission")
    means = board.submissions[board.submissions["task"] == task].set_index("submission")
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [
        Column("Rank", title="aggregate-then-rank: rank of the score"),
        Column("Submission", numeric=False),
        Column("Score", title="weighted mean of the term ranks (lower is better)"),
    ]
    columns += [
        Column(
            column_label(m, k),
            title=f"mean over cases, {direction_hint(m)}"
            + (f"; normalised AUC: {auc_meaning(m)}" if k == "auc_normalised" else ""),
        )
        for m in metrics
        for k in SHOWN_KINDS
    ]
    columns += [
        Column("Cases"),
        Column("Missing cases", title="cases other submissions have; they count as worst"),
        Column("Failed steps", title="steps scored as empty predictions"),
        Column("Failed cases"),
        Column("Mean case time (s)"),
        Column("Model time (s)", title="total model wall time over all steps"),
        Column("Rank (per case)", title="rank-then-aggregate"),
    ]
    columns += [
        Column(f"{metric_label(t.metric, t.kind)} rank", title=f"weight {format_number(t.weight)}")
        for t in ranking.terms
    ]
    if ranking.bootstrap is not None:
        columns.append(Column("Wins (%)", title="share of bootstrap resamples ranked first"))
    rows = []
    for submission, row in ranked.iterrows():
        mean = means.loc[submission]
        cells = [
            number_cell(row["rank"], cls="rank"),
            text_cell(submission, submission_page(task, submission), cls="name"),
            number_cell(row["score"], 3, cls="score"),
        ]
        cells += [summary_cell(mean, m, k) for m in metrics for k in SHOWN_KINDS]
        cells += [
            number_cell(mean["num_cases"]),
            number_cell(row["missing_cases"], cls="warn" if row["missing_cases"] else ""),
            number_cell(mean["failed_steps"], cls="warn" if mean["failed_steps"] else ""),
            number_cell(mean["failed_cases"]),
            number_cell(mean["mean_case_wall_time_s"], 2),
            number_cell(mean["total_model_wall_time_s"], 2),
            number_cell(row["rank_then_aggregate_rank"]),
        ]
        cells += [number_cell(row[f"{t.column}_rank"]) for t in ranking.terms]
        if ranking.bootstrap is not None:
            wins = 100 * row["winner_frequency"]
            cells.append(Cell(fixed_number(wins, 1), sort_key(wins)))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "leaderboard", f"Leaderboard of {task}")


def consensus_table(board: Leaderboard) -> Table:
    tasks = [t for t in board.rankings if f"{t}_rank" in board.consensus.columns]
    columns = [Column("Consensus rank"), Column("Submission", numeric=False)]
    columns += [Column(f"{t} rank") for t in tasks]
    columns += [Column("Tasks entered"), Column("Mean rank")]
    rows = []
    for _, row in board.consensus.iterrows():
        cells = [number_cell(row["consensus_rank"]), text_cell(row["submission"], cls="name")]
        for task in tasks:
            value = row[f"{task}_rank"]
            if row["submission"] in board.rankings[task].submissions:
                cells.append(number_cell(value))
            else:
                cells.append(Cell(f"{format_number(value)} (absent)", sort_key(value), cls="warn"))
        cells += [number_cell(row["tasks"]), number_cell(row["mean_rank"], 3)]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "consensus")


def task_index_table(board: Leaderboard) -> Table:
    columns = (
        Column("Task", numeric=False),
        Column("Winner", numeric=False),
        Column("Submissions"),
        Column("Cases"),
        Column("Steps"),
        Column("Metrics", numeric=False),
        Column("Description", numeric=False),
    )
    rows = []
    for _, task in board.tasks.iterrows():
        ranking = board.rankings[task["task"]]
        winners = [
            s for s, r in zip(ranking.submissions, ranking.aggregate.rank, strict=True) if r == 1
        ]
        rows.append(
            (
                text_cell(task["task"], task_page(task["task"]), cls="name"),
                text_cell(", ".join(winners), cls="name"),
                number_cell(task["num_submissions"]),
                number_cell(task["num_cases"]),
                number_cell(task["num_steps"]),
                text_cell(task["metrics"].replace(",", ", ")),
                text_cell(task["description"], cls="wrap"),
            )
        )
    return Table(columns, tuple(rows), "tasks")


def robustness_view(board: Leaderboard) -> Table | None:
    """Per task run under several robot users: each submission's main value per user."""
    table = board.robustness
    if not len(table):
        return None
    fixed = {"task", "value", "submission", "users", "mean", "worst", "spread"}
    users = [c for c in table.columns if c not in fixed]
    columns = [Column("Task", numeric=False), Column("Value", numeric=False)]
    columns += [Column("Submission", numeric=False)]
    columns += [Column(f"user {u}") for u in users]
    columns += [Column("Mean"), Column("Worst"), Column("Spread", title="best minus worst")]
    rows = []
    for _, row in table.iterrows():
        cells = [
            text_cell(
                row["task"], task_page(row["task"]) if row["task"] in board.rankings else None
            )
        ]
        cells += [text_cell(row["value"]), text_cell(row["submission"], cls="name")]
        cells += [number_cell(row[u]) for u in users]
        cells += [number_cell(row[k]) for k in ("mean", "worst", "spread")]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "robustness", "Scores under each robot user")


def percent_cell(fraction: float | None) -> Cell:
    """A fraction x 100 with one decimal, always (75.0 beside 80.0, not 80)."""
    if is_missing(fraction):
        return number_cell(None)
    return Cell(f"{100 * float(fraction):.1f}", sort_key(fraction))


def user_shift_view(rows: Sequence[UserShiftRow]) -> Table | None:
    """The user-shift table (thesis M1-M7, x 100 as the thesis prints them)."""
    if not rows:
        return None
    names = ("M1", "M2", "M3", "M4", "M5", "M6", "M7")
    columns = [Column("Source", numeric=False), Column("Role", numeric=False)]
    columns += [Column("Cases"), Column("Lesion clicks")]
    columns += [Column(f"{n} (x 100)", title=USER_SHIFT_TITLES[n]) for n in names]
    table_rows = []
    for row in rows:
        values = (row.m1, row.m2, row.m3, row.m4, row.m5, row.m6, row.m7)
        cells = [text_cell(row.source, cls="name"), text_cell(row.role)]
        cells += [number_cell(row.cases), number_cell(row.lesion_clicks)]
        cells += [percent_cell(v) for v in values]
        table_rows.append(tuple(cells))
    return Table(tuple(columns), tuple(table_rows), "user-shift", "User shift (thesis eqs. 21-27)")


USER_SHIFT_TITLES = {
    "M1": "label agreement: share of lesion clicks inside the label (higher: fewer off-label clicks)",
    "M2": "centerness: how close agreeing clicks are to the label's centre",
    "M3": "click diversity: share of label components clicked",
    "M4": "label proximity: nearness of off-label clicks to the label",
    "M5": "consistent improvement: share of steps whose Dice did not fall",
    "M6": "user shift: distance of M1-M5 to the annotators' (lower: closer to people)",
    "M7": "Dice difference to the annotators' curves on the same model (lower: closer)",
}


def case_table(
    board: Leaderboard, task: str, submission: str, case_links: Mapping[str, str] | None = None
) -> Table:
    cases = board.cases[(board.cases["task"] == task) & (board.cases["submission"] == submission)]
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [Column("Case", numeric=False)]
    columns += [Column(column_label(m, k)) for m in metrics for k in SHOWN_KINDS]
    columns += [Column("Failed steps"), Column("Case time (s)"), Column("Model time (s)")]
    rows = []
    for _, row in cases.sort_values("case_id").iterrows():
        href = (case_links or {}).get(row["case_id"])
        cells = [text_cell(row["case_id"], href, cls="name")]
        cells += [summary_cell(row, m, k) for m in metrics for k in SHOWN_KINDS]
        cells += [
            number_cell(row["failed_steps"], cls="warn" if row["failed_steps"] else ""),
            number_cell(row["case_wall_time_s"], 2),
            number_cell(row["model_wall_time_s"], 2),
        ]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "cases", f"Cases of {submission}")


# ---------------------------------------------------------------- per class


def task_classes(board: Leaderboard, task: str) -> dict[str, str]:
    """The task's classes (label value as text -> name), from its runs' task definition."""
    for record in board.records:
        if str(record.run["task"]["name"]) == task:
            return {str(k): str(v) for k, v in record.run["task"].get("classes", {}).items()}
    return {}


def class_frame(board: Leaderboard) -> pd.DataFrame:
    """``data/classes.csv``: one row per task, submission, case, metric and class, with the
    class's own AUC raw, AUC normalised and Final (:func:`class_summaries`)."""
    rows = []
    for record in board.records:
        names = {str(k): str(v) for k, v in record.run["task"].get("classes", {}).items()}
        for case_id, result in record.cases.items():
            for metric, by_class in class_summaries(result).items():
                for key, figures in by_class.items():
                    rows.append(
                        {
                            "task": str(record.run["task"]["name"]),
                            "submission": str(record.run["submission"]),
                            "case_id": case_id,
                            "metric": metric,
                            "class_id": int(key),
                            "class_name": names.get(key, ""),
                            **{kind: figures.get(kind) for kind in SUMMARY_KINDS},
                        }
                    )
    return pd.DataFrame(rows)


def class_table(board: Leaderboard, task: str) -> Table | None:
    """For a multi-class task: each submission's mean over cases of every class's normalised
    AUC and Final, per metric (None for a one-class task: its mean is its class)."""
    classes = task_classes(board, task)
    if len(classes) < 2:
        return None
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [Column("Submission", numeric=False)]
    columns += [
        Column(f"{name}: {column_label(m, k)}", title=f"class {key}, {direction_hint(m)}")
        for key, name in classes.items()
        for m in metrics
        for k in SHOWN_KINDS
    ]
    rows = []
    for submission in board.rankings[task].table()["submission"]:
        record = board.record(task, submission)
        per_case = [class_summaries(result) for result in record.cases.values()]
        cells = [text_cell(submission, submission_page(task, submission), cls="name")]
        for key in classes:
            for metric in metrics:
                for kind in SHOWN_KINDS:
                    values = [c.get(metric, {}).get(key, {}).get(kind) for c in per_case]
                    cells.append(number_cell(aggregate(values).mean, 4))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "classes", f"Per class, {task}")


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


# ---------------------------------------------------------------- SVG line charts


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


# ---------------------------------------------------------------- stability


def stability_view(ranking: TaskRanking) -> dict[str, Any] | None:
    boot = ranking.bootstrap
    if boot is None:
        return None
    order = np.lexsort((np.array(ranking.submissions), ranking.aggregate.rank))
    rows = []
    for i in order:
        rows.append(
            {
                "submission": ranking.submissions[i],
                "rank": format_number(ranking.aggregate.rank[i]),
                "wins": fixed_number(100 * boot.winner_frequency[i], 1),
                "mean_rank": format_number(boot.mean_rank[i], 2),
                "interval": f"{format_number(boot.rank_low[i])}–{format_number(boot.rank_high[i])}",
                "frequency": [
                    {
                        "text": format_number(100 * f, 0) if f > 0 else "",
                        "sort": repr(float(f)),
                        "alpha": f"{0.08 + 0.85 * f:.3f}" if f > 0 else "0",
                    }
                    for f in boot.rank_frequency[i]
                ],
            }
        )
    return {
        "n_samples": boot.n_samples,
        "seed": boot.seed,
        "tau_mean": format_number(boot.tau_mean, 3),
        "tau_median": format_number(boot.tau_median, 3),
        "tau_undefined": int(np.isnan(boot.tau).sum()),
        "ranks": list(range(1, len(ranking.submissions) + 1)),
        "rows": rows,
    }


# ---------------------------------------------------------------- failures


def failures_of(board: Leaderboard, task: str, submission: str) -> list[dict[str, Any]]:
    record = board.record(task, submission)
    found = []
    for case_id, result in record.cases.items():
        for step in result.steps:
            failure = step.failure
            if failure:
                found.append(
                    {
                        "case_id": case_id,
                        "step": step.step,
                        "reason": failure.reason.value,
                        "detail": failure.detail,
                        "log_tail": failure.log_tail,
                    }
                )
    return found


# ---------------------------------------------------------------- case pages


def case_step_table(view: case_view.CaseView) -> Table:
    """Every step of a case: its new interactions, each metric per class (with units), and
    why it failed."""
    result = view.result
    keys = [str(k) for k in result.classes]
    multi = len(keys) > 1
    columns = [Column("Step"), Column("New interactions (voxel z, y, x)", numeric=False)]
    for metric in result.metrics:
        columns.append(Column(column_label(metric), title=direction_hint(metric)))
        if multi:
            columns += [Column(f"{result.classes[int(k)]}: {column_label(metric)}") for k in keys]
    columns.append(Column("Failure", numeric=False))
    rows = []
    for step in result.steps:
        given = ", ".join(
            f"{'+' if i.positive else '−'}{i.kind} {i.class_id} at {list(i.coords[0])}"
            for i in step.new_interactions or ()
        )
        cells = [number_cell(step.step), text_cell(given or "none")]
        for metric in result.metrics:
            value = step.metrics[metric]
            cells.append(number_cell(value.mean, 4))
            if multi:
                cells += [number_cell(value.per_class.get(k), 4) for k in keys]
        failure = step.failure
        reason = f"{failure.reason.value}: {failure.detail}" if failure else ""
        cells.append(text_cell(reason, cls="warn" if failure else ""))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "steps", f"Steps of {result.case_id}")


def case_pictures(run_dir: Path, case_id: str) -> dict[str, Any]:
    """The pictures of a case page, as data URIs (the page's policy allows no other image):
    the strip over all steps, the step after which the first metric fell most (if it fell),
    and the last step."""
    view = case_view.load_case_view(run_dir, case_id)
    last = case_view.step_numbers(view)[-1]
    worst = case_view.worst_step(view)
    steps = []
    if worst is not None and worst != last:
        steps.append(
            (worst, f"Step {worst}: where {metric_label(view.result.metrics[0])} fell most")
        )
    steps.append((last, f"Step {last}: the last step"))
    return {
        "channel": view.channel_name,
        "step_table": case_step_table(view),
        "strip": pictures.png_data_uri(case_view.strip_figure(view)),
        "steps": [
            {"heading": heading, "src": pictures.png_data_uri(case_view.step_figure(view, step))}
            for step, heading in steps
        ],
    }


def write_case_pages(
    board: Leaderboard, task: str, submission: str, out_dir: Path, render: Any
) -> tuple[dict[str, str], str]:
    """A page per case whose predictions the run kept; returns (case id -> page, a note for the
    submission page: why there are no case pages, "" when there are)."""
    record = board.record(task, submission)
    kept = [c for c in record.cases if store.saved_prediction_steps(record.run_dir, c)]
    if not kept:
        return {}, "The run kept no predictions (segloop run --save-predictions), so no case pages."
    links = {}
    for case_id in kept:
        try:
            content = case_pictures(record.run_dir, case_id)
        except SegloopError as error:  # e.g. the dataset moved: the rest of the site still works
            return links, f"No case pages: {error}"
        page = case_page(task, submission, case_id)
        write_page(
            out_dir / page,
            render(
                "case.html",
                title=f"{case_id}: {submission} on {task}",
                case_id=case_id,
                task=task,
                task_href=task_page(task),
                submission=submission,
                submission_href=submission_page(task, submission),
                **content,
            ),
        )
        links[case_id] = page
    return links, ""


# ---------------------------------------------------------------- rendering


def write_page(path: Path, html: str) -> None:
    """Write a page as UTF-8; text that cannot be (a lone surrogate from an undecodable file
    name) is written as an escape rather than failing the whole site."""
    path.write_text(html, encoding="utf-8", errors="backslashreplace")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _assets() -> dict[str, Any]:
    css = (TEMPLATES / "style.css").read_text()
    script = (TEMPLATES / "sort.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    return {"css": Markup(css), "script": Markup(script), "csp": policy}


def term_rows(terms: Iterable[ScoreTerm]) -> list[dict[str, str]]:
    return [
        {
            "label": metric_label(t.metric, t.kind),
            "column": t.column,
            "weight": format_number(t.weight),
            "direction": direction_hint(t.metric),
        }
        for t in terms
    ]


@dataclass(frozen=True)
class SiteOptions:
    """What the reader sees beyond the numbers: the site's title, the dataset's name, and
    whether local paths (dataset and run folders, paths in model specs) are shown. Paths are
    hidden by default: a published leaderboard must not show the organizer's file system."""

    title: str = "segloop leaderboard"
    dataset_name: str = ""
    show_paths: bool = False
    case_pages: bool = True  # a page per case of runs that kept predictions (seconds each)


DEFAULT_SITE_OPTIONS = SiteOptions()
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\"]+/)*([^\s/'\"]+)")


def hide_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last component (``…/model.py``)."""
    return ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)


def dataset_label(record: Any, options: SiteOptions) -> str:
    """The dataset as the pages name it: the given name, else the folder's own name (its full
    path with ``show_paths``)."""
    folder = str(record.run.get("dataset", ""))
    if options.show_paths:
        return f"{options.dataset_name} ({folder})" if options.dataset_name else folder
    return options.dataset_name or Path(folder).name


def datasets_label(datasets: str, options: SiteOptions) -> str:
    """A task's datasets (``;``-separated folders of its runs) as its page names them: the given
    name, else each folder's own name; full paths only with ``show_paths``."""
    folders = [f for f in datasets.split(";") if f]
    shown = ", ".join(folders if options.show_paths else [Path(f).name for f in folders])
    if options.dataset_name:
        return f"{options.dataset_name} ({shown})" if options.show_paths else options.dataset_name
    return shown


def missing_cases(board: Leaderboard, task: str, submission: str) -> list[str]:
    """The task's cases (those any submission has) that this submission has no result for."""
    cases = board.cases[board.cases["task"] == task]
    everyone = set(cases["case_id"])
    own = set(cases[cases["submission"] == submission]["case_id"])
    return sorted(everyone - own)


def render_site(
    board: Leaderboard,
    out_dir: Path,
    data_dir_name: str = "data",
    options: SiteOptions = DEFAULT_SITE_OPTIONS,
    user_shift: Sequence[UserShiftRow] = (),
) -> Path:
    """Write every page of ``board`` into ``out_dir``; return the index page."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    common = {
        **_assets(),
        "tasks_nav": [(t, task_page(t)) for t in board.rankings],
        "site_title": options.title,
    }
    data_files = sorted(p.name for p in (out_dir / data_dir_name).glob("*") if p.is_file())
    index = out_dir / "index.html"
    write_page(
        index,
        env.get_template("index.html").render(
            **common,
            title=options.title,
            dataset_name=options.dataset_name,
            tasks_table=task_index_table(board),
            consensus=consensus_table(board) if board.rankings else None,
            robustness=robustness_view(board),
            user_shift=user_shift_view(user_shift),
            submissions=[
                (task, [(s, submission_page(task, s)) for s in ranking.table()["submission"]])
                for task, ranking in board.rankings.items()
            ],
            data_dir=data_dir_name,
            data_files=data_files,
            runs=[str(r.run_dir) for r in board.records] if options.show_paths else [],
        ),
    )
    for task, ranking in board.rankings.items():
        info = board.tasks.set_index("task").loc[task]
        write_page(
            out_dir / task_page(task),
            env.get_template("task.html").render(
                **common,
                title=f"{task}: {options.title}",
                task=task,
                dataset_name=options.dataset_name,
                meanings=[
                    {"label": metric_label(m), "meaning": auc_meaning(m)}
                    for m in board.tasks.set_index("task").loc[task, "metrics"].split(",")
                    if m
                ],
                description=info["description"],
                num_steps=format_number(info["num_steps"]),
                auc_steps=info["auc_steps"],
                dataset={
                    "label": datasets_label(info["datasets"], options),
                    "num_cases": format_number(info["num_cases"]),
                    "fingerprint": info["dataset_fingerprint"][:12],
                    "scoring_modes": info["scoring_modes"],
                    "mixed": info["mixed"] if options.show_paths else hide_paths(info["mixed"]),
                },
                terms=term_rows(ranking.terms),
                table=leaderboard_table(board, task),
                charts=task_charts(board, task),
                classes_table=class_table(board, task),
                class_charts=class_charts(board, task),
                stability=stability_view(ranking),
            ),
        )
        for submission in ranking.submissions:
            record = board.record(task, submission)
            case_links, case_note = (
                write_case_pages(
                    board,
                    task,
                    submission,
                    out_dir,
                    lambda name, **values: env.get_template(name).render(**common, **values),
                )
                if options.case_pages
                else ({}, "Case pages were not written (segloop leaderboard --no-case-pages).")
            )
            ranked = ranking.table().set_index("submission").loc[submission]
            model = str(record.run.get("model", ""))
            write_page(
                out_dir / submission_page(task, submission),
                env.get_template("submission.html").render(
                    **common,
                    title=f"{submission} on {task}",
                    task=task,
                    task_href=task_page(task),
                    submission=submission,
                    rank=format_number(ranked["rank"]),
                    score=format_number(ranked["score"], 3),
                    run={
                        "model": model if options.show_paths else hide_paths(model),
                        "dataset": dataset_label(record, options),
                        "folder": str(record.run_dir) if options.show_paths else "",
                        "config_hash": str(record.run.get("config_hash", "")),
                        "version": str(record.run.get("segloop_version", "")),
                    },
                    missing=missing_cases(board, task, submission),
                    cases=case_table(board, task, submission, case_links),
                    case_note=case_note,
                    chart=submission_chart(board, task, submission),
                    failures=failures_of(board, task, submission),
                ),
            )
    return index


def write_site(
    run_paths: Iterable[Path],
    out_dir: Path,
    score_overrides: Mapping[str | None, Sequence[ScoreTerm]] | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    options: SiteOptions = DEFAULT_SITE_OPTIONS,
    allow_mixed: bool = False,
    user_shift: Sequence[UserShiftRow] = (),
) -> Path:
    """Read the runs, rank them, write ``out_dir/data/*`` tables and the pages; return index.
    ``user_shift``: rows of a user-shift table (``segloop user-shift``) to show and publish."""
    board = build_leaderboard(run_paths, score_overrides, n_bootstrap, seed, allow_mixed)
    write_tables(board, Path(out_dir) / "data")
    write_table(class_frame(board), Path(out_dir) / "data", "classes")
    if user_shift:
        data = Path(out_dir) / "data"
        write_user_shift(user_shift, data / "user-shift.csv", data / "user-shift.json")
    return render_site(board, Path(out_dir), options=options, user_shift=user_shift)


def render_detailed_results(result: Mapping[str, Any], scores: Mapping[str, Any]) -> str:
    """Codabench's ``detailed_results.html`` for one submission: the scores, the mean curve of
    every metric, per-case summaries and failures; self-contained like the site."""
    metric_names = list(result["metrics"])
    curve = result["aggregates"]["mean_curve"]
    charts = [
        line_chart(
            f"{metric_label(m)} vs step (mean over cases)",
            "step (interactions given)",
            f"{column_label(m)}, {direction_hint(m)}",
            [("this submission", [(float(s), v) for s, v in enumerate(curve[m])])],
            metric_range(m),
        )
        for m in metric_names
    ]
    columns = [Column("Case", numeric=False)]
    columns += [Column(column_label(m, k)) for m in metric_names for k in SUMMARY_KINDS]
    columns.append(Column("Failed steps"))
    rows = []
    failures = []
    for case_id, case in sorted(result["case"].items()):
        cells = [text_cell(case_id, cls="name")]
        cells += [
            number_cell(case["summary"][m].get(k), 4) for m in metric_names for k in SUMMARY_KINDS
        ]
        cells.append(number_cell(case["failed_steps"], cls="warn" if case["failed_steps"] else ""))
        rows.append(tuple(cells))
        for step in case["steps"]:
            if step.get("failure"):
                failures.append(
                    {
                        "case_id": case_id,
                        "step": step["step"],
                        "reason": str(step["failure"].get("reason", "")),
                        "detail": str(step["failure"].get("detail", "")),
                        "log_tail": str(step["failure"].get("log_tail", "")),
                    }
                )
    score_rows = [(key, format_number(value, 4)) for key, value in scores.items()]
    return (
        environment()
        .get_template("detailed.html")
        .render(
            **_assets(),
            tasks_nav=[],
            site_title="segloop results",
            title=f"segloop results: {result['task']}",
            task=str(result["task"]),
            scores=score_rows,
            charts=charts,
            cases=Table(tuple(columns), tuple(rows), "cases", "Cases"),
            failures=failures,
            ignored=[str(name) for name in result.get("ignored_files", [])],
        )
    )
