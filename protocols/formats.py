"""Click formats: Grand Challenge "Multiple points" JSON, CVPR 2025 npz, segloop's own JSON.

Inside segloop every coordinate is an array index in (z, y, x) order (evaluator.records). Each
format states its own order, and every reader/writer here converts explicitly.

Grand Challenge "Multiple points" (autoPET IV, ToothFairy3)::

    {"version": {"major": 1, "minor": 0}, "type": "Multiple points",
     "points": [{"point": [x, y, z], "name": "tumor"}, ...]}

``point`` is in (x, y, z) order, the reverse of our arrays. autoPET IV's interactive track
published *voxel indices*: its click script reads the label with nibabel (whose arrays are
indexed (x, y, z)) and writes ``[int(i), int(j), int(k)]`` of the EDT argmax; its
``swfast_to_gc_format`` copies those lists unchanged into "point" and names them "tumor" /
"background". So the default here is ``coordinates="voxel"`` with (x, y, z) = our index reversed.
``coordinates="world"`` writes physical millimetres (origin + direction @ (index * spacing), in
SimpleITK's x, y, z) for consumers that expect Grand Challenge's world-space convention.
Names: a positive click is named by its class (``"tumor"``, ``"Left_IAC"``, ``"Right_IAC"``), a
negative click ``"background"``. The format has no step: reading assigns the k-th point of each
name to step k (the autoPET / ToothFairy3 convention: step k reveals the k-th click of each kind).

CVPR 2025 MedSegFM npz (CVPR25_iter_eval.py): keys ``imgs`` (z, y, x), ``spacing``, ``boxes``
(a list, one dict per class: ``z_min, z_max, z_mid, z_mid_y_min, z_mid_y_max, z_mid_x_min,
z_mid_x_max``, inclusive), ``clicks`` (a list, one ``{"fg": [[z, y, x], ...], "bg": [...]}``
per class), ``clicks_order`` (a list per class of "fg"/"bg" in the order given) and
``prev_pred``; the model writes ``segs``. The evaluation script appends ``list(center)`` of
array indices, so click coordinates are (z, y, x) array indices even though its docstring says
[x, y, z]; we follow the code. List position i is the i-th class of the case in ascending id
order (the challenge: sorted unique ground-truth labels). ``spacing`` is written in array
order (z, y, x) by default (``spacing_order="xyz"`` for SimpleITK's order). Steps on reading: the
boxes are step 0, the k-th click of a class is step k (exact when every class got a click at
every step, as the challenge data had).

segloop JSON: ``{"format": "segloop-interactions", "version": 1, "axis_order": ["z","y","x"],
"interactions": [Interaction.to_json(), ...]}``; any permutation of axis_order can be written and
is undone on reading. A native ``segloop-request`` (containers.contract) reads the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.records import (
    AXIS_ORDER,
    CaseInput,
    Geometry,
    Interaction,
    SegloopError,
    StepRequest,
)

GC_TYPE = "Multiple points"
GC_VERSION = {"major": 1, "minor": 0}
BACKGROUND_NAME = "background"


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


# --------------------------------------------------------------------------- Grand Challenge
def to_gc_points(
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
) -> dict[str, Any]:
    """Clicks as a Grand Challenge "Multiple points" object (other kinds are refused)."""
    if coordinates not in ("voxel", "world"):
        raise SegloopError(f"coordinates must be voxel or world, not {coordinates!r}")
    if coordinates == "world" and geometry is None:
        raise SegloopError("world coordinates need the case geometry")
    points = []
    for interaction in interactions:
        if interaction.kind != "click":
            raise SegloopError(
                f"Grand Challenge 'Multiple points' holds clicks only, not a {interaction.kind}"
            )
        zyx = interaction.coords[0]
        point: list[float] | list[int]
        if coordinates == "voxel":
            point = [int(v) for v in zyx[::-1]]
        else:
            point = index_to_world(zyx, geometry)  # type: ignore[arg-type]
        name = classes[interaction.class_id] if interaction.positive else background_name
        points.append({"point": point, "name": name})
    return {"version": dict(GC_VERSION), "type": GC_TYPE, "points": points}


def from_gc_points(
    data: Mapping[str, Any],
    classes: Mapping[int, str],
    coordinates: str = "voxel",
    geometry: Geometry | None = None,
    background_name: str = BACKGROUND_NAME,
    background_class_id: int | None = None,
    source: str = "points",
) -> tuple[Interaction, ...]:
    """Read "Multiple points" back into clicks; the k-th point of each name becomes step k.

    A background point belongs to ``background_class_id`` (default: the smallest class id).
    """
    if not isinstance(data, Mapping) or data.get("type") != GC_TYPE:
        raise SegloopError(f"{source}: not a Grand Challenge {GC_TYPE!r} object")
    if coordinates == "world" and geometry is None:
        raise SegloopError(f"{source}: world coordinates need the case geometry")
    by_name = {name: class_id for class_id, name in classes.items()}
    negative_class = min(classes) if background_class_id is None else background_class_id
    rank: dict[str, int] = {}
    out: list[tuple[int, int, Interaction]] = []
    for order, entry in enumerate(data.get("points", [])):
        try:
            name = str(entry["name"])
            raw = [float(v) for v in entry["point"]]
        except (KeyError, TypeError, ValueError):
            raise SegloopError(
                f"{source}: point {order} needs 'point' [x, y, z] and 'name'"
            ) from None
        if len(raw) != 3:
            raise SegloopError(f"{source}: point {order} has {len(raw)} coordinates, not 3")
        if name == background_name:
            class_id, positive = negative_class, False
        elif name in by_name:
            class_id, positive = by_name[name], True
        else:
            raise SegloopError(
                f"{source}: point {order} is named {name!r}, expected one of "
                f"{', '.join(list(by_name) + [background_name])}"
            )
        if coordinates == "voxel":
            zyx = tuple(int(round(v)) for v in raw[::-1])
        else:
            zyx = world_to_index(raw, geometry)  # type: ignore[arg-type]
        rank[name] = rank.get(name, 0) + 1
        step = rank[name]
        out.append((step, order, Interaction("click", class_id, positive, step, (zyx,))))  # type: ignore[arg-type]
    return tuple(i for _, _, i in sorted(out, key=lambda t: (t[0], t[1])))


def write_gc_points(
    path: str | Path,
    interactions: Iterable[Interaction],
    classes: Mapping[int, str],
    **options: Any,
) -> None:
    Path(path).write_text(
        json.dumps(to_gc_points(interactions, classes, **options), indent=1), encoding="utf-8"
    )


def read_gc_points(
    path: str | Path, classes: Mapping[int, str], **options: Any
) -> tuple[Interaction, ...]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SegloopError(f"{path}: not a readable JSON file ({error})") from None
    return from_gc_points(data, classes, source=str(path), **options)


# --------------------------------------------------------------------------- CVPR 2025 npz
def _box_dict(interaction: Interaction, z_mid: int | None) -> dict[str, int]:
    (z0, y0, x0), (z1, y1, x1) = interaction.coords[:2]
    return {
        "z_min": int(z0),
        "z_max": int(z1),
        "z_mid": int((z0 + z1) // 2 if z_mid is None else z_mid),
        "z_mid_x_min": int(x0),
        "z_mid_y_min": int(y0),
        "z_mid_x_max": int(x1),
        "z_mid_y_max": int(y1),
    }


def cvpr25_request(
    image: np.ndarray,
    spacing_mm: Sequence[float],
    interactions: Iterable[Interaction],
    class_ids: Sequence[int],
    prev_pred: np.ndarray | None = None,
    box_mid_slices: Mapping[int, int] | None = None,
    spacing_order: str = "zyx",
) -> dict[str, Any]:
    """The arrays of one CVPR25 request npz (pass to ``np.savez_compressed``).

    ``box_mid_slices``: the z_mid of each class's box (``protocols.sakinis.box_mid_slice``);
    our box interactions hold two corners only, so without it z_mid = (z_min + z_max) // 2.
    A class without a box gets ``None`` in ``boxes``; no box at all -> no ``boxes`` key (as the
    challenge's box-less cases).
    """
    order = sorted(int(c) for c in class_ids)
    position = {c: i for i, c in enumerate(order)}
    boxes: list[dict[str, int] | None] = [None] * len(order)
    clicks = [{"fg": [], "bg": []} for _ in order]
    clicks_order: list[list[str]] = [[] for _ in order]
    for interaction in interactions:
        if interaction.class_id not in position:
            raise SegloopError(f"interaction of class {interaction.class_id} not in {order}")
        i = position[interaction.class_id]
        if interaction.kind == "box":
            mid = None if box_mid_slices is None else box_mid_slices.get(interaction.class_id)
            boxes[i] = _box_dict(interaction, mid)
        elif interaction.kind == "click":
            kind = "fg" if interaction.positive else "bg"
            clicks[i][kind].append([int(v) for v in interaction.coords[0]])
            clicks_order[i].append(kind)
        else:
            raise SegloopError(f"the CVPR25 npz holds boxes and clicks, not a {interaction.kind}")
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


def cvpr25_request_from_step(
    case_input: CaseInput,
    request: StepRequest,
    box_mid_slices: Mapping[int, int] | None = None,
    channel: int = 0,
) -> dict[str, Any]:
    """The CVPR25 npz arrays of one loop step (image channel ``channel``, all interactions so far)."""
    return cvpr25_request(
        case_input.channels[channel],
        case_input.geometry.spacing_mm,
        request.interactions,
        sorted(case_input.classes),
        request.previous_prediction,
        box_mid_slices,
    )


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
