"""Label images from participants: self-contained files only, sizes checked before any data.

One reader for every place a participant's image reaches the harness: the native contract's
``prediction.npy``, a Grand Challenge container's output in the loop, ``segloop gc-evaluate``
and ``segloop codabench-score``. Accepted:

* ``.npy``: a plain numeric array (bool, int, uint, float), no pickle, no structured dtype;
* NIfTI-1 in one file (``.nii``, ``.nii.gz``);
* MetaImage with inline data (``.mha``: ``ElementDataFile = LOCAL``);
* NRRD with inline data (``.nrrd``, raw or gzip encoding).

Refused with a reason: detached headers (``.mhd``, ``.hdr/.img``, ``.nhdr``, a NRRD ``data
file``, an ``ElementDataFile`` other than LOCAL), offsets or skips into other data, more than one
component per voxel, and any header whose dimensions and voxel type do not give exactly the
expected shape. The header is checked *before* any data is decompressed, and decompression
stops at the size the header announced, so neither a ``/dev/zero`` data file nor a gzip bomb
can make the harness allocate more than one label volume.

Geometry (spacing, origin, direction) is SimpleITK's, as for every other image segloop reads:
the checked header and data are written, re-serialised from what was understood (unknown keys
dropped), to a private temporary file that SimpleITK then reads with the reader of the format
the header was checked as (:data:`segloop.core.images.IMAGE_IO`), never one chosen by content:
voxel bytes that happen to form an HDF5 or DICOM file stay voxel bytes. The participant's file
is never given to SimpleITK or any other library by its path.
"""

from __future__ import annotations

import io as _io
import os
import re
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from segloop.core import images, owners, untrusted
from segloop.core.records import Geometry, SegloopError
from segloop.core.untrusted import RefusedFile

#: Prefix of the private folders that hold a checked copy while SimpleITK reads it.
PRIVATE_COPY_PREFIX = "segloop-untrusted"
#: Room for headers (NIfTI extensions, long MetaImage/NRRD headers) beyond the voxel data.
HEADER_ALLOWANCE_BYTES = 1 << 20
#: Extensions accepted for participants' image files (``.npy`` is the native contract's).
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".nrrd")
#: Headers whose voxel data sit in another file (refused), and such data files.
DETACHED_EXTENSIONS = (".mhd", ".hdr", ".nhdr")
DETACHED_DATA_EXTENSIONS = (".img", ".img.gz", ".raw", ".zraw")
_MAX_TEXT_HEADER_BYTES = 65536
_MAX_GZIP_MEMBERS = 16  # a real file has one; each costs a decompressor
_INFLATE_SLICE_BYTES = 1 << 20
_NIFTI1_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
                  1024: "i8", 1280: "u8"}  # fmt: skip
_META_DTYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2",
                "MET_UINT": "u4", "MET_INT": "i4", "MET_ULONG": "u4", "MET_LONG": "i4",
                "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8", "MET_FLOAT": "f4",
                "MET_DOUBLE": "f8"}  # fmt: skip
_NRRD_DTYPES = {
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i1": ("signed char", "int8", "int8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": ("longlong", "long long", "long long int", "signed long long",
           "signed long long int", "int64", "int64_t"),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",),
    "f8": ("double",),
}  # fmt: skip
_NRRD_TYPE_OF = {name: code for code, names in _NRRD_DTYPES.items() for name in names}
# MetaImage keys passed through to SimpleITK (geometry only), each group one key.
_META_GEOMETRY_KEYS = (
    ("Offset", "Position", "Origin"),
    ("TransformMatrix", "Rotation", "Orientation"),
    ("ElementSpacing",),
    ("CenterOfRotation",),
)
_NRRD_GEOMETRY_KEYS = ("space", "space dimension", "space directions", "space origin",
                       "spacings", "space units", "kinds", "centerings", "centers")  # fmt: skip
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 .,+\-()_\"']*$")


def max_file_bytes(shape: Sequence[int]) -> int:
    """The largest file accepted for a label image of ``shape``: int64 voxels plus headers."""
    return int(np.prod(shape, dtype=np.int64)) * 8 + HEADER_ALLOWANCE_BYTES


# --------------------------------------------------------------------------------------------
# .npy


def read_npy_bytes(data: bytes, expected_shape: Sequence[int], name: str) -> np.ndarray:
    """The array in ``data`` (a .npy file) if its header says a plain numeric array of
    ``expected_shape`` and the data is all there; RefusedFile otherwise. No pickle, ever."""
    stream = _io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise RefusedFile(f"{name}: .npy format version {version} is not supported")
    except RefusedFile:
        raise
    except Exception as error:  # noqa: BLE001 - any header failure: not a usable .npy
        raise RefusedFile(f"{name}: not a .npy file ({error})") from None
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise RefusedFile(f"{name}: dtype {dtype} is not a plain numeric type")
    _check_shape(name, tuple(int(v) for v in shape), expected_shape)
    count = int(np.prod(shape, dtype=np.int64))
    offset = stream.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise RefusedFile(
            f"{name}: holds {len(data) - offset} data bytes, its header needs "
            f"{count * dtype.itemsize}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(tuple(shape), order="F" if fortran else "C")


def read_npy(dir_fd: int, name: str, expected_shape: Sequence[int], where: str = "") -> np.ndarray:
    """:func:`read_npy_bytes` of the file ``name`` under ``dir_fd`` (read as untrusted)."""
    data = untrusted.read_file(dir_fd, name, max_file_bytes(expected_shape), where)
    return read_npy_bytes(data, expected_shape, f"{where}{name}")


# --------------------------------------------------------------------------------------------
# Image files


def _check_shape(name: str, shape_zyx: tuple[int, ...], expected_shape: Sequence[int]) -> None:
    expected = tuple(int(v) for v in expected_shape)
    if shape_zyx != expected:
        raise RefusedFile(
            f"{name}: shape (z, y, x) {shape_zyx} differs from the image's {expected}"
        )


def _inflate(data: bytes | memoryview, wbits: int, limit: int, name: str) -> bytes:
    """Decompress ``data`` (gzip members, at most ``_MAX_GZIP_MEMBERS``, or one zlib stream),
    at most ``limit`` bytes of output: a bomb stops there. The input is fed in slices of at
    most 1 MiB and never copied whole (thousands of empty members would otherwise cost
    quadratic time). Corrupt data is refused; a short result is the caller's business."""
    out = bytearray()
    view = memoryview(data)
    position = members = 0
    try:
        while position < len(view) and len(out) < limit:
            members += 1
            if members > _MAX_GZIP_MEMBERS:
                raise RefusedFile(f"{name}: more than {_MAX_GZIP_MEMBERS} gzip members")
            stream = zlib.decompressobj(wbits)
            while position < len(view) and len(out) < limit and not stream.eof:
                chunk = view[position : position + _INFLATE_SLICE_BYTES]
                out += stream.decompress(chunk, limit - len(out))
                left = stream.unused_data if stream.eof else stream.unconsumed_tail
                position += len(chunk) - len(left)
            if not stream.eof or wbits != 31:
                break
    except zlib.error as error:
        raise RefusedFile(f"{name}: corrupt compressed data ({error})") from None
    return bytes(out)


def _lower_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def sanitized_image_file(
    data: bytes, name: str, expected_shape: Sequence[int]
) -> tuple[bytes, str]:
    """(file bytes SimpleITK may read, extension) from a participant's image file ``data``:
    header checked against ``expected_shape`` (z, y, x), external references refused, data
    decompressed up to exactly the size the header announces. RefusedFile with the reason."""
    lower = _lower_name(name)
    if lower.endswith(DETACHED_EXTENSIONS + DETACHED_DATA_EXTENSIONS):
        raise RefusedFile(
            f"{name}: a detached header or data file; write one self-contained "
            f"{'/'.join(IMAGE_EXTENSIONS)} file"
        )
    limit = int(np.prod(expected_shape, dtype=np.int64)) * 8 + HEADER_ALLOWANCE_BYTES
    if data[:2] == b"\x1f\x8b":
        head = _inflate(data, 31, 540, name)
        if _nifti_kind(head) is None:
            raise RefusedFile(f"{name}: gzip data that is not a NIfTI image")
        return _sanitized_nifti(_inflate(data, 31, limit, name), name, expected_shape), ".nii"
    if _nifti_kind(data) is not None:
        return _sanitized_nifti(data, name, expected_shape), ".nii"
    if data[:4] == b"NRRD":
        return _sanitized_nrrd(data, name, expected_shape), ".nrrd"
    if data[:6] == b"\x93NUMPY":
        raise RefusedFile(f"{name}: a .npy file where an image file ({lower}) was expected")
    if re.match(rb"^\s*[A-Za-z_]+\s*=", data[:256]):
        return _sanitized_metaimage(data, name, expected_shape), ".mha"
    raise RefusedFile(f"{name}: not a NIfTI, MetaImage or NRRD file")


# NIfTI ----------------------------------------------------------------------------------


def _nifti_kind(head: bytes) -> tuple[int, str] | None:
    """(1 or 2, byte order) when ``head`` starts a NIfTI header, else None."""
    if len(head) < 348:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            return 1, order
        if size == 540 and len(head) >= 540:
            return 2, order
    return None


def _sanitized_nifti(data: bytes, name: str, expected_shape: Sequence[int]) -> bytes:
    kind = _nifti_kind(data)
    if kind is None:
        raise RefusedFile(f"{name}: truncated NIfTI header")
    version, order = kind
    if version == 2:  # SimpleITK's NIfTI reader does not read NIfTI-2 files: say so first
        raise RefusedFile(f"{name}: a NIfTI-2 file; write NIfTI-1 (.nii or .nii.gz)")
    if version == 1:
        magic = data[344:348]
        dims = struct.unpack(order + "8h", data[40:56])
        datatype = struct.unpack(order + "h", data[70:72])[0]
        vox_offset = struct.unpack(order + "f", data[108:112])[0]
        single, detached = b"n+1\0", b"ni1\0"
    else:
        magic = data[4:12]
        datatype = struct.unpack(order + "h", data[12:14])[0]
        dims = struct.unpack(order + "8q", data[16:80])
        vox_offset = struct.unpack(order + "q", data[168:176])[0]
        single, detached = b"n+2\0\r\n\x1a\n", b"ni2\0\r\n\x1a\n"
    if magic == detached:
        raise RefusedFile(f"{name}: a NIfTI header with a separate .img data file (refused)")
    if magic != single:
        raise RefusedFile(f"{name}: not a single-file NIfTI image (magic {magic!r})")
    ndim = int(dims[0])
    if not 3 <= ndim <= 7 or any(int(v) != 1 for v in dims[4 : ndim + 1]):
        raise RefusedFile(
            f"{name}: NIfTI image with dims {list(dims[1 : max(ndim, 0) + 1])}, expected 3-D"
        )
    _check_shape(name, tuple(int(v) for v in dims[3:0:-1]), expected_shape)
    if datatype not in _NIFTI1_DTYPES:
        raise RefusedFile(f"{name}: NIfTI datatype code {datatype} is not a scalar numeric type")
    itemsize = np.dtype(_NIFTI1_DTYPES[datatype]).itemsize
    header_bytes = 352 if version == 1 else 544
    if (
        not float(vox_offset).is_integer()
        or not header_bytes <= int(vox_offset) <= HEADER_ALLOWANCE_BYTES
    ):
        raise RefusedFile(f"{name}: NIfTI vox_offset {vox_offset} is not a plausible offset")
    needed = int(vox_offset) + int(np.prod(expected_shape, dtype=np.int64)) * itemsize
    if len(data) < needed:
        raise RefusedFile(f"{name}: truncated: holds {len(data)} bytes, its header needs {needed}")
    return data[:needed]


# MetaImage ------------------------------------------------------------------------------


def _numbers(value: str, count: int, key: str, name: str) -> list[float]:
    try:
        numbers = [float(v) for v in value.split()]
    except ValueError:
        numbers = []
    if len(numbers) != count or not all(np.isfinite(numbers)):
        raise RefusedFile(f"{name}: MetaImage {key} = {value[:60]!r}: expected {count} numbers")
    return numbers


def _sanitized_metaimage(data: bytes, name: str, expected_shape: Sequence[int]) -> bytes:
    fields: dict[str, str] = {}
    position = 0
    while True:
        end = data.find(b"\n", position, position + _MAX_TEXT_HEADER_BYTES)
        if end < 0 or end > _MAX_TEXT_HEADER_BYTES:
            raise RefusedFile(
                f"{name}: no ElementDataFile line in the first 64 KiB (not a MetaImage?)"
            )
        line = data[position:end].decode("latin-1").strip()
        position = end + 1
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise RefusedFile(f"{name}: MetaImage header line {line[:60]!r} has no '='")
        if key in fields:
            raise RefusedFile(f"{name}: MetaImage key {key} given twice")
        fields[key] = value
        if key == "ElementDataFile":
            break
    if fields["ElementDataFile"] != "LOCAL":
        raise RefusedFile(
            f"{name}: ElementDataFile = {fields['ElementDataFile'][:80]!r}: data in another file "
            "is refused (write a .mha with the data inline)"
        )
    if fields.get("ObjectType", "Image") != "Image" or fields.get("NDims") != "3":
        raise RefusedFile(f"{name}: a MetaImage that is not a 3-D image")
    if fields.get("HeaderSize", "0") not in ("0",):
        raise RefusedFile(f"{name}: MetaImage HeaderSize {fields['HeaderSize']!r} is refused")
    if fields.get("ElementNumberOfChannels", "1") != "1":
        raise RefusedFile(f"{name}: more than one component per voxel")
    if fields.get("BinaryData", "True") != "True":
        raise RefusedFile(f"{name}: ASCII MetaImage data is not supported")
    size_xyz = [int(v) for v in _numbers(fields.get("DimSize", ""), 3, "DimSize", name)]
    _check_shape(name, tuple(size_xyz[::-1]), expected_shape)
    element = fields.get("ElementType", "")
    if element not in _META_DTYPES:
        raise RefusedFile(f"{name}: MetaImage ElementType {element[:40]!r} is not supported")
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
    dtype = np.dtype(_META_DTYPES[element]).newbyteorder(">" if msb == "True" else "<")
    needed = int(np.prod(expected_shape, dtype=np.int64)) * dtype.itemsize
    payload = memoryview(data)[position:]
    if fields.get("CompressedData", "False") == "True":
        if "CompressedDataSize" in fields:
            compressed = int(
                _numbers(fields["CompressedDataSize"], 1, "CompressedDataSize", name)[0]
            )
            payload = payload[:compressed]
        raw = _inflate(payload, 47, needed, name)  # 47: zlib or gzip, as MetaIO accepts
    else:
        raw = bytes(payload[:needed])
    if len(raw) < needed:
        raise RefusedFile(
            f"{name}: truncated: {len(raw)} bytes of voxel data, the header needs {needed}"
        )
    lines = ["ObjectType = Image", "NDims = 3", "BinaryData = True",
             f"BinaryDataByteOrderMSB = {'True' if msb == 'True' else 'False'}",
             "CompressedData = False"]  # fmt: skip
    for group in _META_GEOMETRY_KEYS:
        present = [k for k in group if k in fields]
        if len(present) > 1:
            raise RefusedFile(f"{name}: MetaImage gives both {present[0]} and {present[1]}")
        if present:
            count = 9 if group[0] == "TransformMatrix" else 3
            numbers = _numbers(fields[present[0]], count, present[0], name)
            lines.append(f"{group[0]} = {' '.join(repr(v) for v in numbers)}")
    if "AnatomicalOrientation" in fields and re.fullmatch(
        r"[RLAPSI?]{3}", fields["AnatomicalOrientation"]
    ):
        lines.append(f"AnatomicalOrientation = {fields['AnatomicalOrientation']}")
    lines += [f"DimSize = {' '.join(map(str, size_xyz))}", f"ElementType = {element}",
              "ElementDataFile = LOCAL"]  # fmt: skip
    return ("\n".join(lines) + "\n").encode("ascii") + raw


# NRRD -----------------------------------------------------------------------------------


def _sanitized_nrrd(data: bytes, name: str, expected_shape: Sequence[int]) -> bytes:
    end = data.find(b"\n\n", 0, _MAX_TEXT_HEADER_BYTES)
    separator = 2
    if end < 0:
        end, separator = data.find(b"\r\n\r\n", 0, _MAX_TEXT_HEADER_BYTES), 4
    if end < 0:
        raise RefusedFile(f"{name}: no end of the NRRD header in the first 64 KiB")
    lines = data[:end].decode("latin-1").splitlines()
    if not re.fullmatch(r"NRRD000[1-5]", lines[0].strip()):
        raise RefusedFile(f"{name}: not a NRRD file")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#") or ":=" in line:
            continue  # comments and key/value metadata: not passed on
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise RefusedFile(f"{name}: NRRD header line {line[:60]!r} has no ':'")
        if key in fields:
            raise RefusedFile(f"{name}: NRRD field {key!r} given twice")
        fields[key] = value
    if "data file" in fields or "datafile" in fields:
        raise RefusedFile(
            f"{name}: NRRD 'data file: {(fields.get('data file') or fields.get('datafile'))[:80]}': "
            "data in another file is refused (write the data inline)"
        )
    for key in ("line skip", "lineskip", "byte skip", "byteskip"):
        if fields.get(key, "0") != "0":
            raise RefusedFile(f"{name}: NRRD '{key}: {fields[key][:20]}' is refused")
    if fields.get("dimension") != "3":
        raise RefusedFile(f"{name}: a NRRD image that is not 3-D")
    size_xyz = [int(v) for v in _numbers(fields.get("sizes", ""), 3, "sizes", name)]
    _check_shape(name, tuple(size_xyz[::-1]), expected_shape)
    code = _NRRD_TYPE_OF.get(fields.get("type", ""))
    if code is None:
        raise RefusedFile(f"{name}: NRRD type {fields.get('type', '')[:30]!r} is not supported")
    endian = fields.get("endian", "little")
    dtype = np.dtype(code).newbyteorder(">" if endian == "big" else "<")
    needed = int(np.prod(expected_shape, dtype=np.int64)) * dtype.itemsize
    payload = memoryview(data)[end + separator :]
    encoding = fields.get("encoding", "")
    if encoding == "raw":
        raw = bytes(payload[:needed])
    elif encoding in ("gzip", "gz"):
        raw = _inflate(payload, 47, needed, name)
    else:
        raise RefusedFile(f"{name}: NRRD encoding {encoding[:20]!r} is not supported (raw, gzip)")
    if len(raw) < needed:
        raise RefusedFile(
            f"{name}: truncated: {len(raw)} bytes of voxel data, the header needs {needed}"
        )
    out = ["NRRD0004", f"type: {code_name(code)}", "dimension: 3",
           f"sizes: {' '.join(map(str, size_xyz))}", f"endian: {'big' if endian == 'big' else 'little'}",
           "encoding: raw"]  # fmt: skip
    for key in _NRRD_GEOMETRY_KEYS:
        if key in fields:
            if not _SAFE_VALUE.match(fields[key]):
                raise RefusedFile(f"{name}: NRRD field {key!r} holds unexpected characters")
            out.append(f"{key}: {fields[key]}")
    return ("\n".join(out) + "\n\n").encode("ascii") + raw


def code_name(code: str) -> str:
    """NRRD's canonical type name of a numpy type code (``"u1"`` -> ``"uint8"``)."""
    return {"u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32",
            "i4": "int32", "u8": "uint64", "i8": "int64", "f4": "float", "f8": "double"}[code]  # fmt: skip


# Reading ----------------------------------------------------------------------------------


def read_image_bytes(
    data: bytes, name: str, expected_shape: Sequence[int]
) -> tuple[np.ndarray, Geometry]:
    """(voxel array in (z, y, x), geometry) of a participant's image file given as bytes; its
    shape is ``expected_shape``. RefusedFile with a reason for anything else."""
    clean, extension = sanitized_image_file(data, name, expected_shape)
    folder = owners.private_temp_dir(PRIVATE_COPY_PREFIX)  # 0700, removed even if we are killed
    path = os.path.join(folder, f"image{extension}")
    try:
        with open(path, "wb") as handle:
            handle.write(clean)
        del clean
        try:
            array, geometry = images.read_image(path)
        except SegloopError as error:
            raise RefusedFile(f"{name}: {str(error).removeprefix(path + ': ')}") from None
    finally:
        untrusted.remove_tree(folder)
    _check_shape(name, tuple(array.shape), expected_shape)
    return array, geometry


def read_image(
    dir_fd: int, name: str, expected_shape: Sequence[int], where: str = ""
) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image_bytes` of the file ``name`` under ``dir_fd`` (read as untrusted)."""
    data = untrusted.read_file(dir_fd, name, max_file_bytes(expected_shape), where)
    return read_image_bytes(data, f"{where}{name}", expected_shape)


def read_image_at(
    path: untrusted.UntrustedPath, expected_shape: Sequence[int]
) -> tuple[np.ndarray, Geometry]:
    """:func:`read_image_bytes` of a file placed below a trusted folder (walked safely)."""
    data = path.read_bytes(max_file_bytes(expected_shape))
    return read_image_bytes(data, str(path), expected_shape)
