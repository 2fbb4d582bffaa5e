"""Parallel runs: identical to serial runs, and resumable after kill -9 of the whole run (issue 6).

A ``segloop run --jobs 2`` (or ``--dask``) subprocess, in its own process group, is killed with
SIGKILL (parent, workers, the multiprocessing manager, all at once) at deterministic moments:
once 0, 1 or 3 case files exist, plus a fixed extra delay (and a kill, a second kill of the
resumed run, then a serial resume). Running the same command again must
finish the run with nothing lost and nothing counted twice: case files byte-equal to a clean
serial run, every case exactly once, cases finished before the kill left untouched, no
temporary file left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segloop import runs
from segloop.app import phantoms
from segloop.baselines import region_growing
from segloop.core import dataset, store

ROOT = Path(__file__).resolve().parents[1]
MODEL = "python:tests.test_parallel_resume:slow_region_growing"
CASES = 8
STEP_DELAY_S = 0.04


def slow_region_growing(case, request) -> np.ndarray:
    """The region-growing baseline, slowed down so a kill lands in the middle of a run."""
    time.sleep(STEP_DELAY_S)
    return region_growing.predict(case, request)


@pytest.fixture(scope="module")
def pet_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pet")
    phantoms.write_phantom_dataset(folder, "pet", CASES, seed=2, shape=(32, 48, 48))
    return folder


def run_command(data: Path, out: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "segloop",
        "run",
        "--data",
        str(data),
        "--task",
        "autopet",  # keeps lesion-free cases (pet_004), which MedSegFM refuses
        "--model",
        MODEL,
        "--name",
        "rg",
        "--out",
        str(out),
        "--no-progress",
        *options,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def case_files(run_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted((run_dir / "cases").glob("*.json"))
        if not p.name.endswith(store.TIMING_SUFFIX)
    }


def leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def clean_run(pet_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    result = subprocess.run(
        run_command(pet_data, out), env=environment(), cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert len(case_files(out)) == CASES
    return out


def wait_until_gone(process_group: int, timeout_s: float = 20.0) -> None:
    """Every process of the group has exited (kill -9 is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process_group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {process_group} still alive after SIGKILL")


def start_and_kill(command: list[str], run_dir: Path, files_before_kill: int, delay_s: float):
    """Start the run in a new session, SIGKILL the whole group once enough cases are stored.

    Returns the finished case files (name -> mtime) seen right after the kill.
    """
    process = subprocess.Popen(
        command,
        env=environment(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    group = process.pid  # session leader: its pid is the process group id
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = (run_dir / "run.json").exists()
            if started and len(case_files(run_dir)) >= files_before_kill:
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before the kill: {process.stderr.read().decode()}")
            time.sleep(0.01)
        else:
            pytest.fail("the run made no progress within 120 s")
        time.sleep(delay_s)
        os.killpg(group, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(group, signal.SIGKILL)
            process.wait()
        process.stderr.close()
    wait_until_gone(group)
    folder = run_dir / "cases"
    return {
        p.name: p.stat().st_mtime_ns
        for p in folder.glob("*.json")
        if not p.name.endswith(store.TIMING_SUFFIX)
    }


def check_resumed(run_dir: Path, clean: Path, finished_at_kill: dict[str, int]) -> None:
    assert len(finished_at_kill) < CASES, "the kill came too late to test anything"
    files = case_files(run_dir)
    assert files == case_files(clean)  # nothing lost, nothing different
    ids = sorted(dataset.list_case_ids(run_dir.parent / "data"))
    assert sorted(name.removesuffix(".json") for name in files) == ids  # each case once
    timings = sorted((run_dir / "cases").glob(f"*{store.TIMING_SUFFIX}"))
    assert [p.name.removesuffix(store.TIMING_SUFFIX) for p in timings] == ids
    for name, mtime in finished_at_kill.items():  # finished cases were not run again
        assert (run_dir / "cases" / name).stat().st_mtime_ns == mtime, name
    summary = store.read_json(run_dir / "summary.json")
    assert summary["num_cases"] == CASES
    assert [row["case_id"] for row in summary["cases"]] == ids
    csv_rows = (run_dir / "summary.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + CASES + 1  # header, one row per case, the mean
    assert (run_dir / "summary.json").read_bytes() == (clean / "summary.json").read_bytes()
    assert leftovers(run_dir) == []


@pytest.fixture()
def work(pet_data, tmp_path) -> Path:
    """A folder holding a link to the dataset and the run folder."""
    (tmp_path / "data").symlink_to(pet_data, target_is_directory=True)
    return tmp_path


# kill moments: (case files stored before the kill, extra delay), drawn once from a seeded
# generator so they are "random" but the same on every machine and every run
_MOMENTS = np.random.default_rng(6)
KILL_MOMENTS = [
    (0, 0.0),
    (1, round(float(_MOMENTS.uniform(0.0, 0.3)), 3)),
    pytest.param(3, round(float(_MOMENTS.uniform(0.0, 0.3)), 3), marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("files_before_kill", "delay_s"), KILL_MOMENTS)
def test_jobs_run_killed_with_sigkill_resumes_exactly(work, clean_run, files_before_kill, delay_s):
    run_dir = work / "run"
    command = run_command(work / "data", run_dir, "--jobs", "2")
    finished = start_and_kill(command, run_dir, files_before_kill, delay_s)
    assert len(finished) >= files_before_kill
    if files_before_kill == 1:
        # kill -9 between an atomic write and its rename leaves the temporary file (a rare
        # moment to hit by chance, so planted here): the resumed run must remove it
        for path in (
            run_dir / "cases" / ".pet_007.json.k1ll3d.tmp",
            run_dir / "cases" / ".pet_007.timing.json.k1ll3d.tmp",
            run_dir / ".summary.json.k1ll3d.tmp",
        ):
            path.write_text('{"half": ')
    resumed = subprocess.run(command, env=environment(), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    check_resumed(run_dir, clean_run, finished)


def test_killed_twice_then_resumed_serially(work, clean_run):
    """Kill a parallel run, kill its resumption too, finish serially: still exact."""
    run_dir = work / "run"
    parallel = run_command(work / "data", run_dir, "--jobs", "2")
    first = start_and_kill(parallel, run_dir, 1, 0.0)
    second = start_and_kill(parallel, run_dir, len(first) + 2, 0.05)
    for name, mtime in first.items():
        assert second[name] == mtime
    resumed = subprocess.run(
        run_command(work / "data", run_dir), env=environment(), cwd=ROOT, capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    check_resumed(run_dir, clean_run, second)


@pytest.mark.slow
def test_dask_run_killed_with_sigkill_resumes_exactly(work, clean_run):
    run_dir = work / "run"
    command = run_command(work / "data", run_dir, "--dask", "--jobs", "2")
    finished = start_and_kill(command, run_dir, 2, 0.1)
    resumed = subprocess.run(command, env=environment(), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    check_resumed(run_dir, clean_run, finished)


# ------------------------------------------------------------------ serial = parallel = Dask

TASKS = [
    ("pet", "autopet", None),
    ("pet", "medsegfm", None),
    ("jaw", "toothfairy3", None),
    ("abdomen", "trials", None),
]


def _execute_all(data: Path, task: str, out: Path, settings) -> dict[str, dict[str, bytes]]:
    spec = runs.RunSpec(data, task, "python:segloop.baselines.region_growing:predict", "rg", 5)
    files = {}
    for name, options in settings:
        run_dir = out / name
        runs.execute(spec, run_dir, runs.pending_case_ids(spec, run_dir), **options)
        files[name] = case_files(run_dir)
    return files


@pytest.mark.parametrize(("kind", "task", "shape"), TASKS)
def test_serial_and_two_jobs_give_the_same_bytes_on_every_task(kind, task, shape, tmp_path):
    data = tmp_path / "data"
    phantoms.write_phantom_dataset(data, kind, 4, seed=3, shape=shape)
    files = _execute_all(data, task, tmp_path, [("serial", {}), ("jobs", {"jobs": 2})])
    assert len(files["serial"]) == 4
    assert files["serial"] == files["jobs"]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "task", "shape"), [TASKS[1], TASKS[2]])
def test_dask_local_cluster_gives_the_serial_bytes(kind, task, shape, tmp_path):
    data = tmp_path / "data"
    phantoms.write_phantom_dataset(data, kind, 4, seed=3, shape=shape)
    files = _execute_all(
        data, task, tmp_path, [("serial", {}), ("dask", {"jobs": 2, "use_dask": True})]
    )
    assert len(files["serial"]) == 4
    assert files["serial"] == files["dask"]
