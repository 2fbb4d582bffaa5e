"""Dataset layout (nnU-Net, test split): finding and reading a dataset's cases.

    DATASET/imagesTs/<case>_0000.nii.gz   channel 0 (then _0001, ... for further channels)
    DATASET/labelsTs/<case>.nii.gz        integer label map, 0 = background
    DATASET/masksTs/<name>/<case>.nii.gz  optional per-case masks (e.g. masksTs/liver/), bool

Files may be any format :mod:`segloop.core.images` reads; a case whose channel exists under two
extensions is an error. Every problem a user can fix raises
:class:`segloop.core.records.SegloopError` with a one-line message naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segloop.core.images import (
    IMAGE_EXTENSIONS,
    WRITE_EXTENSIONS,
    PathLike,
    as_label_map,
    check_same_grid,
    read_image,
    read_label,
    split_extension,
    write_image,
)
from segloop.core.records import Case, SegloopError

IMAGES_DIR = "imagesTs"


LABELS_DIR = "labelsTs"


MASKS_DIR = "masksTs"


_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _dataset_folder(dataset_dir: PathLike) -> Path:
    root = Path(dataset_dir)
    if not root.is_dir():
        raise SegloopError(f"{root}: dataset folder does not exist")
    if not (root / IMAGES_DIR).is_dir():
        raise SegloopError(
            f"{root}: no {IMAGES_DIR}/ folder (expected the nnU-Net layout "
            f"{IMAGES_DIR}/<case>_0000.nii.gz, {LABELS_DIR}/<case>.nii.gz)"
        )
    return root


#: ``images.write_image``'s temporary files: ``.<name>.<pid>[.<8 hex>].tmp<ext>``.
_TEMPORARY_RE = re.compile(r"^\..+\.\d+(\.[0-9a-f]{8})?\.tmp\.")
#: The longest case id whose result files (``<id>.timing.json``) a file system can name.
MAX_CASE_ID_BYTES = 255 - len(".timing.json")
#: A case id may not end so: its result file would be another case's timing file.
RESERVED_SUFFIX = ".timing"


def check_case_id(case_id: str, path: Path) -> None:
    """Refuse a case id that the run folder cannot store under its own name."""
    if case_id.endswith(RESERVED_SUFFIX):
        raise SegloopError(
            f"{path}: case id {case_id!r} ends in {RESERVED_SUFFIX!r}, which names timing "
            "files in run folders (it would clash with case "
            f"{case_id.removesuffix(RESERVED_SUFFIX)!r}); rename the case"
        )
    if len(case_id.encode()) > MAX_CASE_ID_BYTES:
        raise SegloopError(
            f"{path}: case id of {len(case_id.encode())} bytes; at most {MAX_CASE_ID_BYTES} "
            "fit in a run folder's file names"
        )


def _image_files(folder: Path) -> Iterator[tuple[Path, str, str]]:
    """(path, name without extension, extension) of the image files in a folder, sorted."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if _TEMPORARY_RE.match(entry.name) or not entry.is_file():
            continue  # write_image's temporaries; other hidden names are cases like any
        stem, ext = split_extension(entry)
        if ext:
            yield entry, stem, ext


def _scan_channels(root: Path) -> dict[str, dict[int, Path]]:
    """case id -> {channel index: file} from imagesTs/; errors on bad names and duplicates."""
    cases: dict[str, dict[int, Path]] = {}
    for path, stem, _ in _image_files(root / IMAGES_DIR):
        match = _CHANNEL_RE.match(stem)
        if match is None:
            raise SegloopError(
                f"{path}: image file name must be <case>_<4-digit channel> plus extension, "
                "e.g. case01_0000.nii.gz"
            )
        channels = cases.setdefault(match["case"], {})
        channel = int(match["channel"])
        if channel in channels:
            raise SegloopError(
                f"{path}: channel {channel:04d} of case {match['case']} also exists as "
                f"{channels[channel].name}; keep one file per channel"
            )
        channels[channel] = path
    return cases


def _check_channels_contiguous(case_id: str, channels: dict[int, Path]) -> None:
    for expected in range(max(channels) + 1):
        if expected not in channels:
            present = ", ".join(p.name for _, p in sorted(channels.items()))
            folder = next(iter(channels.values())).parent
            raise SegloopError(
                f"{folder / f'{case_id}_{expected:04d}'}.*: channel {expected:04d} of case "
                f"{case_id} is missing (found {present})"
            )


def _find_single(folder: Path, stem: str, what: str) -> Path | None:
    """The file ``folder/stem.<image ext>``, None if absent; error if several extensions."""
    found = [p for p, s, _ in _image_files(folder) if s == stem] if folder.is_dir() else []
    if len(found) > 1:
        raise SegloopError(
            f"{folder / stem}.*: {what} exists as {', '.join(p.name for p in found)}; keep one"
        )
    return found[0] if found else None


def _label_files(root: Path) -> dict[str, Path]:
    labels: dict[str, Path] = {}
    for path, stem, _ in _image_files(root / LABELS_DIR):
        if stem in labels:
            raise SegloopError(
                f"{path}: label of case {stem} also exists as {labels[stem].name}; keep one"
            )
        labels[stem] = path
    return labels


def list_case_ids(dataset_dir: PathLike) -> list[str]:
    """Case ids of a dataset, sorted (plain string order), after checking its layout.

    Checks (file listing only, no image is read): imagesTs/ exists and holds cases; every file
    is named ``<case>_<NNNN>``; each case's channels are 0..n-1 without gaps and every case has
    the same number; every case has a label and every label an image.
    """
    root = _dataset_folder(dataset_dir)
    cases = _scan_channels(root)
    if not cases:
        raise SegloopError(
            f"{root / IMAGES_DIR}: empty dataset (no <case>_0000 image with extension "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    for case_id, channels in cases.items():
        check_case_id(case_id, channels[min(channels)])
        _check_channels_contiguous(case_id, channels)
    counts = {case_id: len(channels) for case_id, channels in cases.items()}
    most = max(counts.values())
    for case_id in sorted(cases):
        if counts[case_id] != most:
            other = next(c for c in sorted(cases) if counts[c] == most)
            raise SegloopError(
                f"{root / IMAGES_DIR / case_id}_{counts[case_id]:04d}.*: case {case_id} has "
                f"{counts[case_id]} channel(s) but case {other} has {most}"
            )
    labels = _label_files(root)
    for case_id in sorted(cases):
        if case_id not in labels:
            raise SegloopError(
                f"{root / LABELS_DIR / case_id}.*: label missing for image {cases[case_id][0].name}"
            )
    for case_id in sorted(labels):
        if case_id not in cases:
            raise SegloopError(
                f"{labels[case_id]}: label without image "
                f"({root / IMAGES_DIR / case_id}_0000.* is missing)"
            )
    return sorted(cases)


def _case_channel_files(root: Path, case_id: str) -> list[Path]:
    channels: dict[int, Path] = {}
    for path, stem, _ in _image_files(root / IMAGES_DIR):
        match = _CHANNEL_RE.match(stem)
        if match is None or match["case"] != case_id:
            continue
        channel = int(match["channel"])
        if channel in channels:
            raise SegloopError(
                f"{path}: channel {channel:04d} of case {case_id} also exists as "
                f"{channels[channel].name}; keep one file per channel"
            )
        channels[channel] = path
    if not channels:
        raise SegloopError(f"{root / IMAGES_DIR / case_id}_0000.*: no image for case {case_id}")
    _check_channels_contiguous(case_id, channels)
    return [channels[i] for i in range(len(channels))]


def _finite_channel(path: Path, values: np.ndarray) -> np.ndarray:
    channel = np.ascontiguousarray(values, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(channel)))
    if bad:
        raise SegloopError(f"{path}: {bad} voxels are NaN or infinite")
    return channel


@dataclass(frozen=True)
class CaseFiles:
    """The files one case is read from."""

    channels: tuple[Path, ...]
    label: Path
    masks: Mapping[str, Path]

    def all_files(self) -> list[Path]:
        """Every file read, a MetaImage's data file included (``.mhd`` + its ``.raw``)."""
        files = [*self.channels, self.label, *self.masks.values()]
        return [data for path in files for data in (path, *_metaimage_data_files(path))]


def _metaimage_data_files(path: Path) -> list[Path]:
    """The separate data file named by a ``.mhd`` header (none for other formats)."""
    if split_extension(path)[1] != ".mhd":
        return []
    try:
        header = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in header:
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile" and value.strip() not in ("", "LOCAL"):
            return [path.parent / value.strip()]
    return []


def case_files(
    dataset_dir: PathLike, case_id: str, extra_mask_names: Sequence[str] = ()
) -> CaseFiles:
    """Find one case's files (no image is read): channels 0..n-1, the label, each extra mask
    named in ``extra_mask_names`` (all required)."""
    root = _dataset_folder(dataset_dir)
    channels = _case_channel_files(root, case_id)
    label = _find_single(root / LABELS_DIR, case_id, "label")
    if label is None:
        raise SegloopError(
            f"{root / LABELS_DIR / case_id}.*: label missing for image {channels[0].name}"
        )
    masks: dict[str, Path] = {}
    for name in extra_mask_names:
        mask = _find_single(root / MASKS_DIR / name, case_id, f"mask {name!r}")
        if mask is None:
            raise SegloopError(
                f"{root / MASKS_DIR / name / case_id}.*: required extra mask {name!r} "
                f"missing for case {case_id}"
            )
        masks[name] = mask
    return CaseFiles(tuple(channels), label, masks)


def load_case(dataset_dir: PathLike, case_id: str, extra_mask_names: Sequence[str] = ()) -> Case:
    """Read one case: channels (float32), label (see :func:`read_label`), extra masks (bool).

    Every channel, the label and each extra mask must lie on channel 0's grid (shape, spacing,
    origin, direction); the case's geometry is channel 0's. An extra mask is true where the
    stored value is non-zero; each name in ``extra_mask_names`` is required.
    """
    found = case_files(dataset_dir, case_id, extra_mask_names)
    files = found.channels
    first, geometry = read_image(files[0])
    channels = [_finite_channel(files[0], first)]
    for path in files[1:]:
        values, channel_geometry = read_image(path)
        check_same_grid(path, values.shape, channel_geometry, files[0], first.shape, geometry)
        channels.append(_finite_channel(path, values))
    label = read_label(found.label, geometry, files[0], first.shape)
    masks = {
        name: read_label(mask_path, geometry, files[0], first.shape) != 0
        for name, mask_path in found.masks.items()
    }
    return Case(
        case_id=case_id,
        channels=tuple(channels),
        label=label,
        geometry=geometry,
        extra_masks=masks,
    )


def load_dataset(dataset_dir: PathLike, extra_mask_names: Sequence[str] = ()) -> Iterator[Case]:
    """The dataset's cases in case-id order, read one at a time (a whole dataset need not fit
    in memory). The layout is checked (:func:`list_case_ids`) before the first case is read."""
    case_ids = list_case_ids(dataset_dir)
    return (load_case(dataset_dir, case_id, extra_mask_names) for case_id in case_ids)


def write_case(dataset_dir: PathLike, case: Case, extension: str = ".nii.gz") -> None:
    """Write a case in the nnU-Net layout (the inverse of :func:`load_case`).

    Channels as float32, the label in its integer dtype, extra masks as uint8 0/1.
    """
    if extension not in WRITE_EXTENSIONS:
        raise SegloopError(
            f"cannot write case {case.case_id} as {extension!r}; use one of "
            f"{', '.join(WRITE_EXTENSIONS)}"
        )
    if not case.case_id or "/" in case.case_id or case.case_id.startswith("."):
        raise SegloopError(f"case id {case.case_id!r} cannot be used as a file name")
    root = Path(dataset_dir)
    for index, channel in enumerate(case.channels):
        write_image(
            root / IMAGES_DIR / f"{case.case_id}_{index:04d}{extension}",
            np.asarray(channel, dtype=np.float32),
            case.geometry,
        )
    write_image(
        root / LABELS_DIR / f"{case.case_id}{extension}",
        as_label_map(case.label, f"label of case {case.case_id}"),
        case.geometry,
    )
    for name, mask in sorted(case.extra_masks.items()):
        write_image(
            root / MASKS_DIR / name / f"{case.case_id}{extension}",
            np.asarray(mask).astype(np.uint8),
            case.geometry,
        )
