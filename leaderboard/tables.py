"""Run folders -> pandas tables: per step, per case, per submission, per task, mean curves.

Every table is long in (task, submission, case, step) and wide in metrics, so one CSV opens in
a spreadsheet and one JSON (records, ``null`` for missing values, never NaN) feeds a script.
Columns of metric summaries are ``<metric>_<kind>`` (``scoring.column_name``), as the run's own
``summary.csv`` names them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segloop.core import store
from segloop.core.records import SegloopError
from segloop.core.results import SUMMARY_KINDS, column_name
from segloop.core.store import RunRecord


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Each path is a run folder, or a folder searched recursively for run folders."""
    found: list[Path] = []
    for path in (Path(p) for p in paths):
        if (path / store.RUN_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            inner = sorted(p.parent for p in path.rglob(store.RUN_FILE))
            if not inner:
                raise SegloopError(f"{path}: no run folder inside (no {store.RUN_FILE} found)")
            found.extend(inner)
        else:
            raise SegloopError(f"{path}: no such run folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def task_name(record: RunRecord) -> str:
    return str(record.run["task"]["name"])


def submission_name(record: RunRecord) -> str:
    return str(record.run["submission"])


def load_runs(paths: Iterable[Path], allow_mixed: bool = False) -> list[RunRecord]:
    """Read run folders; refuse two runs of one submission on one task, runs of one task
    with different task configurations (robot user, seed, steps...: the setting is named),
    which would not compare, and runs of one task on different data or in different scoring
    modes (:func:`mixed_runs`) unless ``allow_mixed`` (then the pages mark them)."""
    records = [store.read_run(p) for p in find_run_dirs(paths)]
    seen: dict[tuple[str, str], Path] = {}
    task_configs: dict[str, tuple[dict[str, Any], Path]] = {}
    for record in records:
        key = (task_name(record), submission_name(record))
        if key in seen:
            raise SegloopError(
                f"{record.run_dir}: submission {key[1]!r} on task {key[0]!r} is also in "
                f"{seen[key]}; give each run its own --name"
            )
        seen[key] = record.run_dir
        config = {k: v for k, v in record.run["task"].items() if k != "scoring"}
        first = task_configs.setdefault(key[0], (config, record.run_dir))
        if first[0] != config:
            differences = store.config_differences(first[0], config, "task")
            raise SegloopError(
                f"{record.run_dir}: task {key[0]!r} is configured differently than in "
                f"{first[1]} ({'; '.join(differences[:3]) or 'its settings differ'}); "
                "rank them apart"
            )
        if not record.cases:
            raise SegloopError(f"{record.run_dir}: the run has no finished case")
    records = sorted(records, key=lambda r: (task_name(r), submission_name(r)))
    if not allow_mixed:
        for task, phrases in mixed_runs(records).items():
            raise SegloopError(
                f"task {task!r}: {phrases[0]}; these runs do not rank together (pass "
                "--allow-mixed to show them, marked as mixed)"
            )
    return records


def scoring_mode(record: RunRecord) -> str:
    return str((record.run["task"].get("scoring") or {}).get("mode", "segloop"))


def mixed_runs(records: Sequence[RunRecord]) -> dict[str, list[str]]:
    """Per task, how its runs do not compare (empty: they do), each run against the task's
    first run: a case shared with other input files, no case shared at all (another
    dataset), or another scoring mode. A run lacking some of the first run's cases is not
    mixed: a missing case ranks as the worst value (see ``ranking``)."""
    mixed: dict[str, list[str]] = {}
    firsts: dict[str, RunRecord] = {}
    for record in records:
        task = task_name(record)
        first = firsts.setdefault(task, record)
        if first is record:
            continue
        phrases = mixed.setdefault(task, [])
        where = f"{record.run_dir} and {first.run_dir}"
        if scoring_mode(record) != scoring_mode(first):
            phrases.append(
                f"{where} were scored in different modes ({scoring_mode(record)!r} and "
                f"{scoring_mode(first)!r})"
            )
        ours, theirs = store.case_inputs(record), store.case_inputs(first)
        shared = sorted(ours.keys() & theirs.keys())
        if not shared:
            phrases.append(
                f"{where} share no case (another dataset: {len(ours)} cases "
                f"{_first_ids(ours)} and {len(theirs)} cases {_first_ids(theirs)})"
            )
        differ = [c for c in shared if None not in (ours[c], theirs[c]) and ours[c] != theirs[c]]
        if differ:
            phrases.append(
                f"{where} scored case {differ[0]!r} on other input files "
                f"({len(differ)} of {len(shared)} shared cases differ)"
            )
        if not phrases:
            del mixed[task]
    return mixed


def _first_ids(cases: dict[str, Any]) -> str:
    ids = sorted(cases)
    return ", ".join(ids[:2]) + (", ..." if len(ids) > 2 else "")


def task_metrics(records: Sequence[RunRecord], task: str) -> list[str]:
    for record in records:
        if task_name(record) == task:
            return list(record.run["task"]["metrics"])
    raise SegloopError(f"no run of task {task!r}")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def step_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per (task, submission, case, step): metric means, failure, model wall time."""
    rows = []
    for record in records:
        metrics = list(record.run["task"]["metrics"])
        for case_id, result in record.cases.items():
            times = record.timings.get(case_id, {}).get("model_wall_time_s") or []
            for step in result.steps:
                failure = step.failure
                row: dict[str, Any] = {
                    "task": task_name(record),
                    "submission": submission_name(record),
                    "case_id": case_id,
                    "step": step.step,
                }
                for name in metrics:
                    value = step.metrics.get(name)
                    row[name] = _number(value.mean if value is not None else None)
                row["failed"] = failure is not None
                row["failure_reason"] = failure.reason.value if failure else None
                index = step.step
                row["model_wall_time_s"] = _number(times[index] if index < len(times) else None)
                rows.append(row)
    return pd.DataFrame(rows)


def case_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per (task, submission, case): AUC raw, AUC normalised and Final of each metric,
    failed steps, case and model wall time (from ``cases/<case>.timing.json``)."""
    rows = []
    for record in records:
        metrics = list(record.run["task"]["metrics"])
        for case_id, result in record.cases.items():
            timing = record.timings.get(case_id, {})
            row: dict[str, Any] = {
                "task": task_name(record),
                "submission": submission_name(record),
                "case_id": case_id,
            }
            for name in metrics:
                figures = result.summary.get(name)
                for kind in SUMMARY_KINDS:
                    row[column_name(name, kind)] = _number(figures.get(kind) if figures else None)
            row["failed_steps"] = result.failed_steps
            row["case_wall_time_s"] = _number(timing.get("case_wall_time_s"))
            model_times = [t for t in timing.get("model_wall_time_s") or [] if t is not None]
            row["model_wall_time_s"] = float(sum(model_times)) if model_times else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def summary_columns(cases: pd.DataFrame) -> list[str]:
    """The ``<metric>_<kind>`` columns of a case table, in table order."""
    return [c for c in cases.columns if any(c.endswith("_" + k) for k in SUMMARY_KINDS)]


def submission_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, submission): mean over its cases of every summary column, number of
    cases, failed steps and failed cases, mean case time and total model time.

    A mean is over the cases the submission has and over non-null values; the ranking, not
    this table, decides how missing cases count (see ``ranking``)."""
    columns = summary_columns(cases)
    grouped = cases.groupby(["task", "submission"], sort=True)
    table = grouped[columns].mean()
    table.insert(0, "num_cases", grouped["case_id"].count())
    table["failed_steps"] = grouped["failed_steps"].sum()
    table["failed_cases"] = grouped["failed_steps"].apply(lambda s: int((s > 0).sum()))
    table["mean_case_wall_time_s"] = grouped["case_wall_time_s"].mean()
    table["total_model_wall_time_s"] = grouped["model_wall_time_s"].sum(min_count=1)
    return table.reset_index()


def curve_table(steps: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The interaction curve: mean over cases of each metric at each step, per submission.

    Columns: task, submission, metric, step, mean, num_cases (cases with a value there)."""
    id_columns = ["task", "submission", "case_id", "step"]
    skip = {"failed", "failure_reason", "model_wall_time_s"}
    names = (
        list(metrics) if metrics else [c for c in steps.columns if c not in id_columns + list(skip)]
    )
    long = steps.melt(id_vars=id_columns, value_vars=names, var_name="metric", value_name="value")
    grouped = long.groupby(["task", "submission", "metric", "step"], sort=True)["value"]
    table = grouped.mean().rename("mean").to_frame()
    table["num_cases"] = grouped.count()
    return table.reset_index()


def task_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per task: description, steps, metrics, submissions and cases."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        task = record.run["task"]
        row = rows.setdefault(
            task["name"],
            {
                "task": task["name"],
                "description": task.get("description", ""),
                "num_steps": task.get("num_steps"),
                "metrics": ",".join(task.get("metrics", [])),
                "auc_steps": ",".join(str(s) for s in task.get("auc_steps", [])),
                "submissions": [],
                "case_ids": set(),
                "datasets": set(),
                "fingerprints": set(),
                "modes": set(),
            },
        )
        row["submissions"].append(submission_name(record))
        row["case_ids"].update(record.cases)
        row["datasets"].add(str(record.run.get("dataset", "")))
        row["fingerprints"].add(store.dataset_fingerprint(record) or "")
        row["modes"].add(scoring_mode(record))
    mixed = mixed_runs(records)
    table = []
    for row in rows.values():
        case_ids = row.pop("case_ids")
        submissions = row.pop("submissions")
        fingerprints = row.pop("fingerprints")
        datasets, modes = row.pop("datasets"), row.pop("modes")
        table.append(
            {
                **row,
                "datasets": ";".join(sorted(datasets)),
                "dataset_fingerprint": next(iter(fingerprints)) if len(fingerprints) == 1 else "",
                "scoring_modes": ",".join(sorted(modes)),
                "num_submissions": len(submissions),
                "num_cases": len(case_ids),
                "mixed": "; ".join(mixed.get(row["task"], [])),
            }
        )
    return pd.DataFrame(table).sort_values("task").reset_index(drop=True)


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN -> None, numpy scalars -> Python numbers."""
    return store.json_safe(table.to_dict(orient="records"))


def write_table(table: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    """``<name>.csv`` (empty cell for a missing value, text cells spreadsheet-safe) and
    ``<name>.json`` (``null``; the JSON keeps text as it is)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / f"{name}.csv", folder / f"{name}.json"
    store.write_csv(table, csv_path)
    json_path.write_text(json.dumps(table_records(table), indent=1, allow_nan=False) + "\n")
    return csv_path, json_path
