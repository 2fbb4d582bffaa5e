"""A step's metrics: every class of a label map against the ground truth, and their mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segloop.core.metrics.binary import (
    DEFAULT_POLICY,
)
from segloop.core.metrics.crops import check_pair, check_spacing
from segloop.core.metrics.registry import ClassPair, MetricSpec, merge_requests, parse_metric_name
from segloop.core.metrics.surface_engine import multiclass_overlap
from segloop.core.records import EmptyMaskPolicy, SegloopError


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


#: How undefined values (null) enter a mean or an AUC: "skip" leaves them out (the
#: challenges' pandas means; a curve with an undefined step has no AUC), "worst" counts each
#: as the metric's worst value (needs a bounded metric: Dice and NSD 0).
UNDEFINED_RULES = ("skip", "worst")


def worst_value(spec: MetricSpec) -> float:
    """The worst value of a bounded metric (for the ``"worst"`` rule); SegloopError otherwise."""
    low, high = spec.metric.bounds
    worst = low if spec.higher_is_better else high
    if worst is None:
        raise SegloopError(
            f"metric {spec.name!r} has no worst value (it is unbounded): undefined values of it "
            'can only be skipped (undefined_values = "skip")'
        )
    return float(worst)


def _score_class(
    pair: ClassPair, specs: Sequence[MetricSpec], undefined_values: str
) -> dict[str, float | None]:
    """Every metric of one class (registry entries computing from what the pair shares); a
    class without ground truth is undefined where the policy says so."""
    gt_missing = pair.policy.empty_gt_undefined and pair.counts[1] == 0
    values = {
        spec.name: None
        if gt_missing and not spec.metric.defined_without_gt
        else finite_or_none(spec.value(pair))
        for spec in specs
    }
    if undefined_values == "worst":
        return {
            spec.name: worst_value(spec) if values[spec.name] is None else values[spec.name]
            for spec in specs
        }
    return values


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
    undefined_values: str = "skip",
) -> dict[str, dict[str, Any]]:
    """Score a label map against the ground truth: per class (binary ``prediction == c`` vs
    ``label == c``) and the mean over classes (SPEC Metrics).

    Returns ``{metric: {"mean": float | None, "per_class": {"1": float | None, ...}}}``; values
    that are not finite, and values the policy leaves undefined (``empty_gt_undefined``), are
    None. ``undefined_values`` (:data:`UNDEFINED_RULES`): "skip" takes the mean over the classes
    whose value is defined (None when none is), "worst" replaces each undefined value by the
    metric's worst one. A class's surface distances are computed once for all surface metrics.

    ``nsd_zero_below_dice`` (MedSegFM rule, SPEC table): NSD is 0 where Dice <= this value.
    ``nsd_zero_scope="case"`` compares the case's Dice (mean over the scored classes) and zeroes
    the NSD of every class, as CVPR25_iter_eval.py does; ``"class"`` compares each class's own
    Dice. ``present_classes_only``: score only the classes present in ``label`` (CVPR25 scores
    the GT's labels); by default every class in ``classes`` is scored, absent ones by ``policy``.
    """
    if nsd_zero_scope not in ("case", "class"):
        raise ValueError(f"nsd_zero_scope must be 'case' or 'class', not {nsd_zero_scope!r}")
    if undefined_values not in UNDEFINED_RULES:
        raise ValueError(f"undefined_values must be one of {UNDEFINED_RULES}")
    pred_array, label_array = check_pair(prediction, label)
    spacing = check_spacing(spacing_mm, pred_array.ndim)
    for what, array in (("prediction", pred_array), ("ground truth", label_array)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise SegloopError(f"{what} must be an integer label map, not {array.dtype}")
    specs = [parse_metric_name(name) for name in metric_names]
    shape = pred_array.shape
    requests = merge_requests(
        [spec.surface_request for spec in specs if spec.surface_request is not None]
    )
    per_class: dict[str, dict[str, float | None]] = {spec.name: {} for spec in specs}
    dice_by_class: list[float] = []
    class_rule = nsd_zero_below_dice if nsd_zero_scope == "class" else None
    class_ids = list(dict.fromkeys(int(c) for c in classes))
    # one pass over the volume for every class's counts, intersection and box; then each
    # class works on the crop of its box only (issue 16)
    stats = multiclass_overlap(pred_array, label_array, class_ids)
    for class_value in class_ids:
        s = stats[class_value]
        if present_classes_only and s.gt_voxels == 0:
            continue
        box = s.box
        if box is None:
            p = g = np.zeros((0,) * len(shape), dtype=bool)
        else:
            p, g = pred_array[box] == class_value, label_array[box] == class_value
        counts = (s.pred_voxels, s.gt_voxels, s.intersection_voxels)
        pair = ClassPair(p, g, shape, spacing, policy, requests, counts)
        values = _score_class(pair, specs, undefined_values)
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
        defined = [v for v in values_by_class.values() if v is not None]
        mean = finite_or_none(sum(defined) / len(defined)) if defined else None
        result[spec.name] = {"mean": mean, "per_class": values_by_class}
    return result
