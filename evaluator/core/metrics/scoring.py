"""A step's metrics: every class of a label map against the ground truth, and their mean."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from segloop.core.metrics.binary import (
    DEFAULT_POLICY,
)
from segloop.core.metrics.crops import check_pair, check_spacing, nonzero_box, union_box
from segloop.core.metrics.registry import ClassPair, MetricSpec, merge_requests, parse_metric_name
from segloop.core.metrics.surface_engine import FEW_CLASSES, multiclass_overlap
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


Crop = tuple[int, np.ndarray, np.ndarray, tuple[int, int, int] | None]


def class_crops(pred: np.ndarray, label: np.ndarray, class_ids: Sequence[int]) -> Iterator[Crop]:
    """Each class's (class id, prediction mask, ground-truth mask, voxel counts or None) on
    the box that holds the class in both maps.

    Many classes: one pass over the volume finds every class's counts, intersection and box
    (:func:`multiclass_overlap`), then each class is compared on its own box only (issue 16).
    Up to ``FEW_CLASSES`` classes: the box of both maps' non-zero voxels (a class other than 0
    lives there) is found by max-projections, the class compared there and cropped to its own
    box; the pair counts its voxels on that crop (cheaper than counting in a separate pass)."""
    shape = pred.shape
    empty = np.zeros((0,) * len(shape), dtype=bool)
    if len(class_ids) > FEW_CLASSES:
        stats = multiclass_overlap(pred, label, class_ids)
        for class_id in class_ids:
            s, box = stats[class_id], stats[class_id].box
            counts = (s.pred_voxels, s.gt_voxels, s.intersection_voxels)
            if box is None:
                yield class_id, empty, empty, counts
            else:
                yield class_id, pred[box] == class_id, label[box] == class_id, counts
        return
    foreground = union_box(nonzero_box(pred), nonzero_box(label))
    for class_id in class_ids:
        outer = foreground if class_id > 0 else tuple(slice(0, n) for n in shape)
        if outer is None:
            yield class_id, empty, empty, (0, 0, 0)
            continue
        p, g = pred[outer] == class_id, label[outer] == class_id
        inner = union_box(nonzero_box(p), nonzero_box(g))
        if inner is None:
            yield class_id, empty, empty, (0, 0, 0)
        else:
            yield class_id, p[inner], g[inner], None


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
    for class_value, p, g, counts in class_crops(pred_array, label_array, class_ids):
        if present_classes_only and not (g.any() if counts is None else counts[1]):
            continue
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
