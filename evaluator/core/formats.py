"""Click formats: Grand Challenge "Multiple points" JSON, point lists, segloop JSON.

The CVPR 2025 MedSegFM npz exchange is in :mod:`segloop.core.formats_cvpr25`.

Inside segloop every coordinate is an array index in (z, y, x) order (segloop.core.records: the
order of SimpleITK's ``GetArrayFromImage``). Every format here states its own order and every
reader/writer converts explicitly. Axis names in ``axis_order`` are those of our arrays: ``z`` is
array axis 0, ``x`` array axis 2, so ``("x", "y", "z")`` is SimpleITK's index order (and nibabel's
array order for the same NIfTI file), ``("z", "y", "x")`` is numpy's order of SimpleITK arrays.

What the 2025 challenges really published (read from their public code; each challenge's ``click_format`` in ``segloop.core.challenges``)
--------------------------------------------------------------------------------------------
All three published **voxel indices** (integers), never millimetres, in different axis orders:

- autoPET IV (Grand Challenge "Multiple points", names ``tumor`` / ``background``):
  ``lab-midas/autoPETCTIV clicks/simulate_clicks.py`` loads the label with
  ``nib.load(...).get_fdata()`` (nibabel arrays are indexed (i, j, k) = (x, y, z)), appends
  ``[int(c[0]), int(c[1]), int(c[2])]`` of the EDT argmax and ``clicks_to_gc_format`` copies
  those lists unchanged into ``"point"``: first all ``tumor`` points, then all ``background``.
  The participants' template (``Task1/interactive-baseline/process.py``, ``gc_to_swfastedit_format``)
  copies them back as voxel indices; the repository's README calls them "(x, y, z) coordinates".
  Example input ``Task1/test/input/<uuid>.json``: ``{"point": [109, 103, 353], "name": "tumor"}``
  (x, y < 200, z up to ~400 on a whole-body PET). -> ``axis_order=("x", "y", "z")``, voxel.
- ToothFairy3 (Grand Challenge "Multiple points", names ``Left_IAC`` / ``Right_IAC``, no
  background): ``AImageLab-zip/ToothFairy ToothFairy3/Interactive-Segmentation/simulate_clicks.py``
  reads the label with ``sitk.GetArrayFromImage`` (shape "(depth, height, width)"), samples on
  ``np.argwhere`` of it, asserts ``mask[x, y, z]`` and writes ``[x, y, z]`` -- its names, but
  they are array indices (axis 0 = z). So the point is ``[z, y, x]`` in our names. Per case it
  wrote ``<case>/<i>_clicks.json`` for i = 0..5: the first i ``Left_IAC`` points, then the first
  i ``Right_IAC`` points. -> ``axis_order=("z", "y", "x")``, voxel. (Participants' code, e.g. an
  nnInteractive submission, passes these points unchanged as indices into the same array.)
- TriALS 2025 task 2 (not on Grand Challenge; Synapse): ``xmed-lab/TriALS
  TriALS_2025_Interactive_Task_2/.../simulate_clicks_TriALS.py`` reads the label with nibabel and
  writes ``<case>_clicks.json`` = ``{"lesion": [[x, y, z], ...], "background": [...]}``: our
  "point lists" format, ``axis_order=("x", "y", "z")``, voxel (sample file
  ``TriALS_2025_Task_2/docker/template_interactive/sample-test-data/clicks/venous_0_clicks.json``).
  autoPET's own training clicks used the same layout with ``tumor`` / ``background``.

Grand Challenge "Multiple points"::

    {"version": {"major": 1, "minor": 0}, "type": "Multiple points",
     "points": [{"point": [a, b, c], "name": "tumor"}, ...]}

A positive click is named by its class (``classes[class_id]``: ``"tumor"``, ``"Left_IAC"``...),
a negative one ``"background"``. Points are written grouped by name, as the challenges wrote
them: the task's classes in ascending id order, then background; within a name in step order.
``coordinates="voxel"`` (default): integer indices in ``axis_order`` (default ("x", "y", "z"),
autoPET's). ``coordinates="world"``: physical millimetres, SimpleITK's
``TransformIndexToPhysicalPoint`` = origin + direction @ (index_xyz * spacing_xyz), always in
physical (x, y, z) order. The format has no step: reading gives the k-th point of each name step
k (the autoPET / ToothFairy3 convention, step k reveals the k-th click of each kind). Reading
checks that voxel coordinates are integers and, given the image ``shape``, inside the image (an
axis-order mistake usually lands outside a non-cubic image).

Point lists (TriALS; autoPET's training clicks)::

    {"lesion": [[a, b, c], ...], "background": [[a, b, c], ...]}

One key per class name of the task (empty list if none) and ``"background"``; the k-th point of
a list is step k. Same ``axis_order`` / ``coordinates`` options as "Multiple points".

segloop JSON: ``{"format": "segloop-interactions", "version": 1, "axis_order": ["z","y","x"],
"interactions": [Interaction.to_json(), ...]}``; any permutation of axis_order can be written and
is undone on reading. A native ``segloop-request`` (segloop.core.contract) reads the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core.records import (
    AXIS_ORDER,
    Geometry,
    Interaction,
    SegloopError,
)

GC_TYPE = "Multiple points"
GC_VERSION = {"major": 1, "minor": 0}
BACKGROUND_NAME = "background"


# --------------------------------------------------------------------------- conventions
@dataclass(frozen=True)
class ClickFileFormat:
    """How a challenge published its clicks: file kind, point axis order, units, names.

    kind: "gc" (Grand Challenge "Multiple points") or "lists" (``{name: [point, ...]}``).
    axis_order: the order of a voxel point's three numbers, in the names of our array axes.
    coordinates: "voxel" (integer indices) or "world" (mm, physical x, y, z).
    source: where the convention was read (repository and file).
    """

    challenge: str
    kind: str
    axis_order: tuple[str, str, str]
    coordinates: str = "voxel"
    background_name: str = BACKGROUND_NAME
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "challenge": self.challenge,
            "kind": self.kind,
            "axis_order": list(self.axis_order),
            "coordinates": self.coordinates,
            "background_name": self.background_name,
            "source": self.source,
        }


# A task built on none of the three protocols: Grand Challenge points as autoPET IV wrote them.
GENERIC_FORMAT = ClickFileFormat(
    "generic", "gc", ("x", "y", "z"), source="Grand Challenge, as autoPET IV"
)


# --------------------------------------------------------------------------- coordinates
def _matrix(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    spacing_xyz = np.asarray(geometry.spacing_mm[::-1], dtype=float)
    origin = np.asarray(geometry.origin_mm, dtype=float)
    return direction, spacing_xyz, origin


def index_to_world(index_zyx: Sequence[int], geometry: Geometry) -> list[float]:
    """Array index (z, y, x) -> physical point (x, y, z) in mm, as SimpleITK's TransformIndexToPhysicalPoint."""
    direction, spacing_xyz, origin = _matrix(geometry)
    return [float(v) for v in origin + direction @ (np.asarray(index_zyx[::-1]) * spacing_xyz)]


def world_to_index(point_xyz: Sequence[float], geometry: Geometry) -> tuple[int, int, int]:
    """Physical point (x, y, z) in mm -> nearest array index (z, y, x)."""
    direction, spacing_xyz, origin = _matrix(geometry)
    continuous = np.linalg.solve(direction, np.asarray(point_xyz, dtype=float) - origin)
    index_xyz = np.rint(continuous / spacing_xyz).astype(int)
    return tuple(int(v) for v in index_xyz[::-1])  # type: ignore[return-value]


def encode_point(
    index_zyx: Sequence[int],
    coordinates: str = "voxel",
    axis_order: Sequence[str] = ("x", "y", "z"),
    geometry: Geometry | None = None,
) -> list[int] | list[float]:
    """One array index (z, y, x) as a file point: voxel indices in ``axis_order``, or world mm."""
    if coordinates == "voxel":
        permutation = _permutation(axis_order, "axis_order")
        return [int(index_zyx[p]) for p in permutation]
    if coordinates == "world":
        if geometry is None:
            raise SegloopError("world coordinates need the case geometry")
        if [str(a).lower() for a in axis_order] != ["x", "y", "z"]:
            raise SegloopError("world coordinates are physical (x, y, z); axis_order cannot change")
        return index_to_world(index_zyx, geometry)
    raise SegloopError(f"coordinates must be voxel or world, not {coordinates!r}")


def decode_point(
    raw: Sequence[Any],
    coordinates: str = "voxel",
    axis_order: Sequence[str] = ("x", "y", "z"),
    geometry: Geometry | None = None,
    shape: Sequence[int] | None = None,
    where: str = "point",
) -> tuple[int, int, int]:
    """A file point back to an array index (z, y, x); checks integers and bounds (given ``shape``)."""
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise SegloopError(f"{where}: {raw!r} is not three numbers") from None
    if len(values) != 3 or not all(np.isfinite(values)):
        raise SegloopError(f"{where}: {raw!r} is not three finite numbers")
    if coordinates == "voxel":
        if any(v != int(v) for v in values):
            raise SegloopError(
                f"{where}: voxel coordinates {raw} are not integers (world mm? use coordinates=world)"
            )
        permutation = _permutation(axis_order, "axis_order")
        zyx = [0, 0, 0]
        for written, position in enumerate(permutation):
            zyx[position] = int(values[written])
        index = tuple(zyx)
    elif coordinates == "world":
        if geometry is None:
            raise SegloopError(f"{where}: world coordinates need the case geometry")
        index = world_to_index(values, geometry)
    else:
        raise SegloopError(f"coordinates must be voxel or world, not {coordinates!r}")
    if shape is not None and not all(0 <= v < n for v, n in zip(index, shape, strict=True)):
        order = ", ".join(axis_order) if coordinates == "voxel" else "x, y, z mm"
        raise SegloopError(
            f"{where}: {list(raw)} read as ({order}) is voxel (z, y, x) = {index}, outside the "
            f"image of shape {tuple(shape)} (wrong axis order?)"
        )
    return index  # type: ignore[return-value]


def _name_rank(interaction: Interaction, classes: Mapping[int, str]) -> int:
    """Where a click's name comes in a file: the classes in ascending id, then background."""
    if not interaction.positive:
        return len(classes)
    return sorted(classes).index(interaction.class_id)


def _clicks_only(interactions: Iterable[Interaction], classes: Mapping[int, str]) -> list:
    out = []
    for interaction in interactions:
        if interaction.kind != "click":
            raise SegloopError(f"click files hold clicks only, not a {interaction.kind}")
        if interaction.positive and interaction.class_id not in classes:
            raise SegloopError(f"a click of class {interaction.class_id} not in {sorted(classes)}")
        out.append(interaction)
    return sorted(out, key=lambda i: _name_rank(i, classes))  # stable: step order kept


def _steps_by_name(
    named: Iterable[tuple[str, Any]],
    classes: Mapping[int, str],
    decode: Any,
    background_name: str,
    background_class_id: int | None,
    source: str,
) -> tuple[Interaction, ...]:
    """(name, raw point) in file order -> clicks, the k-th point of each name at step k."""
    by_name = {name: class_id for class_id, name in classes.items()}
    negative_class = min(classes) if background_class_id is None else background_class_id
    rank: dict[str, int] = {}
    out: list[tuple[int, int, Interaction]] = []
    for order, (name, raw) in enumerate(named):
        if name == background_name:
            class_id, positive = negative_class, False
        elif name in by_name:
            class_id, positive = by_name[name], True
        else:
            raise SegloopError(
                f"{source}: point {order} is named {name!r}, expected one of "
                f"{', '.join(list(by_name) + [background_name])}"
            )
        zyx = decode(raw, f"{source}: point {order} ({name})")
        rank[name] = rank.get(name, 0) + 1
        step = rank[name]
        out.append((step, order, Interaction("click", class_id, positive, step, (zyx,))))
    return tuple(i for _, _, i in sorted(out, key=lambda t: (t[0], t[1])))


# --------------------------------------------------------------------------- Grand Challenge
def to_gc_points(
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
    axis_order: Sequence[str] = ("x", "y", "z"),
) -> dict[str, Any]:
    """Clicks as a Grand Challenge "Multiple points" object (other kinds are refused).

    Points grouped by name (classes in ascending id, then background), each group in step order.
    """
    points = [
        {
            "point": encode_point(i.coords[0], coordinates, axis_order, geometry),
            "name": classes[i.class_id] if i.positive else background_name,
        }
        for i in _clicks_only(interactions, classes)
    ]
    return {"version": dict(GC_VERSION), "type": GC_TYPE, "points": points}


def from_gc_points(
    data: Mapping[str, Any],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
    background_class_id: int | None = None,
    source: str = "points",
    axis_order: Sequence[str] = ("x", "y", "z"),
    shape: Sequence[int] | None = None,
) -> tuple[Interaction, ...]:
    """Read "Multiple points" back into clicks; the k-th point of each name becomes step k.

    A background point belongs to ``background_class_id`` (default: the smallest class id).
    ``shape`` (z, y, x): refuse points outside the image.
    """
    if not isinstance(data, Mapping) or data.get("type") != GC_TYPE:
        raise SegloopError(f"{source}: not a Grand Challenge {GC_TYPE!r} object")
    entries = data.get("points", [])
    if not isinstance(entries, list):
        raise SegloopError(f"{source}: 'points' is not a list")
    named = []
    for order, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "point" not in entry or "name" not in entry:
            raise SegloopError(f"{source}: point {order} needs 'point' [a, b, c] and 'name'")
        named.append((str(entry["name"]), entry["point"]))

    def decode(raw: Any, where: str) -> tuple[int, int, int]:
        return decode_point(raw, coordinates, axis_order, geometry, shape, where)

    return _steps_by_name(named, classes, decode, background_name, background_class_id, source)


def write_gc_points(
    path: str | Path,
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    **options: Any,
) -> None:
    Path(path).write_text(
        json.dumps(to_gc_points(interactions, classes, **options), indent=1), encoding="utf-8"
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SegloopError(f"{path}: not a readable JSON file ({error})") from None


def read_gc_points(
    path: str | Path, classes: Mapping[int, str], **options: Any
) -> tuple[Interaction, ...]:
    path = Path(path)
    return from_gc_points(_read_json(path), classes, source=str(path), **options)


# --------------------------------------------------------------------------- point lists
def to_point_lists(
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
    axis_order: Sequence[str] = ("x", "y", "z"),
) -> dict[str, list]:
    """Clicks as ``{class name: [point, ...], ..., "background": [...]}`` (TriALS, autoPET training)."""
    out: dict[str, list] = {classes[c]: [] for c in sorted(classes)}
    out[background_name] = []
    for i in _clicks_only(interactions, classes):
        name = classes[i.class_id] if i.positive else background_name
        out[name].append(encode_point(i.coords[0], coordinates, axis_order, geometry))
    return out


def from_point_lists(
    data: Mapping[str, Any],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
    background_class_id: int | None = None,
    source: str = "points",
    axis_order: Sequence[str] = ("x", "y", "z"),
    shape: Sequence[int] | None = None,
) -> tuple[Interaction, ...]:
    """Read point lists back into clicks; the k-th point of each list becomes step k."""
    if not isinstance(data, Mapping) or not all(isinstance(v, list) for v in data.values()):
        raise SegloopError(f"{source}: not a {{name: [point, ...]}} object")
    named = [(str(name), raw) for name, points in data.items() for raw in points]

    def decode(raw: Any, where: str) -> tuple[int, int, int]:
        return decode_point(raw, coordinates, axis_order, geometry, shape, where)

    return _steps_by_name(named, classes, decode, background_name, background_class_id, source)


# --------------------------------------------------------------------------- by convention
def encode_clicks(
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    file_format: ClickFileFormat,
    geometry: Geometry | None = None,
) -> dict[str, Any]:
    """Clicks as the JSON object of ``file_format`` (a challenge's ``click_format``)."""
    writer = {"gc": to_gc_points, "lists": to_point_lists}.get(file_format.kind)
    if writer is None:
        raise SegloopError(f"unknown click file kind {file_format.kind!r}: use gc or lists")
    return writer(
        interactions,
        classes,
        coordinates=file_format.coordinates,
        geometry=geometry,
        background_name=file_format.background_name,
        axis_order=file_format.axis_order,
    )


def decode_clicks(
    data: Mapping[str, Any],
    classes: Mapping[int, str],
    file_format: ClickFileFormat,
    geometry: Geometry | None = None,
    shape: Sequence[int] | None = None,
    source: str = "clicks",
) -> tuple[Interaction, ...]:
    """The inverse of ``encode_clicks``."""
    reader = {"gc": from_gc_points, "lists": from_point_lists}.get(file_format.kind)
    if reader is None:
        raise SegloopError(f"unknown click file kind {file_format.kind!r}: use gc or lists")
    return reader(
        data,
        classes,
        coordinates=file_format.coordinates,
        geometry=geometry,
        background_name=file_format.background_name,
        source=source,
        axis_order=file_format.axis_order,
        shape=shape,
    )


def read_clicks(
    path: str | Path,
    classes: Mapping[int, str],
    file_format: ClickFileFormat,
    geometry: Geometry | None = None,
    shape: Sequence[int] | None = None,
) -> tuple[Interaction, ...]:
    path = Path(path)
    return decode_clicks(_read_json(path), classes, file_format, geometry, shape, str(path))


# --------------------------------------------------------------------------- segloop JSON
def to_segloop_json(
    interactions: Iterable[Interaction], axis_order: Sequence[str] = AXIS_ORDER
) -> dict[str, Any]:
    """segloop's own interaction list; coordinates written in ``axis_order`` (a permutation of z, y, x)."""
    permutation = _permutation(axis_order, "axis_order")
    items = []
    for interaction in interactions:
        data = interaction.to_json()
        data["coords"] = [[c[p] for p in permutation] for c in data["coords"]]
        items.append(data)
    return {
        "format": "segloop-interactions",
        "version": 1,
        "axis_order": list(axis_order),
        "interactions": items,
    }


def from_segloop_json(
    data: Mapping[str, Any], source: str = "interactions"
) -> tuple[Interaction, ...]:
    """Read segloop interactions (or a native segloop-request); coordinates back to (z, y, x)."""
    if not isinstance(data, Mapping) or "interactions" not in data:
        raise SegloopError(f"{source}: no 'interactions' list")
    axis_order = data.get("axis_order")
    if axis_order is None:
        raise SegloopError(f"{source}: no 'axis_order' (coordinates would be ambiguous)")
    permutation = _permutation(axis_order, source)
    inverse = [permutation.index(i) for i in range(3)]
    out = []
    for k, item in enumerate(data["interactions"]):
        try:
            item = dict(item)
            item["coords"] = [[c[q] for q in inverse] for c in item["coords"]]
            out.append(Interaction.from_json(item))
        except (KeyError, TypeError, ValueError, IndexError):
            raise SegloopError(f"{source}: interaction {k} is malformed") from None
    return tuple(out)


def _permutation(axis_order: Sequence[str], source: str) -> list[int]:
    names = [str(a).lower() for a in axis_order]
    if sorted(names) != sorted(AXIS_ORDER):
        raise SegloopError(
            f"{source}: axis_order must be a permutation of z, y, x, not {list(axis_order)}"
        )
    return [AXIS_ORDER.index(n) for n in names]  # position in (z, y, x) of each written axis


def write_segloop_json(
    path: str | Path, interactions: Iterable[Interaction], axis_order: Sequence[str] = AXIS_ORDER
) -> None:
    Path(path).write_text(
        json.dumps(to_segloop_json(interactions, axis_order), indent=1), encoding="utf-8"
    )


def read_segloop_json(path: str | Path) -> tuple[Interaction, ...]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SegloopError(f"{path}: not a readable JSON file ({error})") from None
    return from_segloop_json(data, str(path))
