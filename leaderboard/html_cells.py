"""Cells of the static site's tables: numbers, names, units and links, formatted once.

Everything the pages show about a value goes through here: how a number is written (integers
as integers, ``–`` for a missing value), a metric's label and unit, a page's file name.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from segloop.core.metrics.registry import higher_is_better, parse_metric_name
from segloop.core.results import column_name

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


def percent_cell(fraction: float | None) -> Cell:
    """A fraction x 100 with one decimal, always (75.0 beside 80.0, not 80)."""
    percent = None if is_missing(fraction) else 100 * float(fraction)
    return Cell(fixed_number(percent, 1), sort_key(fraction))
