"""Build segloop's container images locally, without any registry.

No registry is reachable here (nor on many hospital clusters), so nothing is ever pulled:

1. ``segloop/base:latest`` comes from Debian packages: ``debootstrap --variant=minbase`` of
   bookworm with python3, numpy and scipy, stripped of docs, packed as a tarball (cached under
   ``~/.cache/segloop/``, so a rebuild costs seconds) and loaded with ``docker import``.
2. Every other image is a small Dockerfile ``FROM segloop/base`` (recipes under
   ``containers/recipes/``, ``baselines/recipes/`` and ``tests/hostile/``), built by the engine
   with ``pull=False`` and no network. A recipe's build context is assembled from the files it
   names; its content hash (plus the base image id) is stored as a label, so an unchanged
   recipe is skipped and a changed one is rebuilt.
3. ``segloop/scoring`` (the image a Codabench bundle names; ``--with-scoring``, also built with
   ``--with-tests``) is a recipe whose context also gets ``wheels/``: segloop's own wheel, built
   from the source, and the pinned wheels of its dependencies
   (``containers/recipes/scoring/requirements.txt``), downloaded once from the package index
   into the cache. The recipe unpacks them without pip; numpy and scipy are Debian's.

``segloop images build [--with-tests] [--with-scoring] [--force]`` runs all of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from segloop.containers.wheels import (
    PACKAGE_SOURCES,
    build_own_wheel,
    dependency_wheels,
    wheel_platforms,
)
from segloop.core.records import SegloopError

REPO_ROOT = Path(__file__).resolve().parents[1]

BASE_IMAGE = "segloop/base:latest"
BASELINE_IMAGE = "segloop/baseline-region-growing:latest"
TRIVIAL_IMAGE = "segloop/trivial:latest"
TEMPLATE_IMAGE = "segloop/template-example:latest"
GC_EXAMPLE_IMAGE = "segloop/gc-example:latest"
# Named in the competition.yaml of `segloop codabench-bundle`; its tag is segloop's version.
SCORING_IMAGE = "segloop/scoring:0.1.0"
SCORING_REQUIREMENTS = "containers/recipes/scoring/requirements.txt"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("SEGLOOP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-minimal", "python3-numpy", "python3-scipy")
# Image config given to `docker import` (the rootfs tarball carries none).
BASE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "WORKDIR /opt/app",
    'CMD ["python3"]',
)
IMAGE_LABEL = "segloop.image"  # on every image segloop builds: its recipe name
CONTEXT_LABEL = "segloop.context"  # content hash of the recipe's build context + base id
# Rootfs paths removed before packing: documentation, locales, package caches.
ROOTFS_STRIP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/cache/debconf/templates.dat-old",
)

# The behaviours of the hostile test images (tests/hostile/hostile.py), one image each.
HOSTILE_BEHAVIOURS = (
    "sleep",
    "exit-nonzero",
    "oom",
    "fork-bomb",
    "network",
    "ground-truth",
    "no-output",
    "wrong-shape",
    "nan",
    "out-of-range",
    "huge-file",
    "symlink",
    "write-input",
)
# Attacks on the harness itself (tests/test_security_docker.py), one image each.
HOSTILE_ATTACKS = (
    "deep-tree",
    "fill-disk",
    "many-files",
    "swap-response-dir",
    "swap-error",
    "swap-prediction",
    "swap-fifo",
    "swap-huge",
    "gc-external-data",
    "gc-dev-zero",
    "gc-header-offset",
    "gc-symlink",
    "gc-bomb",
    "gc-bomb-dims",
    "session-chain",
    "fill-volume",
)

Log = Callable[[str], None]


def hostile_image(behaviour: str) -> str:
    """Tag of the hostile test image that misbehaves as ``behaviour``."""
    if behaviour not in HOSTILE_BEHAVIOURS + HOSTILE_ATTACKS:
        raise SegloopError(f"unknown hostile behaviour '{behaviour}'")
    return f"segloop/hostile-{behaviour}:latest"


@dataclass(frozen=True)
class Recipe:
    """An image built ``FROM segloop/base``.

    dockerfile: repo-relative path of its Dockerfile.
    files: (path in the build context, repo-relative source file or folder) pairs.
    wheels: repo-relative requirements file (exact pins) whose wheels, with segloop's own wheel,
      go into the context's ``wheels/`` (its hash then covers segloop's source too).
    for_scoring: built with ``--with-scoring`` or ``--with-tests`` (it needs the package index
      the first time).
    """

    name: str
    tag: str
    dockerfile: str
    files: tuple[tuple[str, str], ...]
    buildargs: Mapping[str, str] = field(default_factory=dict)
    for_tests: bool = False
    wheels: str = ""
    for_scoring: bool = False


def recipes() -> tuple[Recipe, ...]:
    """Every image recipe: the product images first, then those only the tests use."""
    sdk = ("segloop_sdk.py", "containers/sdk/segloop_sdk.py")
    baselines = (
        ("baselines/__init__.py", "baselines/__init__.py"),
        ("baselines/region_growing.py", "baselines/region_growing.py"),
    )
    product = (
        Recipe(
            "baseline-region-growing",
            BASELINE_IMAGE,
            "baselines/recipes/region_growing/Dockerfile",
            (sdk, *baselines),
        ),
        Recipe(
            "trivial",
            TRIVIAL_IMAGE,
            "baselines/recipes/trivial/Dockerfile",
            (sdk, ("empty.py", "baselines/recipes/trivial/empty.py")),
        ),
        Recipe(
            "scoring",
            SCORING_IMAGE,
            "containers/recipes/scoring/Dockerfile",
            (("install_wheels.py", "containers/recipes/scoring/install_wheels.py"),),
            wheels=SCORING_REQUIREMENTS,
            for_scoring=True,
        ),
    )
    tests = (
        Recipe(
            "template-example",
            TEMPLATE_IMAGE,
            "containers/recipes/template/Dockerfile",
            (sdk, ("model.py", "containers/recipes/template/model.py")),
            for_tests=True,
        ),
        Recipe(
            "gc-example",
            GC_EXAMPLE_IMAGE,
            "containers/recipes/gc-example/Dockerfile",
            (("process.py", "containers/recipes/gc-example/process.py"),),
            for_tests=True,
        ),
        *(
            Recipe(
                f"hostile-{behaviour}",
                hostile_image(behaviour),
                "tests/hostile/Dockerfile.volume"
                if behaviour == "fill-volume"
                else "tests/hostile/Dockerfile",
                (("hostile.py", "tests/hostile/hostile.py"), sdk),
                buildargs={"BEHAVIOUR": behaviour},
                for_tests=True,
            )
            for behaviour in HOSTILE_BEHAVIOURS + HOSTILE_ATTACKS
        ),
    )
    return product + tests


def docker_client():
    """``docker.from_env()``, or a SegloopError that says how to get an engine."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means: no engine reachable
        raise SegloopError(
            f"no Docker engine reachable ({type(error).__name__}: {error}); start one, e.g. "
            "`dockerd --bridge=none --iptables=false &`"
        ) from None
    return client


def image_exists(client, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/segloop`` (default ``~/.cache/segloop``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "segloop"


def rootfs_key(suite: str, packages: Iterable[str], mirror: str) -> str:
    text = "\n".join([suite, mirror, *sorted(packages), *ROOTFS_STRIP])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_rootfs_tarball(
    suite: str = DEBIAN_SUITE,
    packages: Iterable[str] = BASE_PACKAGES,
    mirror: str = DEBIAN_MIRROR,
    refresh: bool = False,
    log: Log = print,
) -> Path:
    """A minbase Debian rootfs with ``packages`` as a tarball in the cache (built once).

    Needs root (debootstrap creates device nodes and chroots) and the Debian mirror.
    """
    packages = tuple(packages)
    target = cache_dir() / f"rootfs-{suite}-{rootfs_key(suite, packages, mirror)}.tar"
    if target.exists() and not refresh:
        log(f"rootfs: cached {target}")
        return target
    if shutil.which("debootstrap") is None:
        raise SegloopError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise SegloopError("building segloop/base needs root for debootstrap: run it as root once")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=target.parent))
    rootfs = work / "rootfs"
    try:
        log(f"rootfs: debootstrap --variant=minbase {suite} ({', '.join(packages)}) ...")
        started = time.monotonic()
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        for relative in ROOTFS_STRIP:
            path = rootfs / relative
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
            elif path.exists():
                path.unlink()
        partial = work / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], "tar")
        os.replace(partial, target)
        log(
            f"rootfs: {target} ({target.stat().st_size / 2**20:.0f} MiB, {time.monotonic() - started:.0f} s)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-2000:]
        raise SegloopError(f"{what} failed (exit {result.returncode}): {tail.strip()}")


def build_base_image(
    client, force: bool = False, refresh_rootfs: bool = False, log: Log = print
) -> str:
    """Import ``segloop/base:latest`` from the cached rootfs tarball; return the image id."""
    if image_exists(client, BASE_IMAGE) and not (force or refresh_rootfs):
        log(f"{BASE_IMAGE}: present (use --force to re-import)")
        return client.images.get(BASE_IMAGE).id
    tarball = build_rootfs_tarball(refresh=refresh_rootfs, log=log)
    repository, _, tag = BASE_IMAGE.rpartition(":")
    changes = [*BASE_CHANGES, f"LABEL {IMAGE_LABEL}=base"]
    client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
    image_id = client.images.get(BASE_IMAGE).id
    log(f"{BASE_IMAGE}: imported {image_id[:19]}")
    return image_id


def _context_hash(recipe: Recipe, base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(base_id.encode())
    digest.update(repr(sorted(recipe.buildargs.items())).encode())
    for destination, source in (("Dockerfile", recipe.dockerfile), *recipe.files):
        for path in _files_under(REPO_ROOT / source):
            digest.update(f"{destination}:{path.relative_to(REPO_ROOT)}\0".encode())
            digest.update(path.read_bytes())
    if recipe.wheels:
        digest.update(f"wheels:{wheel_platforms()}\0".encode())
        for source in (recipe.wheels, *PACKAGE_SOURCES):
            for path in _files_under(REPO_ROOT / source):
                digest.update(f"{path.relative_to(REPO_ROOT)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _files_under(path: Path) -> list[Path]:
    if not path.exists():
        raise SegloopError(f"image recipe source {path} is missing (run from the source tree)")
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def build_recipe(
    client, recipe: Recipe, base_id: str, force: bool = False, log: Log = print
) -> str:
    """Build one recipe image unless an image with the same context hash exists."""

    context_hash = _context_hash(recipe, base_id)
    old_id = client.images.get(recipe.tag).id if image_exists(client, recipe.tag) else None
    if not force and old_id is not None:
        if client.images.get(recipe.tag).labels.get(CONTEXT_LABEL) == context_hash:
            log(f"{recipe.tag}: up to date")
            return old_id
    with tempfile.TemporaryDirectory(prefix="segloop-build-") as context:
        context_dir = Path(context)
        shutil.copyfile(REPO_ROOT / recipe.dockerfile, context_dir / "Dockerfile")
        for destination, source in recipe.files:
            target = context_dir / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO_ROOT / source).is_dir():
                shutil.copytree(
                    REPO_ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copyfile(REPO_ROOT / source, target)
        if recipe.wheels:
            wheels = context_dir / "wheels"
            shutil.copytree(
                dependency_wheels(REPO_ROOT / recipe.wheels, cache_dir(), log=log), wheels
            )
            log(f"wheels: {build_own_wheel(REPO_ROOT, wheels).name}")
        try:
            image, _ = client.images.build(
                path=str(context_dir),
                tag=recipe.tag,
                pull=False,
                rm=True,
                forcerm=True,
                network_mode="none",
                buildargs=dict(recipe.buildargs),
                labels={IMAGE_LABEL: recipe.name, CONTEXT_LABEL: context_hash},
            )
        except docker.errors.BuildError as error:
            lines = [
                str(entry.get("stream") or entry.get("error") or "") for entry in error.build_log
            ]
            raise SegloopError(
                f"building {recipe.tag} failed: {''.join(lines)[-1500:].strip()}"
            ) from None
    log(f"{recipe.tag}: built {image.id[:19]}")
    if old_id is not None and old_id != image.id:
        try:  # the previous build, now untagged; kept if a container still uses it
            client.images.remove(old_id)
        except docker.errors.APIError:
            pass
    return image.id


def build_images(
    with_tests: bool = False,
    force: bool = False,
    with_scoring: bool = False,
    refresh_rootfs: bool = False,
    only: Iterable[str] = (),
    log: Log = print,
) -> list[str]:
    """Build the base image and the recipes (``only``: recipe names); return the tags built.
    The scoring image comes with ``with_scoring`` or ``with_tests`` (a test runs it)."""
    client = docker_client()
    base_id = build_base_image(client, force=force, refresh_rootfs=refresh_rootfs, log=log)
    wanted = set(only)
    tags = [BASE_IMAGE]
    for recipe in recipes():
        if wanted and recipe.name not in wanted:
            continue
        if recipe.for_tests and not with_tests and not wanted:
            continue
        if recipe.for_scoring and not (with_scoring or with_tests) and not wanted:
            continue
        build_recipe(client, recipe, base_id, force=force, log=log)
        tags.append(recipe.tag)
    return tags


def list_images(client) -> list[dict]:
    """The images segloop built (by label), with size and creation time."""
    rows = []
    for image in client.images.list(filters={"label": IMAGE_LABEL}):
        rows.append(
            {
                "tags": image.tags,
                "id": image.short_id,
                "recipe": image.labels.get(IMAGE_LABEL, ""),
                "size_mb": image.attrs.get("Size", 0) / 2**20,
                "created": image.attrs.get("Created", ""),
            }
        )
    return sorted(rows, key=lambda r: (r["recipe"] != "base", r["recipe"]))


def remove_images(client, tests_only: bool = False, log: Log = print) -> int:
    """Remove segloop-built images (children first); return how many were removed."""

    test_tags = {r.tag for r in recipes() if r.for_tests}
    removed = 0
    for row in reversed(list_images(client)):
        if row["recipe"] == "base" and tests_only:
            continue
        for tag in row["tags"] or [row["id"]]:
            if tests_only and tag not in test_tags:
                continue
            try:
                client.images.remove(tag)
                removed += 1
                log(f"removed {tag}")
            except docker.errors.APIError as error:
                log(f"kept {tag}: {error.explanation or error}")
    return removed
