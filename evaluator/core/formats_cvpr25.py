"""The CVPR 2025 MedSegFM npz exchange: what the harness writes for a step, what the model returns.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segloop.core.records import Interaction, SegloopError

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
