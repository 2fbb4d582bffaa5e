"""A task: which robot user, how many steps, which metrics and how the curve becomes an AUC.

Also the two interfaces the loop talks to (robot user, model back-end), as typing protocols so
that the loop imports no implementation: robot users live in ``protocols``, back-ends in
``containers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segloop.core.records import Case, CaseInput, EmptyMaskPolicy, Interaction, StepRequest


class RobotUser(Protocol):
    """Produces the *new* interactions of one step.

    ``previous_prediction`` is None at step 0 and for non-reactive protocols may be ignored.
    Every random draw must come from a generator seeded by (seed, case id, class, step),
    see ``segloop.protocols.base.rng_for``.
    """

    name: str

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]: ...

    def to_json(self) -> dict[str, Any]: ...


class CaseSession(Protocol):
    """A model opened on one case; ``predict`` returns an integer label map of the image's shape.

    Raises ``containers.base.ModelStepError`` (or anything else) when a step fails.
    """

    def predict(self, request: StepRequest) -> np.ndarray: ...

    def close(self) -> None: ...


class ModelBackend(Protocol):
    name: str

    def open_case(self, case_input: CaseInput) -> CaseSession: ...


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; the harness enforces the wall-clock ones itself."""

    step_time_limit_s: float = 300.0
    case_time_limit_s: float = 3600.0
    memory_mb: int = 8192
    cpus: float = 2.0
    pids: int = 256
    shm_mb: int = 512
    tmp_mb: int = 1024  # the container's /tmp (a tmpfs; its root filesystem is read-only)
    output_mb: int = 4096  # what its outputs may hold (a tmpfs when the harness can mount one)
    nofile: int = 4096  # open files per process
    gpus: tuple[int, ...] = ()
    session_mode: str = "per-step"  # "per-step", "case" or "submission" (Docker only)


class Terminated(KeyboardInterrupt):
    """The harness was told to stop (SIGTERM, e.g. from a batch scheduler).

    A KeyboardInterrupt, so every clean-up path of Ctrl-C runs (containers removed, the case in
    flight not stored) and no ``except Exception`` records it as a failed step.
    """


#: Resource limits a task may set (seconds, MiB, CPUs, processes); ``segloop.containers.registry.Limits``.
LIMIT_KEYS = (
    "step_time_limit_s",
    "case_time_limit_s",
    "memory_mb",
    "cpus",
    "pids",
    "shm_mb",
    "tmp_mb",
    "output_mb",
    "nofile",
)


@dataclass(frozen=True)
class Task:
    """Everything that defines how a case is run and scored.

    auc_steps: the steps whose metric values make the curve (e.g. MedSegFM: the 5 click steps).
    auc_x: the x value of each of those steps, as the challenge reported the AUC (raw);
      the normalised AUC divides the raw one by ``auc_x[-1] - auc_x[0]``.
    metrics: metric names understood by ``segloop.core.metrics`` (e.g. "dice", "nsd@2", "hd95").
    nsd_zero_below_dice: MedSegFM rule, NSD set to 0 where Dice <= this value (None = off).
    nsd_zero_scope: "case" compares the case's Dice (mean over classes) and zeroes every class's
      NSD, as CVPR25_iter_eval.py does; "class" compares each class's own Dice.
    present_classes_only: score only the classes present in the case's ground truth (CVPR25);
      otherwise every task class is scored, absent ones by the empty-mask policy.
    send_previous_prediction: reactive tasks give the model its last output.
    requires_foreground: refuse a case whose label has no foreground voxel, for protocols that
      prompt from the ground truth (a MedSegFM box, ToothFairy3 canal clicks) and would
      otherwise score an untouched case as perfect. autoPET and TriALS keep their negative cases.
    limits: the task's defaults for a run's resource limits (keys in ``LIMIT_KEYS``, the fields
      of ``segloop.containers.registry.Limits``); a run's own options override them. Not in
      :meth:`to_json`: limits do not define results, so a resumed run may change them.
    """

    name: str
    description: str
    robot_user: RobotUser
    num_steps: int
    classes: Mapping[int, str]
    metrics: tuple[str, ...]
    auc_steps: tuple[int, ...]
    auc_x: tuple[float, ...]
    empty_mask_policy: EmptyMaskPolicy = field(default_factory=EmptyMaskPolicy)
    nsd_zero_below_dice: float | None = None
    nsd_zero_scope: str = "case"
    present_classes_only: bool = False
    send_previous_prediction: bool = False
    requires_foreground: bool = False
    seed: int = 0
    limits: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.auc_steps) != len(self.auc_x):
            raise ValueError("auc_steps and auc_x must have the same length")
        if any(s < 0 or s >= self.num_steps for s in self.auc_steps):
            raise ValueError("auc_steps must lie in 0..num_steps-1")
        unknown = sorted(set(self.limits) - set(LIMIT_KEYS))
        if unknown:
            raise ValueError(
                f"limits: unknown {', '.join(unknown)}; expected {', '.join(LIMIT_KEYS)}"
            )
        if any(not value > 0 for value in self.limits.values()):
            raise ValueError(f"limits must be > 0: {dict(self.limits)}")
        if self.nsd_zero_scope not in ("case", "class"):
            raise ValueError(
                f"nsd_zero_scope must be 'case' or 'class', not {self.nsd_zero_scope!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "robot_user": self.robot_user.to_json(),
            "num_steps": self.num_steps,
            "classes": {str(k): v for k, v in self.classes.items()},
            "metrics": list(self.metrics),
            "auc_steps": list(self.auc_steps),
            "auc_x": list(self.auc_x),
            "empty_mask_policy": self.empty_mask_policy.to_json(),
            "nsd_zero_below_dice": self.nsd_zero_below_dice,
            "nsd_zero_scope": self.nsd_zero_scope,
            "present_classes_only": self.present_classes_only,
            "send_previous_prediction": self.send_previous_prediction,
            "requires_foreground": self.requires_foreground,
            "seed": self.seed,
        }
