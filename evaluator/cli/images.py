"""Sub-commands of this package (registered by segloop.cli): ``segloop images ...``."""

from __future__ import annotations

import argparse

from segloop.containers.docker.sandbox import cleanup_leftovers, remove_all_containers
from segloop.containers.images import build_images, docker_client, list_images, remove_images


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this package's sub-commands; each sets ``handler=function(args) -> int``."""
    images = subparsers.add_parser(
        "images",
        help="build, list and clean segloop's container images (no registry needed)",
        description=(
            "segloop's images are built locally: the base image from Debian packages "
            "(debootstrap, cached under ~/.cache/segloop), the baseline and test images FROM it. "
            "Nothing is ever pulled."
        ),
    )
    actions = images.add_subparsers(dest="images_command", metavar="ACTION")

    build = actions.add_parser(
        "build",
        help="build segloop/base and the participant images on it",
        description=(
            "Build segloop/base:latest (Debian bookworm minbase + python3, numpy, scipy; needs "
            "root and the Debian mirror the first time), then segloop/baseline-region-growing "
            "and segloop/trivial. Unchanged images are skipped."
        ),
    )
    build.add_argument(
        "--with-tests",
        action="store_true",
        help="also the images the tests use (template example, GC example, hostile containers) "
        "and segloop/scoring",
    )
    build.add_argument(
        "--with-scoring",
        action="store_true",
        help="also segloop/scoring, the image a Codabench bundle names (segloop and its "
        "dependencies; the pinned wheels are downloaded from the package index the first time, "
        "then cached)",
    )
    build.add_argument(
        "--force", action="store_true", help="re-import the base and rebuild every image"
    )
    build.add_argument(
        "--refresh-rootfs",
        action="store_true",
        help="run debootstrap again instead of using the cached rootfs tarball",
    )
    build.add_argument("--only", default="", help="comma-separated recipe names to build")
    build.set_defaults(handler=build_command)

    listing = actions.add_parser("list", help="list the images segloop built")
    listing.set_defaults(handler=list_command)

    clean = actions.add_parser(
        "clean",
        help="remove leftover containers (and optionally images)",
        description=(
            "Remove containers left behind by harness processes that died (by label). "
            "--all-containers also removes those of running harnesses; --images removes "
            "segloop's images (--tests-only: only the test images)."
        ),
    )
    clean.add_argument("--all-containers", action="store_true")
    clean.add_argument("--images", action="store_true", help="also remove segloop's images")
    clean.add_argument("--tests-only", action="store_true", help="with --images: test images only")
    clean.set_defaults(handler=clean_command)
    images.set_defaults(handler=lambda args: (images.print_help(), 1)[1])


def build_command(args: argparse.Namespace) -> int:
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    build_images(
        with_tests=args.with_tests,
        with_scoring=args.with_scoring,
        force=args.force,
        refresh_rootfs=args.refresh_rootfs,
        only=only,
    )
    return 0


def list_command(args: argparse.Namespace) -> int:
    rows = list_images(docker_client())
    if not rows:
        print("no segloop images; build them with `segloop images build`")
        return 0
    print(f"{'IMAGE':48} {'ID':14} {'SIZE':>9}  CREATED")
    for row in rows:
        for tag in row["tags"] or ["<untagged>"]:
            print(f"{tag:48} {row['id'][7:19]:14} {row['size_mb']:7.0f}MB  {row['created'][:19]}")
    return 0


def clean_command(args: argparse.Namespace) -> int:
    client = docker_client()
    if args.all_containers:
        count = remove_all_containers(client)
    else:
        count = cleanup_leftovers(client, log=print)
    print(f"removed {count} container(s)")
    if args.images:
        removed = remove_images(client, tests_only=args.tests_only)
        print(f"removed {removed} image tag(s)")
    return 0
