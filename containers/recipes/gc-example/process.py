"""A Grand Challenge-style interactive algorithm (autoPET IV interface), numpy only.

Reads   /input/images/pet/<uuid>.mha, /input/images/ct/<uuid>.mha,
        /input/lesion-clicks.json ("Multiple points", voxel indices [x, y, z], names
        "tumor" / "background"), /input/inputs.json
Writes  /output/images/tumor-lesion-segmentation/<uuid>.mha (uint8, PET geometry)

The "model" puts a ball of BALL_VOXELS around every tumor click and clears one around every
background click. It knows nothing of segloop: segloop's GC adapter must give it the same
files Grand Challenge would.
"""

import json
import sys
import zlib
from pathlib import Path

import numpy as np

INPUT = Path("/input")
OUTPUT = Path("/output")
BALL_VOXELS = 2
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


def read_mha(path):
    """(array (z, y, x), header dict) of a single-file MetaImage."""
    data = path.read_bytes()
    header = {}
    offset = 0
    while True:
        end = data.index(b"\n", offset)
        key, _, value = data[offset:end].decode().partition("=")
        header[key.strip()] = value.strip()
        offset = end + 1
        if key.strip() == "ElementDataFile":
            break
    raw = data[offset:]
    if header.get("CompressedData", "False") == "True":
        raw = zlib.decompress(raw)
    shape_xyz = [int(v) for v in header["DimSize"].split()]
    dtype = np.dtype(MET_TYPES[header["ElementType"]])
    if header.get("ElementByteOrderMSB", header.get("BinaryDataByteOrderMSB", "False")) == "True":
        dtype = dtype.newbyteorder(">")
    return np.frombuffer(raw, dtype=dtype).reshape(shape_xyz[::-1]), header


def write_mha(path, array, header):
    keys = (
        "ObjectType",
        "NDims",
        "BinaryData",
        "BinaryDataByteOrderMSB",
        "CompressedData",
        "TransformMatrix",
        "Offset",
        "CenterOfRotation",
        "AnatomicalOrientation",
        "ElementSpacing",
        "DimSize",
        "ElementType",
        "ElementDataFile",
    )
    values = dict(header)
    values.update(
        ObjectType="Image",
        BinaryData="True",
        BinaryDataByteOrderMSB="False",
        CompressedData="False",
        ElementType="MET_UCHAR",
        ElementDataFile="LOCAL",
        DimSize=" ".join(str(n) for n in array.shape[::-1]),
    )
    values.pop("CompressedDataSize", None)
    text = "".join(f"{k} = {values[k]}\n" for k in keys if k in values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main():
    interfaces = json.loads((INPUT / "inputs.json").read_text())
    print("sockets:", sorted(item["interface"]["slug"] for item in interfaces))
    pet_path = sorted((INPUT / "images" / "pet").glob("*.mha"))[0]
    pet, header = read_mha(pet_path)
    clicks = json.loads((INPUT / "lesion-clicks.json").read_text())
    assert clicks["type"] == "Multiple points", clicks["type"]
    labels = np.zeros(pet.shape, dtype=np.uint8)
    grid = np.ogrid[tuple(slice(0, n) for n in pet.shape)]
    for wanted, value in (("tumor", 1), ("background", 0)):
        for point in clicks["points"]:
            if point["name"] != wanted:
                continue
            x, y, z = point["point"]
            inside = (grid[0] - z) ** 2 + (grid[1] - y) ** 2 + (grid[2] - x) ** 2 <= BALL_VOXELS**2
            labels[inside] = value
    write_mha(OUTPUT / "images" / "tumor-lesion-segmentation" / pet_path.name, labels, header)
    print(f"{int(labels.sum())} voxels segmented from {len(clicks['points'])} clicks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
