"""A real Dask cluster (issue 16, item 6): a ``dask scheduler`` and two ``dask worker``
processes on loopback, started in another working directory than ``segloop run``, which is
given relative paths. The case files must be byte-identical to a serial run's: the paths reach
the scheduler as absolute paths (they used to fail with "data: dataset folder does not exist").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segloop.app import phantoms
from segloop.core import store

MODEL = "python:segloop.baselines.region_growing:predict"  # installed: importable anywhere
START_TIMEOUT_S = 120


def case_files(run_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted((run_dir / "cases").glob("*.json"))
        if not p.name.endswith(store.TIMING_SUFFIX)
    }


def start(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """A process in its own session (so that the test can stop it and its children)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def wait_for_address(scheduler_file: Path, scheduler: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert scheduler.poll() is None, "dask scheduler exited"
        if scheduler_file.is_file():
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (ValueError, KeyError):
                pass  # being written
        time.sleep(0.2)
    raise AssertionError("dask scheduler did not start")


@pytest.fixture()
def cluster(tmp_path):
    """(scheduler address, the workers' folder): one scheduler, two one-thread workers."""
    from distributed import Client

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scheduler_file = elsewhere / "scheduler.json"
    processes = [
        start(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            elsewhere,
            elsewhere / "scheduler.log",
        )
    ]
    try:
        address = wait_for_address(scheduler_file, processes[0])
        for name in ("0", "1"):
            processes.append(
                start(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address]
                    + ["--name", name, "--nthreads", "1", "--no-dashboard"]
                    + ["--host", "127.0.0.1", "--local-directory", str(elsewhere / name)],
                    elsewhere,
                    elsewhere / f"worker{name}.log",
                )
            )
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            cwds = set(client.run(os.getcwd).values())
        assert cwds == {str(elsewhere)}  # really another working directory
        yield address, elsewhere
    finally:
        for process in reversed(processes):
            stop(process)


def segloop_run(cwd: Path, out: str, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segloop", "run", "--data", "data", "--task", "autopet"]
    command += ["--model", MODEL, "--name", "rg", "--out", out, "--no-progress", *options]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_scheduler_and_two_workers_in_another_folder_give_the_serial_bytes(cluster, tmp_path):
    address, elsewhere = cluster
    here = tmp_path / "here"
    phantoms.write_phantom_dataset(here / "data", "pet", 4, seed=4, shape=(24, 40, 40))
    serial = segloop_run(here, "serial")
    assert serial.returncode == 0, serial.stderr
    distributed = segloop_run(here, "distributed", "--scheduler", address)
    assert distributed.returncode == 0, distributed.stderr
    files = case_files(here / "serial")
    assert len(files) == 4
    assert case_files(here / "distributed") == files
    assert not (elsewhere / "distributed").exists()  # the workers wrote into our run folder
    assert "time: model" in distributed.stdout
