"""What a scored case is, and the one rule by which cases become a mean.

:class:`CaseResult` is the one record of a scored case: the loop writes it for every case of a
run (``RUN/cases/<case>.json``), the platform scorers (Grand Challenge, Codabench) write it for
every case they score, and the leaderboard and the summaries read it. Its JSON is the run
folder's case file format (``"format": "segloop-case-result"``); :meth:`CaseResult.from_json`
checks a file against it and names what is wrong.

:func:`aggregate` is the aggregation rule used wherever values of several cases become one
number (summary.json, summary.csv, the leaderboard tables, the platform outputs): **the mean
over the cases whose value is defined**; a case whose value is undefined (null in JSON: a
metric that the challenge leaves undefined, or an AUC over a curve with an undefined step) is
left out and counted as ``missing``, so every mean says over how many cases it was taken. This
is what the challenges' own pandas means do (``DataFrame.mean`` skips NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segloop.core.metrics.curves import summarise_curve
from segloop.core.records import EmptyMaskPolicy, Interaction, SegloopError, StepFailure

RESULT_FORMAT = "segloop-case-result"
RESULT_VERSION = 1
#: The figures a step curve becomes (SPEC "Metrics"): AUC on the task's x-axis and normalised,
#: and the Final value.
SUMMARY_KINDS: tuple[str, ...] = ("auc_raw", "auc_normalised", "final")


@dataclass(frozen=True)
class MetricValue:
    """A metric at one step: per class (label value as text, ``"1"``) and their mean; None
    where undefined."""

    mean: float | None
    per_class: Mapping[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "per_class": dict(self.per_class)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> MetricValue:
        if not isinstance(data, Mapping) or not isinstance(data.get("per_class", {}), Mapping):
            raise SegloopError(f"{where}: expected {{'mean': ..., 'per_class': {{...}}}}")
        return cls(
            _number(data.get("mean"), where),
            {str(k): _number(v, where) for k, v in data.get("per_class", {}).items()},
        )


@dataclass(frozen=True)
class StepRecord:
    """One step of a case: its metrics, why it failed (None: a usable prediction), the
    interactions the robot user added at it (None when not known: platform scorers), and
    where its prediction came from on a platform (job pk, click count, file)."""

    step: int
    metrics: Mapping[str, MetricValue]
    failure: StepFailure | None = None
    new_interactions: tuple[Interaction, ...] | None = None
    source: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, **self.source}
        if self.new_interactions is not None:
            out["new_interactions"] = [i.to_json() for i in self.new_interactions]
        out["metrics"] = {name: value.to_json() for name, value in self.metrics.items()}
        out["failure"] = self.failure.to_json() if self.failure else None
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> StepRecord:
        if not isinstance(data, Mapping):
            raise SegloopError(f"{where}: a step is not an object")
        if not isinstance(data.get("step"), int) or not isinstance(data.get("metrics"), Mapping):
            raise SegloopError(f"{where}: a step needs an integer 'step' and 'metrics'")
        where = f"{where} step {data['step']}"
        interactions = data.get("new_interactions")
        failure = data.get("failure")
        try:
            return cls(
                step=data["step"],
                metrics={
                    str(name): MetricValue.from_json(value, f"{where} metric {name}")
                    for name, value in data["metrics"].items()
                },
                failure=StepFailure.from_json(failure) if failure else None,
                new_interactions=None
                if interactions is None
                else tuple(Interaction.from_json(i) for i in interactions),
                source={
                    k: v
                    for k, v in data.items()
                    if k not in ("step", "new_interactions", "metrics", "failure")
                },
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SegloopError(f"{where}: malformed ({error})") from None


@dataclass(frozen=True)
class CurveSummary:
    """A metric's step curve of one case as the challenges report it (SPEC "Metrics")."""

    auc_raw: float | None
    auc_normalised: float | None
    final: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"auc_raw": self.auc_raw, "auc_normalised": self.auc_normalised, "final": self.final}

    def get(self, kind: str) -> float | None:
        return getattr(self, kind)

    @classmethod
    def from_json(cls, data: Any, where: str) -> CurveSummary:
        if not isinstance(data, Mapping):
            raise SegloopError(f"{where}: a summary is not an object")
        return cls(*(_number(data.get(kind), f"{where} {kind}") for kind in SUMMARY_KINDS))


@dataclass(frozen=True)
class Scoring:
    """How a case was scored: the task's scoring ``mode`` ("segloop", or "challenge": the
    numbers of the script named by ``reproduces``), how undefined values enter means and AUCs
    (``undefined_values``) and the order of the curve's steps."""

    mode: str = "segloop"
    undefined_values: str = "skip"
    curve_step_order: str = "numeric"
    reproduces: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "mode": self.mode,
            "undefined_values": self.undefined_values,
            "curve_step_order": self.curve_step_order,
            "reproduces": self.reproduces,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Scoring:
        """Older case files (without it) were scored the segloop way."""
        if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
            raise SegloopError(f"{where}: 'scoring' must be an object of strings")
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class CaseResult:
    """One scored case: its steps, the summary of every metric's curve, and what it was
    scored with (task, classes, metrics, the AUC's steps and x-axis, the empty-mask policy, the
    scoring mode: "challenge" or "segloop", with its undefined-value rule and curve order)."""

    case_id: str
    steps: tuple[StepRecord, ...]
    summary: Mapping[str, CurveSummary]
    task: str
    metrics: tuple[str, ...]
    classes: Mapping[int, str]
    auc_steps: tuple[int, ...]
    auc_x: tuple[float, ...]
    empty_mask_policy: EmptyMaskPolicy
    submission: str = ""
    config_hash: str = ""
    scoring: Scoring = field(default_factory=Scoring)

    @property
    def failed_steps(self) -> int:
        return sum(step.failure is not None for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        """The case file (same inputs and seed, same bytes: no wall times here)."""
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "case_id": self.case_id,
            "submission": self.submission,
            "task": self.task,
            "config_hash": self.config_hash,
            "classes": {str(k): v for k, v in self.classes.items()},
            "metrics": list(self.metrics),
            "auc_steps": list(self.auc_steps),
            "auc_x": list(self.auc_x),
            "empty_mask_policy": self.empty_mask_policy.to_json(),
            "scoring": self.scoring.to_json(),
            "steps": [step.to_json() for step in self.steps],
            "summary": {name: figures.to_json() for name, figures in self.summary.items()},
            "failed_steps": self.failed_steps,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> CaseResult:
        """A case file checked against the format; SegloopError names what is wrong."""
        if not isinstance(data, Mapping):
            raise SegloopError(f"{where}: not a segloop case result (not a JSON object)")
        if data.get("format") not in (None, RESULT_FORMAT):
            raise SegloopError(f"{where}: format {data.get('format')!r}, not {RESULT_FORMAT}")
        for key, kind in (("case_id", str), ("steps", list), ("summary", Mapping)):
            if not isinstance(data.get(key), kind):
                raise SegloopError(f"{where}: '{key}' is missing or not a {kind.__name__}")
        steps = tuple(StepRecord.from_json(step, where) for step in data["steps"])
        if [step.step for step in steps] != list(range(len(steps))):
            raise SegloopError(f"{where}: steps are not numbered 0, 1, ... in order")
        try:
            return cls(
                case_id=data["case_id"],
                steps=steps,
                summary={
                    str(name): CurveSummary.from_json(figures, f"{where} summary {name}")
                    for name, figures in data["summary"].items()
                },
                task=str(data.get("task", "")),
                metrics=tuple(str(m) for m in data.get("metrics", data["summary"])),
                classes={int(k): str(v) for k, v in (data.get("classes") or {}).items()},
                auc_steps=tuple(int(s) for s in data.get("auc_steps", ())),
                auc_x=tuple(float(x) for x in data.get("auc_x", ())),
                empty_mask_policy=EmptyMaskPolicy.from_json(data.get("empty_mask_policy") or {}),
                submission=str(data.get("submission", "")),
                config_hash=str(data.get("config_hash", "")),
                scoring=Scoring.from_json(data.get("scoring") or {}, where),
            )
        except (TypeError, ValueError, AttributeError) as error:
            raise SegloopError(f"{where}: malformed case result ({error})") from None


def metric_values(scores: Mapping[str, Mapping[str, Any]]) -> dict[str, MetricValue]:
    """:func:`segloop.core.metrics.scoring.score_classes`' output as records."""
    return {
        name: MetricValue(value["mean"], dict(value["per_class"])) for name, value in scores.items()
    }


def case_result(
    case_id: str,
    steps: Sequence[StepRecord],
    *,
    task: str,
    metrics: Sequence[str],
    classes: Mapping[int, str],
    auc_steps: Sequence[int],
    auc_x: Sequence[float],
    empty_mask_policy: EmptyMaskPolicy,
    submission: str = "",
    config_hash: str = "",
    scoring: Scoring | None = None,
) -> CaseResult:
    """A case's record from its scored steps: every metric's curve summarised on the task's
    AUC steps and x-axis (:func:`segloop.core.metrics.curves.summarise_curve`) in the
    scoring's step order."""
    scoring = scoring or Scoring()
    summary = {
        name: CurveSummary(
            **summarise_curve(
                [step.metrics[name].mean for step in steps],
                auc_steps,
                auc_x,
                scoring.curve_step_order,
            )
        )
        for name in metrics
    }
    return CaseResult(
        case_id=case_id,
        steps=tuple(steps),
        summary=summary,
        task=task,
        metrics=tuple(metrics),
        classes=dict(classes),
        auc_steps=tuple(auc_steps),
        auc_x=tuple(auc_x),
        empty_mask_policy=empty_mask_policy,
        submission=submission,
        config_hash=config_hash,
        scoring=scoring,
    )


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SegloopError(f"{where}: {value!r} is not a number or null")
    return float(value)


# --------------------------------------------------------------------------------------------
# The aggregation rule


@dataclass(frozen=True)
class Aggregate:
    """Values of several cases in one: the statistics of the defined ones, ``count`` of them,
    ``missing`` the undefined ones left out (:func:`aggregate`)."""

    mean: float | None
    std: float | None
    median: float | None
    min: float | None
    max: float | None
    count: int
    missing: int

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "mean": self.mean,
            "std": self.std,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "missing": self.missing,
        }


def aggregate(values: Sequence[float | None]) -> Aggregate:
    """THE aggregation rule: statistics over the defined values (not None, finite); undefined
    values are left out and counted as ``missing``. No defined value: every statistic None."""
    defined = np.array(
        [float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float
    )
    missing = len(values) - defined.size
    if defined.size == 0:
        return Aggregate(None, None, None, None, None, 0, missing)
    return Aggregate(
        float(defined.mean()),
        float(defined.std()),
        float(np.median(defined)),
        float(defined.min()),
        float(defined.max()),
        int(defined.size),
        int(missing),
    )


def column_name(metric: str, kind: str) -> str:
    """The per-case table column of a metric summary, e.g. ``dice_auc_normalised``."""
    return f"{metric}_{kind}"


def summary_columns(result: CaseResult) -> dict[str, float | None]:
    """A case's summary as table columns ``<metric>_<kind>``."""
    return {
        column_name(metric, kind): figures.get(kind)
        for metric, figures in result.summary.items()
        for kind in SUMMARY_KINDS
    }


def mean_summary(results: Sequence[CaseResult]) -> dict[str, dict[str, float | None]]:
    """Per metric and summary kind, the :func:`aggregate` mean over the cases."""
    metrics = list(dict.fromkeys(m for r in results for m in r.summary))
    return {
        metric: {
            kind: aggregate(
                [r.summary[metric].get(kind) for r in results if metric in r.summary]
            ).mean
            for kind in SUMMARY_KINDS
        }
        for metric in metrics
    }


def mean_curves(results: Sequence[CaseResult]) -> dict[str, list[float | None]]:
    """Per metric, the :func:`aggregate` mean over the cases at each step."""
    metrics = list(dict.fromkeys(m for r in results for s in r.steps for m in s.metrics))
    num_steps = max((len(r.steps) for r in results), default=0)
    return {
        metric: [
            aggregate(
                [
                    r.steps[step].metrics[metric].mean
                    for r in results
                    if step < len(r.steps) and metric in r.steps[step].metrics
                ]
            ).mean
            for step in range(num_steps)
        ]
        for metric in metrics
    }


def missing_counts(results: Sequence[CaseResult]) -> dict[str, dict[str, int]]:
    """Per metric and kind with undefined cases, how many were left out of the mean."""
    out: dict[str, dict[str, int]] = {}
    for metric, kinds in mean_summary(results).items():
        for kind in kinds:
            missing = aggregate([r.summary[metric].get(kind) for r in results]).missing
            if missing:
                out.setdefault(metric, {})[kind] = missing
    return out


def class_summaries(result: CaseResult) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per metric and class (label value as text), the class's own curve summarised as the
    case's mean is (:func:`segloop.core.metrics.curves.summarise_curve`: the task's AUC steps,
    x-axis and step order): a mean over classes hides a class that fails (white matter 0.80
    beside grey matter 0.02 is a mean of 0.41). None where a value is undefined."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for metric in result.metrics:
        keys = list(dict.fromkeys(k for s in result.steps for k in s.metrics[metric].per_class))
        out[metric] = {
            key: summarise_curve(
                [s.metrics[metric].per_class.get(key) for s in result.steps],
                result.auc_steps,
                result.auc_x,
                result.scoring.curve_step_order,
            )
            for key in keys
        }
    return out
