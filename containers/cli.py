"""Sub-commands of this package (registered by evaluator.cli)."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this package's sub-commands; each sets ``handler=function(args) -> int``."""
