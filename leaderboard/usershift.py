"""The user-shift table: M1-M7 of robot users against annotators, over a dataset.

The metrics themselves (thesis §5.2.1.2, eqs. 21-27, with their edge cases) are in
:mod:`segloop.leaderboard.usershift_metrics`; here they are gathered per source (a run folder
or a recording) into ``UserShiftRow``s, printed and written as CSV/JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core import dataset, images, store
from segloop.core.records import SegloopError
from segloop.core.results import CaseResult
from segloop.leaderboard.usershift_metrics import (
    METRICS,
    CaseTerms,
    LabelIndex,
    LabelSource,
    Session,
    case_terms,
    dataset_mean,
    foreground,
    label_getter,
    m6_user_shift,
    m7_dice_difference,
)


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class UserShiftRow:
    """One source's line of the user-shift table. M1-M5 over the table's cases; M6 and M7
    against the annotators (for an annotator: against the other annotators, the floor a robot
    user can hope for; None with a single annotator). Fractions (x 100 in the thesis)."""

    source: str
    role: str  # "annotator" or "robot"
    cases: int
    lesion_clicks: int
    m1: float
    m2: float
    m3: float
    m4: float
    m5: float
    m6: float | None
    m7: float | None

    def metrics(self) -> tuple[float, float, float, float, float]:
        return (self.m1, self.m2, self.m3, self.m4, self.m5)

    def to_json(self) -> dict[str, Any]:
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in asdict(self).items()
        }


def user_shift_table(
    annotators: Mapping[str, Mapping[str, Session]],
    robots: Mapping[str, Mapping[str, Session]],
    labels: LabelSource,
    class_id: int | None = None,
    spacing_mm: Mapping[str, Sequence[float]] | None = None,
    undefined_case: str = "zero",
    first_step: int = 1,
) -> tuple[UserShiftRow, ...]:
    """M1-M7 of every source on the cases all of them share (Ω), annotators first.

    ``annotators`` / ``robots``: {source name: {case id: Session}} (e.g. ``read_run_sessions``
    of a replay run per annotator and of a run per robot user, all on the same model and data).
    ``labels``: {case id: label map} or a function loading one (each is read once).
    ``spacing_mm``: {case id: (z, y, x) spacing} for distances in mm (default voxel units).
    """
    if not annotators:
        raise SegloopError("user shift: at least one annotator is needed")
    sources = {("annotator", name): sessions for name, sessions in annotators.items()}
    sources.update({("robot", name): sessions for name, sessions in robots.items()})
    shared = sorted(set.intersection(*(set(s) for s in sources.values())))
    if not shared:
        raise SegloopError("user shift: the sources share no case")
    label_of = label_getter(labels)
    terms: dict[tuple[str, str], list[CaseTerms]] = {key: [] for key in sources}
    for case_id in shared:
        spacing = None if spacing_mm is None else spacing_mm[case_id]
        # one label in memory at a time; its EDT, components and surface shared by all sources
        index = LabelIndex(foreground(label_of(case_id), class_id), spacing)
        for key, sessions in sources.items():
            terms[key].append(case_terms(sessions[case_id], index, class_id))
    metrics = {
        key: tuple(dataset_mean([getattr(t, m) for t in values], undefined_case) for m in METRICS)
        for key, values in terms.items()
    }
    curves = {
        key: {c: sources[key][c].dice for c in shared if sources[key][c].dice is not None}
        for key in sources
    }
    annotator_keys = [("annotator", name) for name in annotators]

    def versus(key: tuple[str, str]) -> tuple[float | None, float | None]:
        others = [a for a in annotator_keys if a != key]
        if not others:
            return None, None
        shift = m6_user_shift(metrics[key], [metrics[a] for a in others])
        if any(len(curves[k]) < len(shared) for k in (key, *others)):
            return shift, None  # a source without Dice curves: no M7
        difference = m7_dice_difference(
            curves[key], [curves[a] for a in others], first_step, undefined_case
        )  # type: ignore[arg-type]
        return shift, difference

    rows = []
    for key in sources:
        shift, difference = versus(key)
        rows.append(
            UserShiftRow(
                key[1],
                key[0],
                len(shared),
                sum(t.lesion_clicks for t in terms[key]),
                *metrics[key],
                shift,
                difference,
            )
        )
    return tuple(rows)


def format_table(rows: Sequence[UserShiftRow]) -> str:
    """The table as text, every metric x 100 as in the thesis's tables (Table 10)."""
    header = f"{'source':<16} {'role':<9} {'cases':>5} {'clicks':>6}" + "".join(
        f" {m.upper():>6}" for m in (*METRICS, "m6", "m7")
    )
    lines = [header + "   (x 100)", "-" * len(header)]
    for row in rows:
        values = (*row.metrics(), row.m6, row.m7)
        cells = "".join(
            "      -" if v is None or not math.isfinite(v) else f" {100 * v:6.1f}" for v in values
        )
        lines.append(f"{row.source:<16} {row.role:<9} {row.cases:>5} {row.lesion_clicks:>6}{cells}")
    return "\n".join(lines)


def write_table(
    rows: Sequence[UserShiftRow], csv_path: Path | None, json_path: Path | None
) -> None:
    """The table as CSV (one row per source, fractions, empty = undefined) and/or JSON."""
    records = [row.to_json() for row in rows]
    if csv_path is not None:
        with Path(csv_path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(UserShiftRow.__dataclass_fields__))
            writer.writeheader()
            for record in records:
                writer.writerow({k: "" if v is None else v for k, v in record.items()})
    if json_path is not None:
        payload = {"format": "segloop-user-shift", "version": 1, "rows": records}
        Path(json_path).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def read_table(path: str | Path) -> tuple[UserShiftRow, ...]:
    """The rows of a ``user-shift.json`` (``write_table``), checked; one line naming the file
    and the problem otherwise. At most 16 MiB are read."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(16 * 2**20 + 1)
        if len(raw) > 16 * 2**20:
            raise SegloopError(f"{path}: larger than 16 MiB, not a user-shift table")
        payload = json.loads(raw)
    except (OSError, ValueError, RecursionError) as error:
        raise SegloopError(f"{path}: not a readable user-shift table ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != "segloop-user-shift":
        raise SegloopError(f"{path}: not a user-shift table (write one with `segloop user-shift`)")
    rows = payload.get("rows")
    names = list(UserShiftRow.__dataclass_fields__)
    if not isinstance(rows, list) or not rows:
        raise SegloopError(f"{path}: 'rows' must be a non-empty list")
    parsed = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or sorted(row) != sorted(names):
            raise SegloopError(f"{path}: row {i} must have exactly the keys {', '.join(names)}")
        numbers = {k: row[k] for k in names if k not in ("source", "role")}
        optional = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
        bad = [
            k
            for k, v in numbers.items()
            if not (
                (v is None and k in optional)
                or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
            )
        ]
        if bad or not isinstance(row["source"], str) or row["role"] not in ("annotator", "robot"):
            raise SegloopError(f"{path}: row {i}: bad value of {', '.join(bad) or 'source/role'}")
        parsed.append(
            UserShiftRow(
                **{k: (math.nan if v is None and k in optional[:5] else v) for k, v in row.items()}
            )
        )
    return tuple(parsed)


# --------------------------------------------------------------------------- reading runs
def session_from_case_result(result: CaseResult) -> Session:
    """A run's case result: the clicks of its steps' new interactions and its Dice curve
    (None -> NaN; no Dice metric -> None)."""
    interactions = [i for step in result.steps for i in step.new_interactions or ()]
    has_dice = all("dice" in step.metrics for step in result.steps)
    dice = [step.metrics["dice"].mean for step in result.steps] if has_dice else None
    return Session.from_interactions(result.case_id, interactions, dice)


def read_run_sessions(run_dir: str | Path) -> dict[str, Session]:
    """{case id: Session} of every finished case of a run folder (``cases/<case>.json``)."""
    record = store.read_run(Path(run_dir))
    if not record.cases:
        raise SegloopError(f"{run_dir}: the run folder has no finished case")
    return {case_id: session_from_case_result(result) for case_id, result in record.cases.items()}


def read_dataset_label(
    dataset_dir: str | Path, case_id: str
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A dataset case's label map (z, y, x) and its spacing in mm (z, y, x), without reading its
    images: what ``user_shift_table`` needs per case (``labels=lambda c: read_dataset_label(d,
    c)[0]``; pass the spacings only for distances in mm)."""

    found = dataset.case_files(dataset_dir, case_id)
    values, geometry = images.read_image(found.label)
    return images.as_label_map(values, found.label), geometry.spacing_mm
