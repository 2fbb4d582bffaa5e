"""Rankings of the submissions of a task, across tasks, and their stability (challengeR).

Definitions (SPEC "Leaderboards"; Wiesenfarth et al. 2021, challengeR):

- Ranks are competition ranks: 1 is best, ties share the minimum rank (values 0.9, 0.8, 0.8,
  0.7 with higher-is-better rank 1, 2, 2, 4). Each metric says whether higher is better
  (``scoring.higher_is_better``).
- Aggregate-then-rank: for each score term (a column ``<metric>_<kind>``), the mean over cases
  per submission, ranked across submissions; the score is the weighted mean of these ranks and
  the task rank is the rank of the score (lower score is better).
- Rank-then-aggregate: for each case and term, rank the submissions; the mean rank over cases,
  weighted over terms, is the score; the task rank is the rank of that score.
- Consensus across tasks: the mean of a submission's task ranks, ranked again. A submission
  absent from a task takes the rank after that task's last (n + 1).
- Stability: bootstrap over cases (``n_samples`` resamples of the case set with replacement, a
  seeded ``numpy.random.Generator``); each resample is ranked aggregate-then-rank. Reported:
  each submission's rank distribution, winner frequency (share of resamples where it ranks 1),
  and Kendall's tau-b between each resample's ranking and the full ranking.

Missing values (decision, following challengeR's "missing counts as worst"): a submission may
lack a case that another submission of the task has, or a summary value may be null (not
finite). Then
- aggregate-then-rank (and the bootstrap) counts the value as the *worst value of that column
  observed anywhere in the task* (lowest for higher-is-better, highest otherwise), so the mean
  has a value and is pulled towards the worst;
- rank-then-aggregate gives it the *worst rank on that case*: after every submission with a
  value (submissions missing the same case tie, sharing the minimum of the remaining ranks).
A column with no value at all gives every submission the same rank. Missing cases and null
values are counted per submission and shown on the leaderboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from segloop.core.challenges import ScoreTerm
from segloop.core.records import SegloopError

DEFAULT_BOOTSTRAP_SAMPLES = 1000


def competition_ranks(values: np.ndarray, higher_is_better: bool, axis: int = 0) -> np.ndarray:
    """Ranks along ``axis``: 1 = best, ties share the minimum rank (1, 2, 2, 4)."""
    keyed = -np.asarray(values, dtype=float) if higher_is_better else np.asarray(values, float)
    return rankdata(keyed, method="min", axis=axis).astype(float)


def fill_missing(values: np.ndarray, higher_is_better: Sequence[bool]) -> np.ndarray:
    """Replace NaN in ``values[submission, case, term]`` by the worst value of that term
    observed anywhere (all submissions and cases); a term with no value at all becomes 0."""
    filled = np.array(values, dtype=float, copy=True)
    for k, higher in enumerate(higher_is_better):
        column = filled[:, :, k]
        finite = column[np.isfinite(column)]
        worst = 0.0 if finite.size == 0 else (finite.min() if higher else finite.max())
        column[~np.isfinite(column)] = worst
    return filled


def _weighted_rank_score(column_ranks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (column_ranks * weights).sum(axis=-1) / weights.sum()


@dataclass(frozen=True)
class AggregateThenRank:
    means: np.ndarray  # [submission, term] mean over cases
    column_ranks: np.ndarray  # [submission, term]
    score: np.ndarray  # [submission] weighted mean of the term ranks
    rank: np.ndarray  # [submission]


def aggregate_then_rank(
    values: np.ndarray, higher_is_better: Sequence[bool], weights: Sequence[float]
) -> AggregateThenRank:
    """``values[submission, case, term]`` (no NaN) -> mean per term, rank per term, score, rank."""
    means = values.mean(axis=1)
    column_ranks = np.stack(
        [competition_ranks(means[:, k], h) for k, h in enumerate(higher_is_better)], axis=1
    )
    score = _weighted_rank_score(column_ranks, np.asarray(weights, dtype=float))
    return AggregateThenRank(means, column_ranks, score, competition_ranks(score, False))


@dataclass(frozen=True)
class RankThenAggregate:
    case_ranks: np.ndarray  # [submission, case, term]
    mean_ranks: np.ndarray  # [submission, term] mean over cases
    score: np.ndarray  # [submission]
    rank: np.ndarray  # [submission]


def case_ranks_missing_last(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks of ``values[submission, case]`` per case (axis 0); NaN ranks after every value,
    NaNs of one case tie (n_present + 1)."""
    keyed = -np.asarray(values, dtype=float) if higher_is_better else np.asarray(values, float)
    keyed = np.where(np.isnan(keyed), np.inf, keyed)
    return rankdata(keyed, method="min", axis=0).astype(float)


def rank_then_aggregate(
    raw_values: np.ndarray, higher_is_better: Sequence[bool], weights: Sequence[float]
) -> RankThenAggregate:
    """Rank the submissions on every case and term (NaN: worst rank on that case), average the
    ranks over cases, then the weighted mean over terms is the score."""
    case_ranks = np.stack(
        [case_ranks_missing_last(raw_values[:, :, k], h) for k, h in enumerate(higher_is_better)],
        axis=2,
    )
    mean_ranks = case_ranks.mean(axis=1)
    score = _weighted_rank_score(mean_ranks, np.asarray(weights, dtype=float))
    return RankThenAggregate(case_ranks, mean_ranks, score, competition_ranks(score, False))


def kendall_tau_b(reference: np.ndarray, rankings: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``reference[n]`` and each row of ``rankings[..., n]``.

    tau_b = (C - D) / sqrt((P - T_x) (P - T_y)) with P pairs, T ties (Kendall 1945); computed
    from the signs of all pairwise differences. NaN where a ranking is constant.
    """
    reference = np.asarray(reference, dtype=float)
    rankings = np.asarray(rankings, dtype=float)
    upper = np.triu_indices(reference.shape[-1], k=1)
    dx = np.sign(reference[:, None] - reference[None, :])[upper]
    dy = np.sign(rankings[..., :, None] - rankings[..., None, :])[..., upper[0], upper[1]]
    numerator = (dx * dy).sum(axis=-1)
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


@dataclass(frozen=True)
class Bootstrap:
    n_samples: int
    seed: int
    ranks: np.ndarray  # [sample, submission]
    rank_frequency: np.ndarray  # [submission, rank-1]: share of samples with that rank
    winner_frequency: np.ndarray  # [submission]
    mean_rank: np.ndarray  # [submission]
    rank_low: np.ndarray  # [submission] 2.5 % quantile of the rank
    rank_high: np.ndarray  # [submission] 97.5 % quantile
    tau: np.ndarray  # [sample] Kendall tau-b to the full ranking (NaN: undefined)

    @property
    def tau_mean(self) -> float:
        finite = self.tau[np.isfinite(self.tau)]
        return float(finite.mean()) if finite.size else float("nan")

    @property
    def tau_median(self) -> float:
        finite = self.tau[np.isfinite(self.tau)]
        return float(np.median(finite)) if finite.size else float("nan")


def bootstrap_ranks(
    values: np.ndarray,
    higher_is_better: Sequence[bool],
    weights: Sequence[float],
    full_rank: np.ndarray,
    n_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Bootstrap:
    """Resample the cases with replacement ``n_samples`` times (``default_rng(seed)``) and
    rank each resample aggregate-then-rank (challengeR ``bootstrap``)."""
    if n_samples < 1:
        raise SegloopError(f"--bootstrap {n_samples}: need at least 1 resample")
    num_submissions, num_cases = values.shape[0], values.shape[1]
    rng = np.random.default_rng(seed)
    ranks = np.empty((n_samples, num_submissions))
    for b in range(n_samples):
        picked = rng.integers(0, num_cases, size=num_cases)
        ranks[b] = aggregate_then_rank(values[:, picked, :], higher_is_better, weights).rank
    frequency = np.stack([(ranks == r).mean(axis=0) for r in range(1, num_submissions + 1)], axis=1)
    return Bootstrap(
        n_samples=n_samples,
        seed=seed,
        ranks=ranks,
        rank_frequency=frequency,
        winner_frequency=frequency[:, 0],
        mean_rank=ranks.mean(axis=0),
        rank_low=np.quantile(ranks, 0.025, axis=0),
        rank_high=np.quantile(ranks, 0.975, axis=0),
        tau=kendall_tau_b(full_rank, ranks),
    )


@dataclass(frozen=True)
class TaskRanking:
    task: str
    terms: tuple[ScoreTerm, ...]
    submissions: tuple[str, ...]
    case_ids: tuple[str, ...]
    raw_values: np.ndarray  # [submission, case, term], NaN where missing or null
    missing_cases: np.ndarray  # [submission, case] the submission has no result for the case
    values: np.ndarray  # raw_values with missing values filled (worst observed)
    aggregate: AggregateThenRank
    per_case: RankThenAggregate
    bootstrap: Bootstrap | None = field(default=None)

    def table(self) -> pd.DataFrame:
        """One row per submission, best first: ranks, scores, term means and term ranks,
        missing cases, and the bootstrap's winner frequency and mean rank."""
        rows = []
        for i, submission in enumerate(self.submissions):
            row = {
                "submission": submission,
                "rank": int(self.aggregate.rank[i]),
                "score": float(self.aggregate.score[i]),
                "rank_then_aggregate_rank": int(self.per_case.rank[i]),
                "rank_then_aggregate_score": float(self.per_case.score[i]),
            }
            for k, term in enumerate(self.terms):
                row[f"{term.column}_mean"] = float(self.aggregate.means[i, k])
                row[f"{term.column}_rank"] = int(self.aggregate.column_ranks[i, k])
            row["missing_cases"] = int(self.missing_cases[i].sum())
            row["null_values"] = int(
                (np.isnan(self.raw_values[i]) & ~self.missing_cases[i][:, None]).sum()
            )
            if self.bootstrap is not None:
                row["winner_frequency"] = float(self.bootstrap.winner_frequency[i])
                row["bootstrap_mean_rank"] = float(self.bootstrap.mean_rank[i])
                row["bootstrap_rank_low"] = float(self.bootstrap.rank_low[i])
                row["bootstrap_rank_high"] = float(self.bootstrap.rank_high[i])
            rows.append(row)
        table = pd.DataFrame(rows)
        return table.sort_values(["rank", "submission"], kind="stable").reset_index(drop=True)

    def stability_json(self) -> dict[str, object] | None:
        if self.bootstrap is None:
            return None
        b = self.bootstrap
        return {
            "n_samples": b.n_samples,
            "seed": b.seed,
            "kendall_tau_mean": b.tau_mean,
            "kendall_tau_median": b.tau_median,
            "kendall_tau_undefined": int(np.isnan(b.tau).sum()),
            "submissions": {
                s: {
                    "full_rank": int(self.aggregate.rank[i]),
                    "winner_frequency": float(b.winner_frequency[i]),
                    "mean_rank": float(b.mean_rank[i]),
                    "rank_low": float(b.rank_low[i]),
                    "rank_high": float(b.rank_high[i]),
                    "rank_frequency": [float(v) for v in b.rank_frequency[i]],
                }
                for i, s in enumerate(self.submissions)
            },
        }


def task_values(
    cases: pd.DataFrame, task: str, terms: Sequence[ScoreTerm]
) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray, np.ndarray]:
    """The case table of one task as ``values[submission, case, term]`` (NaN where missing)
    and ``missing[submission, case]``; submissions and cases sorted by name."""
    rows = cases[cases["task"] == task]
    if rows.empty:
        raise SegloopError(f"no case result for task {task!r}")
    columns = [t.column for t in terms]
    absent = [c for c in columns if c not in rows.columns]
    if absent:
        raise SegloopError(f"task {task!r}: no column {', '.join(absent)} in the case results")
    submissions = tuple(sorted(rows["submission"].unique()))
    case_ids = tuple(sorted(rows["case_id"].unique()))
    index = pd.MultiIndex.from_product([submissions, case_ids], names=["submission", "case_id"])
    indexed = rows.set_index(["submission", "case_id"])
    full = indexed[columns].reindex(index)
    missing = ~index.isin(indexed.index)
    shape = (len(submissions), len(case_ids))
    values = full.to_numpy(dtype=float).reshape(*shape, len(columns))
    return submissions, case_ids, values, missing.reshape(shape)


def rank_task(
    cases: pd.DataFrame,
    task: str,
    terms: Sequence[ScoreTerm],
    n_bootstrap: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> TaskRanking:
    """Aggregate-then-rank, rank-then-aggregate and (``n_bootstrap`` > 0) bootstrap stability
    of the submissions of ``task`` in a case table (``tables.case_table``)."""
    if not terms:
        raise SegloopError(f"task {task!r}: no score term")
    submissions, case_ids, raw, missing = task_values(cases, task, terms)
    higher = [t.higher_is_better for t in terms]
    weights = [t.weight for t in terms]
    values = fill_missing(raw, higher)
    aggregate = aggregate_then_rank(values, higher, weights)
    stability = (
        bootstrap_ranks(values, higher, weights, aggregate.rank, n_bootstrap, seed)
        if n_bootstrap > 0
        else None
    )
    return TaskRanking(
        task=task,
        terms=tuple(terms),
        submissions=submissions,
        case_ids=case_ids,
        raw_values=raw,
        missing_cases=missing,
        values=values,
        aggregate=aggregate,
        per_case=rank_then_aggregate(raw, higher, weights),
        bootstrap=stability,
    )


def consensus_ranking(rankings: Sequence[TaskRanking]) -> pd.DataFrame:
    """Mean of the task ranks per submission, ranked (ties share the minimum rank).

    Columns: submission, ``<task>_rank`` per task (absent: that task's n + 1), tasks (how many
    the submission entered), mean_rank, consensus_rank; sorted best first."""
    submissions = sorted({s for r in rankings for s in r.submissions})
    table = pd.DataFrame({"submission": submissions})
    task_columns = []
    for ranking in rankings:
        by_name = dict(zip(ranking.submissions, ranking.aggregate.rank, strict=True))
        column = f"{ranking.task}_rank"
        absent_rank = len(ranking.submissions) + 1
        table[column] = [float(by_name.get(s, absent_rank)) for s in submissions]
        task_columns.append(column)
    table["tasks"] = [sum(s in r.submissions for r in rankings) for s in submissions]
    table["mean_rank"] = table[task_columns].mean(axis=1) if task_columns else np.nan
    table["consensus_rank"] = competition_ranks(table["mean_rank"].to_numpy(), False).astype(int)
    return table.sort_values(["consensus_rank", "submission"], kind="stable").reset_index(drop=True)
