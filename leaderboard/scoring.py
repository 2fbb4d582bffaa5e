"""What makes a task's leaderboard score: which metric summaries, with which weights.

A *score term* names one column of the per-case table, ``<metric>_<kind>`` with kind one of
``auc_raw``, ``auc_normalised`` or ``final`` (SPEC "Metrics": AUC of the step curve, raw and
normalised, and the Final value), and a weight. The score of a submission is the weighted mean
of its ranks over the terms (aggregate-then-rank, SPEC "Leaderboards"); a lower score is better.

The default terms of a task are its challenge's (``segloop.core.challenges``: thesis §7.3.3,
every 2025 challenge ranked on the AUC and the Final value of each of its metrics, ranks
averaged with equal weights); any other task ranks on every metric's AUC and Final.

The AUC term uses the normalised AUC; on one task it ranks exactly as the raw AUC (same x-axis
for every submission) and stays readable across tasks.

Override on the command line with ``--score dice:auc:1,nsd@2:final:1`` (all tasks) or
``--score medsegfm=dice:auc:2,nsd@2:auc:1`` (one task).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from segloop.core.challenges import CHALLENGES, ScoreTerm, auc_and_final
from segloop.core.metrics.registry import higher_is_better
from segloop.core.records import SegloopError

KIND_ALIASES: dict[str, str] = {
    "auc": "auc_normalised",
    "auc_norm": "auc_normalised",
    "auc_normalized": "auc_normalised",
    "auc_normalised": "auc_normalised",
    "auc_raw": "auc_raw",
    "final": "final",
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
    challenge = CHALLENGES.get(task_name)
    preset = tuple(t for t in challenge.ranking if t.metric in task_metrics) if challenge else ()
    return preset or auc_and_final(*task_metrics)
