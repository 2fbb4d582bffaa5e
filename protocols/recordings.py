"""Recorded interactions: read what annotators (or a tool, or a challenge's click files) did, by case and step.

The robot user that plays a recording back is :class:`segloop.protocols.replay.ReplayUser`.

A ``ReplayUser`` gives at step k exactly the interactions recorded for step k of the case, so
any submission can be scored on the clicks real people (or another tool, or a challenge's
published click files) gave. It ignores the model's predictions: recorded sessions reacted to
the model the annotators used, and replaying them on another model keeps their clicks, not
their reactions (the thesis's user studies, §5.2, did the same with one model). A step past the
end of a recording gives nothing; a case the recording does not hold is an error.

Sources (``format``; ``"auto"`` decides from the path):

- ``"run"``: a segloop run folder (``cases/<case>.json``): step k replays
  ``steps[k].new_interactions`` (clicks, boxes, scribbles, polygons alike).
- ``"segloop"``: a JSON file (or a folder of them) holding a case result as in a run folder,
  a ``segloop-interactions`` object (``segloop.core.formats.to_segloop_json``; its ``case_id`` key
  or else the file name names the case, a trailing ``_interactions`` dropped), a plain list of
  ``Interaction.to_json()`` objects (the file name is the case), or ``{case id: [Interaction
  JSON, ...]}``. Each interaction's ``step`` places it; coordinates are (z, y, x) unless an
  ``axis_order`` is written in the object.
- ``"gc"``: a folder with one sub-folder per case holding one click file per step, named
  ``<anything>_step_<k>.json`` (``segloop clicks``) or ``<k>_clicks.json`` (ToothFairy3);
  other files are ignored, steps are ordered by number (never as text). Each file is in the
  challenge's own format (the challenge's ``click_format``, ``segloop.core.challenges``: Grand Challenge
  "Multiple points" for autopet (voxel x, y, z) and toothfairy3 (voxel z, y, x), point lists
  for trials; ``axis_order`` overrides). ``cumulative=True`` (as the challenges published them):
  file k holds the clicks of steps 0..k and must extend file k - 1 name by name; its new points
  are step k's. ``cumulative=False``: file k holds step k's clicks only. Point names map to the
  task's classes (``background`` = a negative click of the smallest class id).
- ``"csv"``: a plain CSV with the header ``case, annotator, step, class, z, y, x, positive``
  (``annotator`` may be left out): one click per row, voxel indices (z, y, x), ``class`` a class
  id or a class name of the task, ``positive`` 1/0, true/false or yes/no. Rows of one step keep
  their file order. A file with several annotators needs ``annotator`` to choose one.

Errors are one-line ``SegloopError``s naming the file and the row (CSV line, interaction or
point index): an unreadable file, a bad value, a class the task does not have, an interaction
outside the image (checked against each case's shape when it is replayed), an unknown case.

Deterministic: nothing is drawn. ``to_json`` records the path, the format and the SHA-256 of
the recording's content (the files read, by relative path), so a run's configuration hash
changes when the recording does; a ``sha256`` given back (e.g. in a TOML task) is checked
against the files and a changed recording is refused. Paths are taken relative to the current
directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from segloop.core.challenges import CHALLENGES
from segloop.core.formats import GENERIC_FORMAT, decode_clicks, from_segloop_json
from segloop.core.records import AXIS_ORDER, Geometry, Interaction, SegloopError

FORMATS = ("auto", "run", "segloop", "gc", "csv")
CSV_COLUMNS = ("case", "annotator", "step", "class", "z", "y", "x", "positive")
CSV_REQUIRED = tuple(c for c in CSV_COLUMNS if c != "annotator")
TRUE_WORDS = {"1", "true", "t", "yes", "y"}
FALSE_WORDS = {"0", "false", "f", "no", "n"}
STEP_FILE = (re.compile(r"_step_(\d+)\.json$"), re.compile(r"^(\d+)_clicks\.json$"))
KINDS = ("click", "box", "scribble", "polygon")


@dataclass(frozen=True)
class RecordedInteraction:
    """One recorded interaction before it meets a task: its class may still be a name (CSV)."""

    case_id: str
    step: int
    kind: str
    class_ref: int | str  # a class id, or a class name resolved against the task's classes
    positive: bool
    coords: tuple[tuple[int, int, int], ...]
    where: str  # file and row, for error messages


@dataclass(frozen=True)
class GCStepFile:
    """One challenge click file of one case (format "gc"), decoded when the task's classes are known."""

    step: int
    path: Path
    data: Any


@dataclass(frozen=True)
class Recording:
    """What a recording holds: interactions per case (or click files per case, format "gc")."""

    path: str
    format: str
    sha256: str
    annotators: tuple[str, ...]
    cases: Mapping[str, tuple[RecordedInteraction, ...] | tuple[GCStepFile, ...]]

    def case_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.cases))

    def interactions_of(
        self,
        case_id: str,
        classes: Mapping[int, str],
        shape: Sequence[int] | None = None,
        geometry: Geometry | None = None,
        challenge: str = "autopet",
        axis_order: Sequence[str] | None = None,
        cumulative: bool = True,
    ) -> tuple[Interaction, ...]:
        """Every recorded interaction of a case, in step order, as the task's ``Interaction``s.

        Checks each against ``classes`` and, given ``shape`` (z, y, x), the image bounds.
        """
        if case_id not in self.cases:
            held = self.case_ids()
            listed = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise SegloopError(
                f"replay {self.path}: no recorded interactions for case {case_id!r} "
                f"(the recording holds {len(held)} case(s): {listed})"
            )
        entries = self.cases[case_id]
        if self.format == "gc":
            known = CHALLENGES.get(challenge)
            file_format = (known.click_format if known else None) or GENERIC_FORMAT
            if axis_order is not None:
                file_format = replace(file_format, axis_order=tuple(axis_order))
            return _gc_interactions(entries, classes, file_format, shape, geometry, cumulative)  # type: ignore[arg-type]
        out = [_resolve(entry, classes, shape) for entry in entries]  # type: ignore[arg-type]
        return tuple(sorted(out, key=lambda i: i.step))  # stable: file order within a step


def _resolve(
    entry: RecordedInteraction, classes: Mapping[int, str], shape: Sequence[int] | None
) -> Interaction:
    """The task's interaction of a recorded one: class id checked, coordinates inside the image."""
    if isinstance(entry.class_ref, str):
        by_name = {name: class_id for class_id, name in classes.items()}
        if entry.class_ref not in by_name:
            raise SegloopError(
                f"replay {entry.where}: class {entry.class_ref!r} is not a class of the task "
                f"({_classes_text(classes)})"
            )
        class_id = by_name[entry.class_ref]
    else:
        class_id = entry.class_ref
        if class_id not in classes:
            raise SegloopError(
                f"replay {entry.where}: class {class_id} is not a class of the task "
                f"({_classes_text(classes)})"
            )
    if shape is not None:
        for point in entry.coords:
            if not all(0 <= v < n for v, n in zip(point, shape, strict=True)):
                raise SegloopError(
                    f"replay {entry.where}: {entry.kind} at (z, y, x) = {tuple(point)} lies "
                    f"outside the image of shape {tuple(shape)}"
                )
    return Interaction(entry.kind, int(class_id), entry.positive, entry.step, entry.coords)  # type: ignore[arg-type]


def _classes_text(classes: Mapping[int, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(classes.items()))


def _gc_interactions(
    files: Sequence[GCStepFile],
    classes: Mapping[int, str],
    file_format: Any,
    shape: Sequence[int] | None,
    geometry: Geometry | None,
    cumulative: bool,
) -> tuple[Interaction, ...]:
    """Per-step challenge click files -> interactions placed at their files' steps."""
    out: list[Interaction] = []
    seen: dict[tuple[int, bool], list[tuple[int, int, int]]] = {}
    for entry in files:
        decoded = decode_clicks(entry.data, classes, file_format, geometry, shape, str(entry.path))
        points: dict[tuple[int, bool], list[tuple[int, int, int]]] = {}
        for interaction in decoded:  # sorted by rank within a name: file order per name
            points.setdefault((interaction.class_id, interaction.positive), []).append(
                interaction.coords[0]
            )
        if not cumulative:
            new = points
        else:
            new = {}
            for key in sorted(set(points) | set(seen), key=lambda k: (not k[1], k[0])):
                before, now = seen.get(key, []), points.get(key, [])
                if now[: len(before)] != before:
                    name = classes[key[0]] if key[1] else file_format.background_name
                    raise SegloopError(
                        f"replay {entry.path}: its {name!r} points do not extend those of the "
                        f"previous step file (cumulative click files hold the clicks of steps "
                        f"0..{entry.step}); use cumulative=false for per-step files"
                    )
                new[key] = now[len(before) :]
            seen = points
        for (class_id, positive), coords in sorted(
            new.items(), key=lambda t: (not t[0][1], t[0][0])
        ):
            out.extend(
                Interaction("click", class_id, positive, entry.step, (point,)) for point in coords
            )
    return tuple(out)


# --------------------------------------------------------------------------- reading
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SegloopError(f"replay {path}: cannot read ({error.strerror or error})") from None


def _json(path: Path, raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise SegloopError(f"replay {path}: not a readable JSON file ({error})") from None


def content_sha256(root: Path, files: Mapping[Path, bytes]) -> str:
    """SHA-256 of a recording: of the file's bytes, or for a folder of (relative path, SHA-256 of
    the bytes) of every file read, in path order (renaming a case file changes it too)."""
    if len(files) == 1 and next(iter(files)) == root:
        return hashlib.sha256(next(iter(files.values()))).hexdigest()
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """ "run", "gc", "segloop" or "csv" from what ``path`` is (file suffix, folder layout)."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        if path.suffix.lower() == ".json":
            return "segloop"
        raise SegloopError(f"replay {path}: a recording is a .csv or .json file, or a folder")
    if not path.is_dir():
        raise SegloopError(f"replay {path}: no such file or folder")
    if (path / "run.json").is_file() or (path / "cases").is_dir():
        return "run"
    if any(sub.is_dir() and _step_files(sub) for sub in path.iterdir()):
        return "gc"
    if any(path.glob("*.json")):
        return "segloop"
    raise SegloopError(
        f"replay {path}: neither a run folder (cases/), a folder of per-step click files per "
        "case, nor a folder of segloop JSON files"
    )


def _int(value: Any, what: str, where: str, minimum: int | None = None) -> int:
    """An integer from a recorded value (an int, or text of one); SegloopError naming the row."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SegloopError(f"replay {where}: {what} {value!r} is not an integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SegloopError(f"replay {where}: {what} {value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise SegloopError(f"replay {where}: {what} {number} is below {minimum}")
    return number


def read_csv_recording(
    path: Path, raw: bytes, annotator: str | None
) -> tuple[tuple[str, ...], dict[str, list[RecordedInteraction]]]:
    """(annotators in the file, the chosen annotator's clicks per case) of a CSV recording."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SegloopError(f"replay {path}: not UTF-8 text ({error})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [str(h).strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise SegloopError(
            f"replay {path}: line 1: missing column(s) {', '.join(missing)}; the header must "
            f"name {', '.join(CSV_COLUMNS)} (annotator optional)"
        )
    reader.fieldnames = header
    rows: list[tuple[str, RecordedInteraction]] = []
    for row in reader:
        where = f"{path} line {reader.line_num}"
        if None in row or any(row.get(c) is None for c in CSV_REQUIRED):
            raise SegloopError(f"replay {where}: expected {len(header)} fields")
        case_id = row["case"].strip()
        if not case_id:
            raise SegloopError(f"replay {where}: empty case")
        who = (row.get("annotator") or "").strip()
        step = _int(row["step"], "step", where, minimum=0)
        token = row["class"].strip()
        if not token:
            raise SegloopError(f"replay {where}: empty class")
        class_ref: int | str = token
        if re.fullmatch(r"[+-]?\d+", token):
            class_ref = _int(token, "class", where, minimum=1)
        zyx = tuple(_int(row[axis], axis, where, minimum=0) for axis in AXIS_ORDER)
        polarity = row["positive"].strip().lower()
        if polarity not in TRUE_WORDS | FALSE_WORDS:
            raise SegloopError(
                f"replay {where}: positive {row['positive']!r} is not 1/0, true/false or yes/no"
            )
        interaction = RecordedInteraction(
            case_id,
            step,
            "click",
            class_ref,
            polarity in TRUE_WORDS,
            (zyx,),
            where,  # type: ignore[arg-type]
        )
        rows.append((who, interaction))
    annotators = tuple(sorted({who for who, _ in rows}))
    if annotator is None and len(annotators) > 1:
        raise SegloopError(
            f"replay {path}: the file holds {len(annotators)} annotators "
            f'({", ".join(annotators)}); choose one with annotator = "..."'
        )
    if annotator is not None and annotator not in annotators:
        raise SegloopError(
            f"replay {path}: no annotator {annotator!r} (the file holds "
            f"{', '.join(a or '(unnamed)' for a in annotators) or 'no row'})"
        )
    cases: dict[str, list[RecordedInteraction]] = {}
    for who, interaction in rows:
        if annotator is None or who == annotator:
            cases.setdefault(interaction.case_id, []).append(interaction)
    return annotators, cases


def _whole(value: Any) -> bool:
    """An integer value as JSON holds one (not a bool, not 1.5; 3.0 is accepted)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _recorded(item: Any, case_id: str, where: str) -> RecordedInteraction:
    """A segloop ``Interaction.to_json()`` object (coordinates in z, y, x), strictly checked."""
    if not isinstance(item, Mapping):
        raise SegloopError(f"replay {where}: not an interaction object")
    missing = [k for k in ("kind", "class_id", "positive", "step", "coords") if k not in item]
    if missing:
        raise SegloopError(f"replay {where}: missing {', '.join(missing)}")
    kind, coords = item["kind"], item["coords"]
    if kind not in KINDS:
        raise SegloopError(f"replay {where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not _whole(item["class_id"]) or not _whole(item["step"]) or item["step"] < 0:
        raise SegloopError(
            f"replay {where}: class_id {item['class_id']!r} and step {item['step']!r} must be "
            "integers, the step >= 0"
        )
    if not isinstance(item["positive"], bool):
        raise SegloopError(f"replay {where}: positive {item['positive']!r} is not true or false")
    if (
        not isinstance(coords, list)
        or not coords
        or not all(isinstance(c, list) and len(c) == 3 and all(map(_whole, c)) for c in coords)
    ):
        raise SegloopError(
            f"replay {where}: coords {coords!r} must be a non-empty list of integer (z, y, x) "
            "triples"
        )
    return RecordedInteraction(
        case_id,
        int(item["step"]),
        str(kind),
        int(item["class_id"]),
        bool(item["positive"]),
        tuple(tuple(int(v) for v in c) for c in coords),  # type: ignore[misc]
        where,
    )


def _case_stem(path: Path) -> str:
    stem = path.stem
    return stem[: -len("_interactions")] if stem.endswith("_interactions") else stem


def read_segloop_json(path: Path, data: Any) -> dict[str, list[RecordedInteraction]]:
    """The cases of one segloop JSON file (see the module docstring for the accepted shapes)."""
    if isinstance(data, list):
        case_id = _case_stem(path)
        return {
            case_id: [
                _recorded(item, case_id, f"{path} interaction {k}") for k, item in enumerate(data)
            ]
        }
    if not isinstance(data, Mapping):
        raise SegloopError(f"replay {path}: not a list or object of interactions")
    if data.get("format") == "segloop-case-result":
        return {str(data.get("case_id", _case_stem(path))): _case_result(path, data)}
    if "interactions" in data:
        case_id = str(data.get("case_id") or _case_stem(path))
        try:
            decoded = from_segloop_json(data, str(path))
        except SegloopError as error:
            raise SegloopError(f"replay {error}") from None
        return {
            case_id: [
                _recorded(i.to_json(), case_id, f"{path} interaction {k}")
                for k, i in enumerate(decoded)
            ]
        }
    out = {}
    for case_id, items in data.items():
        if not isinstance(items, list):
            raise SegloopError(
                f"replay {path}: case {case_id!r} is not a list of interactions (expected "
                "{case id: [interaction, ...]}, a list, a segloop-interactions object or a case "
                "result)"
            )
        out[str(case_id)] = [
            _recorded(item, str(case_id), f"{path} case {case_id} interaction {k}")
            for k, item in enumerate(items)
        ]
    return out


def _case_result(path: Path, data: Mapping[str, Any]) -> list[RecordedInteraction]:
    """The interactions of a run's case result: ``steps[k].new_interactions`` are step k's."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise SegloopError(f"replay {path}: a case result without a 'steps' list")
    case_id = str(data.get("case_id", _case_stem(path)))
    out = []
    for position, step in enumerate(steps):
        if not isinstance(step, Mapping) or not isinstance(step.get("new_interactions"), list):
            raise SegloopError(f"replay {path} step {position}: no 'new_interactions' list")
        number = _int(step.get("step", position), "step", f"{path} step {position}", minimum=0)
        for k, item in enumerate(step["new_interactions"]):
            where = f"{path} step {number} interaction {k}"
            recorded = _recorded(item, case_id, where)
            if recorded.step != number:
                raise SegloopError(f"replay {where}: its step {recorded.step} is not {number}")
            out.append(recorded)
    return out


def _step_files(folder: Path) -> list[tuple[int, Path]]:
    """(step, file) of the per-step click files of a case folder, in step order (numeric)."""
    found = []
    for path in folder.iterdir():
        if not path.is_file():
            continue
        for pattern in STEP_FILE:
            match = pattern.search(path.name)
            if match:
                found.append((int(match.group(1)), path))
                break
    return sorted(found)


def _merge(
    into: dict[str, list[RecordedInteraction]],
    cases: Mapping[str, list[RecordedInteraction]],
    source: Path,
) -> None:
    for case_id, items in cases.items():
        if case_id in into:
            raise SegloopError(f"replay {source}: case {case_id!r} is recorded twice")
        into[case_id] = list(items)


_LOADED: dict[tuple, Recording] = {}  # a task is rebuilt per case: read each recording once


def _signature(root: Path) -> tuple:
    """Size and times of every file under ``root``: a changed file gives another signature."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for file in files:
        info = file.stat()
        out.append((file.as_posix(), info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return tuple(out)


def load_recording(
    path: str | Path, format: str = "auto", annotator: str | None = None
) -> Recording:
    """A recording (module docstring) with its content hash, read once per version of its files;
    nothing is checked against a task yet (classes, image bounds: ``interactions_of``)."""
    root = Path(path)
    if not root.exists():
        raise SegloopError(f"replay {root}: no such file or folder")
    key = (str(path), str(root.resolve()), format, annotator, _signature(root))
    hit = _LOADED.get(key)
    if hit is None:
        hit = _read_recording(path, format, annotator)
        if len(_LOADED) >= 8:
            _LOADED.clear()
        _LOADED[key] = hit
    return hit


def _read_recording(path: str | Path, format: str, annotator: str | None) -> Recording:
    root = Path(path)
    if format not in FORMATS:
        raise SegloopError(f"replay: format must be one of {', '.join(FORMATS)}, not {format!r}")
    kind = detect_format(root) if format == "auto" else format
    if not root.exists():
        raise SegloopError(f"replay {root}: no such file or folder")
    if annotator is not None and kind != "csv":
        raise SegloopError(f"replay {root}: annotator applies to CSV recordings, not {kind}")
    read: dict[Path, bytes] = {}
    cases: dict[str, Any] = {}
    annotators: tuple[str, ...] = ()
    if kind == "csv":
        if not root.is_file():
            raise SegloopError(f"replay {root}: a CSV recording is a file")
        read[root] = _read_bytes(root)
        annotators, cases = read_csv_recording(root, read[root], annotator)
    elif kind == "segloop":
        files = [root] if root.is_file() else sorted(root.glob("*.json"))
        if not files:
            raise SegloopError(f"replay {root}: no .json file")
        for file in files:
            read[file] = _read_bytes(file)
            _merge(cases, read_segloop_json(file, _json(file, read[file])), file)
    elif kind == "run":
        folder = root / "cases"
        if not folder.is_dir():
            raise SegloopError(f"replay {root}: not a run folder (no cases/)")
        for file in sorted(folder.glob("*.json")):
            if file.name.endswith(".timing.json"):
                continue  # wall times: volatile, not part of the recording
            read[file] = _read_bytes(file)
            data = _json(file, read[file])
            if not isinstance(data, Mapping):
                raise SegloopError(f"replay {file}: not a case result object")
            _merge(cases, {str(data.get("case_id", file.stem)): _case_result(file, data)}, file)
        if not cases:
            raise SegloopError(f"replay {root}: the run folder has no finished case")
    elif kind == "gc":
        if not root.is_dir():
            raise SegloopError(f"replay {root}: per-step click files live in a folder per case")
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            steps = _step_files(sub)
            numbers = [s for s, _ in steps]
            if len(set(numbers)) != len(numbers):
                raise SegloopError(f"replay {sub}: two click files for one step")
            entries = []
            for step, file in steps:
                read[file] = _read_bytes(file)
                entries.append(GCStepFile(step, file, _json(file, read[file])))
            if entries:
                cases[sub.name] = tuple(entries)
        if not cases:
            raise SegloopError(
                f"replay {root}: no case folder with <case>_step_<k>.json or <k>_clicks.json files"
            )
    cases = {k: (v if kind == "gc" else tuple(v)) for k, v in cases.items()}
    return Recording(str(path), kind, content_sha256(root, read), annotators, cases)
