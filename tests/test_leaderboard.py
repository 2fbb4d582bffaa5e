"""Leaderboard tables and the static site, from real phantom runs and hand-written runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from segloop.cli.main import main
from segloop.core import store
from segloop.leaderboard import tables
from segloop.leaderboard.board import build_leaderboard, write_tables
from segloop.leaderboard.html_cells import slug, submission_page, task_page
from tests.test_leaderboard_helpers import (
    HOSTILE_ERROR,
    HOSTILE_NAME,
    flat_curves,
    phantom_runs,
    read_json,
    write_run,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return phantom_runs(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def board(runs):
    return build_leaderboard([runs], n_bootstrap=100, seed=3)


def strict_json(path: Path):
    """JSON that must not hold NaN or Infinity."""

    def refuse(constant):
        raise AssertionError(f"{path}: {constant} in JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_tables_agree_with_the_runs_own_summaries(board, runs):
    assert len(board.cases) == 9 and len(board.steps) == 3 * 3 * 11
    for run_dir in sorted(runs.iterdir()):
        summary = read_json(run_dir / "summary.json")
        name = summary["submission"]
        row = board.submissions.set_index("submission").loc[name]
        for metric, figures in summary["mean"].items():
            for kind, value in figures.items():
                assert row[f"{metric}_{kind}"] == pytest.approx(value), (name, metric, kind)
        curve = board.curves[
            (board.curves["submission"] == name) & (board.curves["metric"] == "dice")
        ].sort_values("step")
        assert curve["mean"].tolist() == pytest.approx(summary["mean_curve"]["dice"])
        assert row["failed_steps"] == summary["failed_steps"]
    # the hostile model fails at step 2 of every case; its failures are in the step table
    failed = board.steps[board.steps["failed"]]
    assert set(failed["submission"]) == {HOSTILE_NAME}
    assert set(failed["step"]) == {2} and set(failed["failure_reason"]) == {"exception"}
    assert board.submissions["mean_case_wall_time_s"].gt(0).all()


def test_ranking_of_the_phantom_runs(board):
    table = board.rankings["autopet"].table()
    ranks = dict(zip(table["submission"], table["rank"], strict=True))
    assert ranks["region-growing"] == 1  # better Dice and FNV, equal FPV
    assert ranks["empty"] == 3
    terms = {t.column for t in board.rankings["autopet"].terms}
    assert terms == {
        f"{m}_{k}" for m in ("dice", "fpv_f32", "fnv_f32") for k in ("auc_normalised", "final")
    }
    assert board.consensus["consensus_rank"].tolist() == sorted(table["rank"].tolist())


def test_tables_written_as_csv_and_json_with_null(tmp_path):
    curves = flat_curves({"c1": 0.5, "c2": 0.7})
    curves["c2"]["dice"][1] = None  # a step whose value is not finite: null in the run folder
    write_run(tmp_path / "runs" / "a", "a", curves)
    board = build_leaderboard([tmp_path / "runs"], n_bootstrap=0)
    written = write_tables(board, tmp_path / "data")
    for csv_path, json_path in written.values():
        rows = strict_json(json_path)
        assert len(rows) == len(pd.read_csv(csv_path))
    cases = {r["case_id"]: r for r in strict_json(tmp_path / "data" / "cases.json")}
    assert cases["c2"]["dice_auc_normalised"] is None  # a null in the curve makes the AUC null
    assert cases["c1"]["dice_auc_normalised"] == pytest.approx(0.5)
    steps = strict_json(tmp_path / "data" / "steps.json")
    assert [s["dice"] for s in steps if s["case_id"] == "c2"] == [0.7, None, 0.7]
    stability = strict_json(tmp_path / "data" / "stability.json")
    assert stability == {"autopet": None}  # no bootstrap asked
    assert strict_json(tmp_path / "data" / "scoring.json")["autopet"][0]["column"] == (
        "dice_auc_normalised"
    )


def test_cli_writes_an_offline_site_with_everything_escaped(runs, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["leaderboard", str(runs), "--out", str(site), "--bootstrap", "50"]) == 0
    assert "leaderboard:" in capsys.readouterr().out
    pages = sorted(site.glob("*.html"))
    names = {p.name for p in pages}
    assert "index.html" in names and task_page("autopet") in names
    for submission in ("region-growing", "empty", HOSTILE_NAME):
        assert submission_page("autopet", submission) in names
    for page in pages:
        html = page.read_text()
        assert "<script>alert" not in html, page.name
        assert html.count("<script") == 1, page.name  # only the sort script
        assert "onerror=" not in html.replace("onerror=&#34;", ""), page.name
        external = re.findall(r"(?:src|href)=\"(https?:[^\"]*)", html)
        assert external == [], page.name  # works offline: no CDN, no remote asset
        assert "Content-Security-Policy" in html
    index = (site / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    hostile = (site / submission_page("autopet", HOSTILE_NAME)).read_text()
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; &lt;script&gt;alert(3)" in hostile
    assert HOSTILE_ERROR not in hostile
    task = (site / task_page("autopet")).read_text()
    assert task.count("<polyline") >= 3 * 3  # a line per submission in each metric's chart
    assert "step (interactions given)" in task and "Rank stability" in task
    assert (site / "data" / "rankings.csv").is_file()


def test_site_is_deterministic(runs, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        assert main(["leaderboard", str(runs), "--out", str(out), "--bootstrap", "20"]) == 0
    for page in first.rglob("*"):
        if page.is_file():
            assert page.read_bytes() == (second / page.relative_to(first)).read_bytes(), page


def test_score_override_changes_the_ranking(tmp_path):
    # a: better Dice, worse FPV; b: worse Dice, better FPV
    write_run(tmp_path / "runs" / "a", "a", flat_curves({"c1": 0.9, "c2": 0.8}, fpv=5.0))
    write_run(tmp_path / "runs" / "b", "b", flat_curves({"c1": 0.5, "c2": 0.4}, fpv=1.0))
    by_dice = build_leaderboard([tmp_path / "runs"], {None: _terms("dice:final")}, 0)
    by_fpv = build_leaderboard([tmp_path / "runs"], {"autopet": _terms("fpv:final")}, 0)
    assert by_dice.rankings["autopet"].table()["submission"].tolist() == ["a", "b"]
    assert by_fpv.rankings["autopet"].table()["submission"].tolist() == ["b", "a"]
    site = tmp_path / "site"
    args = ["leaderboard", str(tmp_path / "runs"), "--out", str(site), "--bootstrap", "0"]
    assert main([*args, "--score", "autopet=fpv:final:1"]) == 0
    rankings = pd.read_csv(site / "data" / "rankings.csv")
    assert rankings["submission"].tolist() == ["b", "a"]
    assert "Rank stability" not in (site / task_page("autopet")).read_text()


def _terms(text: str):
    from segloop.leaderboard.scoring import parse_score_spec

    return parse_score_spec(text)


def test_missing_cases_and_two_tasks_on_the_site(tmp_path):
    write_run(tmp_path / "runs" / "a", "a", flat_curves({"c1": 0.9, "c2": 0.8}))
    write_run(tmp_path / "runs" / "b", "b", flat_curves({"c1": 0.95}))  # lacks c2
    write_run(tmp_path / "runs" / "t2a", "a", flat_curves({"x": 0.1}), task="other")
    site = tmp_path / "site"
    assert (
        main(["leaderboard", str(tmp_path / "runs"), "--out", str(site), "--bootstrap", "0"]) == 0
    )
    rankings = pd.read_csv(site / "data" / "rankings.csv")
    b = rankings[(rankings["task"] == "autopet") & (rankings["submission"] == "b")].iloc[0]
    assert b["missing_cases"] == 1
    consensus = pd.read_csv(site / "data" / "consensus.csv").set_index("submission")
    assert consensus.loc["b", "other_rank"] == 2  # absent from "other": its n + 1
    assert consensus.loc["a", "tasks"] == 2
    assert "(absent)" in (site / "index.html").read_text()


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    write_run(tmp_path / "runs" / "a", "same", flat_curves({"c1": 0.5}))
    write_run(tmp_path / "runs" / "b", "same", flat_curves({"c1": 0.6}))
    assert main(["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "s")]) == 2
    assert "give each run its own --name" in capsys.readouterr().err
    write_run(tmp_path / "other" / "a", "x", flat_curves({"c1": 0.5}))
    write_run(tmp_path / "other" / "b", "y", flat_curves({"c1": 0.6}), seed=5)
    assert main(["leaderboard", str(tmp_path / "other"), "--out", str(tmp_path / "s")]) == 2
    assert "configured differently" in capsys.readouterr().err
    assert (
        main(["leaderboard", str(tmp_path / "other" / "a"), "--out", "s", "--score", "volume:auc"])
        == 2
    )
    assert "volume" in capsys.readouterr().err


def test_slugs_are_safe_and_unique():
    names = [HOSTILE_NAME, "../../etc/passwd", "Team A", "team a", "ü"]
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z0-9-]+", s) for s in slugs)


def test_case_table_counts_time_and_failures(runs):
    records = tables.load_runs([runs])
    cases = tables.case_table(records)
    hostile = cases[cases["submission"] == HOSTILE_NAME]
    assert hostile["failed_steps"].tolist() == [1, 1, 1]
    assert all(math.isfinite(v) and v > 0 for v in cases["model_wall_time_s"])
    record = next(r for r in records if r.run["submission"] == "empty")
    assert store.read_json(record.run_dir / "run.json")["task"]["name"] == "autopet"


def test_chart_ticks_cover_the_data_with_readable_labels():
    from segloop.leaderboard.html_charts import line_chart, nice_ticks, tick_label

    ticks = nice_ticks(0.0, 0.004)
    assert ticks[0] <= 0.0 and ticks[-1] >= 0.004
    assert [tick_label(t, ticks) for t in ticks] == ["0.000", "0.001", "0.002", "0.003", "0.004"]
    chart = line_chart("t", "x", "y", [("a", [(0, 1.0), (1, None), (2, 3.0)])])
    assert len(chart["lines"][0]["segments"]) == 2  # a gap where the value is missing
    assert chart["y_ticks"][0]["label"] == "0"  # non-negative data: the axis starts at 0
