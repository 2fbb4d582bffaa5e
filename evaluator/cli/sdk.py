"""``segloop sdk init DIR [--gc PRESET]``: a participant's starting folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from segloop.containers.starter import gc_presets, write_starter


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    sdk = subparsers.add_parser(
        "sdk",
        help="participant SDK: `segloop sdk init DIR` writes a model, Dockerfile and the SDK",
        description="Tools for participants building a model container.",
    )
    actions = sdk.add_subparsers(dest="sdk_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="write a starting folder: model.py (predict), Dockerfile, segloop_sdk.py",
        description=(
            "Write DIR/model.py (a worked predict(case, request): a ball around every click), "
            "DIR/Dockerfile and the SDK file(s) it copies. --gc PRESET makes it a Grand "
            "Challenge-style algorithm container of the preset's interface (segloop_gc.py): "
            "the same predict, run with --model docker:gc-PRESET+IMAGE. Refuses to overwrite."
        ),
    )
    init.add_argument("folder", type=Path, metavar="DIR")
    init.add_argument("--gc", choices=gc_presets(), help="Grand Challenge interface of a preset")
    init.set_defaults(handler=init_command)


def init_command(args: argparse.Namespace) -> int:
    written = write_starter(args.folder, args.gc)
    print(f"wrote {', '.join(p.name for p in written)} to {args.folder}")
    image = "my-team/model:1"
    model = f"docker:gc-{args.gc}+{image}" if args.gc else f"docker:{image}"
    print(f"next: docker build -t {image} {args.folder}")
    print(f"      segloop run --data DATASET --task {args.gc or 'TASK'} --model {model} --out RUN")
    return 0
