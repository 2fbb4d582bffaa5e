"""Robustness to the user: each submission's score under several robot users, and the spread.

A task run under other robot users (``segloop run --robot-users own,r1,r4``, task names
``<task>+<user>``, :data:`segloop.core.challenges.ROBOT_USERS`) is one group: same data, steps,
metrics and scoring, only the user differs. Per group and submission the table gives the mean
over cases of the group's main value (the first score term of the task, e.g. Dice's normalised
AUC) under each user, their mean, the worst of them and the spread (best - worst), so an organizer sees
which models hold up when the user is less ideal. A rank-based leaderboard score is not used:
it compares submissions within one task and means nothing across users.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from segloop.core.challenges import ROBOT_USERS
from segloop.leaderboard.ranking import TaskRanking

OWN_USER = "own"


def split_task_name(task: str) -> tuple[str, str]:
    """(base task, robot user): ``autopet+r4`` -> (autopet, r4); a plain task -> (task, own)."""
    base, plus, user = task.rpartition("+")
    if plus and base and user in ROBOT_USERS:
        return base, user
    return task, OWN_USER


def robustness_table(rankings: Mapping[str, TaskRanking]) -> pd.DataFrame:
    """One row per (group, submission): the main value under each user (columns named by user,
    the task's own user first), ``mean``, ``worst`` and ``spread``; groups with one user are
    left out. Rows are ordered by the worst value, then the mean (best first).

    A user under which a submission has no run is missing (NaN) and left out of worst/spread;
    ``users`` counts the users that did run."""
    groups: dict[str, list[str]] = {}
    for task in sorted(rankings):
        groups.setdefault(split_task_name(task)[0], []).append(task)
    rows = []
    for base, tasks in groups.items():
        if len(tasks) < 2:
            continue
        reference = rankings[base] if base in rankings else rankings[tasks[0]]
        term = reference.terms[0]
        for task in tasks:
            user = split_task_name(task)[1]
            table = rankings[task].table()
            column = f"{term.column}_mean"
            if column not in table:
                continue  # a variant scored with other terms is not comparable
            for submission, value in zip(table["submission"], table[column], strict=True):
                rows.append(
                    {
                        "task": base,
                        "value": term.column,
                        "higher_is_better": term.higher_is_better,
                        "submission": submission,
                        "user": user,
                        "score": float(value),
                    }
                )
    if not rows:
        return pd.DataFrame(
            columns=["task", "value", "submission", "users", "mean", "worst", "spread"]
        )
    long = pd.DataFrame(rows)
    parts = []
    for (base, value, better), frame in long.groupby(
        ["task", "value", "higher_is_better"], sort=True
    ):
        wide = frame.pivot(index="submission", columns="user", values="score")
        users = sorted(wide.columns, key=lambda u: (u != OWN_USER, u))
        wide = wide[users]
        worst = wide.min(axis=1) if better else wide.max(axis=1)
        wide = wide.assign(
            users=wide.notna().sum(axis=1),
            mean=wide.mean(axis=1),
            worst=worst,
            spread=wide.max(axis=1) - wide.min(axis=1),
        )
        wide = wide.sort_values(
            ["worst", "mean"], ascending=[not better, not better], kind="stable"
        )
        wide.insert(0, "value", value)
        wide.insert(0, "task", base)
        parts.append(wide.reset_index())
    table = pd.concat(parts, ignore_index=True)
    fixed = ["task", "value", "submission"]
    tail = ["users", "mean", "worst", "spread"]
    return table[fixed + [c for c in table.columns if c not in fixed + tail] + tail]
