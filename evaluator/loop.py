"""The interaction loop: robot user -> model -> metrics, step by step, case by case.

A failed, late or invalid model step is scored as an empty prediction and recorded with its
reason; it never reuses an earlier step's output (SPEC, defects of the originals). A fault of
the harness (:class:`segloop.core.faults.HarnessFault`) is never scored: it ends the case.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segloop.core.contract import ModelStepError
from segloop.core.faults import HarnessFault
from segloop.core.records import (
    Case,
    CaseInput,
    FailureReason,
    Interaction,
    SegloopError,
    StepFailure,
    StepRequest,
    StepResult,
)
from segloop.core.results import CaseResult, StepRecord, case_result, metric_values
from segloop.core.task import ModelBackend, Task


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    steps: tuple[StepResult, ...]
    case_wall_time_s: float
    session_s: float = 0.0  # opening and closing the model's session (e.g. a container)


def failure_of(error: BaseException) -> StepFailure:
    """The record of a model step that raised: back-end errors carry their own reason."""
    if isinstance(error, ModelStepError):
        return StepFailure(error.reason, error.detail, error.log_tail)
    tail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return StepFailure(FailureReason.EXCEPTION, f"{type(error).__name__}: {error}", tail[-2000:])


LABEL_SLAB_VOXELS = 1 << 22  # voxels per bincount: its intp copy stays at 32 MiB


def label_values(label: np.ndarray) -> set[int]:
    """The values present in a label map, by ``np.bincount`` over slabs (one over a CT-sized
    map would copy it to 8-byte integers first: 630 MiB for 512 x 512 x 300 uint8 voxels)."""
    flat = label.ravel(order="K")  # a view in memory order, whatever the layout
    present: set[int] = set()
    for start in range(0, flat.size, LABEL_SLAB_VOXELS):
        counts = np.bincount(flat[start : start + LABEL_SLAB_VOXELS])
        present.update(np.flatnonzero(counts).tolist())
    return present


def check_label_classes(case: Case, task: Task) -> None:
    """Refuse a label holding classes the task does not define (they would go unscored), and
    an empty label where the task's robot user needs a target."""
    present = label_values(case.label) - {0}
    unknown = sorted(present - set(task.classes))
    if unknown:
        raise SegloopError(
            f"case {case.case_id}: the label holds classes {unknown[:10]} that task "
            f"{task.name!r} does not define ({sorted(task.classes)}); pass --classes"
        )
    if task.requires_foreground and not present:
        raise SegloopError(
            f"case {case.case_id}: its label (labelsTs/{case.case_id}.*) has no foreground "
            f"voxel; task {task.name!r} prompts every class from the ground truth"
        )


def check_channels(case: Case, task: Task) -> None:
    """Refuse a case whose image channels are not the task's (autoPET needs CT and PET): a model
    given one channel where it expects two fails every step, or worse, predicts from the wrong
    image."""
    if task.channels is None or len(case.channels) == len(task.channels):
        return
    expected = ", ".join(f"_{i:04d} {name}" for i, name in enumerate(task.channels))
    raise SegloopError(
        f"case {case.case_id}: has {len(case.channels)} image channel(s) "
        f"(imagesTs/{case.case_id}_0000.* ...), task {task.name!r} needs "
        f"{len(task.channels)} ({expected})"
    )


def run_case(
    case: Case,
    task: Task,
    backend: ModelBackend,
    on_prediction: Callable[[int, np.ndarray], None] | None = None,
) -> CaseOutcome:
    """Run one case through all of the task's steps and score every step.

    ``on_prediction(step, prediction)`` sees every step's prediction as scored (a failed step's
    empty one too), e.g. to keep it on disk: handed over at once, so a case never holds all of
    its steps' volumes in memory."""
    check_label_classes(case, task)
    check_channels(case, task)
    started = time.perf_counter()
    session = backend.open_case(CaseInput.of(case, task.classes))
    session_s = time.perf_counter() - started
    interactions: list[Interaction] = []
    previous: np.ndarray | None = None
    steps: list[StepResult] = []
    try:
        for step in range(task.num_steps):
            robot_started = time.perf_counter()
            new = tuple(task.robot_user.interactions(case, task.classes, step, previous, task.seed))
            robot_user_s = time.perf_counter() - robot_started
            interactions.extend(new)
            request = StepRequest(
                case_id=case.case_id,
                step=step,
                interactions=tuple(interactions),
                previous_prediction=previous if task.send_previous_prediction else None,
            )
            step_started = time.perf_counter()
            failure = None
            try:
                prediction = session.predict(request)
            except HarnessFault:
                raise  # not the model's failure: the case stops unstored, resume reruns it
            except Exception as error:  # noqa: BLE001 - any model failure is recorded, not raised
                failure = failure_of(error)
                prediction = np.zeros(case.shape, dtype=np.uint8)
            wall_time_s = time.perf_counter() - step_started
            scores = task.score(prediction, case.label, case.spacing_mm)
            metrics_s = time.perf_counter() - step_started - wall_time_s
            if on_prediction is not None:
                on_prediction(step, prediction)
            steps.append(
                StepResult(step, new, scores, failure, wall_time_s, robot_user_s, metrics_s)
            )
            previous = prediction
    finally:
        closing = time.perf_counter()
        session.close()
        session_s += time.perf_counter() - closing
    return CaseOutcome(case.case_id, tuple(steps), time.perf_counter() - started, session_s)


def case_result_of(
    outcome: CaseOutcome, task: Task, submission: str, run_config_hash: str
) -> CaseResult:
    """The deterministic record of a case (no wall times: those go to the timing file)."""
    return case_result(
        outcome.case_id,
        [
            StepRecord(s.step, metric_values(s.metrics), s.failure, tuple(s.new_interactions))
            for s in outcome.steps
        ],
        task=task.name,
        metrics=task.metrics,
        classes=task.classes,
        auc_steps=task.auc_steps,
        auc_x=task.auc_x,
        empty_mask_policy=task.empty_mask_policy,
        submission=submission,
        config_hash=run_config_hash,
        scoring=task.scoring,
    )


def timing_json(outcome: CaseOutcome) -> dict[str, Any]:
    return {
        "case_id": outcome.case_id,
        "model_wall_time_s": [s.model_wall_time_s for s in outcome.steps],
        "robot_user_s": [s.robot_user_s for s in outcome.steps],
        "metrics_s": [s.metrics_s for s in outcome.steps],
        "session_s": outcome.session_s,
        "case_wall_time_s": outcome.case_wall_time_s,
    }
