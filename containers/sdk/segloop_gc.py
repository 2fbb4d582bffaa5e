"""segloop participant SDK, Grand Challenge side: the same ``predict(case, request)`` as a
Grand Challenge-style algorithm container.

One file, numpy only; copy it into your image next to ``segloop_sdk.py`` (``segloop sdk init
DIR --gc autopet`` does), then

    from segloop_gc import serve_gc

    if __name__ == "__main__":
        serve_gc(predict, "autopet")     # or "toothfairy3"

Per job it reads what Grand Challenge (and segloop's ``docker:gc-<preset>+IMAGE`` back-end)
gives the container:

    /input/images/<slug>/<uuid>.mha    one per image socket (uncompressed or zlib MetaImage)
    /input/<clicks slug>.json          "Multiple points": {"points": [{"point": [...],
                                       "name": "tumor"}, ...]}

and writes ``/output/images/<output slug>/<uuid>.mha`` (uint8, the input's geometry). ``case``
and ``request`` are the records ``segloop_sdk`` gives: channels in the interface's socket
order, (z, y, x) arrays and click coordinates whatever the challenge's point order, each point
a click whose ``step`` is its place among the clicks of its name (1, 2, ...), and
``request.step`` the largest such count: the step of the native contract. Grand Challenge gives
no previous prediction (``request.previous_prediction`` is None).

The interfaces below are segloop's presets (``segloop.core.challenges``: ``Challenge.gc``);
segloop's tests check they agree.
"""

from __future__ import annotations

import json
import sys
import traceback
import zlib
from pathlib import Path

import numpy as np
from segloop_sdk import CaseInput, Geometry, Interaction, StepRequest

GC_INTERFACES = {
    "autopet": {
        "image_slugs": ["ct", "pet"],
        "clicks_slug": "lesion-clicks",
        "output_slug": "tumor-lesion-segmentation",
        "point_names": {1: "tumor"},
        "background_name": "background",
        "point_order": "xyz",
    },
    "toothfairy3": {
        "image_slugs": ["cbct"],
        "clicks_slug": "iac-clicks",
        "output_slug": "iac-segmentation",
        "point_names": {1: "Left_IAC", 2: "Right_IAC"},
        "background_name": None,
        "point_order": "zyx",
    },
}
MET_TYPES = {
    "MET_UCHAR": np.uint8,
    "MET_CHAR": np.int8,
    "MET_USHORT": np.uint16,
    "MET_SHORT": np.int16,
    "MET_UINT": np.uint32,
    "MET_INT": np.int32,
    "MET_FLOAT": np.float32,
    "MET_DOUBLE": np.float64,
}
# Header keys copied to the output, so it lies on the input's grid.
GEOMETRY_KEYS = ("TransformMatrix", "Offset", "CenterOfRotation", "AnatomicalOrientation")


def read_mha(path: Path) -> tuple[np.ndarray, dict]:
    """(array (z, y, x), header) of a single-file MetaImage (``ElementDataFile = LOCAL``)."""
    data = Path(path).read_bytes()
    header: dict = {}
    offset = 0
    while True:
        end = data.index(b"\n", offset)
        key, _, value = data[offset:end].decode().partition("=")
        header[key.strip()] = value.strip()
        offset = end + 1
        if key.strip() == "ElementDataFile":
            break
    if header["ElementDataFile"] != "LOCAL":
        raise ValueError(f"{path}: data in another file ({header['ElementDataFile']})")
    raw = data[offset:]
    if header.get("CompressedData", "False") == "True":
        raw = zlib.decompress(raw)
    dtype = np.dtype(MET_TYPES[header["ElementType"]])
    if header.get("ElementByteOrderMSB", header.get("BinaryDataByteOrderMSB")) == "True":
        dtype = dtype.newbyteorder(">")
    shape_xyz = [int(v) for v in header["DimSize"].split()]
    return np.frombuffer(raw, dtype=dtype).reshape(shape_xyz[::-1]), header


def write_mha(path: Path, labels: np.ndarray, header: dict) -> Path:
    """Write a uint8 label map (z, y, x) as an uncompressed MetaImage on ``header``'s grid."""
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True"]
    lines += ["BinaryDataByteOrderMSB = False", "CompressedData = False"]
    lines += [f"{k} = {header[k]}" for k in GEOMETRY_KEYS if k in header]
    lines += [
        f"ElementSpacing = {header['ElementSpacing']}",
        "DimSize = " + " ".join(str(n) for n in labels.shape[::-1]),
        "ElementType = MET_UCHAR",
        "ElementDataFile = LOCAL",
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = np.ascontiguousarray(labels, dtype=np.uint8).tobytes()
    path.write_bytes(("\n".join(lines) + "\n").encode() + body)
    return path


def geometry_of(header: dict) -> Geometry:
    spacing_xyz = [float(v) for v in header["ElementSpacing"].split()]
    origin = [float(v) for v in header.get("Offset", "0 0 0").split()]
    matrix = [float(v) for v in header.get("TransformMatrix", "1 0 0 0 1 0 0 0 1").split()]
    # MetaImage's TransformMatrix is column-major; SimpleITK's direction row-major.
    direction = tuple(np.asarray(matrix).reshape(3, 3).T.ravel().tolist())
    return Geometry(tuple(spacing_xyz[::-1]), tuple(origin), direction)


def gc_request(points: list, interface: dict, case_id: str) -> StepRequest:
    """The native request of a job's "Multiple points": clicks in (z, y, x), numbered by step."""
    by_name = {name: (class_id, True) for class_id, name in interface["point_names"].items()}
    if interface["background_name"]:
        by_name[interface["background_name"]] = (min(interface["point_names"]), False)
    counts: dict = {}
    interactions = []
    for point in points:
        if point["name"] not in by_name:
            raise ValueError(f"unknown point name {point['name']!r} (expected {sorted(by_name)})")
        class_id, positive = by_name[point["name"]]
        counts[point["name"]] = counts.get(point["name"], 0) + 1
        coords = [int(round(float(v))) for v in point["point"]]
        zyx = coords[::-1] if interface["point_order"] == "xyz" else coords
        interactions.append(
            Interaction("click", class_id, positive, counts[point["name"]], (tuple(zyx),))
        )
    step = max(counts.values(), default=0)
    return StepRequest(case_id, step, tuple(interactions), None)


def run_gc_job(predict_fn, preset: str, input_dir: Path, output_dir: Path) -> Path:
    """One Grand Challenge job: read the images and clicks, predict, write the output image."""
    interface = GC_INTERFACES[preset]
    channels, header, name = [], None, None
    for slug in interface["image_slugs"]:
        files = sorted((Path(input_dir) / "images" / slug).glob("*.mha"))
        if len(files) != 1:
            raise ValueError(f"images/{slug}/: expected one .mha file, found {len(files)}")
        array, this_header = read_mha(files[0])
        channels.append(np.asarray(array, dtype=np.float32))
        if header is None:
            header, name = this_header, files[0].name
    clicks = json.loads((Path(input_dir) / f"{interface['clicks_slug']}.json").read_text())
    case_id = Path(name).stem
    classes = {k: v for k, v in interface["point_names"].items()}
    case = CaseInput(case_id, tuple(channels), geometry_of(header), classes)
    labels = np.asarray(predict_fn(case, gc_request(clicks.get("points", []), interface, case_id)))
    if labels.shape != case.shape:
        raise ValueError(f"predict returned shape {labels.shape}, expected {case.shape}")
    out = Path(output_dir) / "images" / interface["output_slug"] / name
    return write_mha(out, labels, header)


def serve_gc(predict_fn, preset: str, input_dir="/input", output_dir="/output") -> None:
    """The container's main: one job, exit code 1 with the traceback on stderr if it fails."""
    if preset not in GC_INTERFACES:
        raise SystemExit(f"segloop_gc: unknown preset {preset!r} ({', '.join(GC_INTERFACES)})")
    try:
        path = run_gc_job(predict_fn, preset, Path(input_dir), Path(output_dir))
    except Exception:  # noqa: BLE001 - the traceback is the job's log
        traceback.print_exc()
        sys.stderr.flush()
        raise SystemExit(1) from None
    print(f"segloop_gc: wrote {path}")


__all__ = ["GC_INTERFACES", "read_mha", "run_gc_job", "serve_gc", "write_mha"]
