"""The records that flow through segloop: case -> robot user -> model -> metrics -> store.

Array-axis convention (one for the whole project): every voxel array is indexed in the order
SimpleITK's ``GetArrayFromImage`` returns, ``(z, y, x)``, and every per-axis quantity that goes
with an array (``spacing_mm``, voxel coordinates of clicks, box corners, shapes) is given in that
same array order. Only ``Geometry.origin_mm`` and ``Geometry.direction`` keep SimpleITK's
physical ``(x, y, z)`` order, because they describe points and axes in world space, not the array.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import numpy as np

AXIS_ORDER: tuple[str, str, str] = ("z", "y", "x")

InteractionKind = Literal["click", "box", "scribble", "polygon"]


class SegloopError(Exception):
    """An error the user can act on: the CLI prints its message on one line, no traceback."""


@dataclass(frozen=True)
class Geometry:
    """Where the voxel grid sits in the world.

    ``spacing_mm`` is in array order (z, y, x); ``origin_mm`` and ``direction`` (row-major 3x3,
    9 floats) are SimpleITK's physical (x, y, z) values, passed through unchanged on write.
    """

    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "spacing_mm": list(self.spacing_mm),
            "origin_mm": list(self.origin_mm),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Geometry:
        return cls(
            spacing_mm=tuple(float(v) for v in data["spacing_mm"]),
            origin_mm=tuple(float(v) for v in data["origin_mm"]),
            direction=tuple(float(v) for v in data["direction"]),
        )


@dataclass(frozen=True, eq=False)
class Case:
    """One evaluation case as the harness holds it (with its ground truth).

    channels: image channels, each float32 of shape (z, y, x); channel 0 is ``_0000``.
    label: integer label map (z, y, x), 0 = background.
    extra_masks: per-case masks by name (e.g. ``"liver"`` for TriALS), bool (z, y, x).
    """

    case_id: str
    channels: tuple[np.ndarray, ...]
    label: np.ndarray
    geometry: Geometry
    extra_masks: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.label.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.geometry.spacing_mm


@dataclass(frozen=True)
class Interaction:
    """One user interaction, in voxel indices of the image (array order z, y, x).

    kind "click": ``coords`` is one point. "box": two corners, (lo, hi), both inclusive.
    "scribble": the voxels of a polyline, in drawing order. "polygon": its vertices in one
    z-slice, in order (closed implicitly).
    positive: True for a foreground (include) interaction of ``class_id``, False for background.
    step: the loop step at which the robot user gave it.
    """

    kind: InteractionKind
    class_id: int
    positive: bool
    step: int
    coords: tuple[tuple[int, int, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "class_id": self.class_id,
            "positive": self.positive,
            "step": self.step,
            "coords": [list(c) for c in self.coords],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interaction:
        return cls(
            kind=data["kind"],
            class_id=int(data["class_id"]),
            positive=bool(data["positive"]),
            step=int(data["step"]),
            coords=tuple(tuple(int(v) for v in c) for c in data["coords"]),
        )


@dataclass(frozen=True)
class EmptyMaskPolicy:
    """What a metric is worth when the prediction or the ground truth of a class is empty.

    SPEC default: both empty -> overlap metrics (Dice, NSD) 1 and distances 0; one empty ->
    overlap 0 and distances = the image diagonal (``one_empty_distance_mm=None``; in voxels for
    a metric measured in voxels).

    ``empty_gt_undefined``: a class whose ground truth is empty has no value (undefined, null in
    JSON) in every metric that compares with the ground truth, whatever the prediction; only
    metrics of the prediction alone (FPV) keep one. This is autoPET's convention
    (evaluation_metrics.py: Dice and FNV are NaN for a negative case) and the one TriALS'
    script implies (it cannot score a reference without a lesion). How undefined values enter
    means and AUCs is the task's ``undefined_values`` rule.
    """

    both_empty_overlap: float = 1.0
    both_empty_distance_mm: float = 0.0
    one_empty_overlap: float = 0.0
    one_empty_distance_mm: float | None = None
    empty_gt_undefined: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "both_empty_overlap": self.both_empty_overlap,
            "both_empty_distance_mm": self.both_empty_distance_mm,
            "one_empty_overlap": self.one_empty_overlap,
            "one_empty_distance_mm": (
                "image_diagonal"
                if self.one_empty_distance_mm is None
                else self.one_empty_distance_mm
            ),
        }
        if self.empty_gt_undefined:  # written only when set: older files read the same
            out["empty_gt_undefined"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmptyMaskPolicy:
        unknown = sorted(set(data) - set(_POLICY_KEYS))
        if unknown:
            raise SegloopError(
                f"empty_mask_policy: unknown key(s) {', '.join(unknown)}; "
                f"expected {', '.join(_POLICY_KEYS)}"
            )
        for key in ("both_empty_overlap", "both_empty_distance_mm", "one_empty_overlap"):
            value = data.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SegloopError(f"empty_mask_policy: {key} must be a number, not {value!r}")
        one = data.get("one_empty_distance_mm", "image_diagonal")
        if one != "image_diagonal" and (isinstance(one, bool) or not isinstance(one, (int, float))):
            raise SegloopError(
                f"empty_mask_policy: one_empty_distance_mm must be a number or "
                f"'image_diagonal', not {one!r}"
            )
        flag = data.get("empty_gt_undefined", False)
        if not isinstance(flag, bool):
            raise SegloopError("empty_mask_policy: empty_gt_undefined must be true or false")
        return cls(
            both_empty_overlap=float(data.get("both_empty_overlap", 1.0)),
            both_empty_distance_mm=float(data.get("both_empty_distance_mm", 0.0)),
            one_empty_overlap=float(data.get("one_empty_overlap", 0.0)),
            one_empty_distance_mm=None if one == "image_diagonal" else float(one),
            empty_gt_undefined=flag,
        )


_POLICY_KEYS = (
    "both_empty_overlap",
    "both_empty_distance_mm",
    "one_empty_overlap",
    "one_empty_distance_mm",
    "empty_gt_undefined",
)


class FailureReason(str, Enum):  # noqa: UP042 - StrEnum would change str() of stored values
    """Why a step has no usable prediction (it is then scored as empty): one word a program can
    group by. Failures of the model only: a fault of the harness (engine gone, disk full, a
    lost worker) is never one of these; it stops the case, which runs again on resume."""

    TIMEOUT = "timeout"  # the step ran past its time limit
    CASE_TIMEOUT = "case_timeout"  # the case's time limit ran out first
    OOM = "oom"  # the kernel killed the container for memory
    EXIT_CODE = "exit_code"  # the model exited non-zero (session mode: without answering)
    INVALID_OUTPUT = "invalid_output"  # a missing, unreadable, refused or invalid prediction
    MODEL_ERROR = "model_error"  # session mode: the model's predict raised
    EXCEPTION = "exception"  # an in-process (python:) model raised
    MISSING_OUTPUT = "missing_output"  # a platform job wrote no output file
    MISSING_PREDICTION = "missing_prediction"  # a Codabench submission has no file for the step
    MISSING_JOB = "missing_job"  # Grand Challenge: no job for the step (or the case)
    JOB_FAILED = "job_failed"  # Grand Challenge: the job did not succeed

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StepFailure:
    """Why a model step produced no usable prediction (it is then scored as empty)."""

    reason: FailureReason
    detail: str = ""
    log_tail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", FailureReason(self.reason))
        object.__setattr__(self, "detail", valid_text(self.detail))
        object.__setattr__(self, "log_tail", valid_text(self.log_tail))

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "detail": self.detail, "log_tail": self.log_tail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepFailure:
        return cls(
            FailureReason(data["reason"]),
            str(data.get("detail", "")),
            str(data.get("log_tail", "")),
        )


@dataclass(frozen=True)
class StepResult:
    """What the loop records for one step of one case."""

    step: int
    new_interactions: tuple[Interaction, ...]
    metrics: Mapping[str, Mapping[str, Any]]  # metric -> {"mean": v, "per_class": {cls: v}}
    failure: StepFailure | None
    model_wall_time_s: float
    robot_user_s: float = 0.0  # computing this step's interactions (segloop.core.timing)
    metrics_s: float = 0.0  # scoring this step's prediction


@dataclass(frozen=True, eq=False)
class CaseInput:
    """What a model may see of a case: the images and their geometry, never the label."""

    case_id: str
    channels: tuple[np.ndarray, ...]
    geometry: Geometry
    classes: Mapping[int, str]  # label value -> class name, background (0) excluded

    @classmethod
    def of(cls, case: Case, classes: Mapping[int, str]) -> CaseInput:
        return cls(case.case_id, case.channels, case.geometry, dict(classes))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.channels[0].shape)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class StepRequest:
    """One step's request to the model: all interactions so far, and optionally its last output."""

    case_id: str
    step: int
    interactions: tuple[Interaction, ...]
    previous_prediction: np.ndarray | None


def parse_classes(text: str | None) -> dict[int, str] | None:
    """``"1:liver,2:tumor"`` -> {1: "liver", 2: "tumor"}; a bare ``"2"`` is named ``class_2``;
    None or "" -> None (the task's own classes). The one parser of every ``--classes`` option.

    Label values are integers >= 1 (0 is the background); each at most once."""
    if not text:
        return None
    classes: dict[int, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        value, _, name = item.partition(":")
        try:
            label = int(value)
        except ValueError:
            raise SegloopError(f"--classes {text}: {value!r} is not a label value") from None
        if label <= 0:
            raise SegloopError(f"--classes {text}: label values start at 1 (0 is background)")
        if label in classes:
            raise SegloopError(f"--classes {text}: label {label} is given twice")
        classes[label] = name.strip() or f"class_{label}"
    if not classes:
        raise SegloopError(f"--classes {text!r}: no class")
    return classes


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), not obeyed: text from a
    container or a file may carry escape sequences that would rewrite the terminal, set its
    title or its clipboard. Newlines, tabs and carriage returns stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def valid_text(text: str) -> str:
    """``text`` as valid UTF-8 (a lone surrogate from an undecodable file name becomes a
    ``\\udcff`` escape), so that every file it is written to can be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


#: Leading characters a spreadsheet reads as the start of a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never runs: text starting with ``=``, ``+``,
    ``-``, ``@``, tab or CR gets a leading ``'`` (as OWASP recommends); numbers stay numbers.
    Team names, case ids and failure text are input, and organizers open tables in Excel."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
