"""The ``segloop`` command line.

Each package registers its own sub-commands through ``add_commands(subparsers)`` in its
``cli`` module; every handler takes the parsed arguments and returns an exit code. A
``SegloopError`` becomes one line on stderr and exit code 2, never a traceback. Ctrl-C and
SIGTERM (a batch scheduler's stop) end a command cleanly (containers removed, finished cases
kept) with one line and exit code 130 or 143.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segloop.app import bench
from segloop.cli import commands as evaluator_commands
from segloop.cli import images as containers_cli
from segloop.cli import leaderboard as leaderboard_cli
from segloop.cli import protocols as protocols_cli
from segloop.core.records import SegloopError
from segloop.core.task import Terminated
from segloop.runs import termination_handler


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="segloop",
        description=(
            "Evaluation harness for interactive medical image segmentation: a robot user "
            "gives clicks or boxes, the model predicts, every step is scored, curves become "
            "AUC and Final values, runs become leaderboards."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with `segloop demo`. `segloop COMMAND --help` explains each command.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (evaluator_commands, protocols_cli, containers_cli, leaderboard_cli, bench):
        module.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1

    try:
        with termination_handler():
            return int(args.handler(args) or 0)
    except SegloopError as error:
        print(f"segloop: error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print(
            "segloop: terminated (SIGTERM); finished cases are kept, run again to resume",
            file=sys.stderr,
        )
        return 143
    except KeyboardInterrupt:
        print("segloop: interrupted; finished cases are kept, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
