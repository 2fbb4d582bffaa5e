"""evaluator/phantoms.py: determinism (arrays and file bytes) and anatomical sanity."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from segloop.app import phantoms
from segloop.core import dataset
from segloop.core.records import SegloopError

SMALL = {"pet": (24, 40, 40), "jaw": (24, 40, 40), "abdomen": (20, 40, 40)}
FULL_26 = np.ones((3, 3, 3), dtype=bool)


@cache
def pet_cases(count: int = 10) -> tuple:
    return tuple(phantoms.pet_phantom(i) for i in range(count))


@cache
def default_case(kind: str, index: int):
    return phantoms.PHANTOM_KINDS[kind](index)


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", sorted(phantoms.PHANTOM_KINDS))
def test_same_arguments_same_arrays(kind):
    generate = phantoms.PHANTOM_KINDS[kind]
    a, b = generate(3, seed=7, shape=SMALL[kind]), generate(3, seed=7, shape=SMALL[kind])
    assert a.case_id == b.case_id == f"{kind}_003"
    for x, y in zip(a.channels, b.channels, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.geometry == b.geometry
    other_seed = generate(3, seed=8, shape=SMALL[kind])
    other_index = generate(2, seed=7, shape=SMALL[kind])
    assert not np.array_equal(a.channels[0], other_seed.channels[0])
    assert not np.array_equal(a.channels[0], other_index.channels[0])


@pytest.mark.parametrize("kind", sorted(phantoms.PHANTOM_KINDS))
def test_same_arguments_same_bytes(tmp_path, kind):
    ids_a = phantoms.write_phantom_dataset(tmp_path / "a", kind, 2, seed=5, shape=SMALL[kind])
    ids_b = phantoms.write_phantom_dataset(tmp_path / "b", kind, 2, seed=5, shape=SMALL[kind])
    assert ids_a == ids_b == [f"{kind}_000", f"{kind}_001"]
    files_a, files_b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert files_a == files_b
    expected = {f"labelsTs/{kind}_000.nii.gz", f"imagesTs/{kind}_001_0000.nii.gz", "dataset.json"}
    assert expected <= set(files_a)


def test_kinds_seeded_independently():
    """The kind is part of the seed: two kinds with one seed do not share noise."""
    pet = phantoms.pet_phantom(0, shape=(20, 30, 30), spacing_mm=(1, 1, 1))
    jaw = phantoms.jaw_phantom(0, shape=(20, 30, 30), spacing_mm=(1, 1, 1))
    assert not np.allclose(pet.channels[0][0, 0, :5] + 1000, jaw.channels[0][0, 0, :5] + 1000)


# --------------------------------------------------------------------------- PET/CT


def test_pet_channels_and_geometry():
    case = default_case("pet", 0)
    assert len(case.channels) == 2
    ct, pet = case.channels
    assert ct.dtype == pet.dtype == np.float32
    assert case.shape == (64, 96, 96) and ct.shape == pet.shape == case.shape
    assert case.spacing_mm == (3.0, 2.0, 2.0)
    assert ct.min() < -900 and ct.max() > 500  # air and bone in HU
    assert pet.min() >= 0  # SUV
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) <= {0, 1}
    # The volume centre is at 0 mm: origin = -(n - 1) / 2 * spacing, physical (x, y, z) order.
    assert case.geometry.origin_mm == pytest.approx((-95.0, -95.0, -94.5))


def test_pet_every_fifth_case_has_no_lesion_others_have_one_to_eight():
    for index, case in enumerate(pet_cases()):
        count = ndimage.label(case.label, FULL_26)[1]
        if index % 5 == 4:
            assert count == 0, case.case_id
        else:
            assert 1 <= count <= 8, (case.case_id, count)


def test_pet_lesions_inside_body_and_away_from_the_border():
    for case in pet_cases():
        if not case.label.any():
            continue
        body = ndimage.binary_fill_holes(case.channels[0] > -500)  # lungs are inside the body
        assert body[case.label > 0].all(), case.case_id
        border = np.ones(case.shape, bool)
        border[1:-1, 1:-1, 1:-1] = False
        assert not case.label[border].any(), case.case_id


def test_pet_lesion_sizes_vary_from_tiny_to_large():
    sizes = []
    for case in pet_cases():
        components, count = ndimage.label(case.label, FULL_26)
        sizes += np.bincount(components.ravel())[1:].tolist()
    assert min(sizes) <= 30  # a few voxels: radius ~1.5 voxels in plane
    assert max(sizes) >= 2000  # several cm


def test_pet_lesions_are_hot_and_physiological_uptake_is_unlabelled():
    for case in pet_cases()[:4]:
        pet = case.channels[1]
        background = np.median(pet[case.channels[0] > -500])
        # Brain, heart, kidneys, bladder: hot voxels that are not lesions.
        assert np.percentile(pet[case.label == 0], 99.9) > 4 * background
        if case.label.any():
            components, count = ndimage.label(case.label, FULL_26)
            peaks = ndimage.maximum(pet, components, range(1, count + 1))
            assert np.all(np.asarray(peaks) > 1.5 * background), case.case_id


# --------------------------------------------------------------------------- jaw


@pytest.mark.parametrize("index", [0, 1, 2])
def test_jaw_left_and_right_canals_cross_many_slices(index):
    case = default_case("jaw", index)
    assert len(case.channels) == 1 and case.channels[0].dtype == np.float32
    assert set(np.unique(case.label)) == {0, 1, 2}
    centre_x = (case.shape[2] - 1) / 2
    for class_id in (1, 2):
        canal = case.label == class_id
        assert ndimage.label(canal, FULL_26)[1] == 1  # one tube
        slices = np.flatnonzero(canal.any(axis=(1, 2)))
        assert len(slices) >= case.shape[0] // 2  # the canal crosses many axial slices
        assert np.all(np.diff(slices) == 1)  # without gaps
        for z in slices:  # each slice a small disc: radius ~1.2 mm at 0.4 mm in-plane
            assert 5 <= canal[z].sum() <= 80, (class_id, z, canal[z].sum())
        mean_x = np.nonzero(canal)[2].mean()
        # label 1 = patient left = +x (LPS), label 2 = right.
        assert (mean_x > centre_x) if class_id == 1 else (mean_x < centre_x)


def test_jaw_canal_is_dark_inside_bright_bone():
    case = default_case("jaw", 0)
    image = case.channels[0]
    canal = case.label > 0
    around = ndimage.binary_dilation(canal, iterations=4) & ~ndimage.binary_dilation(
        canal, iterations=2
    )
    assert image[canal].mean() < 400 < image[around].mean()
    assert case.spacing_mm == (0.6, 0.4, 0.4)


# --------------------------------------------------------------------------- abdomen


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_abdomen_lesions_inside_liver_and_hypodense(index):
    case = default_case("abdomen", index)
    liver = case.extra_masks["liver"]
    assert liver.dtype == bool and liver.shape == case.shape
    assert case.label.any()
    assert liver[case.label > 0].all()
    image = case.channels[0]
    healthy = liver & ~ndimage.binary_dilation(case.label > 0, iterations=2)
    assert image[case.label > 0].mean() < image[healthy].mean() - 15


def test_abdomen_has_other_organs_than_liver():
    case = default_case("abdomen", 0)
    image = case.channels[0]
    body = image > -500
    assert (image[body & ~case.extra_masks["liver"]] > 300).any()  # spine
    assert (image[body] < -50).any()  # fat
    assert case.spacing_mm == (2.5, 0.8, 0.8)


# --------------------------------------------------------------------------- datasets


def float32s(values):
    """The values a NIfTI header holds for ``values`` (float32), as Python floats."""
    return tuple(float(np.float32(v)) for v in values)


def test_written_dataset_loads_with_anisotropic_geometry(tmp_path):
    ids = phantoms.write_phantom_dataset(tmp_path, "abdomen", 2, seed=3)
    assert dataset.list_case_ids(tmp_path) == ids == ["abdomen_000", "abdomen_001"]
    for case_id in ids:
        original = phantoms.abdomen_phantom(int(case_id[-3:]), seed=3)
        loaded = dataset.load_case(tmp_path, case_id, ("liver",))
        # NIfTI stores float32 and the reader never rounds (issue 15, D3): 0.8 reads as
        # 0.800000011920929, the value SimpleITK and nibabel give
        assert loaded.spacing_mm == float32s((2.5, 0.8, 0.8))
        assert loaded.geometry.origin_mm == pytest.approx(original.geometry.origin_mm)
        np.testing.assert_array_equal(loaded.channels[0], original.channels[0])
        np.testing.assert_array_equal(loaded.label, original.label)
        np.testing.assert_array_equal(loaded.extra_masks["liver"], original.extra_masks["liver"])
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["numTest"] == 2 and info["labels"]["lesion"] == 1
    assert info["segloop_phantom"] == {
        "kind": "abdomen",
        "seed": 3,
        "shape": [48, 96, 96],
        "spacing_mm": [2.5, 0.8, 0.8],
    }


def test_written_pet_and_jaw_datasets_load(tmp_path):
    phantoms.write_phantom_dataset(tmp_path / "pet", "pet", 1, shape=SMALL["pet"])
    pet = dataset.load_case(tmp_path / "pet", "pet_000")
    assert len(pet.channels) == 2 and pet.spacing_mm == (3.0, 2.0, 2.0)
    phantoms.write_phantom_dataset(tmp_path / "jaw", "jaw", 1, shape=SMALL["jaw"])
    jaw = dataset.load_case(tmp_path / "jaw", "jaw_000")
    assert jaw.spacing_mm == float32s((0.6, 0.4, 0.4)) and jaw.shape == SMALL["jaw"]
    assert set(np.unique(jaw.label)) == {0, 1, 2}


def test_write_phantom_dataset_errors(tmp_path):
    with pytest.raises(SegloopError, match="unknown phantom kind 'brain'"):
        phantoms.write_phantom_dataset(tmp_path, "brain", 1)
    with pytest.raises(SegloopError, match="must be >= 1"):
        phantoms.write_phantom_dataset(tmp_path, "pet", 0)
    with pytest.raises(SegloopError, match="shape"):
        phantoms.write_phantom_dataset(tmp_path, "pet", 1, shape=(4, 40, 40))
    with pytest.raises(SegloopError, match="spacing"):
        phantoms.jaw_phantom(0, spacing_mm=(0.6, 0.0, 0.4))
    assert not any(tmp_path.iterdir())
