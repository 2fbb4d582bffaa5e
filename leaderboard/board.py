"""A leaderboard: run folders read once, every table and ranking computed, tables written.

``build_leaderboard`` is the one entry point that the HTML site, the CLI and the platform
exports share, so they never disagree about a number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segloop.core import store
from segloop.core.challenges import ScoreTerm
from segloop.core.store import RunRecord
from segloop.leaderboard import tables
from segloop.leaderboard.ranking import (
    DEFAULT_BOOTSTRAP_SAMPLES,
    TaskRanking,
    consensus_ranking,
    rank_task,
)
from segloop.leaderboard.robustness import OWN_USER, robustness_table, split_task_name
from segloop.leaderboard.scoring import scoring_for


@dataclass(frozen=True)
class Leaderboard:
    records: tuple[RunRecord, ...]
    steps: pd.DataFrame
    cases: pd.DataFrame
    submissions: pd.DataFrame
    curves: pd.DataFrame
    tasks: pd.DataFrame
    rankings: dict[str, TaskRanking]  # task name -> ranking, tasks sorted by name
    consensus: pd.DataFrame
    robustness: pd.DataFrame  # tasks run under several robot users (robustness.py); may be empty

    def record(self, task: str, submission: str) -> RunRecord:
        for record in self.records:
            if tables.task_name(record) == task and tables.submission_name(record) == submission:
                return record
        raise KeyError((task, submission))

    def rankings_table(self) -> pd.DataFrame:
        """Every task's ranking table, one after the other, with a ``task`` column."""
        parts = [r.table().assign(task=name) for name, r in self.rankings.items()]
        table = pd.concat(parts, ignore_index=True)
        return table[["task"] + [c for c in table.columns if c != "task"]]

    def stability_json(self) -> dict[str, object]:
        return {name: r.stability_json() for name, r in self.rankings.items()}

    def scoring_json(self) -> dict[str, list[dict[str, object]]]:
        return {name: [t.to_json() for t in r.terms] for name, r in self.rankings.items()}


def consensus_rankings(rankings: Mapping[str, TaskRanking]) -> list[TaskRanking]:
    """The tasks the consensus ranks across: a task run under another robot user
    (``<task>+<user>``) is shown in the robustness table, not counted as one more task, unless
    the leaderboard holds nothing else."""
    own = [r for task, r in rankings.items() if split_task_name(task)[1] == OWN_USER]
    return own or list(rankings.values())


def build_leaderboard(
    run_paths: Iterable[Path],
    score_overrides: Mapping[str | None, Sequence[ScoreTerm]] | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    allow_mixed: bool = False,
) -> Leaderboard:
    """Read the runs (folders, or folders holding run folders) and rank every task; runs of
    one task on different data or scoring modes only with ``allow_mixed`` (marked)."""
    records = tables.load_runs(run_paths, allow_mixed)
    steps = tables.step_table(records)
    cases = tables.case_table(records)
    task_list = tables.task_table(records)
    rankings = {}
    for task in task_list["task"]:
        terms = scoring_for(task, tables.task_metrics(records, task), score_overrides)
        rankings[task] = rank_task(cases, task, terms, n_bootstrap, seed)
    return Leaderboard(
        records=tuple(records),
        steps=steps,
        cases=cases,
        submissions=tables.submission_table(cases),
        curves=tables.curve_table(steps),
        tasks=task_list,
        rankings=rankings,
        consensus=consensus_ranking(consensus_rankings(rankings)),
        robustness=robustness_table(rankings),
    )


def write_tables(board: Leaderboard, folder: Path) -> dict[str, tuple[Path, Path]]:
    """CSV and JSON of every table, plus stability.json and scoring.json, under ``folder``."""
    folder = Path(folder)
    written = {
        name: tables.write_table(table, folder, name)
        for name, table in (
            ("tasks", board.tasks),
            ("submissions", board.submissions),
            ("cases", board.cases),
            ("steps", board.steps),
            ("curves", board.curves),
            ("rankings", board.rankings_table()),
            ("consensus", board.consensus),
        )
    }
    if len(board.robustness):
        written["robustness"] = tables.write_table(board.robustness, folder, "robustness")
    for name, payload in (("stability", board.stability_json()), ("scoring", board.scoring_json())):
        path = folder / f"{name}.json"
        path.write_text(json.dumps(store.json_safe(payload), indent=1, allow_nan=False) + "\n")
    return written
