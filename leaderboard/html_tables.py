"""The static site's tables (leaderboards, consensus, tasks, robustness, user shift, per
case and per class), built from a :class:`Leaderboard` as rows of formatted cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from segloop.core.results import SUMMARY_KINDS, aggregate, class_summaries
from segloop.leaderboard.board import Leaderboard
from segloop.leaderboard.html_cells import (
    SHOWN_KINDS,
    Cell,
    Column,
    Table,
    auc_meaning,
    column_label,
    direction_hint,
    fixed_number,
    format_number,
    metric_label,
    number_cell,
    percent_cell,
    sort_key,
    submission_page,
    summary_cell,
    task_page,
    text_cell,
)
from segloop.leaderboard.usershift import UserShiftRow


def leaderboard_table(board: Leaderboard, task: str) -> Table:
    """Rank, submission, score and the mean AUC and Final of every metric first (what a reader
    looks for, visible without scrolling), then cases, failures, times, the term ranks and the
    rank stability."""
    ranking = board.rankings[task]
    ranked = ranking.table().set_index("submission")
    means = board.submissions[board.submissions["task"] == task].set_index("submission")
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [
        Column("Rank", title="aggregate-then-rank: rank of the score"),
        Column("Submission", numeric=False),
        Column("Score", title="weighted mean of the term ranks (lower is better)"),
    ]
    columns += [
        Column(
            column_label(m, k),
            title=f"mean over cases, {direction_hint(m)}"
            + (f"; normalised AUC: {auc_meaning(m)}" if k == "auc_normalised" else ""),
        )
        for m in metrics
        for k in SHOWN_KINDS
    ]
    columns += [
        Column("Cases"),
        Column("Missing cases", title="cases other submissions have; they count as worst"),
        Column("Failed steps", title="steps scored as empty predictions"),
        Column("Failed cases"),
        Column("Mean case time (s)"),
        Column("Model time (s)", title="total model wall time over all steps"),
        Column("Rank (per case)", title="rank-then-aggregate"),
    ]
    columns += [
        Column(f"{metric_label(t.metric, t.kind)} rank", title=f"weight {format_number(t.weight)}")
        for t in ranking.terms
    ]
    if ranking.bootstrap is not None:
        columns.append(Column("Wins (%)", title="share of bootstrap resamples ranked first"))
    rows = []
    for submission, row in ranked.iterrows():
        mean = means.loc[submission]
        cells = [
            number_cell(row["rank"], cls="rank"),
            text_cell(submission, submission_page(task, submission), cls="name"),
            number_cell(row["score"], 3, cls="score"),
        ]
        cells += [summary_cell(mean, m, k) for m in metrics for k in SHOWN_KINDS]
        cells += [
            number_cell(mean["num_cases"]),
            number_cell(row["missing_cases"], cls="warn" if row["missing_cases"] else ""),
            number_cell(mean["failed_steps"], cls="warn" if mean["failed_steps"] else ""),
            number_cell(mean["failed_cases"]),
            number_cell(mean["mean_case_wall_time_s"], 2),
            number_cell(mean["total_model_wall_time_s"], 2),
            number_cell(row["rank_then_aggregate_rank"]),
        ]
        cells += [number_cell(row[f"{t.column}_rank"]) for t in ranking.terms]
        if ranking.bootstrap is not None:
            wins = 100 * row["winner_frequency"]
            cells.append(Cell(fixed_number(wins, 1), sort_key(wins)))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "leaderboard", f"Leaderboard of {task}")


def consensus_table(board: Leaderboard) -> Table:
    tasks = [t for t in board.rankings if f"{t}_rank" in board.consensus.columns]
    columns = [Column("Consensus rank"), Column("Submission", numeric=False)]
    columns += [Column(f"{t} rank") for t in tasks]
    columns += [Column("Tasks entered"), Column("Mean rank")]
    rows = []
    for _, row in board.consensus.iterrows():
        cells = [number_cell(row["consensus_rank"]), text_cell(row["submission"], cls="name")]
        for task in tasks:
            value = row[f"{task}_rank"]
            if row["submission"] in board.rankings[task].submissions:
                cells.append(number_cell(value))
            else:
                cells.append(Cell(f"{format_number(value)} (absent)", sort_key(value), cls="warn"))
        cells += [number_cell(row["tasks"]), number_cell(row["mean_rank"], 3)]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "consensus")


def task_index_table(board: Leaderboard) -> Table:
    columns = (
        Column("Task", numeric=False),
        Column("Winner", numeric=False),
        Column("Submissions"),
        Column("Cases"),
        Column("Steps"),
        Column("Metrics", numeric=False),
        Column("Description", numeric=False),
    )
    rows = []
    for _, task in board.tasks.iterrows():
        ranking = board.rankings[task["task"]]
        winners = [
            s for s, r in zip(ranking.submissions, ranking.aggregate.rank, strict=True) if r == 1
        ]
        rows.append(
            (
                text_cell(task["task"], task_page(task["task"]), cls="name"),
                text_cell(", ".join(winners), cls="name"),
                number_cell(task["num_submissions"]),
                number_cell(task["num_cases"]),
                number_cell(task["num_steps"]),
                text_cell(task["metrics"].replace(",", ", ")),
                text_cell(task["description"], cls="wrap"),
            )
        )
    return Table(columns, tuple(rows), "tasks")


def robustness_view(board: Leaderboard) -> Table | None:
    """Per task run under several robot users: each submission's main value per user."""
    table = board.robustness
    if not len(table):
        return None
    fixed = {"task", "value", "submission", "users", "mean", "worst", "spread"}
    users = [c for c in table.columns if c not in fixed]
    columns = [Column("Task", numeric=False), Column("Value", numeric=False)]
    columns += [Column("Submission", numeric=False)]
    columns += [Column(f"user {u}") for u in users]
    columns += [Column("Mean"), Column("Worst"), Column("Spread", title="best minus worst")]
    rows = []
    for _, row in table.iterrows():
        cells = [
            text_cell(
                row["task"], task_page(row["task"]) if row["task"] in board.rankings else None
            )
        ]
        cells += [text_cell(row["value"]), text_cell(row["submission"], cls="name")]
        cells += [number_cell(row[u]) for u in users]
        cells += [number_cell(row[k]) for k in ("mean", "worst", "spread")]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "robustness", "Scores under each robot user")


def user_shift_view(rows: Sequence[UserShiftRow]) -> Table | None:
    """The user-shift table (thesis M1-M7, x 100 as the thesis prints them)."""
    if not rows:
        return None
    names = ("M1", "M2", "M3", "M4", "M5", "M6", "M7")
    columns = [Column("Source", numeric=False), Column("Role", numeric=False)]
    columns += [Column("Cases"), Column("Lesion clicks")]
    columns += [Column(f"{n} (x 100)", title=USER_SHIFT_TITLES[n]) for n in names]
    table_rows = []
    for row in rows:
        values = (row.m1, row.m2, row.m3, row.m4, row.m5, row.m6, row.m7)
        cells = [text_cell(row.source, cls="name"), text_cell(row.role)]
        cells += [number_cell(row.cases), number_cell(row.lesion_clicks)]
        cells += [percent_cell(v) for v in values]
        table_rows.append(tuple(cells))
    return Table(tuple(columns), tuple(table_rows), "user-shift", "User shift (thesis eqs. 21-27)")


USER_SHIFT_TITLES = {
    "M1": "label agreement: share of lesion clicks inside the label (higher: fewer off-label clicks)",
    "M2": "centerness: how close agreeing clicks are to the label's centre",
    "M3": "click diversity: share of label components clicked",
    "M4": "label proximity: nearness of off-label clicks to the label",
    "M5": "consistent improvement: share of steps whose Dice did not fall",
    "M6": "user shift: distance of M1-M5 to the annotators' (lower: closer to people)",
    "M7": "Dice difference to the annotators' curves on the same model (lower: closer)",
}


def case_table(
    board: Leaderboard, task: str, submission: str, case_links: Mapping[str, str] | None = None
) -> Table:
    cases = board.cases[(board.cases["task"] == task) & (board.cases["submission"] == submission)]
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [Column("Case", numeric=False)]
    columns += [Column(column_label(m, k)) for m in metrics for k in SHOWN_KINDS]
    columns += [Column("Failed steps"), Column("Case time (s)"), Column("Model time (s)")]
    rows = []
    for _, row in cases.sort_values("case_id").iterrows():
        href = (case_links or {}).get(row["case_id"])
        cells = [text_cell(row["case_id"], href, cls="name")]
        cells += [summary_cell(row, m, k) for m in metrics for k in SHOWN_KINDS]
        cells += [
            number_cell(row["failed_steps"], cls="warn" if row["failed_steps"] else ""),
            number_cell(row["case_wall_time_s"], 2),
            number_cell(row["model_wall_time_s"], 2),
        ]
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "cases", f"Cases of {submission}")


def task_classes(board: Leaderboard, task: str) -> dict[str, str]:
    """The task's classes (label value as text -> name), from its runs' task definition."""
    for record in board.records:
        if str(record.run["task"]["name"]) == task:
            return {str(k): str(v) for k, v in record.run["task"].get("classes", {}).items()}
    return {}


def class_frame(board: Leaderboard) -> pd.DataFrame:
    """``data/classes.csv``: one row per task, submission, case, metric and class, with the
    class's own AUC raw, AUC normalised and Final (:func:`class_summaries`)."""
    rows = []
    for record in board.records:
        names = {str(k): str(v) for k, v in record.run["task"].get("classes", {}).items()}
        for case_id, result in record.cases.items():
            for metric, by_class in class_summaries(result).items():
                for key, figures in by_class.items():
                    rows.append(
                        {
                            "task": str(record.run["task"]["name"]),
                            "submission": str(record.run["submission"]),
                            "case_id": case_id,
                            "metric": metric,
                            "class_id": int(key),
                            "class_name": names.get(key, ""),
                            **{kind: figures.get(kind) for kind in SUMMARY_KINDS},
                        }
                    )
    return pd.DataFrame(rows)


def class_table(board: Leaderboard, task: str) -> Table | None:
    """For a multi-class task: each submission's mean over cases of every class's normalised
    AUC and Final, per metric (None for a one-class task: its mean is its class)."""
    classes = task_classes(board, task)
    if len(classes) < 2:
        return None
    metrics = [m for m in board.tasks.set_index("task").loc[task, "metrics"].split(",") if m]
    columns = [Column("Submission", numeric=False)]
    columns += [
        Column(f"{name}: {column_label(m, k)}", title=f"class {key}, {direction_hint(m)}")
        for key, name in classes.items()
        for m in metrics
        for k in SHOWN_KINDS
    ]
    rows = []
    for submission in board.rankings[task].table()["submission"]:
        record = board.record(task, submission)
        per_case = [class_summaries(result) for result in record.cases.values()]
        cells = [text_cell(submission, submission_page(task, submission), cls="name")]
        for key in classes:
            for metric in metrics:
                for kind in SHOWN_KINDS:
                    values = [c.get(metric, {}).get(key, {}).get(kind) for c in per_case]
                    cells.append(number_cell(aggregate(values).mean, 4))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "classes", f"Per class, {task}")
