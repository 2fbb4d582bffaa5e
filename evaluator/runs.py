"""A run: every case of a dataset through one task with one model, stored in a run folder.

Resumable: cases whose result file exists for the same configuration are skipped, so a run
killed half-way (Ctrl-C, kill -9, a lost machine) is continued by running the same command.

Cases run one after another, in local worker processes (``jobs``) or on a Dask cluster
(:mod:`segloop.workers`); each case is one job that loads its case, runs it and stores it
(:func:`run_and_store_case`), so results do not depend on where or in which order cases run.
Every random draw of a robot user is seeded per (seed, case, class, step), never by run order.

Model back-ends are released after each case and shared ones (Docker session containers per
submission) closed when a process's part of the run ends, in worker processes too, so no
container outlives a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segloop import __version__, workers
from segloop.containers.registry import (
    close_shared_backends,
    harness_fault_of,
    open_backend,
    release_backend,
)
from segloop.core import dataset, images, results, stamps, store, timing
from segloop.core.challenges import CHALLENGES
from segloop.core.faults import HarnessFault
from segloop.core.records import Case, SegloopError
from segloop.core.task import Limits, ModelBackend, Task
from segloop.loop import (
    case_result_of,
    check_channels,
    check_label_classes,
    run_case,
    timing_json,
)
from segloop.protocols.tasks import get_task


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run a case, by value (picklable, no open resources).

    The task is referred to by preset name or TOML path and rebuilt where the case runs.
    """

    dataset_dir: Path
    task_ref: str
    model_spec: str
    submission: str
    seed: int | None = None  # None: the task's own seed
    limits: Limits = Limits()
    classes: tuple[tuple[int, str], ...] | None = None  # overrides the task's classes
    model_identity: str = (
        ""  # a docker model's image id (segloop.containers.registry.model_identity)
    )
    scoring: str | None = None  # a scoring mode of the task (None: its default)
    # {file: sha256} of a python: or cmd: model's files (segloop.containers.registry.model_files)
    model_files: tuple[tuple[str, str], ...] = ()
    # Keep each step's prediction (store.prediction_path); not part of the configuration, as
    # it changes no result: a resumed run may switch it on for the cases still to run.
    save_predictions: bool = False

    def task(self) -> Task:
        classes = dict(self.classes) if self.classes is not None else None
        return get_task(self.task_ref, seed=self.seed, classes=classes, scoring=self.scoring)

    def with_absolute_paths(self) -> RunSpec:
        """The same run with its dataset folder and a task file as absolute paths: a Dask
        worker runs in its own working directory, where relative paths name other files (or
        none: "dataset folder does not exist")."""
        task_ref = self.task_ref
        if task_ref not in CHALLENGES and Path(task_ref).is_file():
            task_ref = str(Path(task_ref).resolve())
        return replace(self, dataset_dir=Path(self.dataset_dir).resolve(), task_ref=task_ref)

    def config(self) -> dict[str, Any]:
        """What defines the results; limits do not (a resumed run may change them)."""
        config = {"submission": self.submission, "model": self.model_spec}
        if self.model_identity:
            config["model_identity"] = self.model_identity
        if self.model_files:
            config["model_files"] = dict(self.model_files)
        return {**config, "task": self.task().to_json()}

    def run_json(self) -> dict[str, Any]:
        return {
            "format": "segloop-run",
            "version": 1,
            **self.config(),
            "dataset": str(Path(self.dataset_dir).resolve()),
            "config_hash": store.config_hash(self.config()),
            "segloop_version": __version__,
        }


def extra_mask_names(dataset_dir: Path) -> tuple[str, ...]:
    """Names of the per-case extra masks of a dataset (the folders under masksTs/)."""
    folder = Path(dataset_dir) / "masksTs"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ()


def load_dataset_case(dataset_dir: Path, case_id: str) -> Case:
    return dataset.load_case(dataset_dir, case_id, extra_mask_names(dataset_dir))


def check_dataset(
    spec: RunSpec,
    case_ids: Sequence[str] | None = None,
    progress: Callable[[str], None] = lambda case_id: None,
) -> dict[str, str]:
    """Every problem a run of ``spec`` would stop at, one line per case (empty: all fine).

    Reads each case as a run does (files, grids, labels, extra masks), checks its label against
    the task, and computes the robot user's first interactions. No model runs.
    """
    task = spec.task()
    problems: dict[str, str] = {}
    for case_id in dataset.list_case_ids(spec.dataset_dir) if case_ids is None else case_ids:
        try:
            case = load_dataset_case(spec.dataset_dir, case_id)
            check_label_classes(case, task)
            check_channels(case, task)
            task.robot_user.interactions(case, task.classes, 0, None, task.seed)
        except SegloopError as error:
            problems[case_id] = str(error)
        progress(case_id)
    return problems


def pending_case_ids(
    spec: RunSpec,
    run_dir: Path,
    case_ids: Sequence[str] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> list[str]:
    """Open (or check) the run folder and list the cases still to run, in case-id order.

    A finished case whose input files changed since it was scored (gone, or other bytes; see
    :func:`segloop.core.stamps.changed_inputs`) is removed and runs again, with a ``notify`` line.
    """
    known = dataset.list_case_ids(spec.dataset_dir)
    all_ids = known if case_ids is None else list(dict.fromkeys(case_ids))
    unknown = sorted(set(all_ids) - set(known))
    if unknown:  # before the run folder is written
        raise SegloopError(
            f"--cases: {', '.join(repr(c) for c in unknown[:5])} not a case of "
            f"{spec.dataset_dir} (it has {len(known)}: {', '.join(known[:3])}"
            f"{', ...' if len(known) > 3 else ''})"
        )
    store.open_run(run_dir, spec.run_json())
    remove_stale_temporaries(run_dir)
    done = store.finished_case_ids(run_dir, store.config_hash(spec.config()), notify)
    for case_id in sorted(done.intersection(all_ids)):
        changed = changed_case_inputs(spec.dataset_dir, run_dir, case_id)
        if changed:
            store.forget_case(run_dir, case_id)
            done.discard(case_id)
            notify(
                f"case {case_id}: {', '.join(changed)} changed since the case was scored; "
                "running it again"
            )
    if done.intersection(all_ids):
        notify(
            f"{len(done.intersection(all_ids))} of {len(all_ids)} cases were done before with "
            "this configuration and are skipped (--overwrite runs them again)"
        )
    return [case_id for case_id in all_ids if case_id not in done]


def changed_case_inputs(dataset_dir: Path, run_dir: Path, case_id: str) -> list[str]:
    """The input files of a finished case that changed since it was scored (relative paths);
    none when its timing file holds no stamps (older runs)."""
    timing_path = store.case_timing_path(run_dir, case_id)
    try:
        stamped = store.read_json(timing_path).get("inputs") or {}
    except SegloopError:
        return []  # no timing file: nothing to compare with
    return stamps.changed_inputs(dataset_dir, stamped)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed run left behind.

    ``store.write_json_atomic`` writes ``.<name>.<random>.tmp`` next to its target and renames
    it; kill -9 between the two leaves the temporary (never a half-written result). Called when
    a run starts, before any worker: a run folder is used by one run at a time.
    """
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / store.CASES_DIR):
        for path in folder.glob(".*.tmp") if folder.is_dir() else ():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def run_and_store_case(
    spec: RunSpec,
    run_dir: Path,
    case_id: str,
    gpu: int | None = None,
    backend: ModelBackend | None = None,
) -> str:
    """The unit of work everywhere: load one case, run it, store it atomically. ``backend``
    replaces the one ``spec.model_spec`` names (segloop.api: a function object, in-process).

    A fault of the harness (engine unreachable, no space) raises :class:`HarnessFault` naming
    the case, which is then not stored (resume runs it again); never a scored failure."""
    try:
        return _run_and_store_case(spec, run_dir, case_id, gpu, backend)
    except HarnessFault as fault:
        raise HarnessFault(f"case {case_id} not stored: {fault}") from None
    except Exception as error:
        fault = harness_fault_of(error)
        if fault is None:
            raise
        raise HarnessFault(f"case {case_id} not stored: {fault}") from None


def _run_and_store_case(
    spec: RunSpec, run_dir: Path, case_id: str, gpu: int | None, backend: ModelBackend | None
) -> str:
    task = spec.task()
    limits = spec.limits if gpu is None else replace(spec.limits, gpus=(gpu,))
    io_started = time.perf_counter()
    # Stamped before reading: a file replaced meanwhile makes the stamp stale, never the result.
    found = dataset.case_files(spec.dataset_dir, case_id, extra_mask_names(spec.dataset_dir))
    inputs = stamps.input_stamps(spec.dataset_dir, found.all_files())
    case = load_dataset_case(spec.dataset_dir, case_id)
    io_s = time.perf_counter() - io_started  # the time budget's I/O (segloop.core.timing)
    if backend is None:
        backend = open_backend(spec.model_spec, limits, task.send_previous_prediction)
    store.forget_predictions(run_dir, case_id)  # a killed earlier attempt's, if any
    keep = None
    if spec.save_predictions:
        # Written before the case result, which marks the case finished: a result whose
        # predictions were asked for always has them (a killed case runs again, overwriting).
        def keep(step: int, prediction: np.ndarray) -> None:
            images.write_image(
                store.prediction_path(run_dir, case_id, step),
                prediction_array(prediction),
                case.geometry,
            )

    try:
        outcome = run_case(case, task, backend, keep)
    finally:
        release_backend(backend)
    result = case_result_of(outcome, task, spec.submission, store.config_hash(spec.config()))
    case_timing = {**timing_json(outcome), "io_s": io_s, "inputs": inputs}
    store.write_case_result(run_dir, result, case_timing)
    return case_id


def time_budget_of(run_dir: Path, case_ids: Sequence[str]) -> timing.TimeBudget:
    """The time split of these cases, from their timing files (cases without one: skipped)."""
    found = []
    for case_id in case_ids:
        try:
            found.append(store.read_json(store.case_timing_path(run_dir, case_id)))
        except SegloopError:  # not run (stopped), or damaged: the line is about the others
            continue
    return timing.time_budget(t for t in found if isinstance(t, dict))


def prediction_array(prediction: np.ndarray) -> np.ndarray:
    """A prediction as stored: the smallest unsigned type that holds its labels (uint8 for up
    to 255 classes), so a kept step costs little more than its compressed mask."""
    prediction = np.asarray(prediction)
    top = int(prediction.max()) if prediction.size else 0
    return prediction.astype(np.uint8 if top <= 255 else np.uint16, copy=False)


def execute(
    spec: RunSpec,
    run_dir: Path,
    case_ids: Sequence[str],
    jobs: int = 1,
    use_dask: bool = False,
    scheduler: str | None = None,
    progress: Callable[[str], None] = lambda case_id: None,
) -> None:
    """Run ``case_ids`` serially, in ``jobs`` local processes, or on Dask.

    GPUs (``spec.limits.gpus``) become slots: each worker owns one device index. Shared
    back-ends are closed at the end, here and in every worker.
    """
    gpus = spec.limits.gpus
    try:
        if use_dask or scheduler:
            # paths made absolute before they reach a scheduler: its workers have their own cwd
            workers.execute_dask(
                run_and_store_case, spec.with_absolute_paths(), Path(run_dir).resolve(),
                case_ids, jobs, scheduler, spec.model_spec, gpus, progress,
            )  # fmt: skip
        elif jobs <= 1:
            gpu = gpus[0] if gpus else None
            for case_id in case_ids:
                progress(run_and_store_case(spec, run_dir, case_id, gpu))
        else:
            workers.execute_processes(
                run_and_store_case, spec, run_dir, case_ids, jobs, gpus, progress
            )
    finally:
        close_shared_backends(spec.model_spec)


def summary_table(cases: Sequence[results.CaseResult]) -> pd.DataFrame:
    """One row per case: AUC (raw, normalised) and Final of each metric, failed steps."""
    return pd.DataFrame(
        [
            {"case_id": r.case_id, **results.summary_columns(r), "failed_steps": r.failed_steps}
            for r in cases
        ]
    )


def write_summary(run_dir: Path) -> dict[str, Any]:
    """summary.csv (per case + a mean row) and summary.json (per case, mean, mean curve).

    Every mean is :func:`segloop.core.results.aggregate`'s: over the cases whose value is
    defined; summary.json's ``undefined`` counts the cases left out, per metric and kind."""
    record = store.read_run(run_dir)
    cases = list(record.cases.values())
    if not cases:
        raise SegloopError(f"{run_dir}: no finished case to summarise")
    table = summary_table(cases)
    mean_row = {
        column: results.aggregate(list(table[column])).mean
        for column in table.columns
        if column != "case_id"
    }
    with_mean = pd.concat(
        [table, pd.DataFrame([{"case_id": "mean", **mean_row}])], ignore_index=True
    )
    store.write_csv(with_mean, Path(run_dir) / "summary.csv")
    summary = {
        "submission": record.run["submission"],
        "task": record.run["task"]["name"],
        "scoring": record.run["task"].get("scoring", results.Scoring().to_json()),
        "num_cases": len(cases),
        # what the cases were scored on: a leaderboard refuses to rank runs of other data
        "dataset": {  # its path is in run.json: the summary is the same wherever data live
            "num_cases": len(cases),
            "fingerprint": store.dataset_fingerprint(record),
        },
        "failed_steps": int(table["failed_steps"].sum()),
        "failures": failure_digest(cases),
        "mean": results.mean_summary(cases),
        "undefined": results.missing_counts(cases),
        "mean_curve": results.mean_curves(cases),
        "cases": store.json_safe(table.to_dict(orient="records")),
    }
    store.write_json_atomic(Path(run_dir) / "summary.json", summary)
    return summary


def last_log_line(log_tail: str | None) -> str:
    """The last non-blank line of a model's log or traceback: usually the error itself
    (``ValueError: ...``), the line a warning should quote."""
    lines = [line.strip() for line in (log_tail or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def failure_digest(case_results: Sequence[results.CaseResult]) -> dict[str, dict[str, Any]]:
    """Per failure reason: how many steps, and the first one (by case id, step) as an example."""
    digest: dict[str, dict[str, Any]] = {}
    for result in sorted(case_results, key=lambda r: r.case_id):
        for step in result.steps:
            if step.failure is None:
                continue
            entry = digest.setdefault(
                step.failure.reason.value,
                {"steps": 0, "example": {"case_id": result.case_id, "step": step.step}},
            )
            entry["steps"] += 1
            entry["example"].setdefault("detail", step.failure.detail)
            entry["example"].setdefault("log_last_line", last_log_line(step.failure.log_tail))
    return digest
