"""``segloop user-shift``: how far robot users are from annotators (thesis M1-M7)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from segloop.core.records import SegloopError
from segloop.leaderboard.usershift import (
    format_table,
    read_dataset_label,
    read_run_sessions,
    user_shift_table,
    write_table,
)
from segloop.leaderboard.usershift_metrics import UNDEFINED_CASE


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    shift = subparsers.add_parser(
        "user-shift",
        help="user-shift metrics M1-M7 of robot users against recorded annotators",
        description=(
            "Compare the interactions of robot users with those of annotators on one dataset "
            "(thesis §5.2.1.2, eqs. 21-27): M1 label agreement, M2 centerness, M3 click "
            "diversity, M4 label proximity, M5 consistent improvement per source; M6 user "
            "shift and M7 Dice difference against the annotators. Each source is a run folder: "
            "an annotator's is a run of the replay robot user on their recorded session, a "
            "robot user's a run of that user, all with the same model on the same data. "
            "Values are fractions (the table prints them x 100, as the thesis)."
        ),
    )
    shift.add_argument("--data", required=True, type=Path, help="the dataset (for the labels)")
    shift.add_argument(
        "--annotators", required=True, nargs="+", metavar="[NAME=]RUN",
        help="run folders of replayed annotator sessions (name: the folder's, or NAME=)",
    )  # fmt: skip
    shift.add_argument(
        "--robots", nargs="*", default=[], metavar="[NAME=]RUN", help="run folders of robot users"
    )
    shift.add_argument(
        "--class", dest="class_id", type=int,
        help="the class whose label and clicks are compared (default: every class merged)",
    )  # fmt: skip
    shift.add_argument(
        "--mm", action="store_true", help="distances in mm (default: voxels, as the thesis)"
    )
    shift.add_argument(
        "--undefined-case", choices=UNDEFINED_CASE, default="zero",
        help="a case whose term has nothing to average: counts 0 (eqs. as written) or is skipped",
    )  # fmt: skip
    shift.add_argument("--out", type=Path, help="folder for user-shift.csv and user-shift.json")
    shift.set_defaults(handler=user_shift_command)


def named_sources(items: list[str], what: str) -> dict[str, Path]:
    """``NAME=RUN`` or ``RUN`` (named by its folder) -> {name: run folder}; names distinct."""
    sources: dict[str, Path] = {}
    for item in items:
        name, equals, path = item.partition("=")
        folder = Path(path if equals else item)
        name = name if equals else folder.resolve().name
        if not name or name in sources:
            raise SegloopError(f"--{what}: {item!r}: give each source a distinct name (NAME=RUN)")
        sources[name] = folder
    return sources


class DatasetLabels(Mapping):
    """The cases' labels and, as a mapping, their spacings, from one read per case: the table
    asks for a case's spacing and then its label, one case at a time."""

    def __init__(self, data: Path, case_ids: list[str]) -> None:
        self.data, self.case_ids = data, case_ids
        self.last: tuple[str, tuple[np.ndarray, tuple[float, float, float]]] | None = None

    def read(self, case_id: str) -> tuple[np.ndarray, tuple[float, float, float]]:
        if self.last is None or self.last[0] != case_id:
            self.last = (case_id, read_dataset_label(self.data, case_id))
        return self.last[1]

    def label(self, case_id: str) -> np.ndarray:
        return self.read(case_id)[0]

    def __getitem__(self, case_id: str) -> tuple[float, float, float]:
        return self.read(case_id)[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.case_ids)

    def __len__(self) -> int:
        return len(self.case_ids)


def user_shift_command(args: argparse.Namespace) -> int:
    annotators = named_sources(args.annotators, "annotators")
    robots = named_sources(args.robots, "robots")
    clash = set(annotators) & set(robots)
    if clash:
        raise SegloopError(f"user-shift: {sorted(clash)} named both an annotator and a robot")
    annotator_sessions = {n: read_run_sessions(p) for n, p in annotators.items()}
    robot_sessions = {n: read_run_sessions(p) for n, p in robots.items()}
    shared = set.intersection(
        *(set(s) for s in [*annotator_sessions.values(), *robot_sessions.values()])
    )
    labels = DatasetLabels(args.data, sorted(shared))
    rows = user_shift_table(
        annotator_sessions,
        robot_sessions,
        labels.label,
        class_id=args.class_id,
        spacing_mm=labels if args.mm else None,
        undefined_case=args.undefined_case,
    )
    print(format_table(rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_table(rows, args.out / "user-shift.csv", args.out / "user-shift.json")
        print(f"tables: {args.out / 'user-shift.csv'}, {args.out / 'user-shift.json'}")
    return 0
