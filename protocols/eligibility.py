"""Eligibility masks as configuration: the region M = f(image, label, prediction) a robot user
draws its interactions from (thesis §8.2.3.2), written as data in a task.

A region is one of (JSON or a TOML value):

- a name, for class c: ``"label"`` (label == c), ``"background"`` (label != c),
  ``"prediction"`` (previous prediction == c; empty before the first prediction), ``"error"``
  (prediction != label, for c), ``"false_negative"`` (label & ~prediction), ``"false_positive"``
  (prediction & ~label), ``"everything"``; ``"mask:<name>"``: the case's extra mask ``<name>``
  (e.g. TriALS's ``mask:liver``);
- a threshold of an image channel: ``{"channel": 1, "above": 2.5}``, ``{"channel": 0,
  "below": -500}`` (absolute), or ``{"channel": 1, "above_percentile": 99.75, "of":
  "background"}`` (above the given percentile of the channel's values inside ``of``, a region;
  default everything; empty when ``of`` is empty: autoPET's high-uptake background is
  ``{"and": ["background", {"channel": 1, "above_percentile": 99.75, "of": "background"}]}``);
- a set operation: ``{"and": [R, ...]}``, ``{"or": [R, ...]}``, ``{"not": R}``,
  ``{"minus": [R, S]}`` (R and not S).

Negative prompts come from regions outside the label (a click's sign is the ground truth
where it lands). :func:`check_region` validates a region before anything runs (one line naming
where and what is wrong); :func:`region_mask` evaluates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from segloop.core.records import Case, SegloopError

NAMES = (
    "label",
    "background",
    "prediction",
    "error",
    "false_negative",
    "false_positive",
    "everything",
)
OPERATIONS = ("and", "or", "not", "minus")
THRESHOLD_KEYS = {"channel", "above", "below", "above_percentile", "of"}
MAX_DEPTH = 16
MAX_PARTS = 32


def check_region(region: Any, where: str = "eligibility", depth: int = 0) -> None:
    """Raise a one-line SegloopError if ``region`` is not a region (module docstring)."""
    if depth > MAX_DEPTH:
        raise SegloopError(f"{where}: regions nest deeper than {MAX_DEPTH} levels")
    if isinstance(region, str):
        if region in NAMES or (region.startswith("mask:") and len(region) > 5):
            return
        raise SegloopError(
            f"{where}: unknown region {region!r}: use one of {', '.join(NAMES)}, mask:<name>, "
            "a channel threshold or and/or/not/minus"
        )
    if not isinstance(region, Mapping) or not region:
        raise SegloopError(f"{where}: a region is a name or a table, not {type(region).__name__}")
    keys = set(region)
    operations = keys & set(OPERATIONS)
    if operations:
        if len(keys) != 1:
            raise SegloopError(f"{where}: an operation is a table with one key, not {sorted(keys)}")
        (operation,) = operations
        value = region[operation]
        if operation == "not":
            check_region(value, f"{where}.not", depth + 1)
            return
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_PARTS:
            raise SegloopError(f"{where}.{operation}: a list of 1 to {MAX_PARTS} regions")
        if operation == "minus" and len(value) != 2:
            raise SegloopError(f"{where}.minus: two regions, [R, S] = R and not S")
        for i, part in enumerate(value):
            check_region(part, f"{where}.{operation}[{i}]", depth + 1)
        return
    unknown = keys - THRESHOLD_KEYS
    if unknown or "channel" not in keys:
        raise SegloopError(
            f"{where}: a threshold has 'channel' and one of above, below, above_percentile "
            f"(unknown keys: {sorted(unknown) or 'none'})"
        )
    channel = region["channel"]
    if not isinstance(channel, int) or isinstance(channel, bool) or channel < 0:
        raise SegloopError(f"{where}: channel must be an index >= 0, not {channel!r}")
    limits = [k for k in ("above", "below", "above_percentile") if k in keys]
    if len(limits) != 1:
        raise SegloopError(f"{where}: give exactly one of above, below, above_percentile")
    value = region[limits[0]]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SegloopError(f"{where}: {limits[0]} must be a finite number, not {value!r}")
    if limits[0] == "above_percentile" and not 0 <= value <= 100:
        raise SegloopError(f"{where}: above_percentile must lie in [0, 100], not {value}")
    if "of" in keys:
        if limits[0] != "above_percentile":
            raise SegloopError(f"{where}: 'of' goes with above_percentile only")
        check_region(region["of"], f"{where}.of", depth + 1)


def region_mask(
    region: Any, case: Case, class_id: int, prediction: np.ndarray | None
) -> np.ndarray:
    """The boolean (z, y, x) mask of a checked ``region`` for class ``class_id`` of ``case``
    given the previous ``prediction`` (None: no prediction yet, counted as empty)."""
    if isinstance(region, str):
        return _named(region, case, class_id, prediction)
    if "and" in region or "or" in region:
        operation = "and" if "and" in region else "or"
        masks = [region_mask(r, case, class_id, prediction) for r in region[operation]]
        combine = np.logical_and if operation == "and" else np.logical_or
        return combine.reduce(masks) if len(masks) > 1 else masks[0]
    if "not" in region:
        return ~region_mask(region["not"], case, class_id, prediction)
    if "minus" in region:
        keep, drop = (region_mask(r, case, class_id, prediction) for r in region["minus"])
        return keep & ~drop
    return _threshold(region, case, class_id, prediction)


def _named(name: str, case: Case, class_id: int, prediction: np.ndarray | None) -> np.ndarray:
    if name.startswith("mask:"):
        key = name[5:]
        if key not in case.extra_masks:
            raise SegloopError(
                f"case {case.case_id}: region {name!r} needs the extra mask {key!r}; the case "
                f"has {sorted(case.extra_masks) or 'none'}"
            )
        return np.asarray(case.extra_masks[key], dtype=bool)
    truth = case.label == class_id
    predicted = np.zeros(case.shape, dtype=bool) if prediction is None else (prediction == class_id)
    regions = {
        "label": lambda: truth,
        "background": lambda: ~truth,
        "prediction": lambda: predicted,
        "error": lambda: truth != predicted,
        "false_negative": lambda: truth & ~predicted,
        "false_positive": lambda: predicted & ~truth,
        "everything": lambda: np.ones(case.shape, dtype=bool),
    }
    return regions[name]()


def _threshold(
    region: Mapping[str, Any], case: Case, class_id: int, prediction: np.ndarray | None
) -> np.ndarray:
    channel = region["channel"]
    if channel >= len(case.channels):
        raise SegloopError(
            f"case {case.case_id}: region threshold of channel {channel}; the case has "
            f"{len(case.channels)} channel(s)"
        )
    values = case.channels[channel]
    if "above" in region:
        return values > region["above"]
    if "below" in region:
        return values < region["below"]
    within = region_mask(region.get("of", "everything"), case, class_id, prediction)
    if not within.any():
        return np.zeros(case.shape, dtype=bool)
    return values > np.percentile(values[within], region["above_percentile"])
