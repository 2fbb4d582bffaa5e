"""The ``segloop`` command line.

Each package registers its own sub-commands through ``add_commands(subparsers)`` in its
``cli`` module; every handler takes the parsed arguments and returns an exit code. A
``SegloopError`` becomes one line on stderr and exit code 2, never a traceback; a fault of
the harness (``HarnessFault``: engine unreachable, no space, a lost worker) one line and exit
code 75 (EX_TEMPFAIL: run the same command again to resume). Ctrl-C and
SIGTERM (a batch scheduler's stop) end a command cleanly (containers removed, finished cases
kept) with one line and exit code 130 or 143.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from segloop.app import bench
from segloop.cli import commands as evaluator_commands
from segloop.cli import images as containers_cli
from segloop.cli import leaderboard as leaderboard_cli
from segloop.cli import protocols as protocols_cli
from segloop.cli import sdk as sdk_cli
from segloop.cli import show as show_cli
from segloop.cli import usershift as usershift_cli
from segloop.core.faults import EXIT_HARNESS_FAULT, HarnessFault
from segloop.core.records import SegloopError, terminal_safe
from segloop.core.task import Terminated
from segloop.workers import termination_handler

#: 128 + SIGPIPE, what a shell reports for a program stopped by a closed pipe
EXIT_BROKEN_PIPE = 141


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
    for module in (
        evaluator_commands,
        show_cli,
        sdk_cli,
        protocols_cli,
        containers_cli,
        leaderboard_cli,
        usershift_cli,
        bench,
    ):
        module.add_commands(subparsers)
    return parser


class _TerminalSafe(io.TextIOBase):
    """A text stream that writes control characters as escapes (:func:`terminal_safe`): what
    segloop prints may quote a container's error text or a file name."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(terminal_safe(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def main(argv: Sequence[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalSafe(sys.stdout), _TerminalSafe(sys.stderr)
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`segloop tasks | head -1`): stop quietly, as Unix tools do;
        # stdout onto /dev/null so the interpreter's last flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), streams[0].fileno())
        return EXIT_BROKEN_PIPE
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: Sequence[str] | None) -> int:
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
    except HarnessFault as fault:
        print(
            f"segloop: harness fault (not the model's): {fault}; finished cases are kept, "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_HARNESS_FAULT
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
