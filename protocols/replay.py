"""Recorded interactions as a robot user: play back, step by step, what annotators did.

A ``ReplayUser`` gives at step k exactly the interactions recorded for step k of the case, so
any submission can be scored on the clicks real people (or another tool, or a challenge's
published click files) gave. It ignores the model's predictions: recorded sessions reacted to
the model the annotators used, and replaying them on another model keeps their clicks, not
their reactions (the thesis's user studies, §5.2, did the same with one model). A step past the
end of a recording gives nothing; a case the recording does not hold is an error. The sources
it reads, and their errors, are described in :mod:`segloop.protocols.recordings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segloop.core.records import AXIS_ORDER, Case, Interaction, SegloopError
from segloop.protocols.recordings import Recording, load_recording


@dataclass(frozen=True)
class ReplayUser:
    """Plays a recording back step by step (module docstring). Non-reactive, deterministic."""

    path: str
    format: str = "auto"
    annotator: str | None = None
    challenge: str = "autopet"  # format "gc": whose click-file convention (axis order, names)
    axis_order: tuple[str, str, str] | None = None  # format "gc": overrides the challenge's
    cumulative: bool = True  # format "gc": file k holds the clicks of steps 0..k
    sha256: str | None = field(default=None, compare=False)  # expected content hash, if given
    name: str = "replay"
    _recording: Recording | None = field(default=None, init=False, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.axis_order is not None:
            order = tuple(str(a).lower() for a in self.axis_order)
            if sorted(order) != sorted(AXIS_ORDER):
                raise SegloopError(
                    f"replay: axis_order must be a permutation of z, y, x, not {self.axis_order}"
                )
            object.__setattr__(self, "axis_order", order)
        recording = load_recording(self.path, self.format, self.annotator)
        if self.sha256 is not None and self.sha256 != recording.sha256:
            raise SegloopError(
                f"replay {self.path}: the recording changed (SHA-256 {recording.sha256[:12]}..., "
                f"expected {str(self.sha256)[:12]}...)"
            )
        object.__setattr__(self, "format", recording.format)
        object.__setattr__(self, "sha256", recording.sha256)
        object.__setattr__(self, "_recording", recording)

    @property
    def recording(self) -> Recording:
        assert self._recording is not None
        return self._recording

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": "replay",
            "path": self.path,
            "format": self.format,
            "annotator": self.annotator,
            "challenge": self.challenge,
            "axis_order": None if self.axis_order is None else list(self.axis_order),
            "cumulative": self.cumulative,
            "sha256": self.sha256,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def steps_of(
        self, case: Case, classes: Mapping[int, str]
    ) -> dict[int, tuple[Interaction, ...]]:
        """The case's recorded interactions by step, checked against the task and the image."""
        key = (case.case_id, case.shape, tuple(sorted(classes.items())))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        interactions = self.recording.interactions_of(
            case.case_id,
            classes,
            case.shape,
            case.geometry,
            self.challenge,
            self.axis_order,
            self.cumulative,
        )
        by_step: dict[int, list[Interaction]] = {}
        for interaction in interactions:
            by_step.setdefault(interaction.step, []).append(interaction)
        result = {step: tuple(items) for step, items in by_step.items()}
        if len(self._cache) >= 16:
            self._cache.clear()
        self._cache[key] = result
        return result

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: Any,
        seed: int,
    ) -> tuple[Interaction, ...]:
        return self.steps_of(case, classes).get(step, ())
