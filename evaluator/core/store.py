"""The result store: a run folder with one JSON file per case, written atomically.

Layout (docs: README, "Run folders"):

    RUN/run.json                   what was run: submission, model, task, dataset, config hash
    RUN/cases/<case>.json          the case's steps, interactions, metrics and summary
                                   (deterministic: same inputs and seed, same bytes)
    RUN/cases/<case>.timing.json   wall times (volatile, hence kept apart)
    RUN/cases/<case>/step_<k>.nii.gz  each step's prediction, with the case's geometry
                                   (only with ``segloop run --save-predictions``)
    RUN/summary.csv, summary.json  one row per case and a mean row

A case counts as finished when its ``<case>.json`` exists: it is written last, with
``os.replace``, so a run killed at any moment leaves either the whole file or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segloop.core.records import SegloopError
from segloop.core.results import CaseResult

RUN_FILE = "run.json"
CASES_DIR = "cases"
TIMING_SUFFIX = ".timing.json"
# Kept predictions: compressed NIfTI, readable by every viewer (ITK-SNAP, 3D Slicer, nibabel).
PREDICTION_EXTENSION = ".nii.gz"


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return json_safe(value.item())
    return value


def dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(payload), indent=1, sort_keys=False, allow_nan=False) + "\n"


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(dumps(payload))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(json_safe(config), sort_keys=True).encode()).hexdigest()


def case_result_path(run_dir: Path, case_id: str) -> Path:
    return Path(run_dir) / CASES_DIR / f"{case_id}.json"


def open_run(run_dir: Path, run_info: Mapping[str, Any]) -> None:
    """Create the run folder, or check that an existing one holds the same configuration."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if path.exists():
        existing = read_json(path)
        if existing.get("config_hash") != run_info["config_hash"]:
            raise SegloopError(
                f"{path}: this run folder holds another configuration "
                f"(submission, model or its image, task or seed differ); choose another --out"
            )
        return
    write_json_atomic(path, run_info)


def finished_case_ids(run_dir: Path, expected_hash: str) -> set[str]:
    """Cases already written for this configuration (the ones a resumed run skips)."""
    folder = Path(run_dir) / CASES_DIR
    if not folder.is_dir():
        return set()
    done = set()
    for path in folder.glob("*.json"):
        if path.name.endswith(TIMING_SUFFIX):
            continue
        try:
            result = read_json(path)
        except SegloopError:
            continue  # unreadable: run the case again
        if result.get("config_hash") == expected_hash:
            done.add(result["case_id"])
    return done


def prediction_path(run_dir: Path, case_id: str, step: int) -> Path:
    """Where ``--save-predictions`` keeps a step's prediction: next to the case result, step
    zero-padded so that text order is step order."""
    return Path(run_dir) / CASES_DIR / case_id / f"step_{step:02d}{PREDICTION_EXTENSION}"


def saved_prediction_steps(run_dir: Path, case_id: str) -> list[int]:
    """The steps of a case whose prediction was kept, in step order (none: not kept)."""
    folder = Path(run_dir) / CASES_DIR / case_id
    if not folder.is_dir():
        return []
    steps = []
    for path in folder.glob(f"step_*{PREDICTION_EXTENSION}"):
        number = path.name[len("step_") : -len(PREDICTION_EXTENSION)]
        if number.isdigit():
            steps.append(int(number))
    return sorted(steps)


def case_timing_path(run_dir: Path, case_id: str) -> Path:
    return Path(run_dir) / CASES_DIR / f"{case_id}{TIMING_SUFFIX}"


def write_case_result(run_dir: Path, result: CaseResult, timing: Mapping[str, Any]) -> None:
    """Timing first, result last: the result's presence marks the case finished."""
    write_json_atomic(case_timing_path(run_dir, result.case_id), timing)
    write_json_atomic(case_result_path(run_dir, result.case_id), result.to_json())


def forget_case(run_dir: Path, case_id: str) -> None:
    """Remove a finished case (result first: from then on it counts as not run)."""
    case_result_path(run_dir, case_id).unlink(missing_ok=True)
    case_timing_path(run_dir, case_id).unlink(missing_ok=True)
    forget_predictions(run_dir, case_id)


def forget_predictions(run_dir: Path, case_id: str) -> None:
    """Remove a case's kept predictions (before it runs again: none may outlive its result)."""
    folder = Path(run_dir) / CASES_DIR / case_id
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.glob(f"*{PREDICTION_EXTENSION}"):
            path.unlink(missing_ok=True)
        for path in folder.glob(".*.tmp*"):  # a killed write's temporary (images.write_image)
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something not ours, leave it
            folder.rmdir()


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SegloopError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as error:
        raise SegloopError(f"{path}: not readable JSON ({str(error)[:200]})") from None


@dataclass(frozen=True)
class RunRecord:
    run_dir: Path
    run: dict[str, Any]
    cases: dict[str, CaseResult]  # case id -> case result, sorted by case id
    timings: dict[str, dict[str, Any]]


def iter_case_results(run_dir: Path) -> Iterator[tuple[CaseResult, dict[str, Any]]]:
    """(result, timing) of every finished case, in case-id order; each case file checked
    against the format and against its own name (a file claiming another case is refused)."""
    folder = Path(run_dir) / CASES_DIR
    paths = sorted(p for p in folder.glob("*.json") if not p.name.endswith(TIMING_SUFFIX))
    for path in paths:
        result = CaseResult.from_json(read_json(path), str(path))
        if f"{result.case_id}.json" != path.name:
            raise SegloopError(f"{path}: holds case {result.case_id!r}, not {path.stem!r}")
        timing_path = path.with_name(path.stem + TIMING_SUFFIX)
        timing = read_json(timing_path) if timing_path.exists() else {}
        yield result, timing


def read_run(run_dir: Path) -> RunRecord:
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        raise SegloopError(f"{run_dir}: not a segloop run folder (no {RUN_FILE})")
    run = read_json(run_dir / RUN_FILE)
    cases, timings = {}, {}
    for result, timing in iter_case_results(run_dir):
        cases[result.case_id] = result
        timings[result.case_id] = timing
    return RunRecord(run_dir, run, cases, timings)
