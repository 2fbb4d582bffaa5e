"""Ranking: hand-computed answers (ties, lower-is-better, missing cases, weights, consensus)
and bootstrap stability that moves as it should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from segloop.core.challenges import CHALLENGES, ScoreTerm
from segloop.core.records import SegloopError
from segloop.leaderboard import ranking
from segloop.leaderboard.scoring import parse_score_overrides, parse_score_spec, scoring_for

DICE_AUC = ScoreTerm("dice", "auc_normalised")
FPV_AUC = ScoreTerm("fpv", "auc_normalised")


def case_rows(task: str, values: dict[str, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """values[submission][case_id][column] -> a case table."""
    rows = [
        {"task": task, "submission": s, "case_id": c, **columns}
        for s, cases in values.items()
        for c, columns in cases.items()
    ]
    return pd.DataFrame(rows)


def test_ties_share_the_minimum_rank():
    assert ranking.competition_ranks(np.array([0.9, 0.8, 0.8, 0.7]), True).tolist() == [
        1,
        2,
        2,
        4,
    ]
    # lower is better: the smallest volume wins
    assert ranking.competition_ranks(np.array([3.0, 1.0, 1.0, 5.0]), False).tolist() == [
        3,
        1,
        1,
        4,
    ]


# Hand-worked example, 3 submissions x 2 cases, Dice (higher better) and FPV (lower better):
#   dice  A = .8 .6 (mean .7)   B = .9 .5 (mean .7)   C = .4 .6 (mean .5)
#   fpv   A = 2 4   (mean 3)    B = 1 1   (mean 1)    C = 0 2   (mean 1)
# aggregate-then-rank: dice ranks A1 B1 C3, fpv ranks A3 B1 C1, scores A2 B1 C2 -> B1 A2 C2
# rank-then-aggregate: case 1 dice B1 A2 C3, case 2 dice A1 C1 B3 -> mean A1.5 B2 C2;
#   case 1 fpv C1 B2 A3, case 2 fpv B1 C2 A3 -> mean A3 B1.5 C1.5;
#   scores A2.25 B1.75 C1.75 -> B1 C1 A3
EXAMPLE = {
    "A": {
        "c1": {"dice_auc_normalised": 0.8, "fpv_auc_normalised": 2.0},
        "c2": {"dice_auc_normalised": 0.6, "fpv_auc_normalised": 4.0},
    },
    "B": {
        "c1": {"dice_auc_normalised": 0.9, "fpv_auc_normalised": 1.0},
        "c2": {"dice_auc_normalised": 0.5, "fpv_auc_normalised": 1.0},
    },
    "C": {
        "c1": {"dice_auc_normalised": 0.4, "fpv_auc_normalised": 0.0},
        "c2": {"dice_auc_normalised": 0.6, "fpv_auc_normalised": 2.0},
    },
}


def test_aggregate_then_rank_by_hand():
    result = ranking.rank_task(case_rows("t", EXAMPLE), "t", [DICE_AUC, FPV_AUC], n_bootstrap=0)
    assert result.submissions == ("A", "B", "C")
    assert result.aggregate.means[:, 0] == pytest.approx([0.7, 0.7, 0.5])
    assert result.aggregate.column_ranks.tolist() == [[1, 3], [1, 1], [3, 1]]
    assert result.aggregate.score.tolist() == [2.0, 1.0, 2.0]
    assert result.aggregate.rank.tolist() == [2, 1, 2]
    table = result.table()
    assert table["submission"].tolist() == ["B", "A", "C"]
    assert table["rank"].tolist() == [1, 2, 2]


def test_rank_then_aggregate_by_hand():
    result = ranking.rank_task(case_rows("t", EXAMPLE), "t", [DICE_AUC, FPV_AUC], n_bootstrap=0)
    assert result.per_case.mean_ranks.tolist() == [[1.5, 3.0], [2.0, 1.5], [2.0, 1.5]]
    assert result.per_case.score.tolist() == [2.25, 1.75, 1.75]
    assert result.per_case.rank.tolist() == [3, 1, 1]


def test_weights_change_the_score():
    # dice weight 3, fpv weight 1: A (3*1 + 3)/4 = 1.5, B (3 + 1)/4 = 1, C (9 + 1)/4 = 2.5
    terms = [ScoreTerm("dice", "auc_normalised", 3.0), ScoreTerm("fpv", "auc_normalised", 1.0)]
    result = ranking.rank_task(case_rows("t", EXAMPLE), "t", terms, n_bootstrap=0)
    assert result.aggregate.score.tolist() == [1.5, 1.0, 2.5]
    assert result.aggregate.rank.tolist() == [2, 1, 3]


def test_missing_case_counts_as_worst():
    # fpv (lower is better): A = 1, 5; B = 2, (missing c2); C = 3, 4.
    # aggregate: worst fpv observed = 5, so B = 2, 5 (mean 3.5); A mean 3, C mean 3.5 -> A1 B2 C2
    # per case: c1 A1 B2 C3; c2 C1 A2 and B last (3) -> mean A1.5 B2.5 C2 -> A1 C2 B3
    values = {
        "A": {"c1": {"fpv_final": 1.0}, "c2": {"fpv_final": 5.0}},
        "B": {"c1": {"fpv_final": 2.0}},
        "C": {"c1": {"fpv_final": 3.0}, "c2": {"fpv_final": 4.0}},
    }
    result = ranking.rank_task(case_rows("t", values), "t", [ScoreTerm("fpv", "final")], 0)
    assert result.missing_cases.tolist() == [[False, False], [False, True], [False, False]]
    assert result.aggregate.means[:, 0].tolist() == [3.0, 3.5, 3.5]
    assert result.aggregate.rank.tolist() == [1, 2, 2]
    assert result.per_case.case_ranks[:, 1, 0].tolist() == [2, 3, 1]
    assert result.per_case.rank.tolist() == [1, 3, 2]
    table = result.table().set_index("submission")
    assert table.loc["B", "missing_cases"] == 1
    assert table.loc["A", "missing_cases"] == 0


def test_null_value_counts_as_worst_and_is_counted():
    # dice (higher better): A = .9, null; B = .5, .7. Worst dice observed .5 -> A mean .7, B .6
    values = {
        "A": {"c1": {"dice_final": 0.9}, "c2": {"dice_final": float("nan")}},
        "B": {"c1": {"dice_final": 0.5}, "c2": {"dice_final": 0.7}},
    }
    result = ranking.rank_task(case_rows("t", values), "t", [ScoreTerm("dice", "final")], 0)
    assert result.aggregate.means[:, 0] == pytest.approx([0.7, 0.6])
    assert result.aggregate.rank.tolist() == [1, 2]
    table = result.table().set_index("submission")
    assert table.loc["A", "null_values"] == 1
    assert table.loc["A", "missing_cases"] == 0


def test_consensus_across_tasks_absent_task_ranks_last():
    # task t1: A1 B2 C3; task t2 (no C): B1 A2, C absent -> 3. Means A1.5 B1.5 C3 -> A1 B1 C3
    t1 = {
        "A": {"c1": {"dice_final": 0.9}},
        "B": {"c1": {"dice_final": 0.8}},
        "C": {"c1": {"dice_final": 0.1}},
    }
    t2 = {"A": {"c1": {"dice_final": 0.2}}, "B": {"c1": {"dice_final": 0.4}}}
    term = [ScoreTerm("dice", "final")]
    rankings = [
        ranking.rank_task(case_rows("t1", t1), "t1", term, 0),
        ranking.rank_task(case_rows("t2", t2), "t2", term, 0),
    ]
    table = ranking.consensus_ranking(rankings).set_index("submission")
    assert table.loc["C", "t2_rank"] == 3
    assert table["mean_rank"].to_dict() == {"A": 1.5, "B": 1.5, "C": 3.0}
    assert table["consensus_rank"].to_dict() == {"A": 1, "B": 1, "C": 3}
    assert table["tasks"].to_dict() == {"A": 2, "B": 2, "C": 1}


def test_kendall_tau_b_matches_scipy_with_ties():
    reference = np.array([1.0, 2.0, 2.0, 4.0, 5.0])
    others = np.array([[1, 3, 2, 4, 5], [5, 4, 3, 2, 1], [2, 2, 1, 4, 4], [1, 1, 1, 1, 1]], float)
    ours = ranking.kendall_tau_b(reference, others)
    for row, value in zip(others[:3], ours[:3], strict=True):
        assert value == pytest.approx(kendalltau(reference, row).statistic)
    assert np.isnan(ours[3])  # a constant ranking has no tau


def stability(dice_means: list[float], seed: int = 0, n_cases: int = 20) -> ranking.TaskRanking:
    rng = np.random.default_rng(123)
    values = {
        f"team{i}": {
            f"c{c:02d}": {"dice_auc_normalised": m + rng.normal(0, 0.1)} for c in range(n_cases)
        }
        for i, m in enumerate(dice_means)
    }
    return ranking.rank_task(case_rows("t", values), "t", [DICE_AUC], n_bootstrap=500, seed=seed)


def test_bootstrap_dominant_submission_is_stable():
    result = stability([0.9, 0.5, 0.3])
    boot = result.bootstrap
    assert result.aggregate.rank.tolist() == [1, 2, 3]
    assert boot.winner_frequency[0] == pytest.approx(1.0, abs=0.01)
    assert boot.winner_frequency[1:].sum() == pytest.approx(0.0, abs=0.01)
    assert boot.tau_mean > 0.97
    assert boot.rank_frequency.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])


def test_bootstrap_equal_submissions_are_unstable():
    result = stability([0.5, 0.5, 0.5])
    boot = result.bootstrap
    assert boot.winner_frequency.max() < 0.8  # nobody wins every resample
    assert (boot.winner_frequency > 0.05).sum() >= 2  # at least two teams win sometimes
    assert boot.tau_mean < 0.7
    dominant = stability([0.9, 0.5, 0.3]).bootstrap
    assert boot.tau_mean < dominant.tau_mean


def test_bootstrap_is_seeded():
    a, b = stability([0.5, 0.5, 0.5], seed=7), stability([0.5, 0.5, 0.5], seed=7)
    c = stability([0.5, 0.5, 0.5], seed=8)
    assert np.array_equal(a.bootstrap.ranks, b.bootstrap.ranks)
    assert not np.array_equal(a.bootstrap.ranks, c.bootstrap.ranks)


def test_score_spec_parsing_and_presets():
    terms = parse_score_spec("dice:auc:1,nsd@2:final:2")
    assert terms == (ScoreTerm("dice", "auc_normalised", 1.0), ScoreTerm("nsd@2", "final", 2.0))
    assert terms[1].column == "nsd@2_final"
    assert terms[0].higher_is_better and terms[1].higher_is_better
    assert not ScoreTerm("fpv", "final").higher_is_better
    assert not ScoreTerm("hd95", "auc_raw").higher_is_better
    overrides = parse_score_overrides(["dice:final", "medsegfm=dice:auc:2"])
    assert scoring_for("autopet", ["dice", "fpv"], overrides) == (ScoreTerm("dice", "final"),)
    assert scoring_for("medsegfm", ["dice"], overrides) == (ScoreTerm("dice", "auc_normalised", 2),)
    # presets: autoPET ranks Dice, FPV, FNV by AUC and Final
    assert {t.column for t in CHALLENGES["autopet"].ranking} == {
        f"{m}_{k}" for m in ("dice", "fpv_f32", "fnv_f32") for k in ("auc_normalised", "final")
    }  # challenge mode (issue 15): autoPET's float32 volumes
    # preset terms the runs did not measure are dropped; unknown tasks use every metric
    assert {t.metric for t in scoring_for("autopet", ["dice"])} == {"dice"}
    assert len(scoring_for("newtask", ["dice", "hd95"])) == 4
    for bad in ("dice", "dice:mean", "dice:auc:x", "dice:auc:0", "volume:auc"):
        with pytest.raises(SegloopError):
            parse_score_spec(bad)
    with pytest.raises(SegloopError, match="no metric"):
        scoring_for("autopet", ["dice"], parse_score_overrides(["hd95:final"]))
