"""Hostile submissions against the real harness and a real Docker engine (issue 12).

Every attack of tests/hostile/hostile.py aims at a canary folder on the host
(``/tmp/segloop-hostile-canary``: 400 files, mode 0700, a secret and copies of the case's
ground truth as .npy, .raw, .nii and .mha). The harness runs in its own process (so its memory
can be measured, a hang is a timeout rather than a stuck test, and ``/proc/self/environ`` is a
process holding a secret); each test asserts the step failed with its reason (or read only the
container's own bytes), no host file was read, changed or deleted, memory stayed bounded, and
nothing is left behind: no container, no work folder, no mount.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segloop.containers.docker import workspace
from segloop.containers.docker.backend import DockerBackend
from segloop.containers.images import hostile_image
from segloop.core import images
from segloop.core.records import Case, CaseInput, Geometry, StepRequest
from segloop.core.task import Limits
from tests.test_docker import docker_client  # noqa: F401 - the session fixture

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
CANARY = Path("/tmp/segloop-hostile-canary")  # the path baked into tests/hostile/hostile.py
SECRET = "SEGLOOP-HARNESS-SECRET-3b9e"
# The harness process is ~250 MiB with its imports; a 1.5 GiB file or a bomb read whole
# would take it past this.
MAX_HARNESS_RSS_MB = 700


def hostile_case() -> Case:
    """A 16^3 PET-like case with one hot lesion (its ground truth on the host only)."""
    rng = np.random.default_rng(7)
    pet = rng.random((16, 16, 16), dtype=np.float32)
    label = np.zeros((16, 16, 16), dtype=np.uint8)
    label[6:10, 6:10, 6:10] = 1
    pet[label == 1] += 5.0
    return Case("hostile_001", (pet * 0.1, pet), label, Geometry((2.0, 2.0, 2.0)))


def snapshot(folder: Path) -> dict:
    state = {".": (os.lstat(folder).st_mode, os.lstat(folder).st_uid)}
    for path in sorted(folder.iterdir()):
        info = os.lstat(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
        state[path.name] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return state


@pytest.fixture
def canary():
    """The host folder the attacks aim at, checked unchanged afterwards."""
    shutil.rmtree(CANARY, ignore_errors=True)
    CANARY.mkdir(mode=0o700)
    for index in range(400):
        (CANARY / f"file_{index:03d}").write_bytes(b"canary" * index)
    (CANARY / "secret.txt").write_text(SECRET)
    label = hostile_case().label
    np.save(CANARY / "label.npy", label)
    (CANARY / "label.raw").write_bytes(label.tobytes())
    images.write_image(CANARY / "label.nii", label, hostile_case().geometry)
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(CANARY / "label.mha"))
    before = snapshot(CANARY)
    yield CANARY
    assert snapshot(CANARY) == before, "the canary folder changed"
    shutil.rmtree(CANARY, ignore_errors=True)


HARNESS = """
import json, sys
sys.path.insert(0, {root!r})
from dataclasses import replace
from segloop.containers.registry import Limits, open_backend, release_backend
from segloop.loop import run_case
from segloop.protocols.tasks import get_task
from tests.test_security_docker import hostile_case

params = json.loads(sys.argv[1])
task = get_task(params["task"])
if params.get("steps"):
    steps = params["steps"]
    task = replace(task, num_steps=steps, auc_steps=tuple(range(steps)),
                   auc_x=tuple(float(s) for s in range(steps)))
limits = Limits(**params["limits"])
results = []
for repeat in range(params.get("repeats", 1)):
    backend = open_backend(params["model"], limits, task.send_previous_prediction)
    try:
        outcome = run_case(hostile_case(), task, backend)
    finally:
        release_backend(backend)
    for step in outcome.steps:
        failure = step.failure
        results.append({{
            "reason": failure.reason if failure else None,
            "text": (failure.detail + "\\n" + failure.log_tail) if failure else "",
            "dice": step.metrics["dice"]["mean"],
        }})
status = open("/proc/self/status").read()
peak_kib = int(status.split("VmHWM:")[1].split()[0])
print("RESULT " + json.dumps({{"steps": results, "peak_rss_mb": peak_kib / 1024}}))
"""


def run_harness(model: str, task: str = "autopet", steps: int | None = None, repeats: int = 1,
                timeout_s: float = 600, **limits) -> dict:  # fmt: skip
    """Run the hostile case in a harness process of its own; its steps, peak memory, pid."""
    limits = {"step_time_limit_s": 30.0, "case_time_limit_s": 300.0, "memory_mb": 512,
              "cpus": 1.0, "pids": 64, **limits}  # fmt: skip
    params = {"model": model, "task": task, "steps": steps, "repeats": repeats, "limits": limits}
    process = subprocess.Popen(
        [sys.executable, "-c", HARNESS.format(root=str(ROOT)), json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SEGLOOP_TEST_SECRET": SECRET},
        cwd=ROOT,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the harness hung for {timeout_s} s: {err[-2000:]}") from None
    assert process.returncode == 0, err[-3000:]
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line.removeprefix("RESULT ")), "pid": process.pid, "stderr": err}


def assert_nothing_left(client, result: dict) -> None:
    """No container, work folder or mount of the harness process is left."""
    pid = result["pid"]
    owned = [
        c
        for c in client.containers.list(all=True, sparse=True, filters={"label": "segloop.owner"})
        if c.attrs["Labels"]["segloop.owner"].split(":")[1] == str(pid)
    ]
    assert owned == []
    root = workspace.work_root()
    assert [p for p in root.iterdir() if p.name.split(".")[0] == str(pid)] == []
    assert workspace.mounts_under(root) == [] or all(
        p.parent.name.split(".")[0] != str(pid) for p in workspace.mounts_under(root)
    )


def assert_no_leak(result: dict) -> None:
    for step in result["steps"]:
        assert SECRET not in step["text"], step["text"][:300]
        assert "PATH=" not in step["text"], step["text"][:300]  # /proc/self/environ
        assert "LEAKED" not in step["text"], step["text"][:300]
        assert step["dice"] == 0.0  # the container only ever wrote empty predictions
    assert result["peak_rss_mb"] < MAX_HARNESS_RSS_MB, result["peak_rss_mb"]


# ------------------------------------------------------------------ races in session mode

RACES = {
    # behaviour: the refusals seen when the container's swap lands inside the harness's read
    # (a link met by O_DIRECTORY|O_NOFOLLOW reads as "not a folder" if swapped back at once)
    "swap-response-dir": ("a symlink", "not a folder"),
    "swap-error": ("error.txt: a symlink",),
    "swap-prediction": ("prediction.npy: a symlink",),
    "swap-fifo": ("prediction.npy: a FIFO",),
    "swap-huge": ("prediction.npy: 1610612736 bytes, more than",),
}


@pytest.mark.parametrize("behaviour", sorted(RACES))
def test_session_races_never_reach_the_host(docker_client, canary, behaviour):  # noqa: F811
    """The container answers, then swaps its answer (or its answer's folder) with a link into
    the canary, a FIFO or a 1.5 GiB file, renameat2 in a loop, while the harness reads: the
    harness reads the container's own bytes or refuses; it never follows, hangs or balloons.
    Two runs of the 11-step autoPET task and one of the reactive generic task (previous
    predictions sent back) give the race 28 chances; it must be won at least once."""
    model = f"docker:session-case+{hostile_image(behaviour)}"
    results = [
        run_harness(model, "autopet", repeats=2),
        run_harness(model, "generic"),
    ]
    hits = 0
    for result in results:
        assert_no_leak(result)
        assert_nothing_left(docker_client, result)
        for step in result["steps"]:
            if step["reason"] is None:
                continue
            if behaviour == "swap-error" and step["reason"] == "model_error":
                assert "boom from the model" in step["text"]
                continue
            assert step["reason"] == "invalid_output", step
            assert any(text in step["text"] for text in RACES[behaviour]), step["text"][:300]
            hits += 1
    assert hits > 0, "the race was never won: the test did not exercise the window"


# ------------------------------------------------------------------ Grand Challenge outputs

GC_ATTACKS = {
    "gc-external-data": "data in another file is refused",
    "gc-dev-zero": "ElementDataFile = '/dev/zero'",
    "gc-header-offset": "label.nii': data in another file is refused",
    "gc-symlink": "result.mha: a symlink",
    "gc-bomb-dims": "shape (z, y, x) (1024, 1024, 1024)",
}


@pytest.mark.parametrize("behaviour", sorted(GC_ATTACKS))
def test_grand_challenge_outputs_cannot_reach_host_files(docker_client, canary, behaviour):  # noqa: F811
    result = run_harness(f"docker:gc-autopet+{hostile_image(behaviour)}", steps=2)
    assert_no_leak(result)
    assert_nothing_left(docker_client, result)
    for step in result["steps"]:
        assert step["reason"] == "invalid_output", step
        assert GC_ATTACKS[behaviour] in step["text"], step["text"][:300]


def test_a_gzip_bomb_is_read_only_up_to_the_image_size(docker_client, canary):  # noqa: F811
    """768 MiB of zeros behind a header of the image's shape: the harness inflates 4 KiB of it
    (a valid, empty prediction) and its memory stays bounded."""
    result = run_harness(f"docker:gc-autopet+{hostile_image('gc-bomb')}", steps=2)
    assert_no_leak(result)
    assert_nothing_left(docker_client, result)
    assert [s["reason"] for s in result["steps"]] == [None, None]


# ------------------------------------------------------------------ trees, disks, files


def test_a_deep_tree_in_the_output_is_removed_and_blocks_nothing(docker_client, canary):  # noqa: F811
    """1,500 nested folders with links to the canary in /output: removed without recursion or
    following a link; the next run on this host starts normally."""
    model = f"docker:{hostile_image('deep-tree')}"
    first = run_harness(model, steps=2)
    assert [s["reason"] for s in first["steps"]] == [None, None]
    assert_nothing_left(docker_client, first)
    second = run_harness(model, steps=1)
    assert [s["reason"] for s in second["steps"]] == [None]


def test_disk_writes_are_capped(docker_client, canary):  # noqa: F811
    """1 GiB into /tmp, /output and /: the image is read-only, /tmp and /output are capped
    tmpfs, nothing reaches the host disk, and an output over its cap fails the step."""
    free_before = shutil.disk_usage(workspace.work_root()).free
    result = run_harness(f"docker:{hostile_image('fill-disk')}", steps=1, tmp_mb=32, output_mb=32)
    free_after = shutil.disk_usage(workspace.work_root()).free
    (step,) = result["steps"]
    assert "/tmp/filler: stopped after 3" in step["text"]  # 31-32 MiB
    assert "/output/filler: stopped after 3" in step["text"]
    assert "No space left on device" in step["text"]
    assert "/filler: stopped after 0 MiB: Read-only file system" in step["text"]
    assert step["reason"] == "invalid_output", step
    assert "outputs filled their 32 MiB" in step["text"]
    assert free_before - free_after < 16 << 20
    assert_nothing_left(docker_client, result)


def test_file_count_is_capped(docker_client, canary):  # noqa: F811
    result = run_harness(f"docker:{hostile_image('many-files')}", steps=1)
    (step,) = result["steps"]
    assert step["reason"] == "invalid_output" and "files cap" in step["text"]
    made = int(step["text"].split("hostile[many-files]: file ")[1].split(":")[0])
    assert made < workspace.OUTPUT_MAX_INODES
    assert_nothing_left(docker_client, result)


# ------------------------------------------------------------------ images and folders


def test_an_archive_cannot_retag_another_teams_image(docker_client, tmp_path):  # noqa: F811
    """Team A submits an archive whose image carries the tag of team B's image: B's tag stays
    on B's image, and A's run uses (and records) A's image by id."""
    victim_tag = "segloop-test/victim-team:1"
    victim = docker_client.images.get("segloop/trivial:latest")
    attacker = docker_client.images.get(hostile_image("nan"))
    attacker.tag(victim_tag)
    archive = tmp_path / "team-a.tar"
    with open(archive, "wb") as handle:
        for chunk in docker_client.images.get(victim_tag).save(named=True):
            handle.write(chunk)
    victim.tag(victim_tag)  # team B's image holds the tag when team A's run starts
    try:
        backend = DockerBackend(str(archive), Limits(), False)
        backend.close()
        assert backend.image_id == attacker.id
        assert docker_client.images.get(victim_tag).id == victim.id
        assert docker_client.images.get("segloop/trivial:latest").id == victim.id
    finally:
        docker_client.images.remove(victim_tag)


def test_work_folders_are_private_and_outputs_capped(docker_client):  # noqa: F811
    """While a session container runs: the work root and the back-end's folder are 0700 and
    the harness's; case files belong to the container's user (0400) and no other local user
    can read them or list the outputs; outputs are a size-capped tmpfs."""
    limits = Limits(step_time_limit_s=8, case_time_limit_s=60, memory_mb=256, session_mode="case")
    backend = DockerBackend(hostile_image("sleep"), limits, False)
    session = backend.open_case(CaseInput.of(hostile_case(), {1: "lesion"}))
    outcome: list[BaseException] = []

    def sleeping_step() -> None:
        try:
            session.predict(StepRequest("hostile_001", 0, (), None))
        except Exception as error:  # noqa: BLE001 - the model sleeps past the step limit
            outcome.append(error)

    step = threading.Thread(target=sleeping_step)
    step.start()
    try:
        time.sleep(2.0)
        root = workspace.work_root()
        for folder in (root, backend.work_dir):
            info = os.stat(folder)
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
        case_files = list(backend.work_dir.glob("session-*/cases/*/image_0000.npy"))
        assert case_files
        info = os.stat(case_files[0])
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, 0o400)
        responses = session.server.responses_dir
        assert stat.S_IMODE(os.stat(responses).st_mode) == 0o700
        assert os.stat(responses).st_uid == 65534
        mounts = workspace.mounts_under(backend.work_dir)
        assert responses.parent in mounts  # the output area is a tmpfs of its own
        stranger = subprocess.run(
            ["setpriv", "--reuid=12345", "--regid=12345", "--clear-groups", "sh", "-c",
             f"cat {case_files[0]} >/dev/null; ls {responses}"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert stranger.returncode != 0
        assert stranger.stderr.count("Permission denied") == 2, stranger.stderr
    finally:
        step.join()
        session.close()
        backend.close()
    assert "timeout" in str(outcome[0])
    assert not backend.work_dir.exists()
    assert workspace.mounts_under(backend.work_dir) == []


# ------------------------------------------------------------------ found by a red team


def test_a_folder_growing_while_removed_stops_the_container(docker_client, canary):  # noqa: F811
    """The session container answers, then keeps extending a folder chain inside its answer
    folder while the harness removes it: the removal gives up after its entry budget, the
    container is stopped, the step fails with the reason, and the run goes on and ends."""
    started = time.monotonic()
    result = run_harness(
        f"docker:session-case+{hostile_image('session-chain')}", steps=2, timeout_s=300
    )
    assert time.monotonic() - started < 240
    for step in result["steps"]:
        assert step["reason"] == "invalid_output", step
        assert "kept growing while it was removed" in step["text"]
    assert_nothing_left(docker_client, result)


def test_a_declared_volume_is_a_capped_tmpfs(docker_client, canary):  # noqa: F811
    """An image declaring VOLUME /data/ (a trailing slash) and 15 more: without care the engine
    gives each an anonymous volume on the host disk; segloop mounts a tmpfs of --tmp-mb at every
    one (paths cleaned as the engine cleans them), so 1 GiB stops at the cap and no volume is
    created (a container that would still get one is refused)."""
    volumes_before = {v.id for v in docker_client.volumes.list()}
    free_before = shutil.disk_usage("/var/lib/docker").free
    result = run_harness(f"docker:{hostile_image('fill-volume')}", steps=1, tmp_mb=32)
    (step,) = result["steps"]
    assert step["reason"] == "exit_code"  # the image exits 9 to hand its log to the test
    assert "/data/filler: stopped after 3" in step["text"]  # 31-32 MiB: the tmpfs cap
    assert {v.id for v in docker_client.volumes.list()} == volumes_before
    assert shutil.disk_usage("/var/lib/docker").free > free_before - (16 << 20)
    assert_nothing_left(docker_client, result)


def tiny_image_archive(docker_client, tmp_path: Path) -> tuple[bytes, str]:  # noqa: F811
    """A `docker save` archive of a one-file image (as bytes) and its image id."""
    import io as pyio
    import tarfile

    rootfs = pyio.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        archive.addfile(info, pyio.BytesIO(b"hello"))
    docker_client.api.import_image_from_data(
        rootfs.getvalue(), repository="segloop-test/tiny", tag="1"
    )
    image = docker_client.images.get("segloop-test/tiny:1")
    data = b"".join(image.save(named=True))
    docker_client.images.remove("segloop-test/tiny:1", force=True)
    return data, image.id


@pytest.mark.parametrize("route", ["dot-dot", "symlinked-folder"])
def test_a_second_manifest_cannot_retag_another_teams_image(docker_client, tmp_path, route):  # noqa: F811
    """A second manifest.json carrying the victim's tag, after the real one, reached as
    `x/../manifest.json` or through a symlink member `d -> .` then `d/manifest.json` (the engine
    unpacks through the link, over the cleaned manifest): segloop refuses the archive and the
    victim's tag stays."""
    import io as pyio
    import tarfile

    data, image_id = tiny_image_archive(docker_client, tmp_path)
    victim = docker_client.images.get("segloop/trivial:latest")
    victim.tag("segloop-test/victim-team", "2")
    members = tarfile.open(fileobj=pyio.BytesIO(data))
    manifest = json.loads(members.extractfile("manifest.json").read())
    manifest[0]["RepoTags"] = ["segloop-test/victim-team:2"]
    payload = json.dumps(manifest).encode()
    archive = tmp_path / "team-a.tar"
    with tarfile.open(archive, "w") as out:
        for member in members.getmembers():
            out.addfile(member, members.extractfile(member) if member.isfile() else None)
        if route == "symlinked-folder":
            link = tarfile.TarInfo("d")
            link.type, link.linkname = tarfile.SYMTYPE, "."
            out.addfile(link)
        info = tarfile.TarInfo("x/../manifest.json" if route == "dot-dot" else "d/manifest.json")
        info.size = len(payload)
        out.addfile(info, pyio.BytesIO(payload))
    try:
        reason = "appears twice" if route == "dot-dot" else "passes through a symlink"
        with pytest.raises(Exception, match=reason):
            DockerBackend(str(archive), Limits(), False)
        assert docker_client.images.get("segloop-test/victim-team:2").id == victim.id
    finally:
        docker_client.images.remove("segloop-test/victim-team:2")


@pytest.mark.parametrize(
    "attack", ["pax-bomb", "pax-headers", "many-members", "not-a-tar", "escaping-link", "xz"]
)
def test_hostile_archives_are_refused_with_bounded_memory(docker_client, tmp_path, attack):  # noqa: F811
    """A 256 MiB pax header (gzip: a few hundred KiB), 200,000 members, garbage and a link out
    of the archive: one clear line each, the harness's memory bounded."""
    import gzip
    import resource
    import tarfile

    archive = tmp_path / "submission.tar.gz"
    if attack == "pax-bomb":
        header = b"%d comment=" % (256 << 20)
        with gzip.open(archive, "wb", compresslevel=1) as raw:
            info = tarfile.TarInfo("././@PaxHeader")
            info.type = tarfile.XHDTYPE
            info.size = 256 << 20
            raw.write(info.tobuf(format=tarfile.USTAR_FORMAT))
            chunk = b"a" * (1 << 20)
            raw.write(header)
            for _ in range(256):
                raw.write(chunk)
        reason = "pax header"
    elif attack == "many-members":
        with tarfile.open(archive, "w:gz", compresslevel=1) as out:
            info = tarfile.TarInfo("x")
            for index in range(200_001):
                info.name = f"f{index}"
                out.addfile(info)
        reason = "more than 100000 archive members"
    elif attack == "pax-headers":  # each under the 64 KiB cap; together past 16 MiB
        with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as out:
            for index in range(400):
                info = tarfile.TarInfo(f"f{index}")
                info.pax_headers = {"comment": "a" * (60 << 10)}
                out.addfile(info)
        reason = "header bytes"
    elif attack == "xz":  # a decompressor that can hold gigabytes: refused by its magic
        import lzma

        archive.write_bytes(lzma.compress(b"\0" * 10240))
        reason = "not a tar or tar.gz archive"
    elif attack == "not-a-tar":
        archive.write_bytes(gzip.compress(b"this is not a tar archive" * 100))
        reason = "not a|malformed|truncated|invalid"
    else:
        with tarfile.open(archive, "w:gz") as out:
            info = tarfile.TarInfo("layer/evil")
            info.type = tarfile.SYMTYPE
            info.linkname = "../../../etc/shadow"
            out.addfile(info)
        reason = "points out of the archive"
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Exception, match=reason) as raised:
        DockerBackend(str(archive), Limits(), False)
    assert "\n" not in str(raised.value) and str(archive) in str(raised.value)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    assert grown_kib < 200 * 1024, f"peak memory grew by {grown_kib} KiB"
