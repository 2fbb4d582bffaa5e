"""A run: every case of a dataset through one task with one model, stored in a run folder.

Resumable: cases whose result file exists for the same configuration are skipped, so a run
killed half-way (Ctrl-C, kill -9, a lost machine) is continued by running the same command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evaluator import io, store
from evaluator.loop import CaseOutcome, case_result_json, mean_summary, run_case, timing_json
from evaluator.records import Case, SegloopError
from evaluator.task import ModelBackend, Task

SEGLOOP_VERSION = "0.1.0"


@dataclass(frozen=True)
class RunSpec:
    """What identifies a run; its hash guards a run folder against mixing configurations."""

    dataset_dir: Path
    task: Task
    model_spec: str
    submission: str

    def config(self) -> dict[str, Any]:
        return {
            "submission": self.submission,
            "model": self.model_spec,
            "task": self.task.to_json(),
        }

    def run_json(self) -> dict[str, Any]:
        return {
            "format": "segloop-run",
            "version": 1,
            **self.config(),
            "dataset": str(Path(self.dataset_dir).resolve()),
            "config_hash": store.config_hash(self.config()),
            "segloop_version": SEGLOOP_VERSION,
        }


def extra_mask_names(dataset_dir: Path) -> tuple[str, ...]:
    """Names of the per-case extra masks of a dataset (the folders under masksTs/)."""
    folder = Path(dataset_dir) / "masksTs"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ()


def load_dataset_case(dataset_dir: Path, case_id: str) -> Case:
    return io.load_case(dataset_dir, case_id, extra_mask_names(dataset_dir))


def store_outcome(run_dir: Path, spec: RunSpec, outcome: CaseOutcome) -> None:
    result = case_result_json(outcome, spec.task, spec.submission, store.config_hash(spec.config()))
    store.write_case_result(run_dir, result, timing_json(outcome))


def pending_case_ids(
    spec: RunSpec, run_dir: Path, case_ids: Sequence[str] | None = None
) -> list[str]:
    """Open (or check) the run folder and list the cases still to run, in case-id order."""
    all_ids = io.list_case_ids(spec.dataset_dir) if case_ids is None else list(case_ids)
    store.open_run(run_dir, spec.run_json())
    done = store.finished_case_ids(run_dir, store.config_hash(spec.config()))
    return [case_id for case_id in all_ids if case_id not in done]


def run_serial(
    spec: RunSpec,
    backend: ModelBackend,
    run_dir: Path,
    case_ids: Sequence[str],
    progress: Callable[[str], None] = lambda case_id: None,
) -> None:
    """Run and store each case in turn; each stored case survives whatever happens next."""
    for case_id in case_ids:
        case = load_dataset_case(spec.dataset_dir, case_id)
        store_outcome(run_dir, spec, run_case(case, spec.task, backend))
        progress(case_id)


def summary_table(run_dir: Path) -> pd.DataFrame:
    """One row per case: AUC (raw, normalised) and Final of each metric, failed steps."""
    record = store.read_run(run_dir)
    rows = []
    for case_id, result in record.cases.items():
        row: dict[str, Any] = {"case_id": case_id}
        for metric_name, figures in result["summary"].items():
            for key, value in figures.items():
                row[f"{metric_name}_{key}"] = value
        row["failed_steps"] = result["failed_steps"]
        rows.append(row)
    if not rows:
        raise SegloopError(f"{run_dir}: no finished case to summarise")
    return pd.DataFrame(rows)


def write_summary(run_dir: Path) -> dict[str, Any]:
    """summary.csv (per case + mean row) and summary.json (per case, mean, mean curve)."""
    record = store.read_run(run_dir)
    table = summary_table(run_dir)
    mean_row = table.drop(columns=["case_id"]).mean(numeric_only=True)
    with_mean = pd.concat(
        [table, pd.DataFrame([{"case_id": "mean", **mean_row.to_dict()}])], ignore_index=True
    )
    with_mean.to_csv(Path(run_dir) / "summary.csv", index=False)
    summary = {
        "submission": record.run["submission"],
        "task": record.run["task"]["name"],
        "num_cases": len(record.cases),
        "failed_steps": int(table["failed_steps"].sum()),
        "mean": mean_summary(record.cases),
        "mean_curve": mean_curves(record.cases),
        "cases": store.json_safe(table.to_dict(orient="records")),
    }
    store.write_json_atomic(Path(run_dir) / "summary.json", summary)
    return summary


def mean_curves(case_results: dict[str, dict[str, Any]]) -> dict[str, list[float | None]]:
    """Mean over cases of each metric at each step (the interaction curve)."""
    curves: dict[str, list[list[float | None]]] = {}
    for result in case_results.values():
        for step in result["steps"]:
            for metric_name, value in step["metrics"].items():
                per_step = curves.setdefault(metric_name, [])
                while len(per_step) <= step["step"]:
                    per_step.append([])
                per_step[step["step"]].append(value["mean"])
    return {
        name: [
            None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)
            for vals in steps
        ]
        for name, steps in curves.items()
    }
