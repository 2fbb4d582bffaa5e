"""A step's metrics: every class of a label map against the ground truth, and their mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segloop.core.metrics.binary import (
    DEFAULT_POLICY,
    dice_from_counts,
    empty_state,
    policy_distance,
    policy_overlap,
    untouched_voxels,
    volume_ml,
)
from segloop.core.metrics.crops import check_pair, check_spacing, nonzero_box, offset_box, union_box
from segloop.core.metrics.registry import SURFACE_KINDS, MetricSpec, parse_metric_name
from segloop.core.metrics.surface import assd_from, hausdorff_from, nsd_from, surface_distances_crop
from segloop.core.records import EmptyMaskPolicy


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _score_class(
    p: np.ndarray,
    g: np.ndarray,
    origin: Sequence[int],
    shape: Sequence[int],
    spacing: tuple[float, ...],
    specs: Sequence[MetricSpec],
    policy: EmptyMaskPolicy,
    nsd_zero_below_dice: float | None,
) -> tuple[dict[str, float | None], float]:
    """All metrics of one class on the crop (p, g) whose first voxel is ``origin``, and its
    Dice (computed whether asked for or not: the MedSegFM NSD rule reads it)."""
    pred_count = int(np.count_nonzero(p))
    gt_count = int(np.count_nonzero(g))
    state = empty_state(pred_count, gt_count)
    both_count = int(np.count_nonzero(p & g)) if state is None else 0
    dice_value = dice_from_counts(pred_count, gt_count, both_count, policy)
    sd = None
    surface_kinds = {spec.kind for spec in specs if spec.kind in SURFACE_KINDS}
    if state is None and surface_kinds:
        # once per class, shared by all surface metrics; NSD alone needs no distance beyond
        # its largest tolerance, which lets the k-d tree prune
        max_distance_mm = None
        if surface_kinds == {"nsd"}:
            max_distance_mm = max(s.tolerance_mm for s in specs if s.kind == "nsd")
        sd = surface_distances_crop(p, g, origin, shape, spacing, max_distance_mm)
    out: dict[str, float | None] = {}
    for spec in specs:
        if spec.kind == "dice":
            value = dice_value
        elif spec.kind == "nsd":
            assert spec.tolerance_mm is not None
            value = policy_overlap(state, policy) if sd is None else nsd_from(sd, spec.tolerance_mm)
            if nsd_zero_below_dice is not None and dice_value <= nsd_zero_below_dice:
                value = 0.0
        elif spec.kind in ("hd95", "hd"):
            assert spec.percentile is not None
            value = (
                policy_distance(state, policy, shape, spacing)
                if sd is None
                else hausdorff_from(sd, spec.percentile)
            )
        elif spec.kind == "assd":
            value = policy_distance(state, policy, shape, spacing) if sd is None else assd_from(sd)
        elif spec.kind == "fpv":
            value = volume_ml(untouched_voxels(p, g), spacing)
        else:  # fnv
            value = volume_ml(untouched_voxels(g, p), spacing)
        out[spec.name] = finite_or_none(value)
    return out, dice_value


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
        values, dice_value = _score_class(p, g, origin, shape, spacing, specs, policy, class_rule)
        dice_by_class.append(dice_value)
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
