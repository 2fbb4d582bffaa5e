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
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segloop.core import untrusted
from segloop.core.faults import harness_writes
from segloop.core.owners import owner_alive, owner_token
from segloop.core.records import SegloopError, spreadsheet_safe
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
    """Write ``payload`` to ``path`` so that readers see the old file, or the whole new one.
    No space (or a read-only or failing disk) is a :class:`HarnessFault` naming the file."""
    with harness_writes(path.parent, path.name):
        _write_json_atomic(path, payload)


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(  # a name that fits beside the longest target
        dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp"
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


#: The settings of run.json that define its results (their hash is its ``config_hash``).
CONFIG_KEYS = ("submission", "model", "model_identity", "model_files", "task")
#: What a run writes into its folder (all that --overwrite removes).
RUN_OUTPUTS = (RUN_FILE, "summary.csv", "summary.json")


def read_run_file(path: Path) -> dict[str, Any]:
    """run.json, checked to be one (a tampered or foreign file is one clear line)."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != "segloop-run":
        raise SegloopError(f"{path}: not a segloop run file (no 'format': 'segloop-run' object)")
    for key in ("submission", "model", "config_hash"):
        if not isinstance(data.get(key), str):
            raise SegloopError(f"{path}: {key!r} is missing or not text")
    if not isinstance(data.get("task"), dict) or not isinstance(data["task"].get("name"), str):
        raise SegloopError(f"{path}: 'task' is missing or has no name")
    return data


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def config_differences(old: Any, new: Any, where: str = "") -> list[str]:
    """The settings that differ between two configurations, one phrase each (``task.seed:
    0 before, 3 now``); for model files, which files changed."""
    if where == "model_files" and isinstance(old, dict) and isinstance(new, dict):
        changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
        phrases = [f"model file {name} changed" for name in changed]
        phrases += [f"model file {name} is new" for name in sorted(new.keys() - old.keys())]
        phrases += [f"model file {name} is gone" for name in sorted(old.keys() - new.keys())]
        return phrases
    if isinstance(old, dict) and isinstance(new, dict):
        phrases = []
        for key in list(dict.fromkeys([*old, *new])):
            inner = f"{where}.{key}" if where else str(key)
            if key not in new:
                phrases.append(f"{inner} was {_short(old[key])}, now unset")
            elif key not in old:
                phrases.append(f"{inner} was unset (not recorded), now {_short(new[key])}")
            else:
                phrases += config_differences(old[key], new[key], inner)
        return phrases
    return [] if old == new else [f"{where}: {_short(old)} before, {_short(new)} now"]


def open_run(run_dir: Path, run_info: Mapping[str, Any]) -> None:
    """Create the run folder, or check that an existing one holds the same configuration
    (else one line naming the settings that differ)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if path.exists() or path.is_symlink():
        existing = read_run_file(path)
        if existing["config_hash"] != run_info["config_hash"]:
            before = {k: existing[k] for k in CONFIG_KEYS if k in existing}
            now = {k: run_info[k] for k in CONFIG_KEYS if k in run_info}
            differences = config_differences(before, now) or ["the configuration hash"]
            more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
            raise SegloopError(
                f"{path}: this run folder holds another configuration: "
                f"{'; '.join(differences[:3])}{more}; pass --overwrite to start it again, "
                "or choose another --out"
            )
        return
    write_json_atomic(path, run_info)


def clear_run(run_dir: Path) -> int:
    """Remove what a run wrote into ``run_dir`` (run.json, case files, summaries), nothing
    else; returns how many case files went. For ``--overwrite``, under :func:`run_lock`."""
    run_dir = Path(run_dir)
    cases = run_dir / CASES_DIR
    count = sum(1 for p in cases.glob("*.json") if not p.name.endswith(TIMING_SUFFIX))
    untrusted.remove_tree(cases)
    for name in RUN_OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    return count


LOCK_FILE = "run.lock"


def _lock_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder_text(holder: Mapping[str, Any]) -> str:
    owner = str(holder.get("owner", "?"))
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0] or "?"
    return f"pid {pid} on host {host or '?'}, since {holder.get('started', '?')}"


@contextlib.contextmanager
def run_lock(run_dir: Path, notify: Callable[[str], None] = lambda line: None) -> Iterator[None]:
    """Own ``run_dir`` while inside: one run at a time per run folder.

    ``run.lock`` holds its owner (host, pid, process start) and is locked with ``flock``,
    which the kernel releases when the owner dies, however it dies. A second run is refused
    with one line naming the owner. A lock left by a dead process of this host (kill -9, a
    crash) is taken over with a ``notify`` line; one left by a process of another host is
    refused, as it may be alive (its file system may not share locks across hosts).
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        with harness_writes(run_dir, LOCK_FILE):
            run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SegloopError(f"{run_dir}: cannot create the run folder ({error.strerror})") from None
    path = run_dir / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise SegloopError(
                f"{path}: cannot open the run folder's lock ({error.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder_text(_lock_holder(fd))
            os.close(fd)
            raise SegloopError(
                f"{run_dir}: in use by another segloop run ({holder}); wait for it to end, "
                "or choose another --out"
            ) from None
        try:  # the file we locked is still the one at the path (not unlinked by its owner)
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _lock_holder(fd)
        if previous:
            owner = str(previous.get("owner", ""))
            if owner_alive(owner):  # another host's, or a process that is still alive
                raise SegloopError(
                    f"{path}: the run folder is locked by {_holder_text(previous)}, which may "
                    "still be running; if it is not, delete the lock file"
                )
            notify(
                f"took over {path} from a run that ended without releasing it "
                f"({_holder_text(previous)}); its unfinished cases run again"
            )
        payload = json.dumps(
            {"owner": owner_token(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        ).encode()
        with harness_writes(run_dir, LOCK_FILE):
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
        yield
    finally:
        # Unlinked while still locked: a lock file left behind means its owner was killed.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        if created:  # a run refused before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def finished_case_ids(
    run_dir: Path, expected_hash: str, notify: Callable[[str], None] = lambda line: None
) -> set[str]:
    """Cases already written for this configuration (the ones a resumed run skips)."""
    folder = Path(run_dir) / CASES_DIR
    if folder.exists() and not folder.is_dir():
        raise SegloopError(f"{folder}: not a folder (a run folder keeps its case files there)")
    if not folder.is_dir():
        return set()
    done = set()
    for path in folder.glob("*.json"):
        if path.name.endswith(TIMING_SUFFIX):
            continue
        try:
            result = CaseResult.from_json(read_json(path), str(path))
            if f"{result.case_id}.json" != path.name:
                raise SegloopError(f"{path}: holds case {result.case_id!r}, not {path.stem!r}")
        except SegloopError as error:  # unreadable or tampered: the case runs again, replacing it
            notify(f"{error}; the case runs again")
            continue
        if result.config_hash == expected_hash:
            done.add(result.case_id)
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
    run = read_run_file(run_dir / RUN_FILE)
    cases, timings = {}, {}
    for result, timing in iter_case_results(run_dir):
        cases[result.case_id] = result
        timings[result.case_id] = timing
    return RunRecord(run_dir, run, cases, timings)


def case_inputs(record: RunRecord) -> dict[str, dict[str, str] | None]:
    """Per case of a run: ``{input file: sha256}`` as stamped when it was scored (the
    timing files), None for a case scored without stamps (older runs)."""
    found: dict[str, dict[str, str] | None] = {}
    for case_id in record.cases:
        stamps = record.timings.get(case_id, {}).get("inputs")
        if isinstance(stamps, dict) and stamps:
            found[case_id] = {
                str(name): str(stamp.get("sha256")) if isinstance(stamp, dict) else ""
                for name, stamp in sorted(stamps.items())
            }
        else:
            found[case_id] = None
    return found


def dataset_fingerprint(record: RunRecord) -> str | None:
    """sha256 of a run's case ids and their input files' hashes; None when a case has none."""
    inputs = case_inputs(record)
    if any(v is None for v in inputs.values()):
        return None
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def write_csv(table: Any, path: Path) -> None:
    """A pandas table as CSV (empty cell for a missing value), every text cell
    :func:`segloop.core.records.spreadsheet_safe`."""
    safe = table.copy()
    for column in safe.columns:
        if getattr(safe[column].dtype, "kind", "O") not in "biufc":  # text, of any dtype
            safe[column] = safe[column].astype(object).map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(str(c)) for c in safe.columns]
    with harness_writes(Path(path).parent, Path(path).name):
        safe.to_csv(path, index=False)
