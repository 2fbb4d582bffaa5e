"""Click formats: Grand Challenge "Multiple points" JSON, point lists, CVPR 2025 npz, segloop JSON.

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

CVPR 2025 MedSegFM npz (CVPR25_iter_eval.py): keys ``imgs`` (z, y, x), ``spacing``, ``boxes``
(a list, one dict per class: ``z_min, z_max, z_mid, z_mid_y_min, z_mid_y_max, z_mid_x_min,
z_mid_x_max``, inclusive; written by get_boxes.py), ``clicks`` (a list, one
``{"fg": [[z, y, x], ...], "bg": [...]}`` per class), ``clicks_order`` and ``prev_pred``; the
model writes ``segs``. The evaluation script appends ``list(center)`` of array indices, so click
coordinates are (z, y, x) array indices even though its docstring says [x, y, z]; we follow the
code. List position i is the i-th class of the case in ascending id order (the challenge: sorted
unique ground-truth labels). ``clicks_order[i]`` has one entry per click step so far: "fg" or
"bg", or ``None`` when class i got no click at that step (its prediction was perfect;
CVPR25_iter_eval.py line 424 appends ``None``). A box's ``z_mid`` is the slice its 2D box was
taken on; our box interactions hold only the two corners, so the writer needs the middle slices
(``box_mid_slices``) or the ground truth to recompute them with get_boxes.py's rule
(:func:`box_mid_slice`, "slice_median"). ``spacing`` is written in array order
(z, y, x) by default (``spacing_order="xyz"`` for SimpleITK's order). Steps on reading: the boxes
are step 0, entry k of ``clicks_order`` is step k + 1 (a ``None`` entry is a step without a
click).

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


# --------------------------------------------------------------------------- CVPR 2025 npz
BOX_MID_SLICES = ("slice_median", "voxel_median")


def box_mid_slice(class_mask: np.ndarray, mid_slice: str = "slice_median") -> int | None:
    """The z of the MedSegFM box's 2D slice; None for an empty mask.

    ``"slice_median"`` (default; get_boxes.py at HEAD, ``mask3D_to_bbox`` lines 68-72): the
    distinct foreground slices ``S = np.unique(z)`` in ascending order, ``S[len(S) // 2]`` (for an
    even count the upper of the two middle slices).
    ``"voxel_median"`` (get_boxes.py before 1 May 2025): the z of the foreground voxel at index
    ``n // 2`` of all ``n`` foreground voxels in C order, i.e. the first z whose cumulative voxel
    count exceeds ``n // 2``.
    """
    per_slice = class_mask.reshape(class_mask.shape[0], -1).sum(axis=1)
    slices = np.flatnonzero(per_slice)
    if slices.size == 0:
        return None
    if mid_slice == "slice_median":
        return int(slices[slices.size // 2])
    if mid_slice == "voxel_median":
        cumulative = np.cumsum(per_slice)
        return int(np.searchsorted(cumulative, cumulative[-1] // 2, side="right"))
    raise SegloopError(f"unknown box mid_slice {mid_slice!r}: use slice_median or voxel_median")


def _box_dict(interaction: Interaction, z_mid: int) -> dict[str, int]:
    (z0, y0, x0), (z1, y1, x1) = interaction.coords[:2]
    return {
        "z_min": int(z0),
        "z_max": int(z1),
        "z_mid": int(z_mid),
        "z_mid_x_min": int(x0),
        "z_mid_y_min": int(y0),
        "z_mid_x_max": int(x1),
        "z_mid_y_max": int(y1),
    }


def _box_mid(
    class_id: int,
    box_mid_slices: Mapping[int, int] | None,
    label: np.ndarray | None,
    mid_slice: str,
) -> int:
    """A box's z_mid: given, else recomputed from the ground truth with get_boxes.py's rule."""
    if box_mid_slices is not None and class_id in box_mid_slices:
        return int(box_mid_slices[class_id])
    if label is not None:
        z_mid = box_mid_slice(np.asarray(label) == class_id, mid_slice)
        if z_mid is not None:
            return z_mid
        raise SegloopError(f"a box of class {class_id}, which the ground truth does not hold")
    raise SegloopError(
        f"the z_mid of the box of class {class_id}: give box_mid_slices or the label "
        "(a box's two corners do not tell which slice its 2D box was taken on)"
    )


def cvpr25_request(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    interactions: Iterable[Interaction],
    class_ids: Sequence[int],
    prev_pred: np.ndarray | None = None,
    box_mid_slices: Mapping[int, int] | None = None,
    spacing_order: str = "zyx",
    label: np.ndarray | None = None,
    box_mid_slice: str = "slice_median",
    step: int | None = None,
) -> dict[str, Any]:
    """The arrays of one CVPR25 request npz (pass to ``np.savez_compressed``).

    List position i holds the i-th of ``class_ids`` in ascending order; the challenge listed the
    classes present in the case's ground truth, so pass those to reproduce its positions.

    ``box_mid_slices``: the z_mid of each class's box; a box without one takes it from
    ``label`` (the ground truth) with :func:`box_mid_slice` ``(label == c,
    box_mid_slice)``, the rule of get_boxes.py ("slice_median"); with neither, SegloopError.
    A class without a box gets ``None`` in ``boxes``; no box at all -> no ``boxes`` key (as the
    challenge's box-less cases).

    ``clicks_order[i]`` has one entry per click step 1..``step`` (default: the last step with a
    click): "fg"/"bg", or ``None`` for a step at which class i got no click, as
    CVPR25_iter_eval.py appends (lines 413, 417 and 424). The format holds one click per class
    and step after the box (step 0): a click at step 0, or two for one class at one step, is a
    SegloopError.
    """
    order = sorted(int(c) for c in class_ids)
    position = {c: i for i, c in enumerate(order)}
    boxes: list[dict[str, int] | None] = [None] * len(order)
    clicks = [{"fg": [], "bg": []} for _ in order]
    kind_at: list[dict[int, str]] = [{} for _ in order]  # per class: step -> "fg" / "bg"
    for interaction in interactions:
        if interaction.class_id not in position:
            raise SegloopError(f"interaction of class {interaction.class_id} not in {order}")
        i = position[interaction.class_id]
        if interaction.kind == "box":
            mid = _box_mid(interaction.class_id, box_mid_slices, label, box_mid_slice)
            boxes[i] = _box_dict(interaction, mid)
        elif interaction.kind == "click":
            kind = "fg" if interaction.positive else "bg"
            if interaction.step < 1:
                raise SegloopError(
                    f"a click of class {interaction.class_id} at step {interaction.step}: the "
                    "CVPR25 npz numbers click steps from 1 (step 0 is the box)"
                )
            if interaction.step in kind_at[i]:
                raise SegloopError(
                    f"two clicks of class {interaction.class_id} at step {interaction.step}: the "
                    "CVPR25 npz holds one click per class and step"
                )
            clicks[i][kind].append([int(v) for v in interaction.coords[0]])
            kind_at[i][interaction.step] = kind
        else:
            raise SegloopError(f"the CVPR25 npz holds boxes and clicks, not a {interaction.kind}")
    last = max((k for steps in kind_at for k in steps), default=0) if step is None else int(step)
    clicks_order: list[list[str | None]] = [
        [steps.get(k) for k in range(1, last + 1)] for steps in kind_at
    ]
    if spacing_order not in ("zyx", "xyz"):
        raise SegloopError(f"spacing_order must be zyx or xyz, not {spacing_order!r}")
    spacing = list(spacing_mm) if spacing_order == "zyx" else list(spacing_mm)[::-1]
    arrays: dict[str, Any] = {
        "imgs": np.asarray(image),
        "spacing": np.asarray(spacing, dtype=float),
        "clicks": _object_array(clicks),
        "clicks_order": _object_array(clicks_order),
    }
    if any(b is not None for b in boxes):
        arrays["boxes"] = _object_array(boxes)
    if prev_pred is not None:
        arrays["prev_pred"] = np.asarray(prev_pred, dtype=np.uint8)
    return arrays


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1D object array of the items (never a 2D array, even when the lists have equal lengths)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def write_cvpr25_request(path: str | Path, *args: Any, **kwargs: Any) -> None:
    np.savez_compressed(Path(path), **cvpr25_request(*args, **kwargs))


def read_cvpr25_request(
    path: str | Path, class_ids: Sequence[int] | None = None, spacing_order: str = "zyx"
) -> dict[str, Any]:
    """A CVPR25 request npz -> {"image", "spacing_mm" (z, y, x), "interactions", "prev_pred", "box_mid_slices"}.

    ``class_ids``: the class id of each list position (default 1..n, as the challenge data).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=True) as data:
            content = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise SegloopError(f"{path}: not a readable npz file ({error})") from None
    if "imgs" not in content:
        raise SegloopError(f"{path}: no 'imgs' array")
    boxes = list(content["boxes"]) if "boxes" in content else []
    clicks = list(content["clicks"]) if "clicks" in content else []
    orders = list(content["clicks_order"]) if "clicks_order" in content else [[] for _ in clicks]
    count = max(len(boxes), len(clicks))
    ids = list(class_ids) if class_ids is not None else list(range(1, count + 1))
    if len(ids) < count:
        raise SegloopError(f"{path}: {count} classes in the file, {len(ids)} class ids given")
    interactions: list[Interaction] = []
    mids: dict[int, int] = {}
    for i, box in enumerate(boxes):
        if box is None:
            continue
        lo = (int(box["z_min"]), int(box["z_mid_y_min"]), int(box["z_mid_x_min"]))
        hi = (int(box["z_max"]), int(box["z_mid_y_max"]), int(box["z_mid_x_max"]))
        interactions.append(Interaction("box", int(ids[i]), True, 0, (lo, hi)))
        if "z_mid" in box:
            mids[int(ids[i])] = int(box["z_mid"])
    per_step: list[tuple[int, int, Interaction]] = []
    for i, (entry, order) in enumerate(zip(clicks, orders, strict=False)):
        taken = {"fg": 0, "bg": 0}
        for k, kind in enumerate(order or []):
            if kind is None:
                continue
            point = entry[kind][taken[kind]]
            taken[kind] += 1
            zyx = tuple(int(v) for v in point)
            per_step.append(
                (k + 1, i, Interaction("click", int(ids[i]), kind == "fg", k + 1, (zyx,)))  # type: ignore[arg-type]
            )
    interactions.extend(i for _, _, i in sorted(per_step, key=lambda t: (t[0], t[1])))
    spacing = [float(v) for v in content.get("spacing", [1.0, 1.0, 1.0])]
    if spacing_order == "xyz":
        spacing = spacing[::-1]
    return {
        "image": content["imgs"],
        "spacing_mm": tuple(spacing),
        "interactions": tuple(interactions),
        "prev_pred": content.get("prev_pred"),
        "box_mid_slices": mids,
    }


def write_cvpr25_response(path: str | Path, segs: np.ndarray) -> None:
    np.savez_compressed(Path(path), segs=np.asarray(segs, dtype=np.uint8))


def read_cvpr25_response(path: str | Path) -> np.ndarray:
    """The model's ``segs`` array from a CVPR25 output npz."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "segs" not in data.files:
                raise SegloopError(f"{path}: no 'segs' array (keys: {', '.join(data.files)})")
            return np.asarray(data["segs"])
    except (OSError, ValueError) as error:
        raise SegloopError(f"{path}: not a readable npz file ({error})") from None


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
