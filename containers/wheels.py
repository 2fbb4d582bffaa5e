"""The wheels of the scoring image (``segloop/scoring``): segloop's dependencies, pinned and
downloaded once into the cache, and segloop's own wheel, built from the source.

segloop/base has no pip; the recipe (``containers/recipes/scoring/``) unpacks these wheels.
``pip`` runs on the host (this Python's), which reaches the package index the first time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from segloop.core.records import SegloopError

# What segloop's own wheel is built from: pyproject.toml, its readme and the package's folders.
PACKAGE_SOURCES = (
    "pyproject.toml",
    "README.md",
    "evaluator",
    "protocols",
    "containers",
    "baselines",
    "leaderboard",
)
WHEEL_PYTHON = "3.11"  # segloop/base's python3 (Debian bookworm)
WHEEL_PLATFORMS = ("manylinux2014", "manylinux_2_17", "manylinux_2_28")  # glibc <= bookworm's

Log = Callable[[str], None]


def wheel_platforms(machine: str | None = None) -> tuple[str, ...]:
    """pip's ``--platform`` tags for the engine's machine (this host's: the engine is local)."""
    machine = machine or platform.machine()
    return tuple(f"{tag}_{machine}" for tag in WHEEL_PLATFORMS)


def dependency_wheels(requirements: Path, cache: Path, log: Log = print) -> Path:
    """The wheels pinned in ``requirements`` for CPython 3.11 on manylinux, in the cache
    (downloaded once with ``pip download --no-deps``; the folder is named by the pins)."""
    platforms = wheel_platforms()
    key_text = "\n".join([requirements.read_text(), WHEEL_PYTHON, *platforms])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = cache / f"wheels-py{WHEEL_PYTHON}-{key}"
    if target.is_dir():
        log(f"wheels: cached {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="wheels-", dir=target.parent))
    try:
        log(f"wheels: pip download {requirements.name} ...")
        started = time.monotonic()
        abi = "cp" + WHEEL_PYTHON.replace(".", "")
        _pip(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                WHEEL_PYTHON,
                "--implementation",
                "cp",
                "--abi",
                abi,
                *(f"--platform={tag}" for tag in platforms),
                "-r",
                str(requirements),
                "-d",
                str(partial),
            ],
            "pip download (the scoring image's dependencies)",
        )
        try:
            os.replace(partial, target)
        except OSError:  # another build filled it meanwhile
            if not target.is_dir():
                raise
        log(f"wheels: {target} ({time.monotonic() - started:.0f} s)")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def build_own_wheel(repo_root: Path, out_dir: Path) -> Path:
    """segloop's wheel, built from a copy of :data:`PACKAGE_SOURCES` (the source tree stays
    clean of build/ and egg-info), into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="segloop-wheel-") as temp:
        source = Path(temp) / "src"
        for name in PACKAGE_SOURCES:
            origin = repo_root / name
            if not origin.exists():
                raise SegloopError(f"{origin} is missing (build the scoring image from the source)")
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    source / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
                )
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, source / name)
        _pip(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out_dir)]
            + [str(source)],
            "pip wheel (segloop)",
        )
    built = sorted(out_dir.glob("segloop-*.whl"))
    if len(built) != 1:
        raise SegloopError(f"pip wheel made {len(built)} segloop wheels in {out_dir}")
    return built[0]


def _pip(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-2000:]
        raise SegloopError(f"{what} failed (exit {result.returncode}): {tail.strip()}")
