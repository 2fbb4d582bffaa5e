"""A run: every case of a dataset through one task with one model, stored in a run folder.

Resumable: cases whose result file exists for the same configuration are skipped, so a run
killed half-way (Ctrl-C, kill -9, a lost machine) is continued by running the same command.

Cases run one after another, in local worker processes (``jobs``) or on a Dask cluster; each
case is one job that loads its case, runs it and stores it, so results do not depend on where
or in which order cases run. Every random draw of a robot user is seeded per (seed, case, class,
step), never by run order.

Model back-ends are released after each case and shared ones (Docker session containers per
submission) closed when a process's part of the run ends, in worker processes too, so no
container outlives a run. SIGTERM (a batch scheduler's stop) raises ``Terminated`` in the CLI
process (:func:`termination_handler`), which stops the workers' cases the same way; their
containers are removed and the cases in flight are not stored, so the next run resumes them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segloop.containers.registry import (
    close_shared_backends,
    open_backend,
    release_backend,
    terminate_backends,
)
from segloop.core import dataset, images, results, stamps, store
from segloop.core.records import Case, SegloopError
from segloop.core.task import Limits, ModelBackend, Task, Terminated
from segloop.loop import (
    case_result_of,
    check_channels,
    check_label_classes,
    run_case,
    timing_json,
)
from segloop.protocols.tasks import get_task

SEGLOOP_VERSION = "0.1.0"


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
    # Keep each step's prediction (store.prediction_path); not part of the configuration, as
    # it changes no result: a resumed run may switch it on for the cases still to run.
    save_predictions: bool = False

    def task(self) -> Task:
        classes = dict(self.classes) if self.classes is not None else None
        return get_task(self.task_ref, seed=self.seed, classes=classes, scoring=self.scoring)

    def config(self) -> dict[str, Any]:
        """What defines the results; limits do not (a resumed run may change them)."""
        config = {"submission": self.submission, "model": self.model_spec}
        if self.model_identity:
            config["model_identity"] = self.model_identity
        return {**config, "task": self.task().to_json()}

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
    all_ids = dataset.list_case_ids(spec.dataset_dir) if case_ids is None else list(case_ids)
    store.open_run(run_dir, spec.run_json())
    remove_stale_temporaries(run_dir)
    done = store.finished_case_ids(run_dir, store.config_hash(spec.config()))
    for case_id in sorted(done.intersection(all_ids)):
        changed = changed_case_inputs(spec.dataset_dir, run_dir, case_id)
        if changed:
            store.forget_case(run_dir, case_id)
            done.discard(case_id)
            notify(
                f"case {case_id}: {', '.join(changed)} changed since the case was scored; "
                "running it again"
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
    replaces the one ``spec.model_spec`` names (segloop.api: a function object, in-process)."""
    task = spec.task()
    limits = spec.limits if gpu is None else replace(spec.limits, gpus=(gpu,))
    # Stamped before reading: a file replaced meanwhile makes the stamp stale, never the result.
    found = dataset.case_files(spec.dataset_dir, case_id, extra_mask_names(spec.dataset_dir))
    inputs = stamps.input_stamps(spec.dataset_dir, found.all_files())
    if backend is None:
        backend = open_backend(spec.model_spec, limits, task.send_previous_prediction)
    case = load_dataset_case(spec.dataset_dir, case_id)
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
    store.write_case_result(run_dir, result, {**timing_json(outcome), "inputs": inputs})
    return case_id


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
    try:
        if use_dask or scheduler:
            _execute_dask(spec, run_dir, case_ids, jobs, scheduler, progress)
        elif jobs <= 1:
            gpu = spec.limits.gpus[0] if spec.limits.gpus else None
            for case_id in case_ids:
                progress(run_and_store_case(spec, run_dir, case_id, gpu))
        else:
            _execute_processes(spec, run_dir, case_ids, jobs, progress)
    finally:
        close_shared_backends(spec.model_spec)


# --------------------------------------------------------------------------------------------
# SIGTERM: stop like Ctrl-C (containers removed, the case in flight not stored), once


class _Signals:
    """This process's signal state (signal handlers are per process by nature)."""

    stop: type[BaseException] | None = None  # the first stop signal received, as an exception
    worker = False  # a --jobs worker: raise only inside a case, else stop at the next one
    in_case = False


def _on_stop_signal(signum: int, frame: object) -> None:
    if _Signals.stop is not None:
        return  # once: a second signal must not interrupt the clean-up of the first
    _Signals.stop = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if not _Signals.worker or _Signals.in_case:
        raise _Signals.stop(f"signal {signum}")


def _raise_if_stopped() -> None:
    if _Signals.stop is not None:
        raise _Signals.stop("stopped before the case started")


@contextlib.contextmanager
def termination_handler() -> Iterator[None]:
    """While inside: SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread,
    once; the previous handler comes back afterwards. The CLI wraps every command in it."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_stop_signal)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    _Signals.stop = None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _gpu_of_worker(spec: RunSpec, worker_index: int) -> int | None:
    gpus = spec.limits.gpus
    return gpus[worker_index % len(gpus)] if gpus else None


def _init_process_worker() -> None:
    """A --jobs worker: SIGTERM/SIGINT stop its case (or the next one) like Ctrl-C, and its
    shared back-ends are closed when the pool shuts it down."""
    _Signals.worker = True
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    multiprocessing.util.Finalize(None, close_shared_backends, exitpriority=10)


def _process_worker_job(spec: RunSpec, run_dir: Path, case_id: str, slots) -> str:
    """Borrow a worker slot (a GPU index when there are GPUs) for the duration of one case."""
    _raise_if_stopped()
    slot = slots.get()
    _Signals.in_case = True
    try:
        _raise_if_stopped()
        return run_and_store_case(spec, run_dir, case_id, _gpu_of_worker(spec, slot))
    finally:
        _Signals.in_case = False
        slots.put(slot)


def _execute_processes(spec, run_dir, case_ids, jobs, progress) -> None:
    # spawn, not fork: the parent may hold threads (progress bar, Docker client pools).
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        slots = manager.Queue()
        for slot in range(jobs):
            slots.put(slot)
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init_process_worker
        )
        futures: list[concurrent.futures.Future] = []
        try:
            for case_id in case_ids:
                futures.append(pool.submit(_process_worker_job, spec, run_dir, case_id, slots))
            for future in concurrent.futures.as_completed(futures):
                progress(future.result())
        except KeyboardInterrupt:  # Ctrl-C or Terminated: stop the workers' cases too
            for future in futures:
                future.cancel()  # those not started yet
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
            raise
        finally:
            pool.shutdown(wait=True)  # the workers finish removing their containers


def _dask_job(spec: RunSpec, run_dir: Path, case_id: str) -> str:
    from distributed import get_worker

    worker = get_worker()
    try:
        index = int(worker.name)
    except (TypeError, ValueError):
        index = 0
    try:
        return run_and_store_case(spec, run_dir, case_id, _gpu_of_worker(spec, index))
    except KeyboardInterrupt as stop:  # Terminated: the case is not stored; an Exception, as
        # Dask takes a BaseException in a task for a dying worker (it would restart and rerun)
        raise SegloopError(f"case {case_id} stopped: {stop}") from None


def _dask_worker_close(model_spec: str) -> int:
    return close_shared_backends(model_spec)


def _dask_worker_terminate(model_spec: str | None, quiet: bool) -> int:
    if quiet:  # our own LocalCluster, about to close: no "Compute Failed" for stopped cases
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)
    return terminate_backends(model_spec)


def _dask_worker_on_sigterm(signum: int, frame: object) -> None:
    """A LocalCluster worker told to stop (SIGTERM to the process group): remove its
    containers and stop its cases (not stored); the worker itself stays up for the client to
    close, as a dead worker would be restarted by its nanny and its cases rerun."""
    _dask_worker_terminate(None, quiet=True)


def _dask_worker_init() -> None:
    """Runs in each LocalCluster worker's main thread (``client.run``)."""
    signal.signal(signal.SIGTERM, _dask_worker_on_sigterm)


def _run_on_workers(client, function: Callable, *args: object) -> None:
    """``client.run`` on every worker, best effort (a worker may be gone already)."""
    with contextlib.suppress(Exception):
        client.run(function, *args)


def _execute_dask(spec, run_dir, case_ids, jobs, scheduler, progress) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed, wait
    except ImportError:
        raise SegloopError("Dask runs need the dask extra: pip install 'segloop[dask]'") from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=max(jobs, 1), threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    futures = []
    try:
        if cluster is not None:  # our own workers: SIGTERM removes their containers first
            client.run(_dask_worker_init)
        # pure=False: a case must run even if an identical task ran before on this cluster.
        futures = client.map(
            _dask_job, [spec] * len(case_ids), [run_dir] * len(case_ids), case_ids, pure=False
        )
        for future in as_completed(futures):
            progress(future.result())
    except KeyboardInterrupt:  # Ctrl-C or Terminated: stop the cases running on the workers
        _run_on_workers(client, _dask_worker_terminate, spec.model_spec, cluster is not None)
        with contextlib.suppress(Exception):  # let them end (Terminated) before closing
            wait(futures, timeout=30)
            client.cancel(futures)
        raise
    finally:
        _run_on_workers(client, _dask_worker_close, spec.model_spec)
        client.close()
        if cluster is not None:
            cluster.close()


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
    with_mean.to_csv(Path(run_dir) / "summary.csv", index=False)
    summary = {
        "submission": record.run["submission"],
        "task": record.run["task"]["name"],
        "scoring": record.run["task"].get("scoring", results.Scoring().to_json()),
        "num_cases": len(cases),
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
