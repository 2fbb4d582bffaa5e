"""No silent wrong results (issue 14): faults of the harness are never scores, a run folder has
one owner, a changed model does not resume into old results.

The faults are injected for real: the Docker engine reached through a proxy socket that the test
closes mid-run, run and work folders on a small tmpfs that is full, kill -9 of the main process
alone or of one worker. Each test checks what was stored (nothing from the fault), what the user
saw (one line, exit code 75) and that the same command then resumes to a clean run's results.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from segloop.app import phantoms
from segloop.core import store
from segloop.core.faults import EXIT_HARNESS_FAULT
from segloop.core.owners import owner_token
from tests.test_docker import docker_client  # noqa: F401 - the session fixture

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SOCKET = "/var/run/docker.sock"


def segloop(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segloop", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def run_args(data: Path, out: Path, model: str, *extra: str) -> list[str]:
    return [
        "run", "--data", str(data), "--task", "autopet", "--model", model,
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def case_files(run_dir: Path) -> dict[str, bytes]:
    folder = run_dir / "cases"
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.glob("*.json"))
        if not p.name.endswith(store.TIMING_SUFFIX)
    }


def stored_failures(run_dir: Path) -> list[str]:
    """Every failure reason stored in the run's case files."""
    reasons = []
    for content in case_files(run_dir).values():
        for step in json.loads(content)["steps"]:
            if step.get("failure"):
                reasons.append(step["failure"]["reason"])
    return reasons


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def pet_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pet")
    phantoms.write_phantom_dataset(folder, "pet", 3, seed=4, shape=(16, 24, 24))
    return folder


@contextlib.contextmanager
def small_tmpfs(folder: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` KiB at ``folder`` (we are root in CI), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(folder)],
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of ``folder`` until at most ``leave_bytes`` are free."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        with contextlib.suppress(OSError):
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_bytes:
                handle.write(b"\0" * 4096)
                handle.flush()
    return filler


# --------------------------------------------------------------------- the run folder fills up
def test_a_full_run_folder_stops_the_run_and_resumes(pet_data, tmp_path):
    model = "python:baselines.region_growing:predict"
    clean = segloop(*run_args(pet_data, tmp_path / "clean", model))
    assert clean.returncode == 0, clean.stderr
    with small_tmpfs(tmp_path / "fs", 2048) as fs:
        run_dir = fs / "run"
        first = segloop(*run_args(pet_data, run_dir, model, "--cases", "pet_000"))
        assert first.returncode == 0, first.stderr
        filler = fill(fs, leave_bytes=8 << 10)  # room for the lock and a timing file, no more
        full = segloop(*run_args(pet_data, run_dir, model))
        assert full.returncode == EXIT_HARNESS_FAULT, full.stderr
        line = one_line(full.stderr.replace(_skipped_note(full.stderr), ""))
        assert line.startswith("segloop: harness fault (not the model's): case pet_001 not stored")
        assert "No space left on device" in line and str(run_dir / "cases") in line
        assert sorted(case_files(run_dir)) == ["pet_000.json"]  # nothing half-written
        assert not list((run_dir / "cases").glob(".*.tmp"))
        filler.unlink()
        resumed = segloop(*run_args(pet_data, run_dir, model))
        assert resumed.returncode == 0, resumed.stderr
        assert "1 of 3 cases were done before" in resumed.stderr
        assert case_files(run_dir) == case_files(tmp_path / "clean")


def _skipped_note(stderr: str) -> str:
    """The 'cases were done before' note line (with its newline), if any."""
    for line in stderr.splitlines(keepends=True):
        if "were done before" in line:
            return line
    return ""


# --------------------------------------------------------------------- the work folder fills up
def test_a_full_work_folder_is_not_the_models_failure(pet_data, tmp_path):
    """A cmd: model's work folder (under TMPDIR) on a full file system: the run stops with a
    harness fault naming the folder; no step is scored as the model's exit_code."""
    script = tmp_path / "empty_model.py"
    script.write_text(
        "import json, sys, numpy as np\n"
        "case = json.load(open(sys.argv[1] + '/case.json'))\n"
        "np.save(sys.argv[2] + '/prediction.npy', np.zeros(case['shape'], np.uint8))\n"
    )
    model = f"cmd:{sys.executable} {script} {{input}} {{output}}"
    with small_tmpfs(tmp_path / "work", 1024) as work:
        run_dir = tmp_path / "run"
        filler = fill(work, leave_bytes=64 << 10)  # room for a little, not for a case's images
        result = segloop(*run_args(pet_data, run_dir, model), env={"TMPDIR": str(work)})
        assert result.returncode == EXIT_HARNESS_FAULT, result.stderr
        line = one_line(result.stderr)
        assert "case pet_000 not stored" in line and str(work) in line
        assert "No space left on device" in line or "no space left" in line
        assert case_files(run_dir) == {} and stored_failures(run_dir) == []
        filler.unlink()
        resumed = segloop(*run_args(pet_data, run_dir, model), env={"TMPDIR": str(work)})
        assert resumed.returncode == 0, resumed.stderr
        assert len(case_files(run_dir)) == 3 and stored_failures(run_dir) == []


# --------------------------------------------------------------------- processes
def children_of(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


SLOW_MODEL = "python:tests.test_parallel_resume:slow_region_growing"
SLEEPY_MODEL = "python:tests.test_reliability:sleepy"


def sleepy(case, request):
    """An empty prediction after 0.3 s: a run of 3 cases lasts 10 s."""
    time.sleep(0.3)
    return np.zeros(case.shape, dtype=np.uint8)


def wait_for(condition, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_of_the_main_process_alone_leaves_no_process(pet_data, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "segloop", *run_args(pet_data, run_dir, SLOW_MODEL, "--jobs", "2")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(children_of(process.pid)) >= 3, what="the workers")
        wait_for(lambda: (run_dir / "cases").is_dir(), what="a case")
        helpers = children_of(process.pid)  # two workers and the resource tracker
        os.kill(process.pid, signal.SIGKILL)  # the main process only, not its group
        process.wait()
        wait_for(lambda: not any(alive(pid) for pid in helpers), 10.0, "the workers to exit")
    finally:
        for pid in children_of(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # its lock is left behind (it was killed) and taken over with a note
    assert (run_dir / store.LOCK_FILE).exists()
    resumed = segloop(*run_args(pet_data, run_dir, SLOW_MODEL))
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over {run_dir / store.LOCK_FILE}" in resumed.stderr
    assert len(case_files(run_dir)) == 3 and stored_failures(run_dir) == []
    assert not (run_dir / store.LOCK_FILE).exists()


def test_a_lost_worker_stops_the_run_as_a_harness_fault(pet_data, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "segloop", *run_args(pet_data, run_dir, SLOW_MODEL, "--jobs", "2")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(children_of(process.pid)) >= 3, what="the workers")
    time.sleep(1.0)  # the workers have imported segloop and started their cases
    workers = [
        pid
        for pid in children_of(process.pid)
        if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    os.kill(workers[0], signal.SIGKILL)  # the kernel's OOM killer, say
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_HARNESS_FAULT, stderr
    assert "segloop: harness fault (not the model's): a worker process died" in stderr
    assert "Traceback" not in stderr
    assert stored_failures(run_dir) == []
    resumed = segloop(*run_args(pet_data, run_dir, SLOW_MODEL))
    assert resumed.returncode == 0, resumed.stderr
    assert len(case_files(run_dir)) == 3 and stored_failures(run_dir) == []


# --------------------------------------------------------------------- one owner per run folder
def test_a_second_run_on_a_folder_is_refused_while_the_first_runs(pet_data, tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "segloop", *run_args(pet_data, run_dir, SLEEPY_MODEL)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (run_dir / store.LOCK_FILE).exists(), what="the lock")
        wait_for(lambda: (run_dir / store.LOCK_FILE).stat().st_size > 0, what="its owner")
        second = segloop(*run_args(pet_data, run_dir, SLEEPY_MODEL))
        assert second.returncode == 2
        line = one_line(second.stderr)
        assert line.startswith(f"segloop: error: {run_dir}: in use by another segloop run (pid ")
        assert f"pid {first.pid} on host {socket.gethostname()}" in line
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr  # the first run was not disturbed
    assert len(case_files(run_dir)) == 3
    assert not (run_dir / store.LOCK_FILE).exists()  # released


def test_a_stale_lock_is_taken_over_and_a_foreign_hosts_lock_refused(pet_data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_text())
    dead_pid = int(dead.stdout)
    lock = run_dir / store.LOCK_FILE
    lock.write_text(json.dumps({"owner": owner_token(os.getpid()).replace(
        f":{os.getpid()}:", f":{dead_pid}:"), "started": "then"}))  # fmt: skip
    model = "python:baselines.trivial:empty"
    taken = segloop(*run_args(pet_data, run_dir, model))
    assert taken.returncode == 0, taken.stderr
    assert f"took over {lock} from a run that ended without releasing it (pid {dead_pid}" in (
        taken.stderr
    )
    lock.write_text(json.dumps({"owner": "elsewhere:4242:99", "started": "then"}))
    refused = segloop(*run_args(pet_data, run_dir, model))
    assert refused.returncode == 2
    assert one_line(refused.stderr) == (
        f"segloop: error: {lock}: the run folder is locked by pid 4242 on host elsewhere, "
        "since then, which may still be running; if it is not, delete the lock file"
    )


def _text() -> dict:
    return {"capture_output": True, "text": True, "check": True}


# --------------------------------------------------------------------- stale results
def test_a_changed_python_model_refuses_to_resume(pet_data, tmp_path):
    package = tmp_path / "team"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("THRESHOLD = 0.5\n")
    (package / "model.py").write_text(
        "import numpy as np\n"
        "from team.helpers import THRESHOLD\n"
        "def predict(case, request):\n"
        "    image = case.channels[-1]\n"
        "    return (image > THRESHOLD * image.max()).astype(np.uint8)\n"
    )
    run_dir = tmp_path / "run"
    model = "python:team.model:predict"
    first = segloop(*run_args(pet_data, run_dir, model), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = store.read_json(run_dir / "run.json")
    assert sorted(config["model_files"]) == ["team/__init__.py", "team/helpers.py", "team/model.py"]
    again = segloop(*run_args(pet_data, run_dir, model), cwd=tmp_path)
    assert again.returncode == 0
    assert again.stderr == (
        "segloop: note: 3 of 3 cases were done before with this configuration and are skipped "
        "(--overwrite runs them again)\n"
    )
    before = case_files(run_dir)
    (package / "helpers.py").write_text("THRESHOLD = 0.7\n")  # a sibling module changes
    changed = segloop(*run_args(pet_data, run_dir, model), cwd=tmp_path)
    assert changed.returncode == 2
    assert one_line(changed.stderr) == (
        f"segloop: error: {run_dir / 'run.json'}: this run folder holds another configuration: "
        "model file team/helpers.py changed; pass --overwrite to start it again, or choose "
        "another --out"
    )
    assert case_files(run_dir) == before  # nothing touched
    fresh = segloop(*run_args(pet_data, run_dir, model, "--overwrite"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "--overwrite: removed 3 finished case(s)" in fresh.stderr
    assert case_files(run_dir) != before and len(case_files(run_dir)) == 3


def test_a_changed_cmd_model_file_and_a_changed_setting_are_named(pet_data, tmp_path):
    script = tmp_path / "model.py"
    weights = tmp_path / "weights.txt"
    weights.write_text("1")
    script.write_text(
        "import json, sys, numpy as np\n"
        "case = json.load(open(sys.argv[1] + '/case.json'))\n"
        "np.save(sys.argv[2] + '/prediction.npy', np.zeros(case['shape'], np.uint8))\n"
    )
    run_dir = tmp_path / "run"
    model = f"cmd:{sys.executable} model.py --weights=weights.txt {{input}} {{output}}"
    first = segloop(*run_args(pet_data, run_dir, model, "--cases", "pet_000"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # the interpreter is named on the command line too: another Python may compute otherwise
    assert sorted(store.read_json(run_dir / "run.json")["model_files"]) == sorted(
        ["model.py", "weights.txt", sys.executable]
    )
    weights.write_text("2")
    changed = segloop(*run_args(pet_data, run_dir, model, "--cases", "pet_000"), cwd=tmp_path)
    assert changed.returncode == 2
    assert "model file weights.txt changed;" in one_line(changed.stderr)
    weights.write_text("1")
    seed = segloop(*run_args(pet_data, run_dir, model, "--seed", "7"), cwd=tmp_path)
    assert seed.returncode == 2
    assert "another configuration: task.seed: 0 before, 7 now;" in one_line(seed.stderr)


def test_a_mistyped_model_writes_no_run_folder(pet_data, tmp_path):
    run_dir = tmp_path / "run"
    typo = segloop(*run_args(pet_data, run_dir, "python:baselines.region_growin:predict"))
    assert typo.returncode == 2
    assert "cannot import baselines.region_growin" in one_line(typo.stderr)
    assert not (run_dir / "run.json").exists()
    fixed = segloop(*run_args(pet_data, run_dir, "python:baselines.region_growing:predict"))
    assert fixed.returncode == 0, fixed.stderr


# --------------------------------------------------------------------- the engine goes away
class EngineProxy:
    """A unix socket forwarding to the Docker engine, which the test can cut at any moment
    (the engine vanishing, as far as the harness can tell)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE_SOCKET)
            with self.lock:
                if self.cut_off:
                    client.close()
                    engine.close()
                    return
                self.connections += [client, engine]
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            self.cut_off = True
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)
            self.server.close()
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
        self.path.unlink(missing_ok=True)


@pytest.mark.docker
def test_the_engine_vanishing_mid_run_is_a_harness_fault(docker_client, pet_data, tmp_path):  # noqa: F811
    model = "docker:segloop/baseline-region-growing"
    args = ("--cases", "pet_000,pet_001", "--step-time-limit", "120")
    clean = segloop(*run_args(pet_data, tmp_path / "clean", model, *args))
    assert clean.returncode == 0, clean.stderr
    run_dir = tmp_path / "run"
    proxy_path = tmp_path / "engine.sock"
    proxy = EngineProxy(proxy_path)
    env = {**os.environ, "DOCKER_HOST": f"unix://{proxy_path}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "segloop", *run_args(pet_data, run_dir, model, *args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: (run_dir / "cases" / "pet_000.json").exists(), 300, "the first case")
    time.sleep(1.0)  # into the second case's steps
    proxy.cut()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_HARNESS_FAULT, stderr
    line = one_line(stderr)
    assert line.startswith("segloop: harness fault (not the model's): case pet_001 not stored: ")
    assert "the Docker engine is unreachable" in line
    assert sorted(case_files(run_dir)) == ["pet_000.json"]
    assert stored_failures(run_dir) == []
    EngineProxy(proxy_path)  # the engine is back
    resumed = subprocess.run(
        [sys.executable, "-m", "segloop", *run_args(pet_data, run_dir, model, *args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert case_files(run_dir) == case_files(tmp_path / "clean")


# --------------------------------------------------------------------- mixed results
def rename_cases(source: Path, target: Path, prefix: str) -> None:
    """A copy of a dataset whose case ids start with ``prefix`` instead of ``pet``."""
    for path in source.rglob("*"):
        if path.is_file():
            destination = (
                target / path.relative_to(source).parent / path.name.replace("pet", prefix)
            )
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())


def test_runs_on_other_data_or_scoring_modes_are_not_ranked_together(pet_data, tmp_path):
    other_bytes = tmp_path / "other"  # the same case ids, other images
    phantoms.write_phantom_dataset(other_bytes, "pet", 3, seed=9, shape=(16, 24, 24))
    other_ids = tmp_path / "brain"  # another dataset altogether
    rename_cases(pet_data, other_ids, "brain")
    runs = tmp_path / "runs"
    for name, data, extra in (
        ("empty", pet_data, ()),
        ("growing", pet_data, ()),
        ("other-bytes", other_bytes, ()),
        ("other-ids", other_ids, ()),
        ("segloop-mode", pet_data, ("--scoring", "segloop")),
    ):
        model = "python:baselines.trivial:empty" if name == "empty" else (
            "python:baselines.region_growing:predict")  # fmt: skip
        made = segloop(
            "run", "--data", str(data), "--task", "medsegfm", "--model", model, "--name", name,
            "--out", str(runs / name), "--no-progress", *extra,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    summary = store.read_json(runs / "growing" / "summary.json")
    assert summary["dataset"]["num_cases"] == 3 and len(summary["dataset"]["fingerprint"]) == 64
    assert summary["dataset"] == store.read_json(runs / "empty" / "summary.json")["dataset"]

    site = tmp_path / "site"
    fine = segloop("leaderboard", str(runs / "empty"), str(runs / "growing"), "--out", str(site))
    assert fine.returncode == 0, fine.stderr
    page = next(site.glob("task-medsegfm-*.html")).read_text()
    assert f"Dataset: {pet_data.name}, 3 cases" in page and "challenge mode" in page
    assert str(pet_data.resolve()) not in page  # local paths only with --show-paths
    assert "Mixed results" not in page

    expected = {
        "other-bytes": "scored case 'pet_000' on other input files (3 of 3 shared cases differ)",
        "other-ids": "share no case (another dataset: 3 cases brain_000, brain_001, ... and 3 "
        "cases pet_000, pet_001, ...)",
        "segloop-mode": "were scored in different modes ('segloop' and 'challenge')",
    }
    for name, phrase in expected.items():
        refused = segloop(
            "leaderboard", str(runs / "empty"), str(runs / name), "--out", str(tmp_path / name)
        )
        assert refused.returncode == 2, refused.stderr
        line = one_line(refused.stderr)
        assert line.startswith("segloop: error: task 'medsegfm': ") and phrase in line, line
        assert line.endswith("pass --allow-mixed to show them, marked as mixed)")
        assert not (tmp_path / name).exists()

    shown = segloop(
        "leaderboard", str(runs / "empty"), str(runs / "other-ids"), "--out", str(site),
        "--allow-mixed", "--bootstrap", "0",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    page = next(site.glob("task-medsegfm-*.html")).read_text()
    assert "<strong>Mixed results</strong>" in page and "share no case" in page
    tasks = json.loads((site / "data" / "tasks.json").read_text())
    assert "share no case" in tasks[0]["mixed"] and tasks[0]["num_cases"] == 6


@pytest.mark.docker
def test_a_container_filling_a_shared_work_folder_is_not_scored(docker_client, pet_data, tmp_path):  # noqa: F811
    """Without a capped tmpfs per back-end (SEGLOOP_WORK_TMPFS=0, or not root), container
    outputs share the work folder's file system: a container filling it must not turn into
    scored failures (its own or another team's). The run stops as a harness fault; with the
    default per-back-end tmpfs the same container only fails its own step
    (test_security_docker.test_disk_writes_are_capped)."""
    from segloop.containers.images import hostile_image

    with small_tmpfs(tmp_path / "work", 40 * 1024) as work:
        run_dir = tmp_path / "run"
        model = f"docker:{hostile_image('fill-disk')}"
        result = segloop(
            *run_args(pet_data, run_dir, model, "--cases", "pet_000", "--tmp-mb", "8"),
            env={"SEGLOOP_WORK_DIR": str(work), "SEGLOOP_WORK_TMPFS": "0"},
        )
        assert result.returncode == EXIT_HARNESS_FAULT, result.stderr
        lines = [line for line in result.stderr.splitlines() if "note:" not in line]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("segloop: harness fault (not the model's): case pet_000 not")
        assert "no space left on the file system of the container outputs" in lines[0]
        assert str(work) in lines[0]
        assert case_files(run_dir) == {}
        assert not list((work / "segloop-docker").iterdir())  # its folders went with it
