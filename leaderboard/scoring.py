"""What makes a task's leaderboard score: which metric summaries, with which weights.

A *score term* names one column of the per-case table, ``<metric>_<kind>`` with kind one of
``auc_raw``, ``auc_normalised`` or ``final`` (SPEC "Metrics": AUC of the step curve, raw and
normalised, and the Final value), and a weight. The score of a submission is the weighted mean
of its ranks over the terms (aggregate-then-rank, SPEC "Leaderboards"); a lower score is better.

Defaults per task (thesis §7.3.3: every challenge ranked on the AUC and the Final value of its
metrics, each ranked on its own, ranks averaged with equal weights):

- autopet:     Dice, FPV, FNV        (AUC and Final)
- toothfairy3: Dice, HD95            (AUC and Final)
- trials:      Dice, ASSD, HD        (AUC and Final)
- medsegfm:    Dice, NSD at 2 mm     (AUC and Final)
- any other task: every metric of the task, AUC and Final.

The AUC term uses the normalised AUC; on one task it ranks exactly as the raw AUC (same x-axis
for every submission) and stays readable across tasks.

Override on the command line with ``--score dice:auc:1,nsd@2:final:1`` (all tasks) or
``--score medsegfm=dice:auc:2,nsd@2:auc:1`` (one task).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from segloop.core.metrics.registry import higher_is_better as metric_direction
from segloop.core.records import SegloopError
from segloop.core.results import column_name

KIND_ALIASES: dict[str, str] = {
    "auc": "auc_normalised",
    "auc_norm": "auc_normalised",
    "auc_normalized": "auc_normalised",
    "auc_normalised": "auc_normalised",
    "auc_raw": "auc_raw",
    "final": "final",
}


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (Dice, NSD) or worse (distances, volumes);
    ``segloop.core.metrics.higher_is_better`` decides (SegloopError for an unknown metric)."""

    return bool(metric_direction(metric))


@dataclass(frozen=True)
class ScoreTerm:
    """One ranked column of the score: ``metric``'s ``kind`` summary with ``weight``."""

    metric: str
    kind: str
    weight: float = 1.0

    @property
    def column(self) -> str:
        return column_name(self.metric, self.kind)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "weight": self.weight,
            "column": self.column,
            "higher_is_better": self.higher_is_better,
        }


def _auc_and_final(*metrics: str) -> tuple[ScoreTerm, ...]:
    return tuple(ScoreTerm(m, k) for m in metrics for k in ("auc_normalised", "final"))


DEFAULT_SCORING: dict[str, tuple[ScoreTerm, ...]] = {
    "autopet": _auc_and_final("dice", "fpv", "fnv"),
    "toothfairy3": _auc_and_final("dice", "hd95"),
    "toothfairy": _auc_and_final("dice", "hd95"),
    "trials": _auc_and_final("dice", "assd", "hd"),
    "medsegfm": _auc_and_final("dice", "nsd@2"),
}


def parse_score_spec(text: str) -> tuple[ScoreTerm, ...]:
    """Parse ``metric:kind[:weight],...`` (kind: auc, auc_raw, auc_normalised, final)."""
    terms = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise SegloopError(f"--score {text!r}: {part!r} is not metric:kind[:weight]")
        metric, kind = fields[0].strip(), fields[1].strip().lower()
        if kind not in KIND_ALIASES:
            raise SegloopError(
                f"--score {text!r}: kind {kind!r} is not one of {', '.join(sorted(KIND_ALIASES))}"
            )
        try:
            weight = float(fields[2]) if len(fields) == 3 else 1.0
        except ValueError:
            raise SegloopError(f"--score {text!r}: weight {fields[2]!r} is not a number") from None
        if not weight > 0:
            raise SegloopError(f"--score {text!r}: weight of {part!r} must be positive")
        higher_is_better(metric)  # unknown metric -> SegloopError now, not at ranking time
        terms.append(ScoreTerm(metric, KIND_ALIASES[kind], weight))
    if not terms:
        raise SegloopError(f"--score {text!r}: no term")
    return tuple(terms)


def parse_score_overrides(specs: Iterable[str]) -> dict[str | None, tuple[ScoreTerm, ...]]:
    """``["dice:auc:1", "medsegfm=nsd@2:final"]`` -> {None: all tasks, "medsegfm": ...}."""
    overrides: dict[str | None, tuple[ScoreTerm, ...]] = {}
    for spec in specs:
        task, _, terms = spec.rpartition("=")
        overrides[task.strip() or None] = parse_score_spec(terms)
    return overrides


def scoring_for(
    task_name: str,
    task_metrics: Sequence[str],
    overrides: Mapping[str | None, Sequence[ScoreTerm]] | None = None,
) -> tuple[ScoreTerm, ...]:
    """The score terms of a task: an override (task-specific first), else the preset.

    Preset terms whose metric the runs did not measure are dropped (a run may use a subset of
    the metrics); an override naming a metric the runs lack is an error.
    """
    overrides = overrides or {}
    chosen = overrides.get(task_name, overrides.get(None))
    if chosen is not None:
        missing = [t.metric for t in chosen if t.metric not in task_metrics]
        if missing:
            raise SegloopError(
                f"--score: task {task_name!r} has no metric {', '.join(missing)} "
                f"(its runs measured {', '.join(task_metrics)})"
            )
        return tuple(chosen)
    preset = tuple(t for t in DEFAULT_SCORING.get(task_name, ()) if t.metric in task_metrics)
    return preset or _auc_and_final(*task_metrics)
