"""A task: which robot user, how many steps, which metrics and how the curve becomes an AUC.

Also the two interfaces the loop talks to (robot user, model back-end), as typing protocols so
that the loop imports no implementation: robot users live in ``protocols``, back-ends in
``containers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segloop.core.challenges import Challenge
from segloop.core.records import Case, CaseInput, Interaction, StepRequest


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


@dataclass(frozen=True, kw_only=True)
class Task(Challenge):
    """A challenge ready to run: its robot user built from its ``protocol``
    (``segloop.protocols.tasks.build_task``), whether the model gets its previous prediction
    decided, its seed and classes chosen for the run."""

    robot_user: RobotUser
    send_previous_prediction: bool = False

    def to_json(self) -> dict[str, Any]:
        """What defines a run's results (part of its configuration hash): not the ranking, the
        platforms' conventions or the limits, which may change without changing a score."""
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
            "scoring": self.scoring.to_json(),
            "nsd_zero_below_dice": self.nsd_zero_below_dice,
            "nsd_zero_scope": self.nsd_zero_scope,
            "present_classes_only": self.present_classes_only,
            "send_previous_prediction": self.send_previous_prediction,
            "requires_foreground": self.requires_foreground,
            "seed": self.seed,
        }
