"""A participant container that misbehaves on purpose (one behaviour per image).

The behaviour comes from ``HOSTILE_BEHAVIOUR`` (baked in at build time: tests/hostile/Dockerfile).
Behaviours that a model could show from inside ``predict`` go through segloop's SDK, so they work
in per-step and session mode; those that tamper with the output files directly write to the
per-step output folder and exit. Each prints what it did, so the log tail tells the story.
"""

import os
import socket
import sys
import time

import numpy as np
from segloop_sdk import serve

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
}

if __name__ == "__main__":
    if BEHAVIOUR not in BEHAVIOURS:
        say(f"unknown behaviour; known: {sorted(BEHAVIOURS)}")
        sys.exit(2)
    serve(BEHAVIOURS[BEHAVIOUR])
