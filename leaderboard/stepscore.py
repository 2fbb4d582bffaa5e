"""Score a case's step predictions outside the loop (Grand Challenge and Codabench modes).

The platforms hand us files the participant's container wrote, one per (case, step). This
module scores them exactly as the loop scores its own steps (``segloop.core.metrics.score_classes``
with the task's classes, metrics, empty-mask policy and NSD rule, then
``segloop.core.metrics.summarise_curve`` on the task's AUC steps), so a platform's numbers equal a
``segloop run``'s. A step without a usable file (job failed, file missing, wrong grid, not a
label map) is scored as an empty prediction and recorded with its reason (SPEC: never reuse an
earlier step's output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core import images, untrusted_images
from segloop.core.challenges import Challenge, get_challenge, with_classes
from segloop.core.contract import ModelStepError, validate_prediction
from segloop.core.records import FailureReason, Geometry, SegloopError, StepFailure
from segloop.core.results import (
    SUMMARY_KINDS,
    CaseResult,
    StepRecord,
    aggregate,
    case_result,
    column_name,
    mean_curves,
    metric_values,
    summary_columns,
)
from segloop.core.untrusted import RefusedFile, UntrustedPath


def scoring_spec(
    task_name: str,
    metric_names: Sequence[str] | None = None,
    classes: Mapping[int, str] | None = None,
    scoring: str | None = None,
) -> Challenge:
    """The challenge that scores uploaded predictions (a preset or a TOML task) in a scoring
    mode (None: its default), its metrics (then scored the "custom" way) and classes
    optionally replaced."""
    challenge = with_classes(get_challenge(task_name).in_scoring_mode(scoring), classes)
    if metric_names:
        challenge = replace(
            challenge,
            metrics=tuple(metric_names),
            score_terms=(),
            scoring_mode="custom",
            scoring_modes={},
            scoring_reproduces="",
        )
    return challenge


@dataclass(frozen=True)
class StepInput:
    """One step's prediction file, placed by the participant below a folder we were given
    (None: none exists), or why it is unusable."""

    path: UntrustedPath | None
    failure: StepFailure | None = None
    extra: Mapping[str, Any] | None = None  # recorded with the step (job pk, click count...)


def read_ground_truth(path: Path) -> tuple[np.ndarray, Geometry]:
    values, geometry = images.read_image(path)
    return images.as_label_map(values, path), geometry


def load_prediction(
    step: StepInput,
    gt_path: Path,
    gt_shape: Sequence[int],
    gt_geometry: Geometry,
    class_ids: Sequence[int],
) -> tuple[np.ndarray | None, dict[str, str] | None]:
    """The step's label map on the ground truth's grid with labels in {0} + the task's classes
    (checked as the loop checks a model's output), or (None, failure).

    The file is the participant's: read as untrusted bytes (:mod:`segloop.core.untrusted_images`:
    links never followed, self-contained image files only, header checked against the ground
    truth's shape before any data is read)."""

    if step.failure is not None:
        return None, step.failure
    if step.path is None:
        return None, StepFailure(FailureReason.MISSING_OUTPUT, "no prediction file", "")
    try:
        values, geometry = untrusted_images.read_image_at(step.path, tuple(gt_shape))
        images.check_geometry(str(step.path), geometry, gt_path, gt_geometry, b_role="ground truth")
        prediction = validate_prediction(
            images.as_label_map(values, str(step.path)), tuple(gt_shape), set(class_ids)
        )
    except (SegloopError, RefusedFile) as error:
        return None, StepFailure(FailureReason.INVALID_OUTPUT, str(error), "")
    except ModelStepError as error:
        detail = f"{step.path}: {error.detail}"
        return None, StepFailure(error.reason, detail, "")
    return prediction, None


def score_case(
    case_id: str,
    steps: Sequence[StepInput],
    gt_path: Path,
    spec: Challenge,
) -> CaseResult:
    """Score every step of one case: the same record as a run's case result."""
    label, geometry = read_ground_truth(gt_path)
    class_ids = sorted(spec.classes)
    records = []
    for index, step in enumerate(steps):
        prediction, failure = load_prediction(step, gt_path, label.shape, geometry, class_ids)
        if prediction is None:
            prediction = np.zeros(label.shape, dtype=np.uint8)
        scores = spec.score(prediction, label, geometry.spacing_mm)
        records.append(
            StepRecord(index, metric_values(scores), failure, source=dict(step.extra or {}))
        )
    auc_steps, auc_x = spec.curve_axis(len(steps))
    return case_result(
        case_id,
        records,
        task=spec.name,
        metrics=spec.metrics,
        classes=spec.classes,
        auc_steps=auc_steps,
        auc_x=auc_x,
        empty_mask_policy=spec.empty_mask_policy,
        scoring=spec.scoring,
    )


def aggregate_cases(cases: Mapping[str, CaseResult], metric_names: Sequence[str]) -> dict[str, Any]:
    """Per leaderboard column, :func:`segloop.core.results.aggregate` over the cases (mean,
    std, median, min, max, count, and the cases left out as undefined), plus failed steps, the
    case count and the mean curve."""
    results_ = list(cases.values())
    rows = [summary_columns(c) for c in results_]
    out: dict[str, Any] = {
        column: aggregate([r.get(column) for r in rows]).to_json()
        for column in (column_name(m, k) for m in metric_names for k in SUMMARY_KINDS)
    }
    out["num_cases"] = len(results_)
    out["failed_steps"] = int(sum(c.failed_steps for c in results_))
    out["mean_curve"] = {m: mean_curves(results_).get(m, []) for m in metric_names}
    return out
