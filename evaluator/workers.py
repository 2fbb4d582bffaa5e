"""Where a run's cases execute: local worker processes or a Dask cluster, and how they stop.

A case is one job, ``job(spec, run_dir, case_id, gpu) -> case_id`` (segloop.runs passes its
``run_and_store_case``), so results do not depend on where or in which order cases run. GPUs
become slots: each worker owns one device index for its life. SIGTERM (a batch scheduler's
stop) raises ``Terminated`` in the CLI process (:func:`termination_handler`), which stops the
workers' cases the same way; their containers are removed and the cases in flight are not
stored. A worker dies with the harness (a lifeline thread): kill -9 of the main process alone
leaves nothing running. A worker that dies, or Dask giving up on a case, is a HarnessFault.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from segloop.containers.registry import close_shared_backends, terminate_backends
from segloop.core.faults import EXIT_HARNESS_FAULT, HarnessFault
from segloop.core.records import SegloopError
from segloop.core.task import Terminated

#: One case: (run spec, run folder, case id, GPU index or None) -> the case id, stored.
CaseJob = Callable[[Any, Path, str, int | None], str]


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


def _gpu_of_worker(gpus: Sequence[int], worker_index: int) -> int | None:
    return gpus[worker_index % len(gpus)] if gpus else None


#: How often a worker looks whether the harness that started it is still alive.
PARENT_POLL_S = 0.5


class _Worker:
    """This --jobs worker's slot (a GPU index when there are GPUs), for its whole life."""

    slot = 0


def _init_process_worker(slots, parent_pid: int) -> None:
    """A --jobs worker: SIGTERM/SIGINT stop its case (or the next one) like Ctrl-C, and its
    shared back-ends are closed when the pool shuts it down. It takes one slot for its life
    (a worker replaced after a crash breaks the pool, so no slot is ever shared), and it dies
    with the harness: kill -9 of the main process alone must not leave workers behind."""
    _Signals.worker = True
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    multiprocessing.util.Finalize(None, close_shared_backends, exitpriority=10)
    _Worker.slot = slots.get()
    threading.Thread(
        target=_die_with_parent, args=(parent_pid,), name="segloop-lifeline", daemon=True
    ).start()


def _die_with_parent(parent_pid: int) -> None:
    """Once the harness is gone (this process re-parented), remove this worker's containers
    and exit at once: nobody is left to collect its results, and the case in flight is not
    stored, so a resumed run redoes it."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    with contextlib.suppress(Exception):
        terminate_backends(None, remove_files=True)
    os._exit(EXIT_HARNESS_FAULT)


def _process_worker_job(job: CaseJob, spec: Any, run_dir: Path, case_id: str, gpus) -> str:
    _raise_if_stopped()
    _Signals.in_case = True
    try:
        _raise_if_stopped()
        return job(spec, run_dir, case_id, _gpu_of_worker(gpus, _Worker.slot))
    finally:
        _Signals.in_case = False


def execute_processes(
    job: CaseJob,
    spec: Any,
    run_dir: Path,
    case_ids: Sequence[str],
    jobs: int,
    gpus: Sequence[int],
    progress: Callable[[str], None],
) -> None:
    """``job(spec, run_dir, case_id, gpu)`` for every case in ``jobs`` local processes; a
    worker owns one slot (a GPU of ``gpus``) for its life and dies with this process."""
    # spawn, not fork: the parent may hold threads (progress bar, Docker client pools). No
    # Manager process: it would outlive a main process killed with -9.
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    pool = concurrent.futures.ProcessPoolExecutor(
        jobs,
        mp_context=context,
        initializer=_init_process_worker,
        initargs=(slots, os.getpid()),
    )
    futures: list[concurrent.futures.Future] = []
    try:
        for case_id in case_ids:
            futures.append(
                pool.submit(_process_worker_job, job, spec, run_dir, case_id, tuple(gpus))
            )
        for future in concurrent.futures.as_completed(futures):
            progress(future.result())
    except KeyboardInterrupt:  # Ctrl-C or Terminated: stop the workers' cases too
        for future in futures:
            future.cancel()  # those not started yet
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        raise
    except BrokenProcessPool as error:
        raise HarnessFault(
            f"a worker process died ({error}); the cases in flight are not stored"
        ) from None
    finally:
        # A fault or an error stops the run: cases not started yet are not started; those
        # running finish (and are stored) while their workers remove their containers.
        pool.shutdown(wait=True, cancel_futures=True)
        slots.close()


def _dask_job(job: CaseJob, spec: Any, run_dir: Path, case_id: str, gpus) -> str:
    from distributed import get_worker  # lazy: the dask extra is optional

    worker = get_worker()
    try:
        index = int(worker.name)
    except (TypeError, ValueError):
        index = 0
    try:
        return job(spec, run_dir, case_id, _gpu_of_worker(gpus, index))
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


def execute_dask(
    job: CaseJob,
    spec: Any,
    run_dir: Path,
    case_ids: Sequence[str],
    jobs: int,
    scheduler: str | None,
    model_spec: str,
    gpus: Sequence[int],
    progress: Callable[[str], None],
) -> None:
    """``job(spec, run_dir, case_id, gpu)`` for every case on the Dask ``scheduler`` (or a
    LocalCluster of ``jobs`` workers). ``spec`` and ``run_dir`` must hold absolute paths: a
    worker has its own working directory."""
    try:
        # lazy: the dask extra is optional
        from distributed import Client, LocalCluster, as_completed, wait
        from distributed.scheduler import KilledWorker
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
        n = len(case_ids)
        futures = client.map(
            _dask_job, [job] * n, [spec] * n, [run_dir] * n, case_ids, [tuple(gpus)] * n,
            pure=False,
        )  # fmt: skip
        for future in as_completed(futures):
            progress(future.result())
    except KilledWorker as error:  # Dask gave up on a case whose workers kept dying
        raise HarnessFault(f"Dask workers died running a case ({error}); not stored") from None
    except KeyboardInterrupt:  # Ctrl-C or Terminated: stop the cases running on the workers
        _run_on_workers(client, _dask_worker_terminate, model_spec, cluster is not None)
        with contextlib.suppress(Exception):  # let them end (Terminated) before closing
            wait(futures, timeout=30)
            client.cancel(futures)
        raise
    finally:
        _run_on_workers(client, _dask_worker_close, model_spec)
        client.close()
        if cluster is not None:
            cluster.close()
