"""A step's metrics: every class of a label map against the ground truth, and their mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segloop.core.metrics.binary import (
    DEFAULT_POLICY,
)
from segloop.core.metrics.crops import check_pair, check_spacing, nonzero_box, offset_box, union_box
from segloop.core.metrics.registry import ClassPair, MetricSpec, parse_metric_name
from segloop.core.records import EmptyMaskPolicy


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _score_class(pair: ClassPair, specs: Sequence[MetricSpec]) -> dict[str, float | None]:
    """Every metric of one class (registry entries computing from what the pair shares)."""
    return {spec.name: finite_or_none(spec.value(pair)) for spec in specs}


def score_classes(
    prediction: np.ndarray,
    label: np.ndarray,
    classes: Sequence[int],
    spacing_mm: Sequence[float],
    metric_names: Sequence[str],
    policy: EmptyMaskPolicy = DEFAULT_POLICY,
    nsd_zero_below_dice: float | None = None,
    nsd_zero_scope: str = "case",
    present_classes_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """Score a label map against the ground truth: per class (binary ``prediction == c`` vs
    ``label == c``) and the mean over classes (SPEC Metrics).

    Returns ``{metric: {"mean": float | None, "per_class": {"1": float | None, ...}}}``; values
    that are not finite are None, and the mean is None when any class value is None or there are
    no classes. A class's surface distances are computed once for all surface metrics.

    ``nsd_zero_below_dice`` (MedSegFM rule, SPEC table): NSD is 0 where Dice <= this value.
    ``nsd_zero_scope="case"`` compares the case's Dice (mean over the scored classes) and zeroes
    the NSD of every class, as CVPR25_iter_eval.py does; ``"class"`` compares each class's own
    Dice. ``present_classes_only``: score only the classes present in ``label`` (CVPR25 scores
    the GT's labels); by default every class in ``classes`` is scored, absent ones by ``policy``.
    """
    if nsd_zero_scope not in ("case", "class"):
        raise ValueError(f"nsd_zero_scope must be 'case' or 'class', not {nsd_zero_scope!r}")
    pred_array, label_array = check_pair(prediction, label)
    spacing = check_spacing(spacing_mm, pred_array.ndim)
    specs = [parse_metric_name(name) for name in metric_names]
    shape = pred_array.shape
    surface_specs = [spec for spec in specs if spec.metric.surface]
    # NSD alone needs no distance beyond its largest tolerance, which lets the k-d tree prune
    reach_mm = (
        max(spec.parameters["tolerance_mm"] for spec in surface_specs)
        if surface_specs and all(spec.kind == "nsd" for spec in surface_specs)
        else None
    )
    per_class: dict[str, dict[str, float | None]] = {spec.name: {} for spec in specs}
    dice_by_class: list[float] = []
    class_rule = nsd_zero_below_dice if nsd_zero_scope == "class" else None
    # Every class lives inside the box of the non-zero voxels of either map (classes are
    # label values > 0); classes <= 0 are scored on the whole array.
    foreground = union_box(nonzero_box(pred_array), nonzero_box(label_array))
    for class_id in classes:
        class_value = int(class_id)
        outer = foreground if class_value > 0 else tuple(slice(0, n) for n in shape)
        inner = None
        if outer is not None:
            p_outer = pred_array[outer] == class_value
            g_outer = label_array[outer] == class_value
            g_box = nonzero_box(g_outer)
            if present_classes_only and g_box is None:
                continue
            inner = union_box(nonzero_box(p_outer), g_box)
        elif present_classes_only:
            continue
        if inner is None:
            p = np.zeros((0,) * len(shape), dtype=bool)
            g = p
            origin = [0] * len(shape)
        else:
            p, g = p_outer[inner], g_outer[inner]
            origin = [s.start for s in offset_box(inner, outer)]
        pair = ClassPair(p, g, origin, shape, spacing, policy, reach_mm)
        values = _score_class(pair, specs)
        if class_rule is not None and pair.dice <= class_rule:
            values.update({spec.name: 0.0 for spec in specs if spec.kind == "nsd"})
        dice_by_class.append(pair.dice)
        for name, value in values.items():
            per_class[name][str(class_value)] = value
    case_dice = sum(dice_by_class) / len(dice_by_class) if dice_by_class else None
    if nsd_zero_scope == "case" and nsd_zero_below_dice is not None and case_dice is not None:
        if case_dice <= nsd_zero_below_dice:
            for spec in specs:
                if spec.kind == "nsd":
                    per_class[spec.name] = dict.fromkeys(per_class[spec.name], 0.0)
    result: dict[str, dict[str, Any]] = {}
    for spec in specs:
        values_by_class = per_class[spec.name]
        values = list(values_by_class.values())
        if not values or any(v is None for v in values):
            mean = None
        else:
            mean = finite_or_none(sum(values) / len(values))  # type: ignore[arg-type]
        result[spec.name] = {"mean": mean, "per_class": values_by_class}
    return result
