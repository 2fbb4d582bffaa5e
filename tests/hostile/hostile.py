"""A participant container that misbehaves on purpose (one behaviour per image).

The behaviour comes from ``HOSTILE_BEHAVIOUR`` (baked in at build time: tests/hostile/Dockerfile).
Behaviours that a model could show from inside ``predict`` go through segloop's SDK, so they work
in per-step and session mode; those that tamper with the output files directly write to the
per-step output folder and exit. Each prints what it did, so the log tail tells the story.

The attacks on the harness itself (``swap-*``, ``gc-*``, ``deep-tree``, ``fill-disk``,
``many-files``) aim at a canary folder on the host, ``CANARY`` (the tests create it and check
it afterwards): symlinks into it, races that swap a file for a link, a FIFO or a huge file
between the harness's checks and its reads (renameat2 RENAME_EXCHANGE in a loop), external
data files in image headers, decompression bombs, deep trees and full disks.
"""

import ctypes
import gzip
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
from segloop_sdk import serve

CANARY = "/tmp/segloop-hostile-canary"  # a host folder: the container must never reach it
RENAME_EXCHANGE = 2
AT_FDCWD = -100
RACE_SECONDS = 3.0

BEHAVIOUR = os.environ.get("HOSTILE_BEHAVIOUR", "")
CHUNK_BYTES = 64 * 2**20


def say(text):
    print(f"hostile[{BEHAVIOUR}]: {text}", flush=True)


def output_dir():
    return os.environ.get("SEGLOOP_OUTPUT", "/output")


def input_dir():
    return os.environ.get("SEGLOOP_INPUT", "/input")


def sleep(case, request):
    say("sleeping for an hour")
    time.sleep(3600)


def exit_nonzero(case, request):
    say("giving up with exit code 3")
    sys.exit(3)


def oom(case, request):
    hoard = []
    while True:
        chunk = np.ones(CHUNK_BYTES // 8)  # touched pages, really resident
        hoard.append(chunk)
        say(f"holding {len(hoard) * CHUNK_BYTES // 2**20} MiB")


def fork_bomb(case, request):
    forks = 0
    try:
        while forks < 100000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            forks += 1
    except OSError as error:
        say(f"fork failed after {forks} forks: {error}")
        sys.exit(4)
    say(f"forked {forks} times without hitting a limit")
    return np.zeros(case.shape, dtype=np.uint8)


def network(case, request):
    interfaces = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
    say(f"network interfaces: {interfaces}")
    reached = []
    for host, port in (
        ("1.1.1.1", 53),
        ("8.8.8.8", 53),
        ("172.17.0.1", 2375),
        ("deb.debian.org", 80),
    ):
        try:
            with socket.create_connection((host, port), timeout=1.0):
                reached.append(f"{host}:{port}")
        except OSError as error:
            say(f"{host}:{port} unreachable: {error}")
    if reached:
        say(f"REACHED {reached}")
        return np.ones(case.shape, dtype=np.uint8)
    say("network unreachable")
    sys.exit(5)


def ground_truth(case, request):
    say(f"input folder holds {sorted(os.listdir(input_dir()))}")
    suspects = []
    for root, dirs, files in os.walk("/"):
        dirs[:] = [
            d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev", "/usr")
        ]
        for name in files:
            lowered = name.lower()
            if any(key in lowered for key in ("label", "ground", "gt", "seg")) and lowered.endswith(
                (".npy", ".nii", ".nii.gz", ".mha", ".nrrd")
            ):
                suspects.append(os.path.join(root, name))
    if suspects:
        say(f"FOUND {suspects[:10]}")
        return (
            np.load(suspects[0]) if suspects[0].endswith(".npy") else np.ones(case.shape, np.uint8)
        )
    say("no ground truth found")
    sys.exit(6)


def no_output(case, request):
    say("exiting without writing anything")
    os._exit(0)


def wrong_shape(case, request):
    shape = tuple(n + 1 for n in case.shape)
    np.save(os.path.join(output_dir(), "prediction.npy"), np.zeros(shape, dtype=np.uint8))
    say(f"wrote shape {shape} for an image of shape {case.shape}")
    os._exit(0)


def nan(case, request):
    labels = np.zeros(case.shape, dtype=np.float32)
    labels[0, 0, 0] = np.nan
    say("returning a float map with a NaN")
    return labels


def out_of_range(case, request):
    say("returning label 7")
    return np.full(case.shape, 7, dtype=np.uint8)


def huge_file(case, request):
    path = os.path.join(output_dir(), "prediction.npy")
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(case.shape, dtype=np.uint8))
        handle.truncate(8 * 2**30)  # 8 GiB (sparse: no disk used, but that size to the reader)
    say(f"wrote {os.path.getsize(path)} bytes")
    os._exit(0)


def symlink(case, request):
    path = os.path.join(output_dir(), "prediction.npy")
    os.symlink("/etc/shadow", path)
    say("prediction.npy -> /etc/shadow")
    os._exit(0)


def write_input(case, request):
    attempts = []
    for path in ("request.json", "image_0000.npy", "injected.txt"):
        full = os.path.join(input_dir(), path)
        try:
            with open(full, "ab") as handle:
                handle.write(b"tampered")
            attempts.append(f"{path}: WROTE")
        except OSError as error:
            attempts.append(f"{path}: {error.strerror}")
    say("; ".join(attempts))
    if any("WROTE" in a for a in attempts):
        return np.zeros(case.shape, dtype=np.uint8)
    sys.exit(7)


# ---------------------------------------------------------------------- races in session mode

_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a, b):
    """Swap two names atomically (renameat2 RENAME_EXCHANGE): each is always present."""
    return _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)


def race(a, b, seconds=RACE_SECONDS):
    """Swap ``a`` and ``b`` as fast as possible for ``seconds`` (or until they vanish)."""

    def loop():
        end, swaps = time.monotonic() + seconds, 0
        while time.monotonic() < end and exchange(a, b) == 0:
            swaps += 1
        say(f"{swaps} swaps of {os.path.basename(a)}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def zeros_npy(shape):
    from io import BytesIO

    buffer = BytesIO()
    np.save(buffer, np.zeros(shape, dtype=np.uint8))
    return buffer.getvalue()


def answer_then_race(folder, shape, bait):
    """Write a valid answer (an empty prediction) into ``folder``, put ``bait`` next to it
    under the name ``.bait``, mark it done, then swap the answer's file and the bait."""
    target = "error.txt" if BEHAVIOUR == "swap-error" else "prediction.npy"
    if target == "error.txt":
        (folder / target).write_text("Traceback...\nRuntimeError: boom from the model\n")
    else:
        (folder / target).write_bytes(zeros_npy(shape))
    bait(folder / ".bait")
    (folder / "done").touch()
    return race(folder / target, folder / ".bait")


def bait_for(behaviour):
    def link_to(target):
        return lambda path: os.symlink(target, path)

    def fifo(path):
        os.mkfifo(path)

    def huge(path):
        with open(path, "wb") as handle:
            handle.truncate(1536 * 2**20)  # 1.5 GiB, sparse

    return {
        "swap-error": link_to("/proc/self/environ"),
        "swap-prediction": link_to(f"{CANARY}/label.npy"),
        "swap-fifo": fifo,
        "swap-huge": huge,
    }[behaviour]


def grow_chain(top):
    """Keep extending a folder chain below ``top`` (holding a descriptor of the deepest
    folder, which follows it wherever it is renamed), staying under the output area's file
    cap, until the folder is gone: a harness that removes it while we run never finishes."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    try:
        fd = os.open(top, flags)
    except OSError:
        return
    made = 0
    while True:
        made += 1
        if made % 1000 == 0 and os.statvfs(top).f_favail < 30000:
            time.sleep(0.001)
            continue
        try:
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", flags, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            try:
                fd = os.open(top, flags)
            except OSError:
                return
            continue
        except OSError:
            time.sleep(0.001)
            continue
        os.close(fd)
        fd = child


def serve_racing_session(session):
    """A session server that answers every request, then attacks the harness's reads."""
    requests, responses = Path(session) / "requests", Path(session) / "responses"
    seen, threads = set(), []
    while not (requests / "stop").exists():
        for request in sorted(requests.iterdir()):
            if request.name in seen or not (request / "ready").exists():
                continue
            seen.add(request.name)
            payload = json.loads((request / "request.json").read_text())
            previous = payload.get("previous_prediction")
            if previous and np.load(request / previous).any():
                say("LEAKED: the previous prediction holds what we never wrote")
            case = json.loads((Path(session) / payload["case_dir"] / "case.json").read_text())
            shape = tuple(case["shape"])
            scratch = responses / f".{request.name}"
            scratch.mkdir()
            if BEHAVIOUR == "session-chain":
                (scratch / "prediction.npy").write_bytes(zeros_npy(shape))
                (scratch / "done").touch()
                os.rename(scratch, responses / request.name)
                thread = threading.Thread(target=grow_chain, args=(responses / request.name,))
                thread.daemon = True
                thread.start()
                threads.append(thread)
            elif BEHAVIOUR == "swap-response-dir":
                # answer, then swap the whole answer folder with a link to a host folder and
                # delete its files under the harness's feet
                (scratch / "prediction.npy").write_bytes(zeros_npy(shape))
                (scratch / "done").touch()
                os.rename(scratch, responses / request.name)
                os.symlink(CANARY, responses / f".link-{request.name}")
                threads.append(race(responses / request.name, responses / f".link-{request.name}"))
            else:
                os.rename(scratch, responses / request.name)
                threads.append(
                    answer_then_race(responses / request.name, shape, bait_for(BEHAVIOUR))
                )
        time.sleep(0.002)
    say("stopping")


# ---------------------------------------------------------------------- per-step tricks


def deep_tree(case, request):
    folder = output_dir()
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.symlink(CANARY, "canary", dir_fd=fd)
    os.close(fd)
    os.symlink(CANARY, os.path.join(folder, "canary"))
    say("made a folder tree 1500 deep with links to the canary")
    return np.zeros(case.shape, dtype=np.uint8)


def fill_disk(case, request):
    def fill(path):
        written = 0
        try:
            with open(path, "wb") as handle:
                chunk = b"\0" * 2**20
                while written < 2**30:
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
            return f"{path}: wrote {written >> 20} MiB without hitting a limit"
        except OSError as error:
            return f"{path}: stopped after {written >> 20} MiB: {error.strerror}"

    for path in ("/tmp/filler", os.path.join(output_dir(), "filler"), "/filler"):
        say(fill(path))
    return np.zeros(case.shape, dtype=np.uint8)


def fill_volume(case, request):
    """Write 1 GiB into the image's declared VOLUME (/data: an anonymous volume on the host
    disk unless the harness mounts something there)."""
    written = 0
    try:
        with open("/data/filler", "wb") as handle:
            chunk = b"\0" * 2**20
            while written < 2**30:
                handle.write(chunk)
                handle.flush()
                written += len(chunk)
        say(f"/data/filler: wrote {written >> 20} MiB without hitting a limit")
    except OSError as error:
        say(f"/data/filler: stopped after {written >> 20} MiB: {error.strerror}")
    sys.exit(9)  # a failed step keeps the log tail, which the test reads


def many_files(case, request):
    folder = os.path.join(output_dir(), "many")
    os.mkdir(folder)
    made = 0
    try:
        while made < 200000:
            open(os.path.join(folder, str(made)), "wb").close()
            made += 1
        say(f"made {made} files")
    except OSError as error:
        say(f"file {made}: {error.strerror}")
    return np.zeros(case.shape, dtype=np.uint8)


# ---------------------------------------------------------------------- Grand Challenge outputs

GC_OUTPUT = "/output/images/tumor-lesion-segmentation"


def _gc_shape():
    """(z, y, x) of the input image, read from the .mha header the harness wrote."""
    folder = "/input/images/ct"
    (name,) = os.listdir(folder)
    with open(os.path.join(folder, name), "rb") as handle:
        header = handle.read(4096).split(b"ElementDataFile")[0].decode()
    sizes = [
        line.split("=")[1].split() for line in header.splitlines() if line.startswith("DimSize")
    ]
    return tuple(int(v) for v in reversed(sizes[0]))


def _mha_header(shape, extra):
    x, y, z = reversed(shape)
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True", f"DimSize = {x} {y} {z}",
             "ElementSpacing = 2 2 2", "ElementType = MET_UCHAR", *extra]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _nifti_header(shape, datatype=2, bitpix=8):
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    x, y, z = reversed(shape)
    struct.pack_into("<8h", header, 40, 3, x, y, z, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, 2.0, 2.0, 2.0, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    return bytes(header)


def gc_attack():
    shape = _gc_shape()
    os.makedirs(GC_OUTPUT)
    out = os.path.join(GC_OUTPUT, "result.mha")
    if BEHAVIOUR == "gc-external-data":
        data = _mha_header(shape, [f"ElementDataFile = {CANARY}/label.raw"])
    elif BEHAVIOUR == "gc-dev-zero":
        data = _mha_header(shape, ["ElementDataFile = /dev/zero"])
    elif BEHAVIOUR == "gc-header-offset":
        data = _mha_header(shape, ["HeaderSize = 352", f"ElementDataFile = {CANARY}/label.nii"])
    elif BEHAVIOUR == "gc-symlink":
        os.symlink(f"{CANARY}/label.mha", out)
        say(f"{out} -> {CANARY}/label.mha")
        return
    elif BEHAVIOUR in ("gc-bomb", "gc-bomb-dims"):
        big = (
            (shape[0] * 64, shape[1] * 64, shape[2] * 64) if BEHAVIOUR == "gc-bomb-dims" else shape
        )
        out = os.path.join(GC_OUTPUT, "result.nii.gz")
        with (
            open(out, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as handle,
        ):
            handle.write(_nifti_header(big))
            chunk = b"\0" * 2**24
            for _ in range(48):  # 768 MiB of zeros in about 0.75 MB: under the file cap
                handle.write(chunk)
        say(f"wrote a {os.path.getsize(out)} byte gzip bomb with dims {big}")
        return
    else:
        raise SystemExit(f"unknown GC behaviour {BEHAVIOUR}")
    with open(out, "wb") as handle:
        handle.write(data)
    say(f"wrote {out}: {data.decode(errors='replace').splitlines()[-1]}")


BEHAVIOURS = {
    "sleep": sleep,
    "exit-nonzero": exit_nonzero,
    "oom": oom,
    "fork-bomb": fork_bomb,
    "network": network,
    "ground-truth": ground_truth,
    "no-output": no_output,
    "wrong-shape": wrong_shape,
    "nan": nan,
    "out-of-range": out_of_range,
    "huge-file": huge_file,
    "symlink": symlink,
    "write-input": write_input,
    "deep-tree": deep_tree,
    "fill-disk": fill_disk,
    "many-files": many_files,
    "fill-volume": fill_volume,
}
SESSION_RACES = (
    "swap-response-dir",
    "swap-error",
    "swap-prediction",
    "swap-fifo",
    "swap-huge",
    "session-chain",
)
GC_ATTACKS = ("gc-external-data", "gc-dev-zero", "gc-header-offset", "gc-symlink", "gc-bomb",
              "gc-bomb-dims")  # fmt: skip

if __name__ == "__main__":
    if BEHAVIOUR in GC_ATTACKS:
        gc_attack()
    elif BEHAVIOUR in SESSION_RACES:
        serve_racing_session(os.environ.get("SEGLOOP_SESSION", "/session"))
    elif BEHAVIOUR in BEHAVIOURS:
        serve(BEHAVIOURS[BEHAVIOUR])
    else:
        say(f"unknown behaviour; known: {sorted(BEHAVIOURS) + list(SESSION_RACES + GC_ATTACKS)}")
        sys.exit(2)
