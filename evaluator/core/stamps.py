"""Input stamps: what tells a resumed run that a case's input files changed since it was scored."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from segloop.core.images import PathLike
from segloop.core.records import SegloopError

_CHUNK_BYTES = 1 << 22


# --------------------------------------------------------------------------- input stamps
def file_sha256(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_signature(info: os.stat_result) -> dict[str, int]:
    """``{size, mtime_ns, ctime_ns}`` of a file: what tells, without reading it, that it is the
    version seen before. The kernel sets the change time on every write and no user can set it
    back, so a rewrite that restores the old modification time still shows."""
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns}


def input_stamps(dataset_dir: PathLike, files: Sequence[Path]) -> dict[str, dict[str, object]]:
    """``{path relative to the dataset: {size, mtime_ns, ctime_ns, sha256}}`` of a case's input
    files, so a resumed run can tell that a case's inputs changed since it was scored."""
    root = Path(dataset_dir)
    stamps: dict[str, dict[str, object]] = {}
    for path in files:
        try:
            info = path.stat()
            digest = file_sha256(path)
        except OSError as error:  # e.g. the data file an .mhd header names is missing
            raise SegloopError(f"{path}: cannot read ({error.strerror or error})") from None
        stamps[path.relative_to(root).as_posix()] = {**file_signature(info), "sha256": digest}
    return stamps


def changed_inputs(dataset_dir: PathLike, stamps: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The stamped files that are gone or hold other bytes now. A file whose
    :func:`file_signature` equals its stamp counts as unchanged; otherwise another size, or else
    the content hash, decides (a copied dataset with new times is not a change)."""
    root = Path(dataset_dir)
    changed = []
    for relative, stamp in stamps.items():
        path = root / relative
        try:
            info = path.stat()
        except OSError:
            changed.append(relative)
            continue
        if all(stamp.get(name) == value for name, value in file_signature(info).items()):
            continue  # a stamp from before change times were recorded has none: it is hashed
        if info.st_size != stamp.get("size") or file_sha256(path) != stamp.get("sha256"):
            changed.append(relative)
    return changed
