"""Reading and removing what someone else wrote (segloop.core.untrusted, segloop.core.untrusted_images).

Each defence is attacked here without Docker: links to a secret, FIFOs, files that grow, swaps
racing the reader (renameat2 RENAME_EXCHANGE in a loop, as a container would), deep trees,
folders renamed while they are removed, detached headers, external data files, offsets into
other files and decompression bombs. The Docker versions are in tests/test_security_docker.py.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import io as pyio
import json
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segloop.containers.docker import workspace
from segloop.core import images, owners, untrusted, untrusted_images
from segloop.core.records import Geometry
from segloop.core.untrusted import RefusedFile, UntrustedPath

SECRET = b"SEGLOOP-CANARY-SECRET-6f1c"
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> int:
    return _libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2)  # RENAME_EXCHANGE


def snapshot(folder: Path) -> dict:
    """Every entry of ``folder`` with mode, size and content hash (to show nothing changed)."""
    state = {".": os.lstat(folder).st_mode}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path.relative_to(folder))] = (info.st_mode, info.st_size, content)
    return state


@pytest.fixture
def canary(tmp_path) -> Path:
    """A host folder a hostile writer aims at: 400 files, mode 0700, and a secret."""
    folder = tmp_path / "canary"
    folder.mkdir(mode=0o700)
    for index in range(400):
        (folder / f"file_{index:03d}").write_bytes(b"x" * index)
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


# ------------------------------------------------------------------------------ reading


def test_read_file_refuses_links_fifos_and_big_files(tmp_path, canary):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "ok").write_bytes(b"hello")
    (folder / "link").symlink_to(canary / "secret.txt")
    os.mkfifo(folder / "fifo")
    with open(folder / "sparse", "wb") as handle:
        handle.truncate(1 << 40)  # 1 TiB, sparse
    (folder / "sub").mkdir()
    fd = untrusted.open_dir(None, folder)
    try:
        assert untrusted.read_file(fd, "ok", 100) == b"hello"
        with pytest.raises(RefusedFile, match="link: a symlink"):
            untrusted.read_file(fd, "link", 100)
        started = time.monotonic()
        with pytest.raises(RefusedFile, match="fifo: a FIFO"):
            untrusted.read_file(fd, "fifo", 100)  # O_NONBLOCK: never waits for a writer
        assert time.monotonic() - started < 5
        with pytest.raises(RefusedFile, match="more than the 100 allowed"):
            untrusted.read_file(fd, "sparse", 100)
        with pytest.raises(RefusedFile, match="a folder, not a regular file"):
            untrusted.read_file(fd, "sub", 100)
        with pytest.raises(RefusedFile, match="not a plain file name"):
            untrusted.read_file(fd, "../canary/secret.txt", 100)
        with pytest.raises(RefusedFile, match="no such file"):
            untrusted.read_file(fd, "missing", 100)
    finally:
        os.close(fd)


def test_a_file_growing_after_the_size_check_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "grows"
    path.write_bytes(b"x" * 10)
    fd = untrusted.open_dir(None, folder)
    file_fd, size = untrusted.open_file(fd, "grows", 100)
    os.close(file_fd)
    assert size == 10
    with open(path, "ab") as handle:  # grows between a size check and the read
        handle.write(b"y" * 1000)
    with pytest.raises(RefusedFile, match="more than the 100 allowed"):
        untrusted.read_file(fd, "grows", 100)
    os.close(fd)


@pytest.mark.parametrize("bait", ["symlink", "fifo", "huge"])
def test_swap_races_never_reach_the_bait(tmp_path, canary, bait):
    """A writer swaps a good file with a bait as fast as it can while the harness reads it:
    every read returns the good bytes or is refused; none returns the secret, none hangs,
    none reads more than the cap. And the race is really run: some reads are refused."""
    folder = tmp_path / "out"
    folder.mkdir()
    good, swapped = folder / "prediction.npy", folder / ".bait"
    good.write_bytes(b"good bytes")
    if bait == "symlink":
        swapped.symlink_to(canary / "secret.txt")
    elif bait == "fifo":
        os.mkfifo(swapped)
    else:
        with open(swapped, "wb") as handle:
            handle.truncate(3 << 30)
    stop = threading.Event()
    swaps = []

    def attacker() -> None:
        count = 0
        while not stop.is_set():
            if exchange(good, swapped) == 0:
                count += 1
        swaps.append(count)

    thread = threading.Thread(target=attacker)
    thread.start()
    outcomes = {"good": 0, "refused": 0}
    fd = untrusted.open_dir(None, folder)
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                data = untrusted.read_file(fd, "prediction.npy", 1 << 20)
            except RefusedFile:
                outcomes["refused"] += 1
                continue
            assert data == b"good bytes"
            outcomes["good"] += 1
    finally:
        stop.set()
        thread.join()
        os.close(fd)
    assert swaps[0] > 100
    assert outcomes["refused"] > 0 and outcomes["good"] > 0, outcomes


def test_untrusted_paths_stay_below_their_root(tmp_path, canary):
    root = tmp_path / "input"
    (root / "job" / "output").mkdir(parents=True)
    (root / "job" / "output" / "a.mha").write_bytes(b"data")
    (root / "job" / "escape").symlink_to(canary)
    for bad in ("/etc/passwd", "../../canary/secret.txt", "job/../../x", ""):
        with pytest.raises(RefusedFile):
            UntrustedPath.below(root, bad)
    assert UntrustedPath.below(root, "job/output/a.mha").read_bytes(100) == b"data"
    with pytest.raises(RefusedFile, match="escape: a symlink"):
        UntrustedPath.below(root, "job/escape/secret.txt").read_bytes(100)
    (root / "job" / "output" / "hard").hardlink_to(root / "job" / "output" / "a.mha")
    with pytest.raises(RefusedFile, match="hard links"):
        UntrustedPath.below(root, "job/output/hard").read_bytes(100)


def test_walk_files_lists_links_as_skipped(tmp_path, canary):
    root = tmp_path / "res"
    (root / "sub").mkdir(parents=True)
    (root / "a_step0.nii.gz").write_bytes(b"x")
    (root / "sub" / "b_step1.nii.gz").write_bytes(b"y")
    (root / "linked_step2.nii.gz").symlink_to(canary / "secret.txt")
    (root / "linked_dir").symlink_to(canary)
    files, skipped = untrusted.walk_files(root)
    assert [str(f) for f in files] == ["a_step0.nii.gz", "sub/b_step1.nii.gz"]
    assert [name for name, _ in skipped] == ["linked_dir", "linked_step2.nii.gz"]
    assert all("symlink" in why for _, why in skipped)


# ------------------------------------------------------------------------------ removal


def make_deep_tree(top: Path, depth: int, canary: Path) -> None:
    fd = os.open(top, os.O_RDONLY)
    for level in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
        if level % 250 == 0:
            os.symlink(canary, "canary", dir_fd=fd)
            with open(f"/proc/self/fd/{fd}/file", "w") as handle:
                handle.write("z")
    os.close(fd)


def test_remove_tree_survives_depth_links_and_locked_folders(tmp_path, canary):
    before = snapshot(canary)
    victim = tmp_path / "work"
    victim.mkdir()
    make_deep_tree(victim, 3000, canary)  # deeper than Python's recursion limit
    (victim / "top-link").symlink_to(canary)
    (victim / "file-link").symlink_to(canary / "secret.txt")
    (victim / "locked").mkdir()
    (victim / "locked" / "inner").write_text("x")
    os.chmod(victim / "locked", 0)
    untrusted.remove_tree(victim)
    assert not victim.exists()
    assert snapshot(canary) == before


def test_remove_tree_with_a_writer_swapping_folders_for_links(tmp_path, canary):
    """While the harness removes a folder, the writer keeps exchanging a sub-folder with a
    link to the canary: the canary is never touched."""
    before = snapshot(canary)
    for _ in range(20):
        victim = tmp_path / "work"
        (victim / "sub").mkdir(parents=True)
        for index in range(200):
            (victim / "sub" / f"f{index}").write_text("x")
        (victim / "link").symlink_to(canary)
        stop = threading.Event()

        def attacker(sub=victim / "sub", link=victim / "link", stop=stop) -> None:
            while not stop.is_set() and exchange(sub, link) == 0:
                pass

        thread = threading.Thread(target=attacker)
        thread.start()
        try:
            untrusted.remove_tree(victim)
        finally:
            stop.set()
            thread.join()
        untrusted.remove_tree(victim)  # what the race left
        assert not victim.exists()
    assert snapshot(canary) == before


def test_dead_harness_work_folders_are_removed_safely(tmp_path, canary, monkeypatch):
    monkeypatch.setenv(workspace.WORK_DIR_ENV, str(tmp_path))
    root = workspace.work_root()
    assert os.stat(root).st_mode & 0o777 == 0o700
    dead = root / "999999999.1.deadbeef"  # no such pid: its owner is gone
    (dead / "out").mkdir(parents=True)
    make_deep_tree(dead / "out", 1500, canary)
    (dead / "out" / "link").symlink_to(canary)
    alive = root / f"{os.getpid()}.{owners.owner_token().rsplit(':', 1)[1]}.cafe"
    alive.mkdir()
    before = snapshot(canary)
    assert workspace.cleanup_dead_work_dirs() == 1
    assert not dead.exists() and alive.exists()
    assert snapshot(canary) == before


def test_a_work_root_made_by_someone_else_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(workspace.WORK_DIR_ENV, str(tmp_path))
    (tmp_path / "segloop-docker").symlink_to(tmp_path)  # planted to redirect our writes
    with pytest.raises(Exception, match="not a folder owned by this user"):
        workspace.work_root()


# ------------------------------------------------------------------------------ images

SHAPE = (6, 7, 8)
GEOMETRY = Geometry((0.4000000059604645, 0.7, 1.3), (1.5, -2.0, 3.0), (0, 1, 0, 1, 0, 0, 0, 0, 1))


def label() -> np.ndarray:
    values = np.zeros(SHAPE, dtype=np.uint8)
    values[2:4, 3:6, 1:7] = 1
    return values


@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_self_contained_images_read_as_simpleitk_reads_them(tmp_path, extension):
    path = tmp_path / f"p{extension}"
    images.write_image(path, label(), GEOMETRY)
    expected, geometry = images.read_image(path)
    array, read_geometry = untrusted_images.read_image_bytes(path.read_bytes(), path.name, SHAPE)
    assert np.array_equal(array, expected)
    assert read_geometry == geometry


def mha(extra: list[str], data: bytes = b"") -> bytes:
    x, y, z = reversed(SHAPE)
    lines = ["ObjectType = Image", "NDims = 3", f"DimSize = {x} {y} {z}", "ElementType = MET_UCHAR"]
    return ("\n".join(lines + extra) + "\n").encode() + data


def nifti_header(shape: tuple[int, ...], magic: bytes = b"n+1\0", offset: float = 352.0) -> bytes:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *reversed(shape), 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 2, 8)
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, offset)
    header[344:348] = magic
    return bytes(header)


def nrrd(fields: list[str], data: bytes = b"") -> bytes:
    head = ["NRRD0004", "type: uint8", "dimension: 3", "sizes: 8 7 6", *fields]
    return ("\n".join(head) + "\n\n").encode() + data


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.mha", mha(["ElementDataFile = /etc/passwd"]), "data in another file is refused"),
        ("a.mha", mha(["ElementDataFile = /dev/zero"]), "data in another file is refused"),
        ("a.mha", mha(["ElementDataFile = ../ref/x.raw"]), "data in another file is refused"),
        ("a.mha", mha(["HeaderSize = 352", "ElementDataFile = LOCAL"]), "HeaderSize"),
        ("a.mha", mha(["ElementNumberOfChannels = 3", "ElementDataFile = LOCAL"]), "component"),
        ("a.mha", mha(["ElementDataFile = LOCAL"], b"\0" * 10), "truncated"),
        ("a.mhd", mha(["ElementDataFile = a.raw"]), "detached header"),
        ("a.hdr", nifti_header(SHAPE, b"ni1\0"), "detached header"),
        ("a.nii", nifti_header(SHAPE, b"ni1\0"), "separate .img data file"),
        ("a.nii", nifti_header((60, 70, 80)) + b"\0" * 10, "shape (z, y, x) (60, 70, 80)"),
        ("a.nii", nifti_header(SHAPE, offset=1e9) + b"\0" * 336, "vox_offset"),
        ("a.nii", nifti_header(SHAPE) + b"\0" * 10, "truncated"),
        ("a.nrrd", nrrd(["encoding: gzip", "data file: ../ref/x.nii.gz"]), "data in another file"),
        ("a.nrrd", nrrd(["encoding: raw", "byte skip: 352"], b"\0" * 400), "byte skip"),
        ("a.nrrd", nrrd(["encoding: bzip2"], b"\0" * 400), "encoding"),
        ("a.nrrd", nrrd(["encoding: raw", "sizes: 80 70 60"], b"\0"), "given twice"),
        ("a.npy", b"\x93NUMPY" + b"\0" * 100, "a .npy file where an image"),
        ("a.mha", b"\x00\x01garbage", "not a NIfTI, MetaImage or NRRD file"),
    ],
)
def test_participant_images_refused_with_a_reason(name, data, reason):
    with pytest.raises(RefusedFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
        untrusted_images.read_image_bytes(data, name, SHAPE)


def test_a_gzip_bomb_is_inflated_only_up_to_the_announced_size():
    """512 MiB of zeros behind a header announcing SHAPE: only the announced bytes are inflated
    (the rest never leaves zlib), and a header announcing a huge volume is refused first."""
    import resource

    def bomb(shape: tuple[int, ...]) -> bytes:
        buffer = pyio.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as handle:
            handle.write(nifti_header(shape))
            chunk = b"\0" * (1 << 24)
            for _ in range(32):
                handle.write(chunk)
        return buffer.getvalue()

    small = bomb(SHAPE)  # 512 MiB of zeros in about 0.5 MB
    assert len(small) < 1 << 20
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    array, _ = untrusted_images.read_image_bytes(small, "bomb.nii.gz", SHAPE)
    assert array.shape == SHAPE and not array.any()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    assert grown_kib < 200 * 1024, f"peak memory grew by {grown_kib} KiB"
    with pytest.raises(RefusedFile, match="shape"):
        untrusted_images.read_image_bytes(bomb((2048, 2048, 2048)), "bomb.nii.gz", SHAPE)


def test_npy_predictions_without_pickle_and_checked_before_allocation():
    buffer = pyio.BytesIO()
    np.save(buffer, label())
    assert np.array_equal(untrusted_images.read_npy_bytes(buffer.getvalue(), SHAPE, "p"), label())
    pickled = pyio.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RefusedFile, match="not a plain numeric type"):
        untrusted_images.read_npy_bytes(pickled.getvalue(), (1,), "p")
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"
    huge = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
    with pytest.raises(RefusedFile, match=r"shape \(z, y, x\) \(100000, 100000, 100000\)"):
        untrusted_images.read_npy_bytes(huge, SHAPE, "p")
    with pytest.raises(RefusedFile, match="data bytes"):
        untrusted_images.read_npy_bytes(buffer.getvalue()[:-5], SHAPE, "p")


def test_metaimage_geometry_keys_pass_through_unknown_keys_dropped(tmp_path):
    image = sitk.GetImageFromArray(label())
    image.SetSpacing((1.3, 0.7, 0.4))
    image.SetOrigin((1.0, 2.0, 3.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    path = tmp_path / "a.mha"
    sitk.WriteImage(image, str(path), useCompression=True)
    data = path.read_bytes().replace(b"NDims = 3\n", b"NDims = 3\nEvil = ../../etc\n", 1)
    clean, extension = untrusted_images.sanitized_image_file(data, "a.mha", SHAPE)
    assert extension == ".mha" and b"Evil" not in clean and b"CompressedData = False" in clean
    array, geometry = untrusted_images.read_image_bytes(data, "a.mha", SHAPE)
    assert np.array_equal(array, label())
    assert geometry.spacing_mm == (0.4, 0.7, 1.3) and geometry.origin_mm == (1.0, 2.0, 3.0)
    assert geometry.direction == (0, 1, 0, 1, 0, 0, 0, 0, 1)


# ------------------------------------------------------------------------------ polyglots


def hdf5_image(shape: tuple[int, ...], tmp_path: Path) -> bytes:
    """An ITK HDF5 image of ``shape``, all ones (what a Dice-1 answer would hold)."""
    path = tmp_path / "bait.hdf5"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones(shape, dtype=np.uint8)), str(path))
    return path.read_bytes()


@pytest.mark.parametrize("extension", [".mha", ".nrrd", ".nii"])
def test_an_hdf5_file_hidden_in_the_voxels_is_read_as_voxels(tmp_path, extension):
    """Voxel bytes that form an HDF5 file starting at byte 2048 of the checked copy (where the
    HDF5 library looks for one): SimpleITK picking its reader by content would read the HDF5
    image (whose data could be any host file); the forced reader returns the voxels as sent."""
    shape = (8, 64, 64)
    blob = hdf5_image(shape, tmp_path)
    voxels = np.zeros(shape, dtype=np.uint8)
    plain = tmp_path / f"plain{extension}"
    sitk.WriteImage(sitk.GetImageFromArray(voxels), str(plain), useCompression=False)
    data = plain.read_bytes()
    clean, _ = untrusted_images.sanitized_image_file(data, plain.name, shape)
    header_bytes = len(clean) - voxels.size
    offset = 2048 - header_bytes  # where the blob must sit among the voxels
    flat = voxels.reshape(-1)
    flat[offset : offset + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    data = data[: len(data) - voxels.size] + flat.tobytes()
    clean, _ = untrusted_images.sanitized_image_file(data, plain.name, shape)
    assert clean[2048:2056] == b"\x89HDF\r\n\x1a\n"  # the bait is in place
    array, _ = untrusted_images.read_image_bytes(data, plain.name, shape)
    assert np.array_equal(array.reshape(-1), flat)  # the voxels, not the HDF5 image's ones


def test_a_nifti_that_is_also_a_dicom_file_is_read_as_nifti(tmp_path):
    """The NIfTI header in a DICOM file's preamble and its magic inside a UID: the file is both
    (SimpleITK tries DICOM before NIfTI when it picks by content). Read as the NIfTI it was
    checked as: the NIfTI's voxels, never the DICOM's pixels."""
    dicom = tmp_path / "bait.dcm"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 16, 16), 7, np.uint16)), str(dicom))
    data = bytearray(dicom.read_bytes())
    shape = (4, 16, 16)
    voxels = int(np.prod(shape))
    if len(data) + 12 < 352 + voxels:  # pad with a DataSetTrailingPadding element
        pad = 352 + voxels - len(data) - 12
        data += struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, pad) + b"\0" * pad
    vox_offset = len(data) - voxels
    struct.pack_into("<i", data, 0, 348)
    struct.pack_into("<8h", data, 40, 3, 16, 16, 4, 1, 1, 1, 1)
    struct.pack_into("<hh", data, 70, 2, 8)
    struct.pack_into("<8f", data, 76, 1.0, 1.0, 1.0, 1.0, 1, 1, 1, 1)
    struct.pack_into("<f", data, 108, float(vox_offset))
    struct.pack_into("<ff", data, 112, 1.0, 0.0)
    data[344:352] = b"n+1\0\0\0\0\0"
    data[252:256] = b"\0\0\0\0"
    assert sitk.ReadImage(str(_write(tmp_path / "poly.nii", bytes(data)))).GetSize() == (16, 16, 4)
    array, _ = untrusted_images.read_image_bytes(bytes(data), "poly.nii", shape)
    expected = np.frombuffer(bytes(data[vox_offset:]), dtype=np.uint8).reshape(shape)
    assert np.array_equal(array, expected)
    assert not (array == 7).all()  # not the DICOM's pixels


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_dataset_images_are_read_with_the_reader_of_their_extension(tmp_path):
    """An organizer's .nii that is also a DICOM file reads as NIfTI; a .mhd whose data file is
    elsewhere, and a header announcing more than the size cap, are refused with one line."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.raw").write_bytes(b"\0" * 64)
    mhd = tmp_path / "case_0000.mhd"
    mhd.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
        "ElementDataFile = elsewhere/data.raw\n"
    )
    with pytest.raises(Exception, match="not a plain file name next to it"):
        images.read_image(mhd)
    big = tmp_path / "big.mha"
    big.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4096 4096 4096\nElementType = MET_FLOAT\n"
        "ElementDataFile = LOCAL\n"
    )
    with pytest.raises(Exception, match="more than .SEGLOOP_MAX_IMAGE_GB allows"):
        images.read_image(big)


def test_thousands_of_empty_gzip_members_are_refused():
    """A .nii.gz of 200,000 empty gzip members (4 MB): each member would cost a decompressor
    and a copy of the rest; refused after 16 members."""
    empty_member = gzip.compress(b"")
    data = gzip.compress(nifti_header(SHAPE) + b"\0" * int(np.prod(SHAPE))) + empty_member * 200_000
    with pytest.raises(RefusedFile, match="more than 16 gzip members"):
        untrusted_images.read_image_bytes(data, "members.nii.gz", SHAPE)


def test_text_from_participants_is_valid_and_terminal_safe(tmp_path):
    """A file name that is not UTF-8 reaches a failure detail as an escape (JSON and HTML can
    be written); escape sequences in a container's error text are shown, not obeyed."""
    from segloop.core.records import FailureReason, StepFailure, terminal_safe

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / os.fsdecode(b"\xff.mha")).write_bytes(b"garbage")
    fd = untrusted.open_dir(None, folder)
    try:
        (entry,) = untrusted.list_dir(fd)
        with pytest.raises(RefusedFile) as refused:
            untrusted_images.read_image(fd, entry.name, SHAPE)
    finally:
        os.close(fd)
    failure = StepFailure(FailureReason.INVALID_OUTPUT, str(refused.value), "tail \udcff")
    encoded = json.dumps(failure.to_json(), ensure_ascii=False).encode("utf-8")  # must not raise
    assert b"\\\\udcff" in encoded
    hostile = "boom\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZWNobyBoaQ==\x07 done"
    assert "\x1b" not in terminal_safe(hostile) and "\x07" not in terminal_safe(hostile)
    assert terminal_safe(hostile).startswith("boom\\x1b]0;pwned\\x07")
    assert terminal_safe("line 1\nline 2\ttab") == "line 1\nline 2\ttab"
