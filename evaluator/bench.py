"""``segloop bench``: speed figures of the harness's own work, against naive baselines."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segloop bench``."""
