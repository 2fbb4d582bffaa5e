"""Where a run spends its time: the parts of a case's timing file and their split (issue 16).

A case's timing file (``cases/<id>.timing.json``, written by :mod:`segloop.runs`) holds, per
step, the robot user's time (``robot_user_s``: computing the step's interactions), the model's
(``model_wall_time_s``: the back-end's ``predict``, including its own file exchange with a
container) and the metrics' (``metrics_s``: scoring every class); per case, opening and closing
the model's session (``session_s``, e.g. a container start) and the harness's I/O (``io_s``:
stamping and reading the case's images and label). Wall-clock seconds (``time.perf_counter``);
never part of the case file, whose bytes must not depend on the machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Per-step lists of a timing file, by the part of the budget they count for.
STEP_PARTS = {"robot_user_s": "robot user", "model_wall_time_s": "model", "metrics_s": "metrics"}


def _seconds(values: Any) -> float:
    """The sum of a timing entry: a number or a list of numbers (None and junk count 0, so
    that an old or damaged timing file cannot stop a summary)."""
    items = values if isinstance(values, list) else [values]
    return float(sum(v for v in items if isinstance(v, int | float) and v == v and v >= 0))


@dataclass(frozen=True)
class TimeBudget:
    """Seconds spent by the model (its steps and its session), the metrics, the robot user
    and the harness's I/O, summed over some cases."""

    model_s: float = 0.0
    metrics_s: float = 0.0
    robot_user_s: float = 0.0
    io_s: float = 0.0
    cases: int = 0

    @property
    def total_s(self) -> float:
        return self.model_s + self.metrics_s + self.robot_user_s + self.io_s

    def shares_percent(self) -> dict[str, float]:
        """Each part's share of the total, in %, in the order the summary line gives them."""
        total = self.total_s
        parts = {
            "model": self.model_s,
            "metrics": self.metrics_s,
            "robot user": self.robot_user_s,
            "I/O": self.io_s,
        }
        return {
            name: (100.0 * value / total if total > 0 else 0.0) for name, value in parts.items()
        }

    def line(self) -> str:
        """``time: model 61 %, metrics 22 %, robot user 9 %, I/O 8 % of 12.3 s in 3 cases``."""
        shares = ", ".join(f"{name} {share:.0f} %" for name, share in self.shares_percent().items())
        return f"time: {shares} of {self.total_s:.1f} s in {self.cases} cases"

    def to_json(self) -> dict[str, float]:
        return {
            "model_s": self.model_s,
            "metrics_s": self.metrics_s,
            "robot_user_s": self.robot_user_s,
            "io_s": self.io_s,
            "cases": self.cases,
        }


def time_budget(timings: Iterable[Mapping[str, Any]]) -> TimeBudget:
    """The split of the time recorded in case timing files (their parsed JSON)."""
    model = metrics = robot = io = 0.0
    cases = 0
    for timing in timings:
        cases += 1
        model += _seconds(timing.get("model_wall_time_s")) + _seconds(timing.get("session_s"))
        metrics += _seconds(timing.get("metrics_s"))
        robot += _seconds(timing.get("robot_user_s"))
        io += _seconds(timing.get("io_s"))
    return TimeBudget(model, metrics, robot, io, cases)
