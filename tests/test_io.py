"""segloop.core.images, .dataset, .stamps: axis convention, round trips, and every user-fixable error (file + problem)."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segloop.core import dataset, images, stamps
from segloop.core.records import Case, Geometry, SegloopError

SHAPE = (5, 6, 7)
GEOM = Geometry(spacing_mm=(2.5, 0.8, 0.6), origin_mm=(-10.0, 20.5, 3.25))


def ramp(shape=SHAPE, dtype=np.float32) -> np.ndarray:
    """Every voxel a different value, so any transposition or flip shows."""
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


def small_label(shape=SHAPE) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[1:3, 2:4, 3:6] = 1
    label[4, 0, 0] = 2
    return label


def make_dataset(
    root: Path,
    case_ids=("a", "b"),
    channels: int = 2,
    ext: str = ".nii.gz",
    masks=(),
) -> Path:
    for case_id in case_ids:
        for c in range(channels):
            images.write_image(root / "imagesTs" / f"{case_id}_{c:04d}{ext}", ramp() + c, GEOM)
        images.write_image(root / "labelsTs" / f"{case_id}{ext}", small_label(), GEOM)
        for name in masks:
            images.write_image(root / "masksTs" / name / f"{case_id}{ext}", small_label() > 0, GEOM)
    return root


def error_of(function, *args, **kwargs) -> str:
    with pytest.raises(SegloopError) as info:
        function(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- axis convention


def test_nibabel_xyz_file_reads_as_zyx_with_reversed_spacing(tmp_path):
    """nibabel stores (x, y, z) with an affine; read_image must give (z, y, x) and spacing
    reversed, and translate nibabel's RAS affine into SimpleITK's LPS origin/direction."""
    xyz = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # (x, y, z), all distinct
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    path = tmp_path / "xyz.nii.gz"
    nib.save(nib.Nifti1Image(xyz, affine), str(path))

    array, geometry = images.read_image(path)

    assert array.shape == (6, 5, 4)
    np.testing.assert_array_equal(array, xyz.transpose(2, 1, 0))
    assert array[3, 2, 1] == xyz[1, 2, 3]
    assert geometry.spacing_mm == pytest.approx((2.0, 0.7, 0.5))
    # RAS -> LPS: x and y flip sign, in origin and in the direction cosines.
    assert geometry.origin_mm == pytest.approx((-10.0, 20.0, 30.0))
    assert geometry.direction == pytest.approx((-1, 0, 0, 0, -1, 0, 0, 0, 1))


def test_write_image_is_read_back_by_nibabel_in_xyz_order(tmp_path):
    path = tmp_path / "zyx.nii"
    images.write_image(path, ramp(), GEOM)
    image = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(image.dataobj), ramp().transpose(2, 1, 0))
    assert image.header.get_zooms() == pytest.approx(tuple(reversed(GEOM.spacing_mm)))


@pytest.mark.parametrize("ext", [".mha", ".nii.gz", ".nii", ".nrrd"])
def test_round_trip_anisotropic_spacing_origin_direction(tmp_path, ext):
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(
        spacing_mm=(3.0, 0.7, 1.3), origin_mm=(-101.5, 17.25, 4.0), direction=rotated
    )
    array = ramp((4, 9, 11))
    path = tmp_path / f"img{ext}"
    images.write_image(path, array, geometry)
    back, back_geometry = images.read_image(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, array)
    assert back_geometry.spacing_mm == pytest.approx(geometry.spacing_mm, rel=1e-6)
    assert back_geometry.origin_mm == pytest.approx(geometry.origin_mm, rel=1e-6)
    assert back_geometry.direction == pytest.approx(geometry.direction, abs=1e-6)


def test_mha_round_trip_is_exact(tmp_path):
    geometry = Geometry(spacing_mm=(2.0, 0.976, 0.5), origin_mm=(-250.123, 13.5, -800.0))
    path = tmp_path / "x.mha"
    images.write_image(path, ramp((3, 4, 5), np.int16), geometry)
    back, back_geometry = images.read_image(path)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, ramp((3, 4, 5), np.int16))
    assert back_geometry == geometry
    assert sitk.ReadImage(str(path)).GetSpacing() == (0.5, 0.976, 2.0)  # ITK's own (x, y, z)


def test_nifti_geometry_is_read_exactly_as_simpleitk_and_nibabel_read_it(tmp_path):
    """Issue 15, D3: never round a spacing. NIfTI holds float32: 0.4 mm is 0.4000000059604645
    in the file, and SimpleITK, nibabel and the challenges' scripts all compute with that value.
    (Before the fix the reader gave the float32's shortest decimal, 0.4, and this failed.)"""
    path = tmp_path / "x.nii.gz"
    images.write_image(path, ramp(), Geometry(spacing_mm=(0.6, 0.4, 0.4), origin_mm=(-15.8, 0, 1)))
    _, geometry = images.read_image(path)
    as_float32 = tuple(float(np.float32(v)) for v in (0.6, 0.4, 0.4))
    assert (
        geometry.spacing_mm
        == as_float32
        == (0.6000000238418579, 0.4000000059604645) + (0.4000000059604645,)
    )
    assert geometry.spacing_mm == tuple(reversed(sitk.ReadImage(str(path)).GetSpacing()))
    zooms_xyz = nib.load(str(path)).header.get_zooms()
    assert geometry.spacing_mm == tuple(float(z) for z in reversed(zooms_xyz))
    assert all(type(v) is float for v in geometry.spacing_mm + geometry.origin_mm)
    # the origin is kept as read too: equal to SimpleITK's, the float32 of -15.8
    assert geometry.origin_mm == sitk.ReadImage(str(path)).GetOrigin()
    assert geometry.origin_mm[0] == float(np.float32(-15.8)) != -15.8


def test_nsd_at_the_tolerance_uses_the_file_spacing(tmp_path):
    """Issue 15, D3 repro: a cube shifted 5 voxels at 0.4 mm puts surfels at exactly 2 mm in
    decimal but at 2.00000003 mm with the file's float32 spacing, outside the 2 mm tolerance.
    segloop's NSD@2 from the files must equal DeepMind surface-distance given the spacing
    SimpleITK reads (0.80 here), not the rounded spacing's 1.0."""
    import surface_distance

    from segloop.core.metrics.binary import normalised_surface_dice

    gt = np.zeros((30, 30, 30), np.uint8)
    gt[8:20, 8:20, 8:20] = 1
    pred = np.roll(gt, 5, axis=2)
    geometry = Geometry(spacing_mm=(0.4, 0.4, 0.4))
    images.write_image(tmp_path / "gt.nii.gz", gt, geometry)
    images.write_image(tmp_path / "pred.nii.gz", pred, geometry)
    gt_read, gt_geometry = images.read_image(tmp_path / "gt.nii.gz")
    pred_read, _ = images.read_image(tmp_path / "pred.nii.gz")
    file_spacing = tuple(reversed(sitk.ReadImage(str(tmp_path / "gt.nii.gz")).GetSpacing()))

    def reference(spacing):
        distances = surface_distance.compute_surface_distances(
            gt_read.astype(bool), pred_read.astype(bool), spacing
        )
        return surface_distance.compute_surface_dice_at_tolerance(distances, 2.0)

    ours = normalised_surface_dice(pred_read, gt_read, gt_geometry.spacing_mm, 2.0)
    assert ours == pytest.approx(reference(file_spacing), abs=1e-12)
    assert ours < 0.81
    assert reference((0.4, 0.4, 0.4)) == 1.0  # what the rounded spacing gave


# --------------------------------------------------------------------------- write_image


def test_write_image_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "x.nii.gz"
    images.write_image(path, ramp(), GEOM)
    images.write_image(path, ramp() * 2, GEOM)
    np.testing.assert_array_equal(images.read_image(path)[0], ramp() * 2)
    assert sorted(os.listdir(path.parent)) == ["x.nii.gz"]  # no temporary left behind
    assert gzip.open(path).read(4)  # really gzip-compressed


def test_write_image_compresses_mha(tmp_path):
    path = tmp_path / "x.mha"
    images.write_image(path, np.zeros((20, 20, 20), np.float32), GEOM)
    assert b"CompressedData = True" in path.read_bytes()[:400]
    assert path.stat().st_size < 20 * 20 * 20 * 4 / 10


def test_write_image_bool_becomes_uint8(tmp_path):
    path = tmp_path / "m.nii.gz"
    images.write_image(path, small_label() > 0, GEOM)
    array, _ = images.read_image(path)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, (small_label() > 0).astype(np.uint8))


def test_write_image_errors(tmp_path):
    message = error_of(images.write_image, tmp_path / "x.mhd", ramp(), GEOM)
    assert "x.mhd" in message and "format" in message
    message = error_of(images.write_image, tmp_path / "x.png", ramp(), GEOM)
    assert "x.png" in message
    message = error_of(images.write_image, tmp_path / "flat.nii.gz", np.zeros((4, 4)), GEOM)
    assert "flat.nii.gz" in message and "3-D" in message
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- read_image errors


def test_read_image_missing_file(tmp_path):
    message = error_of(images.read_image, tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in message and "no such file" in message


def test_read_image_directory(tmp_path):
    assert "directory" in error_of(images.read_image, tmp_path)


def test_read_image_truncated_gzip(tmp_path):
    good = tmp_path / "good.nii.gz"
    images.write_image(good, np.random.default_rng(0).random((10, 12, 14), dtype=np.float32), GEOM)
    data = good.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    message = error_of(images.read_image, bad)
    assert "cut.nii.gz" in message and "truncated" in message


def test_read_image_corrupt_gzip_crc(tmp_path):
    path = tmp_path / "flip.nii.gz"
    images.write_image(path, np.random.default_rng(1).random((10, 12, 14), dtype=np.float32), GEOM)
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))
    message = error_of(images.read_image, path)
    assert "flip.nii.gz" in message and "corrupt" in message


def test_read_image_truncated_plain_nifti(tmp_path):
    """SimpleITK itself would return zero-filled voxels for this file."""
    path = tmp_path / "cut.nii"
    images.write_image(path, ramp((10, 12, 14)), GEOM)
    path.write_bytes(path.read_bytes()[:2000])
    message = error_of(images.read_image, path)
    assert "cut.nii" in message and "truncated" in message


def test_read_image_garbage_nifti(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(b"this is not an image" * 20)
    message = error_of(images.read_image, path)
    assert "junk.nii.gz" in message and "not a readable NIfTI" in message


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_read_image_truncated_mha_nrrd(tmp_path, ext):
    path = tmp_path / f"cut{ext}"
    images.write_image(path, np.random.default_rng(2).random((10, 12, 14), dtype=np.float32), GEOM)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = error_of(images.read_image, path)
    assert f"cut{ext}" in message and "cannot read image" in message


def test_read_image_garbage_mha(tmp_path):
    path = tmp_path / "junk.mha"
    path.write_bytes(b"garbage")
    message = error_of(images.read_image, path)
    assert "junk.mha" in message and "cannot read image" in message


def test_read_image_rejects_4d(tmp_path):
    path = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), str(path))
    message = error_of(images.read_image, path)
    assert "four.nii.gz" in message and "4-D" in message and "3-D" in message


def test_read_image_rejects_2d(tmp_path):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.float32), np.eye(4)), str(path))
    message = error_of(images.read_image, path)
    assert "flat.nii.gz" in message and "2-D" in message


def test_read_image_rejects_vector_voxels(tmp_path):
    path = tmp_path / "rgb.mha"
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(image, str(path))
    message = error_of(images.read_image, path)
    assert "rgb.mha" in message and "3 components" in message


def test_nifti_with_trailing_singleton_4th_axis_is_3d(tmp_path):
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), str(path))
    array, _ = images.read_image(path)
    assert array.shape == (6, 5, 4)


# --------------------------------------------------------------------------- labels


def write_raw(path: Path, array: np.ndarray, geometry: Geometry = GEOM) -> Path:
    images.write_image(path, array, geometry)
    return path


def test_read_label_dtypes(tmp_path):
    floats = write_raw(tmp_path / "f.nii.gz", small_label().astype(np.float32))
    label = images.read_label(floats)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, small_label())
    big = small_label().astype(np.int32)
    big[0, 0, 0] = 300
    assert images.read_label(write_raw(tmp_path / "u16.nii.gz", big)).dtype == np.uint16
    big[0, 0, 0] = 70000
    assert images.read_label(write_raw(tmp_path / "i32.nii.gz", big)).dtype == np.int32


def test_read_label_non_integer(tmp_path):
    values = small_label().astype(np.float32)
    values[0, 0, 0] = 0.5
    message = error_of(images.read_label, write_raw(tmp_path / "half.nii.gz", values))
    assert "half.nii.gz" in message and "non-integer" in message and "0.5" in message


def test_read_label_negative(tmp_path):
    values = small_label().astype(np.int16)
    values[0, 0, 0] = -1
    message = error_of(images.read_label, write_raw(tmp_path / "neg.nii.gz", values))
    assert "neg.nii.gz" in message and "negative" in message


def test_read_label_nan(tmp_path):
    values = small_label().astype(np.float32)
    values[0, 1, 0] = np.nan
    message = error_of(images.read_label, write_raw(tmp_path / "nan.mha", values))
    assert "nan.mha" in message and "NaN" in message


def test_read_label_nan_in_nifti(tmp_path):
    """SimpleITK reads NIfTI NaN/inf as 0; read_image restores them, so they are caught."""
    values = small_label().astype(np.float32)
    values[1, 2, 3] = np.nan
    message = error_of(images.read_label, write_raw(tmp_path / "nan.nii.gz", values))
    assert "nan.nii.gz" in message and "1 NaN voxels" in message


def test_nifti_nan_and_inf_survive_reading(tmp_path):
    xyz = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    xyz[1, 2, 3], xyz[0, 1, 2] = np.nan, -np.inf
    path = tmp_path / "nb.nii"
    nib.save(nib.Nifti1Image(xyz, np.eye(4)), str(path))
    array, _ = images.read_image(path)
    np.testing.assert_array_equal(array, xyz.transpose(2, 1, 0))  # NaN == NaN here


def test_bytes_after_nifti_voxels_are_not_voxels(tmp_path):
    path = tmp_path / "tail.nii"
    images.write_image(path, ramp(), GEOM)
    path.write_bytes(path.read_bytes() + np.full(3, np.nan, np.float32).tobytes())
    np.testing.assert_array_equal(images.read_image(path)[0], ramp())


def test_multi_member_gzip_reads(tmp_path):
    path = tmp_path / "one.nii.gz"
    images.write_image(path, ramp(), GEOM)
    raw = gzip.decompress(path.read_bytes())
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(raw[:500]) + gzip.compress(raw[500:]))
    np.testing.assert_array_equal(images.read_image(two)[0], ramp())


def test_read_label_against_reference(tmp_path):
    path = write_raw(tmp_path / "l.nii.gz", small_label())
    assert images.read_label(path, GEOM, "img.nii.gz", SHAPE).shape == SHAPE
    other = Geometry(spacing_mm=(2.5, 0.8, 0.7), origin_mm=GEOM.origin_mm)
    message = error_of(images.read_label, path, other, "img.nii.gz")
    assert "l.nii.gz" in message and "spacing" in message and "img.nii.gz" in message
    message = error_of(images.read_label, path, GEOM, "img.nii.gz", (5, 6, 8))
    assert "shape" in message and "(5, 6, 8)" in message


# --------------------------------------------------------------------------- check_same_grid


def test_check_same_grid_accepts_within_tolerance():
    near = Geometry(
        spacing_mm=(2.5 * (1 + 1e-5), 0.8, 0.6),
        origin_mm=(-10.0 + 1e-4, 20.5, 3.25),
        direction=(1.0, 1e-5, 0, 0, 1, 0, 0, 0, 1),
    )
    images.check_same_grid("a", SHAPE, GEOM, "b", SHAPE, near)


@pytest.mark.parametrize(
    ("shape_b", "geometry_b", "problem"),
    [
        ((5, 6, 8), GEOM, "shape"),
        (SHAPE, Geometry((2.5, 0.8, 0.65), GEOM.origin_mm), "spacing"),
        (SHAPE, Geometry(GEOM.spacing_mm, (-10.0, 21.5, 3.25)), "origin"),
        (
            SHAPE,
            Geometry(GEOM.spacing_mm, GEOM.origin_mm, (-1, 0, 0, 0, 1, 0, 0, 0, 1)),
            "direction",
        ),
    ],
)
def test_check_same_grid_messages(shape_b, geometry_b, problem):
    message = error_of(
        images.check_same_grid,
        "labelsTs/x.nii.gz",
        SHAPE,
        GEOM,
        "imagesTs/x_0000.nii.gz",
        shape_b,
        geometry_b,
    )
    assert message.startswith(f"labelsTs/x.nii.gz: {problem}")
    assert "differs from image imagesTs/x_0000.nii.gz" in message


# --------------------------------------------------------------------------- datasets


def test_load_case_types_and_values(tmp_path):
    root = make_dataset(tmp_path, masks=("liver",))
    case = dataset.load_case(root, "a", ("liver",))
    assert isinstance(case, Case)
    assert case.case_id == "a"
    assert len(case.channels) == 2
    for index, channel in enumerate(case.channels):
        assert channel.dtype == np.float32 and channel.shape == SHAPE
        np.testing.assert_array_equal(channel, ramp() + index)
    assert case.label.dtype == np.uint8
    np.testing.assert_array_equal(case.label, small_label())
    assert case.extra_masks["liver"].dtype == bool
    np.testing.assert_array_equal(case.extra_masks["liver"], small_label() > 0)
    assert case.geometry.spacing_mm == pytest.approx(GEOM.spacing_mm)
    assert case.geometry.origin_mm == pytest.approx(GEOM.origin_mm)


def test_list_case_ids_sorted_and_load_dataset(tmp_path):
    root = make_dataset(tmp_path, case_ids=("c10", "c2", "b"), channels=1)
    (root / "dataset.json").write_text("{}")
    (root / "imagesTs" / ".c9_0000.nii.gz.123.tmp.nii.gz").write_bytes(b"")  # a crashed write
    assert dataset.list_case_ids(root) == ["b", "c10", "c2"]
    cases = dataset.load_dataset(root)
    assert [case.case_id for case in cases] == ["b", "c10", "c2"]


@pytest.mark.parametrize("ext", [".nii", ".mha", ".nrrd"])
def test_other_extensions_are_detected(tmp_path, ext):
    root = make_dataset(tmp_path, case_ids=("x",), channels=2, ext=ext, masks=("liver",))
    assert dataset.list_case_ids(root) == ["x"]
    case = dataset.load_case(root, "x", ("liver",))
    assert len(case.channels) == 2
    np.testing.assert_array_equal(case.label, small_label())


def test_write_case_load_case_round_trip(tmp_path):
    case = Case(
        case_id="rt_001",
        channels=(ramp(), ramp() * -1.5),
        label=small_label(),
        geometry=GEOM,
        extra_masks={"liver": small_label() > 0, "body": np.ones(SHAPE, bool)},
    )
    dataset.write_case(tmp_path, case)
    assert (tmp_path / "imagesTs" / "rt_001_0001.nii.gz").is_file()
    assert (tmp_path / "masksTs" / "body" / "rt_001.nii.gz").is_file()
    back = dataset.load_case(tmp_path, "rt_001", ("body", "liver"))
    for a, b in zip(case.channels, back.channels, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.label, case.label)
    for name in ("body", "liver"):
        np.testing.assert_array_equal(back.extra_masks[name], case.extra_masks[name])
    assert back.geometry.spacing_mm == pytest.approx(GEOM.spacing_mm)


def test_write_case_rejects_bad_case_id(tmp_path):
    case = Case("../x", (ramp(),), small_label(), GEOM)
    assert "../x" in error_of(dataset.write_case, tmp_path, case)


def test_missing_dataset_and_images_folder(tmp_path):
    message = error_of(dataset.list_case_ids, tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message
    message = error_of(dataset.list_case_ids, tmp_path)
    assert "imagesTs" in message


def test_empty_dataset(tmp_path):
    (tmp_path / "imagesTs").mkdir()
    (tmp_path / "imagesTs" / "notes.txt").write_text("no images here")
    message = error_of(dataset.list_case_ids, tmp_path)
    assert "imagesTs" in message and "empty dataset" in message


def test_image_file_without_channel_suffix(tmp_path):
    root = make_dataset(tmp_path, channels=1)
    images.write_image(root / "imagesTs" / "c.nii.gz", ramp(), GEOM)
    message = error_of(dataset.list_case_ids, root)
    assert "c.nii.gz" in message and "_<4-digit channel>" in message


def test_channel_gap(tmp_path):
    root = make_dataset(tmp_path, case_ids=("a",), channels=1)
    images.write_image(root / "imagesTs" / "a_0002.nii.gz", ramp(), GEOM)
    for function in (dataset.list_case_ids, lambda r: dataset.load_case(r, "a")):
        message = error_of(function, root)
        assert "a_0001" in message and "channel 0001" in message and "missing" in message


def test_case_with_fewer_channels_than_others(tmp_path):
    root = make_dataset(tmp_path, case_ids=("a", "b"), channels=2)
    (root / "imagesTs" / "b_0001.nii.gz").unlink()
    message = error_of(dataset.list_case_ids, root)
    assert "case b has 1 channel(s)" in message and "case a has 2" in message


def test_duplicate_extension_for_one_channel(tmp_path):
    root = make_dataset(tmp_path, case_ids=("a",), channels=1)
    images.write_image(root / "imagesTs" / "a_0000.mha", ramp(), GEOM)
    message = error_of(dataset.list_case_ids, root)
    assert "a_0000" in message and "channel 0000" in message


def test_label_missing(tmp_path):
    root = make_dataset(tmp_path)
    (root / "labelsTs" / "b.nii.gz").unlink()
    for function in (dataset.list_case_ids, lambda r: dataset.load_case(r, "b")):
        message = error_of(function, root)
        assert str(root / "labelsTs" / "b") in message and "label missing" in message


def test_label_without_image(tmp_path):
    root = make_dataset(tmp_path, case_ids=("a",))
    images.write_image(root / "labelsTs" / "ghost.nii.gz", small_label(), GEOM)
    message = error_of(dataset.list_case_ids, root)
    assert "ghost.nii.gz" in message and "without image" in message


def test_unknown_case(tmp_path):
    root = make_dataset(tmp_path)
    message = error_of(dataset.load_case, root, "zzz")
    assert "zzz_0000" in message and "no image" in message


def test_label_shape_differs_from_image(tmp_path):
    root = make_dataset(tmp_path)
    images.write_image(root / "labelsTs" / "a.nii.gz", np.zeros((5, 6, 8), np.uint8), GEOM)
    message = error_of(dataset.load_case, root, "a")
    assert message.startswith(str(root / "labelsTs" / "a.nii.gz") + ": shape")
    assert "differs from image" in message and "a_0000.nii.gz" in message
    assert "(5, 6, 8)" in message and "(5, 6, 7)" in message


@pytest.mark.parametrize(
    ("geometry", "problem"),
    [
        (Geometry((2.5, 0.9, 0.6), GEOM.origin_mm), "spacing"),
        (Geometry(GEOM.spacing_mm, (-10.0, 20.5, 5.0)), "origin"),
        (Geometry(GEOM.spacing_mm, GEOM.origin_mm, (1, 0, 0, 0, -1, 0, 0, 0, -1)), "direction"),
    ],
)
def test_label_geometry_differs_from_image(tmp_path, geometry, problem):
    root = make_dataset(tmp_path)
    images.write_image(root / "labelsTs" / "b.nii.gz", small_label(), geometry)
    message = error_of(dataset.load_case, root, "b")
    assert message.startswith(str(root / "labelsTs" / "b.nii.gz") + f": {problem}")
    assert "b_0000.nii.gz" in message


def test_channel_grid_differs_from_channel_0(tmp_path):
    root = make_dataset(tmp_path)
    images.write_image(root / "imagesTs" / "a_0001.nii.gz", ramp(), Geometry((2.0, 0.8, 0.6)))
    message = error_of(dataset.load_case, root, "a")
    assert "a_0001.nii.gz" in message and "spacing" in message and "a_0000.nii.gz" in message


def test_non_integer_and_negative_labels_in_dataset(tmp_path):
    root = make_dataset(tmp_path)
    values = small_label().astype(np.float32)
    values[2, 2, 2] = 1.25
    images.write_image(root / "labelsTs" / "a.nii.gz", values, GEOM)
    message = error_of(dataset.load_case, root, "a")
    assert "labelsTs" in message and "a.nii.gz" in message and "non-integer" in message
    values = small_label().astype(np.int8)
    values[2, 2, 2] = -3
    images.write_image(root / "labelsTs" / "b.nii.gz", values, GEOM)
    message = error_of(dataset.load_case, root, "b")
    assert "b.nii.gz" in message and "negative" in message


def test_non_finite_image(tmp_path):
    root = make_dataset(tmp_path)
    values = ramp()
    values[0, 0, 1] = np.inf
    images.write_image(root / "imagesTs" / "a_0001.nii.gz", values, GEOM)
    message = error_of(dataset.load_case, root, "a")
    assert "a_0001.nii.gz" in message and "NaN or infinite" in message


def test_corrupt_file_in_dataset(tmp_path):
    root = make_dataset(tmp_path)
    path = root / "imagesTs" / "b_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:100])
    message = error_of(dataset.load_case, root, "b")
    assert str(path) in message


def test_required_extra_mask_missing(tmp_path):
    root = make_dataset(tmp_path, masks=("liver",))
    (root / "masksTs" / "liver" / "b.nii.gz").unlink()
    assert dataset.load_case(root, "a", ("liver",)).extra_masks["liver"].any()
    message = error_of(dataset.load_case, root, "b", ("liver",))
    assert str(root / "masksTs" / "liver" / "b") in message and "'liver'" in message
    message = error_of(dataset.load_case, root, "a", ("spleen",))
    assert "masksTs" in message and "'spleen'" in message


def test_extra_mask_on_other_grid(tmp_path):
    root = make_dataset(tmp_path, masks=("liver",))
    images.write_image(root / "masksTs" / "liver" / "a.nii.gz", np.ones((5, 6, 8), bool), GEOM)
    message = error_of(dataset.load_case, root, "a", ("liver",))
    assert "masksTs" in message and "liver" in message and "shape" in message


def test_case_files_and_input_stamps(tmp_path):
    root = make_dataset(tmp_path / "d", case_ids=("a",), channels=2, masks=("liver",))
    image = sitk.GetImageFromArray(ramp())
    image.SetSpacing(GEOM.spacing_mm[::-1])
    sitk.WriteImage(image, str(root / "imagesTs" / "a_0001.mhd"))  # MetaImage: .mhd + .raw
    (root / "imagesTs" / "a_0001.nii.gz").unlink()
    found = dataset.case_files(root, "a", ("liver",))
    names = [p.relative_to(root).as_posix() for p in found.all_files()]
    assert names == [
        "imagesTs/a_0000.nii.gz",
        "imagesTs/a_0001.mhd",
        "imagesTs/a_0001.raw",
        "labelsTs/a.nii.gz",
        "masksTs/liver/a.nii.gz",
    ]
    stamped_inputs = stamps.input_stamps(root, found.all_files())
    assert stamps.changed_inputs(root, stamped_inputs) == []
    os.utime(root / "labelsTs" / "a.nii.gz", ns=(1, 1))  # new time, same bytes
    assert stamps.changed_inputs(root, stamped_inputs) == []
    raw = root / "imagesTs" / "a_0001.raw"
    stamped = raw.stat()
    data = bytearray(raw.read_bytes())
    data[0] ^= 0xFF  # same size, other bytes
    time.sleep(0.05)  # file times are coarse (a clock tick): let the rewrite's change time move
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(stamped.st_atime_ns, stamped.st_mtime_ns))  # the old time put back
    assert raw.stat().st_mtime_ns == stamped_inputs["imagesTs/a_0001.raw"]["mtime_ns"]
    (root / "masksTs" / "liver" / "a.nii.gz").unlink()
    assert stamps.changed_inputs(root, stamped_inputs) == [
        "imagesTs/a_0001.raw",
        "masksTs/liver/a.nii.gz",
    ]
    assert "required extra mask 'liver'" in error_of(dataset.case_files, root, "a", ("liver",))
