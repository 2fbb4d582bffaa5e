"""The Docker back-end, the participant SDK and the Grand Challenge adapter.

Tests marked ``docker`` need a running engine and build segloop's images once per session
(quick when cached: ``segloop images build --with-tests``); they are skipped only when no
engine is reachable (and CI, with SEGLOOP_REQUIRE_DOCKER=1, turns such a skip into a failure).
The others check the pure parts (spec parsing, sandbox arguments, file formats) without an engine.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segloop.app import phantoms
from segloop.cli.commands import execute_run
from segloop.containers.docker import gc, workspace
from segloop.containers.docker.backend import DockerBackend, close_shared_backends
from segloop.containers.docker.resolve import resolve_image
from segloop.containers.docker.sandbox import (
    clean_container_path,
    cleanup_leftovers,
    failure_of_exit,
    sandbox_kwargs,
)
from segloop.containers.docker.spec import DockerOptions, parse_target
from segloop.core import dataset
from segloop.core.contract import ModelStepError, write_case_files
from segloop.core.owners import owner_alive, owner_token
from segloop.core.records import CaseInput, Geometry, Interaction, SegloopError, StepRequest
from segloop.core.task import Limits

ROOT = Path(__file__).resolve().parents[1]
docker = pytest.mark.docker
QUICK = Limits(step_time_limit_s=60, case_time_limit_s=600, memory_mb=512, cpus=1.0, pids=64)


# ------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="session")
def docker_client():
    """The engine with segloop's images built (skip only when no engine is reachable)."""
    try:
        import docker as docker_sdk

        client = docker_sdk.from_env()
        client.ping()
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"no Docker engine reachable: {type(error).__name__}: {error}")
    from segloop.containers.images import build_images

    build_images(with_tests=True, log=lambda message: None)
    return client


@pytest.fixture(scope="session")
def pet_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docker-pet")
    phantoms.write_phantom_dataset(folder, "pet", 2, seed=3, shape=(24, 32, 32))
    return folder


def small_case(shape=(16, 16, 16), classes=None, channels=1, seed=0) -> CaseInput:
    rng = np.random.default_rng(seed)
    return CaseInput(
        case_id="tiny_001",
        channels=tuple(rng.random(shape, dtype=np.float32) for _ in range(channels)),
        geometry=Geometry(spacing_mm=(2.0, 1.0, 1.0), origin_mm=(-5.0, 3.0, 7.5)),
        classes=classes or {1: "tumor"},
    )


def click(z, y, x, class_id=1, positive=True, step=0) -> Interaction:
    return Interaction("click", class_id, positive, step, ((z, y, x),))


def our_containers(client) -> list:
    """Containers owned by this test process (alive or not)."""
    return client.containers.list(
        all=True, sparse=True, filters={"label": f"segloop.owner={owner_token()}"}
    )


# ------------------------------------------------------------------------- pure parts
def test_parse_target_options():
    assert parse_target("segloop/x:1") == (DockerOptions(), "segloop/x:1")
    options, image = parse_target("session-case,user=image+reg.example:5000/team/m:2")
    assert image == "reg.example:5000/team/m:2"
    assert options == DockerOptions(session_mode="case", user="image")
    assert parse_target("gc-autopet+img")[0].gc_preset == "autopet"
    with pytest.raises(SegloopError, match="expected per-step"):
        parse_target("turbo+img")
    with pytest.raises(SegloopError, match="no image"):
        parse_target("per-step+")


def test_sandbox_arguments_follow_spec():
    limits = Limits(memory_mb=300, cpus=1.5, pids=32, shm_mb=64, gpus=(1, 3))
    kwargs = sandbox_kwargs(limits, {"segloop": "1"}, "65534:65534")
    assert kwargs["network_mode"] == "none"
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == "300m"
    assert kwargs["pids_limit"] == 32 and kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["init"] is True and kwargs["shm_size"] == "64m"
    assert kwargs["user"] == "65534:65534" and kwargs["labels"] == {"segloop": "1"}
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Capabilities"] == [["gpu"]]
    assert "device_requests" not in sandbox_kwargs(Limits(), {}, None)
    assert kwargs["read_only"] is True and kwargs["tmpfs"]["/tmp"].startswith("rw,nosuid,nodev")
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in kwargs["ulimits"]}
    assert ulimits == {"nofile": (4096, 4096), "core": (0, 0)}
    with_volumes = sandbox_kwargs(limits, {}, None, declared_volumes=["/data"])
    assert set(with_volumes["tmpfs"]) == {"/tmp", "/data"}
    assert [clean_container_path(p) for p in ("/data/", "//v15/.", "/a/../b")] == [
        "/data",
        "/v15",
        "/b",
    ]


def test_exit_states_become_reasons():
    assert failure_of_exit({"ExitCode": 0, "OOMKilled": True}, "") is None
    assert failure_of_exit({"ExitCode": 137, "OOMKilled": True}, "t").reason == "oom"
    error = failure_of_exit({"ExitCode": 3, "OOMKilled": False}, "tail")
    assert (error.reason, error.detail, error.log_tail) == ("exit_code", "exit code 3", "tail")
    assert "signal 9" in failure_of_exit({"ExitCode": 137}, "").detail


def test_owner_tokens_tell_dead_processes():
    assert owner_alive(owner_token())
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(process.pid)
    process.wait()
    assert not owner_alive(token)
    assert owner_alive("another-host:1:1")  # not ours to judge


def test_gc_points_follow_each_challenge():
    interactions = (click(3, 4, 5), click(6, 7, 8, positive=False, step=1))
    autopet = gc.multiple_points(interactions, gc.gc_interface("autopet"))
    assert autopet["type"] == "Multiple points"
    assert autopet["points"] == [
        {"point": [5, 4, 3], "name": "tumor"},
        {"point": [8, 7, 6], "name": "background"},
    ]
    # Grouped by name as the challenge's simulate_clicks.py wrote them, each name in step order.
    interleaved = (*interactions, click(1, 1, 2, step=2))
    names = [
        p["name"] for p in gc.multiple_points(interleaved, gc.gc_interface("autopet"))["points"]
    ]
    assert names == ["tumor", "tumor", "background"]
    toothfairy = gc.gc_interface("toothfairy3")
    points = gc.multiple_points((click(1, 2, 3), click(4, 5, 6, class_id=2)), toothfairy)
    assert points["points"] == [
        {"point": [1, 2, 3], "name": "Left_IAC"},
        {"point": [4, 5, 6], "name": "Right_IAC"},
    ]
    with pytest.raises(SegloopError, match="no background"):
        gc.multiple_points(interactions, toothfairy)
    with pytest.raises(SegloopError, match="unknown|expected one of"):
        gc.gc_interface("nope")


def write_label_image(path: Path, array: np.ndarray, case: CaseInput, spacing=None) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing or case.geometry.spacing_mm[::-1])
    image.SetOrigin(case.geometry.origin_mm)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def test_gc_output_is_validated(tmp_path):
    case = small_case(shape=(4, 5, 6))
    interface = gc.gc_interface("autopet")
    folder = tmp_path / "images" / "tumor-lesion-segmentation"
    labels = np.zeros(case.shape, dtype=np.uint8)
    labels[1, 2, 3] = 1
    write_label_image(folder / "a.mha", labels, case)
    assert np.array_equal(gc.read_gc_output(tmp_path, case, interface), labels)

    write_label_image(folder / "a.mha", labels, case, spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ModelStepError, match="spacing"):
        gc.read_gc_output(tmp_path, case, interface)
    write_label_image(folder / "a.mha", labels + 4, case)
    with pytest.raises(ModelStepError, match="labels"):
        gc.read_gc_output(tmp_path, case, interface)
    write_label_image(folder / "b.mha", labels, case)
    with pytest.raises(ModelStepError, match="expected one image"):
        gc.read_gc_output(tmp_path, case, interface)
    for path in folder.iterdir():
        path.unlink()
    (folder / "a.mha").symlink_to("/etc/passwd")
    with pytest.raises(ModelStepError, match="symlink"):
        gc.read_gc_output(tmp_path, case, interface)
    (folder / "a.mha").unlink()
    folder.rmdir()
    folder.symlink_to("/etc")
    with pytest.raises(ModelStepError, match="symlink"):
        gc.read_gc_output(tmp_path, case, interface)


def test_gc_step_folder_layout(tmp_path):
    import SimpleITK as sitk

    case = small_case(shape=(4, 5, 6), channels=2)
    interface = gc.gc_interface("autopet")
    gc.write_case_images(tmp_path / "case", case, interface)
    request = StepRequest(case.case_id, 0, (click(1, 2, 3),), None)
    input_dir = gc.prepare_gc_step(tmp_path / "case", tmp_path / "step", case, request, interface)
    workspace.share_with_container(input_dir, None, writable=False)
    (pet,) = (input_dir / "images" / "pet").iterdir()
    image = sitk.ReadImage(str(pet))
    assert image.GetSize() == (6, 5, 4) and image.GetSpacing() == (1.0, 1.0, 2.0)
    assert np.array_equal(sitk.GetArrayFromImage(image), case.channels[1])
    clicks = json.loads((input_dir / "lesion-clicks.json").read_text())
    assert clicks["points"] == [{"point": [3, 2, 1], "name": "tumor"}]
    sockets = json.loads((input_dir / "inputs.json").read_text())
    assert [s["interface"]["slug"] for s in sockets] == ["ct", "pet", "lesion-clicks"]
    assert not os.access(input_dir, os.W_OK) or os.geteuid() == 0
    assert (pet.stat().st_mode & 0o222) == 0


def test_sdk_session_protocol_without_docker(tmp_path):
    """The SDK's session loop answers requests like the in-process model, then stops."""
    from segloop.baselines import region_growing
    from segloop.core.contract import request_json

    case = small_case(shape=(12, 14, 16))
    write_case_files(tmp_path / "cases" / case.case_id, case)
    (tmp_path / "requests").mkdir()
    (tmp_path / "responses").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "segloop.containers.sdk.segloop_sdk", "--session", str(tmp_path),
         "--predict", "segloop.baselines.region_growing:predict"],
        env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        interactions: tuple[Interaction, ...] = ()
        for step, point in enumerate(((6, 7, 8), (2, 3, 4))):
            interactions += (click(*point, step=step),)
            request = StepRequest(case.case_id, step, interactions, None)
            folder = tmp_path / "requests" / f"{step:06d}"
            folder.mkdir()
            payload = {**request_json(request, False), "case_dir": f"cases/{case.case_id}"}
            (folder / "request.json").write_text(json.dumps(payload))
            (folder / "ready").touch()
            done = tmp_path / "responses" / f"{step:06d}" / "done"
            deadline = time.monotonic() + 30
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            got = np.load(done.parent / "prediction.npy")
            assert np.array_equal(got, region_growing.predict(case, request))
        (tmp_path / "requests" / "stop").touch()
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()


# ------------------------------------------------------------------------- with the engine
@docker
def test_sandbox_is_applied_to_the_container(docker_client, tmp_path):
    limits = replace(QUICK, memory_mb=200, pids=48, cpus=0.5, shm_mb=32)
    backend = DockerBackend("segloop/trivial:latest", limits, False)
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    output_dir.mkdir()
    run = backend.start_container(
        {
            str(input_dir): {"bind": "/input", "mode": "ro"},
            str(output_dir): {"bind": "/output", "mode": "rw"},
        },
        {"SEGLOOP_MODE": "per-step"},
        "step",
        "case-x",
    )
    try:
        run.container.reload()
        host = run.container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["Memory"] == host["MemorySwap"] == 200 * 2**20
        assert host["PidsLimit"] == 48 and host["NanoCpus"] == 500_000_000
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Init"] is True and host["ShmSize"] == 32 * 2**20
        assert host["LogConfig"]["Config"]["max-size"] == "10m"
        mounts = {m["Destination"]: m["RW"] for m in run.container.attrs["Mounts"]}
        assert mounts == {"/input": False, "/output": True}
        assert run.container.attrs["Config"]["User"] == (
            "65534:65534" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        )
        labels = run.container.labels
        assert labels["segloop"] == "1" and labels["segloop.run"] == backend.run_id
    finally:
        run.remove()
    backend.close()
    assert our_containers(docker_client) == []


@pytest.fixture(scope="module")
def subprocess_reference(pet_dataset, tmp_path_factory) -> tuple[dict, Path]:
    """The baseline through the subprocess back-end (cmd: + the SDK): the reference run."""
    out = tmp_path_factory.mktemp("cmd-run") / "run"
    sdk = f'cmd:"{sys.executable}" -m segloop.containers.sdk.segloop_sdk --predict segloop.baselines.region_growing:predict'
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)
    try:
        summary = execute_run(
            pet_dataset, "autopet", sdk, out, submission="rg", show_progress=False
        )
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous
    return summary, out


@docker
@pytest.mark.parametrize("mode", ["per-step", "case", "submission"])
def test_baseline_in_docker_scores_like_subprocess(
    docker_client, pet_dataset, subprocess_reference, tmp_path, mode
):
    reference, reference_dir = subprocess_reference
    got = execute_run(
        pet_dataset,
        "autopet",
        "docker:segloop/baseline-region-growing:latest",
        tmp_path / "docker",
        submission="rg",
        limits=replace(QUICK, session_mode=mode),
        show_progress=False,
    )
    assert got["failed_steps"] == reference["failed_steps"] == 0
    assert got["mean"] == reference["mean"]
    for case_id in dataset.list_case_ids(pet_dataset):
        ours = json.loads((tmp_path / "docker" / "cases" / f"{case_id}.json").read_text())
        theirs = json.loads((reference_dir / "cases" / f"{case_id}.json").read_text())
        assert ours["steps"] == theirs["steps"] and ours["summary"] == theirs["summary"]
    assert reference["mean_curve"]["dice"][-1] > reference["mean_curve"]["dice"][0]
    assert close_shared_backends() == 0  # the run closed its session container itself
    assert our_containers(docker_client) == []


@docker
def test_session_case_mode_loads_model_once(docker_client):
    case = small_case()
    backend = DockerBackend(
        "segloop/template-example:latest", replace(QUICK, session_mode="case"), True
    )
    session = backend.open_case(case)
    try:
        previous = None
        for step, point in enumerate(((8, 8, 8), (3, 3, 3), (12, 12, 12))):
            request = StepRequest(case.case_id, step, (click(*point, step=step),), previous)
            previous = session.predict(request)
            assert previous[point] == 1 and previous.sum() > 1
        assert session.server.started_count == 1
        (container,) = our_containers(docker_client)
        assert container.attrs["Labels"]["segloop.role"] == "session-case"
    finally:
        session.close()
    assert our_containers(docker_client) == []
    backend.close()


@docker
def test_grand_challenge_container_in_the_loop(docker_client):
    """An unchanged GC-style container (autoPET interface) answers every step."""
    case = small_case(channels=2)
    backend = DockerBackend(
        "segloop/gc-example:latest", QUICK, False, DockerOptions(gc_preset="autopet")
    )
    session = backend.open_case(case)
    try:
        first = session.predict(StepRequest(case.case_id, 0, (), None))
        assert first.sum() == 0
        interactions = (click(8, 8, 8), click(8, 8, 9, positive=False, step=1))
        labels = session.predict(StepRequest(case.case_id, 1, interactions[:1], None))
        assert labels.sum() == 33  # a ball of radius 2 voxels around (8, 8, 8)
        assert labels[8, 8, 8] == 1 and labels[8, 8, 11] == 0 and labels[8, 8, 10] == 1
        labels = session.predict(StepRequest(case.case_id, 2, interactions, None))
        assert labels[8, 8, 8] == 0  # the background click cleared its own ball
    finally:
        session.close()
    assert our_containers(docker_client) == []


@docker
def test_image_archive_is_loaded_never_pulled(docker_client, tmp_path):
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        data = b"segloop archive test\n"
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    tag = "segloop-test/archive:1"
    docker_client.api.import_image_from_data(
        rootfs.getvalue(), repository=tag.split(":")[0], tag="1"
    )
    image = docker_client.images.get(tag)
    archive_path = tmp_path / "image.tar.gz"
    with gzip.open(archive_path, "wb") as handle:
        for chunk in image.save(named=True):
            handle.write(chunk)
    docker_client.images.remove(tag, force=True)
    assert resolve_image(docker_client, str(archive_path)) == image.id
    assert resolve_image(docker_client, str(archive_path)) == image.id  # cached, not reloaded
    loaded = docker_client.images.get(image.id)
    assert tag not in loaded.tags  # loaded by content: the archive's own tag is not applied
    assert loaded.tags == [f"segloop-archive:{image.id.removeprefix('sha256:')[:20]}"]
    docker_client.images.remove(image.id, force=True)
    with pytest.raises(SegloopError, match="never pulls"):
        resolve_image(docker_client, "segloop-test/not-here:404")


def _harness_script(tmp_path: Path) -> Path:
    script = tmp_path / "harness.py"
    script.write_text(
        "import signal, sys\n"
        # a harness started from a shell without job control inherits SIGINT ignored (POSIX,
        # for background commands); a person's Ctrl-C reaches a foreground harness, as here
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.test_docker import small_case, QUICK\n"
        "from segloop.containers.docker.backend import DockerBackend\n"
        "from segloop.core.records import StepRequest\n"
        "backend = DockerBackend('segloop/hostile-sleep:latest', QUICK, False)\n"
        "session = backend.open_case(small_case())\n"
        "print('started', flush=True)\n"
        "session.predict(StepRequest('tiny_001', 0, (), None))\n"
    )
    return script


def _wait_for_container_of(client, pid: int, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for container in client.containers.list(
            all=True, sparse=True, filters={"label": "segloop.owner"}
        ):
            if container.attrs["Labels"]["segloop.owner"].split(":")[1] == str(pid):
                return container
        time.sleep(0.1)
    raise AssertionError(f"no container of harness {pid} appeared")


@docker
def test_ctrl_c_removes_the_container(docker_client, tmp_path):
    harness = subprocess.Popen([sys.executable, str(_harness_script(tmp_path))])
    container = _wait_for_container_of(docker_client, harness.pid)
    harness.send_signal(signal.SIGINT)
    assert harness.wait(timeout=30) != 0
    remaining = [c.id for c in docker_client.containers.list(all=True, sparse=True)]
    assert container.id not in remaining


@docker
def test_killed_harness_leftovers_are_cleaned_at_next_start(docker_client, tmp_path):
    harness = subprocess.Popen([sys.executable, str(_harness_script(tmp_path))])
    container = _wait_for_container_of(docker_client, harness.pid)
    harness.kill()
    harness.wait()
    assert container.id in [c.id for c in docker_client.containers.list(all=True, sparse=True)]
    live = docker_client.containers.create(
        "segloop/trivial:latest", labels={"segloop": "1", "segloop.owner": owner_token()}
    )
    try:
        assert cleanup_leftovers(docker_client) >= 1
        remaining = [c.id for c in docker_client.containers.list(all=True, sparse=True)]
        assert container.id not in remaining
        assert live.id in remaining  # a live harness's container is left alone
    finally:
        live.remove(force=True)


@docker
@pytest.mark.parametrize("mode", ["per-step", "case"])
def test_trivial_image_predicts_background(docker_client, mode):
    """The bench's model image works in both modes (no segloop code inside the image)."""
    case = small_case()
    backend = DockerBackend("segloop/trivial:latest", replace(QUICK, session_mode=mode), False)
    session = backend.open_case(case)
    try:
        labels = session.predict(StepRequest(case.case_id, 0, (click(8, 8, 8),), None))
        assert labels.shape == case.shape and not labels.any()
    finally:
        session.close()
        backend.close()
    assert our_containers(docker_client) == []


def _sleeping_run(pet_dataset: Path, out: Path, *options: str) -> subprocess.Popen:
    """``segloop run`` of a model that sleeps for an hour at its first step."""
    command = [sys.executable, "-m", "segloop", "run", "--data", str(pet_dataset)]
    command += ["--task", "autopet", "--model", "docker:segloop/hostile-sleep:latest"]
    command += ["--name", "sleeper", "--out", str(out), "--no-progress", *options]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )


def _sleeper_containers(client) -> list:
    return client.containers.list(
        all=True, sparse=True, filters={"ancestor": "segloop/hostile-sleep:latest"}
    )


@docker
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_stops_a_run_and_removes_its_containers(docker_client, pet_dataset, tmp_path, jobs):
    """A batch scheduler's SIGTERM to the harness (only the parent process, the hardest case for
    --jobs): exit code 143 with one line, every container gone, no half-finished case stored."""
    out = tmp_path / "run"
    cleanup_leftovers(docker_client)  # a killed earlier harness's sleepers would count below
    assert _sleeper_containers(docker_client) == [], "another harness runs the sleeping model"
    harness = _sleeping_run(pet_dataset, out, "--jobs", str(jobs))
    try:
        deadline = time.monotonic() + 60
        while len(_sleeper_containers(docker_client)) < jobs:
            assert time.monotonic() < deadline, "the sleeping model's containers never started"
            assert harness.poll() is None, harness.stderr.read() if harness.stderr else ""
            time.sleep(0.2)
        harness.send_signal(signal.SIGTERM)
        _, stderr = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:  # a failed assertion must not leave a harness running
            harness.kill()
            harness.wait()
    assert harness.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert _sleeper_containers(docker_client) == []
    assert not any((out / "cases").glob("*.json"))  # the interrupted cases were not stored


@docker
def test_a_retagged_image_does_not_resume_into_the_old_run(docker_client, pet_dataset, tmp_path):
    """The run configuration holds the image id, not just the tag a participant may move."""
    tag = "segloop-test/retag:1"
    out = tmp_path / "run"
    first_case = dataset.list_case_ids(pet_dataset)[:1]
    trivial = docker_client.images.get("segloop/trivial:latest")
    trivial.tag(tag)
    try:
        run = dict(submission="retag", case_ids=first_case, limits=QUICK, show_progress=False)
        execute_run(pet_dataset, "autopet", f"docker:{tag}", out, **run)
        recorded = json.loads((out / "run.json").read_text())
        assert recorded["model_identity"] == trivial.id
        execute_run(pet_dataset, "autopet", f"docker:{tag}", out, **run)  # same image: resumes
        docker_client.images.get("segloop/baseline-region-growing:latest").tag(tag)
        with pytest.raises(SegloopError, match="another configuration"):
            execute_run(pet_dataset, "autopet", f"docker:{tag}", out, **run)
    finally:
        docker_client.images.remove(tag, force=True)
