"""The fast robot user and metrics give exactly the naive full-volume results (issue 6).

Fast: block-wise largest error component (cc3d on the clusters of occupied 8^3 blocks) and the
EDT on the component's crop (``edt`` package, ``black_border``). Naive: scipy label and scipy
EDT on the full volume (``sakinis_click_naive``), and the DeepMind NSD with scipy's EDT over the
whole cell grid (``segloop.app.bench.naive_dice_nsd``). No timed assertions here: the times are
``segloop bench``'s job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from segloop.app import bench, phantoms
from segloop.core.metrics.scoring import score_classes
from segloop.core.records import SegloopError
from segloop.loop import run_case
from segloop.protocols import base, sakinis
from segloop.protocols.base import (
    block_any,
    center_point,
    connected_components,
    largest_component,
    largest_error_component,
    resolve_edt_device,
)
from segloop.protocols.sakinis import sakinis_click, sakinis_click_naive
from segloop.protocols.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def blobs(rng: np.random.Generator, shape, density: float, smooth: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), smooth)
    return noise > np.quantile(noise, 1 - density)


def naive_largest(mask: np.ndarray, connectivity: int | None = None):
    """The largest of all components (canonical order: the first of equal size wins)."""
    components = connected_components(mask, connectivity)
    if not components:
        return None
    best = max(c.size for c in components)
    return next(c for c in components if c.size == best)


def same_component(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return (
        a.size == b.size
        and a.offset == b.offset
        and a.first_voxel == b.first_voxel
        and a.image_shape == b.image_shape
        and np.array_equal(a.mask, b.mask)
    )


def perturbed_prediction(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A label map with realistic errors: dilated/eroded/shifted classes, dropped parts, blobs."""
    prediction = np.zeros_like(label)
    for value in [v for v in np.unique(label) if v != 0]:
        mask = label == value
        move = rng.integers(0, 4)
        if move == 1:
            mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 3)))
        elif move == 2:
            mask = ndimage.binary_erosion(mask)
        elif move == 3:
            mask = np.roll(mask, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))
        labels, count = ndimage.label(mask)
        if count > 1 and rng.random() < 0.5:  # miss one part
            mask &= labels != int(rng.integers(1, count + 1))
        prediction[mask & (prediction == 0)] = value
    extra = blobs(rng, label.shape, 0.01, 1.0) & (label == 0)
    prediction[extra] = int(rng.integers(1, max(2, int(label.max()) + 1)))
    return prediction


# ---------------------------------------------------------------------------------- primitives


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16])
def test_block_any_equals_per_block_any(dtype):
    rng = np.random.default_rng(1)
    for shape in [(8, 8, 8), (9, 17, 16), (20, 13, 24), (5, 7, 3), (16, 40), (3, 33)]:
        volume = (rng.random(shape) < 0.01).astype(dtype)
        for view in (volume, volume[1:, 2:], volume[..., ::-1]):
            expected = np.zeros(tuple(-(-n // 8) for n in view.shape), dtype=bool)
            for index in np.argwhere(view != 0):
                expected[tuple(index // 8)] = True
            assert np.array_equal(block_any(view), expected), (shape, view.strides)


def test_components_match_scipy_in_2d_and_on_thin_volumes():
    """cc3d 4.1.1 mislabels some bool inputs (2D 8-connected, 3D shapes like (1, 1, n)); the
    primitives hand it uint8 views, which it labels right."""
    rng = np.random.default_rng(9)
    for trial in range(400):
        ndim = 2 if trial % 2 else 3
        shape = tuple(int(v) for v in rng.integers(1, 14, ndim))
        if ndim == 3 and trial % 4 == 1:
            shape = (1, 1, shape[2])
        mask = blobs(rng, shape, rng.uniform(0.2, 0.7), rng.uniform(0.3, 1.5))
        for full in range(1, ndim + 1):
            connectivity = {(2, 1): 4, (2, 2): 8, (3, 1): 6, (3, 2): 18, (3, 3): 26}[(ndim, full)]
            labels, count = ndimage.label(mask, ndimage.generate_binary_structure(ndim, full))
            components = connected_components(mask, connectivity)
            assert len(components) == count, (shape, connectivity)
            for index, component in enumerate(components, start=1):
                assert np.array_equal(component.full_mask(), labels == index)


@pytest.mark.parametrize("connectivity", [None, 6, 18, 26])
def test_largest_component_equals_labelling_everything(connectivity):
    rng = np.random.default_rng(2)
    for trial in range(40):
        shape = tuple(int(v) for v in rng.integers(5, 40, 3))
        if trial % 4 == 0:
            shape = (shape[0], shape[1], 8 * int(rng.integers(1, 5)))  # the uint64 fast path
        mask = blobs(rng, shape, rng.uniform(0.01, 0.5), rng.uniform(0.5, 2.0))
        assert same_component(
            largest_component(mask, connectivity), naive_largest(mask, connectivity)
        )


def test_largest_component_in_2d():
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = tuple(int(v) for v in rng.integers(5, 60, 2))
        mask = blobs(rng, shape, rng.uniform(0.02, 0.5), rng.uniform(0.5, 2.0))
        for connectivity in (4, 8):
            assert same_component(
                largest_component(mask, connectivity), naive_largest(mask, connectivity)
            )


def test_clusters_reaching_into_each_others_boxes():
    """A ring of blocks around an island: the ring's box holds the island's blocks."""
    mask = np.zeros((40, 48, 48), bool)
    mask[4:36, 4:8, 4:44] = True  # ring: four walls
    mask[4:36, 40:44, 4:44] = True
    mask[4:36, 4:44, 4:8] = True
    mask[4:36, 4:44, 40:44] = True
    mask[10:30, 20:28, 20:28] = True  # island, larger than any single wall
    mask[12, 24, 24] = False
    assert same_component(largest_component(mask), naive_largest(mask))
    # a diagonal chain whose blocks touch at corners only
    chain = np.zeros((32, 32, 32), bool)
    for k in range(0, 31, 2):
        chain[k : k + 2, k : k + 2, k : k + 2] = True
    assert same_component(largest_component(chain), naive_largest(chain))


def test_ties_go_to_the_first_voxel_across_clusters():
    mask = np.zeros((40, 40, 40), bool)
    mask[30:33, 30:33, 30:33] = True  # far cluster, first
    mask[2:5, 20:23, 2:5] = True  # same size, earlier in C order, another cluster
    assert largest_component(mask).first_voxel == (2, 20, 2)


def test_largest_error_component_on_label_maps():
    rng = np.random.default_rng(4)
    for trial in range(30):
        shape = tuple(int(v) for v in rng.integers(8, 36, 3))
        label = (blobs(rng, shape, 0.3, 1.5).astype(np.uint8)) * rng.integers(1, 4, shape).astype(
            np.uint8
        )
        prediction = perturbed_prediction(label, rng) if trial % 3 else np.zeros_like(label)
        for class_id in (0, 1, 2, 3, 4):
            error = np.not_equal(label == class_id, prediction == class_id)
            assert same_component(
                largest_error_component(label, prediction, class_id), naive_largest(error)
            )


def test_voxel_edt_without_padding_copy_equals_padded_scipy():
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = blobs(rng, tuple(int(v) for v in rng.integers(4, 20, 3)), 0.4, 1.0)
        component = naive_largest(mask)
        full = np.pad(component.full_mask(), 1)
        distances = ndimage.distance_transform_edt(full)[1:-1, 1:-1, 1:-1]
        np.testing.assert_array_equal(
            base.component_edt(component), distances[component.slices] * component.mask
        )
        expected = np.unravel_index(int(np.argmax(distances)), distances.shape)
        assert center_point(component) == tuple(int(v) for v in expected)


# ---------------------------------------------------------------------------------- clicks


@pytest.mark.parametrize("spacing", [None, (3.0, 2.0, 2.0)])
def test_fast_click_equals_naive_on_autopet_like_cases(spacing):
    for seed in range(24):
        shape = ((40, 56, 48), (32, 48, 64), (24, 40, 40))[seed % 3]
        case = bench.autopet_like_case(seed, shape)
        fast = sakinis_click(case.label, case.prediction, spacing, class_id=1)
        naive = sakinis_click_naive(case.label == 1, case.prediction == 1, spacing)
        assert fast == naive, seed
        # boolean masks and label maps: the same click
        assert sakinis_click(case.label == 1, case.prediction == 1, spacing) == naive
        # the later clicks of a loop: the prediction corrected around earlier clicks
        corrected = case.prediction.copy()
        (z, y, x), positive = fast
        corrected[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = positive
        assert sakinis_click(case.label, corrected, spacing) == sakinis_click_naive(
            case.label == 1, corrected == 1, spacing
        )


def test_fast_click_equals_naive_on_random_blobs():
    rng = np.random.default_rng(6)
    for trial in range(80):
        shape = tuple(int(v) for v in rng.integers(6, 40, 3))
        gt = blobs(rng, shape, rng.uniform(0.01, 0.6), rng.uniform(0.5, 2.5))
        pred = blobs(rng, shape, rng.uniform(0.0, 0.6), rng.uniform(0.5, 2.5))
        if trial % 9 == 0:
            pred = gt.copy()
        if trial % 7 == 0:
            pred = np.zeros(shape, bool)
        if trial % 11 == 0:
            pred = np.ones(shape, bool)
        assert sakinis_click(gt, pred) == sakinis_click_naive(gt, pred)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("pet", (40, 64, 64)), ("abdomen", (32, 48, 48)), ("jaw", (40, 48, 56))],
)
def test_fast_click_equals_naive_on_phantoms(kind, shape):
    generate = phantoms.PHANTOM_KINDS[kind]
    rng = np.random.default_rng(7)
    for index in range(5):
        case = generate(index, 0, shape=shape)
        classes = [int(v) for v in np.unique(case.label) if v != 0] or [1]
        for prediction in (np.zeros_like(case.label), perturbed_prediction(case.label, rng)):
            for class_id in classes:
                gt, pred = case.label == class_id, prediction == class_id
                expected = sakinis_click_naive(gt, pred)
                assert sakinis_click(case.label, prediction, class_id=class_id) == expected
                spaced = sakinis_click_naive(gt, pred, case.spacing_mm)
                assert (
                    sakinis_click(case.label, prediction, case.spacing_mm, class_id=class_id)
                    == spaced
                )


def naive_click_for_maps(
    label, prediction, spacing_mm=None, downsample=None, class_id=1, device=None
):
    return sakinis_click_naive(label == class_id, prediction == class_id, spacing_mm)


@pytest.mark.parametrize(("kind", "task_name"), [("pet", "medsegfm"), ("jaw", "generic")])
def test_reactive_loop_same_clicks_and_metrics_fast_and_naive(kind, task_name, monkeypatch):
    from segloop.baselines import region_growing
    from segloop.containers.local import InProcessBackend

    shape = {"pet": (40, 64, 64), "jaw": (40, 48, 56)}[kind]
    classes = {"pet": {1: "lesion"}, "jaw": {1: "left", 2: "right"}}[kind]
    task = get_task(task_name, classes=classes)
    outcomes = []
    for click in (sakinis.sakinis_click, naive_click_for_maps):
        monkeypatch.setattr(sakinis, "sakinis_click", click)
        runs = []
        for index in range(3):
            case = phantoms.PHANTOM_KINDS[kind](index, 0, shape=shape)
            outcome = run_case(case, task, InProcessBackend(region_growing.predict))
            runs.append(
                [(s.new_interactions, s.metrics) for s in outcome.steps],
            )
        outcomes.append(runs)
    fast, naive = outcomes
    assert fast == naive
    assert any(step[0] for case in fast for step in case[1:])  # clicks did happen


# ---------------------------------------------------------------------------------- metrics


def test_fast_metrics_equal_naive_full_volume_metrics():
    rng = np.random.default_rng(8)
    pairs = []
    for seed in range(6):
        case = bench.autopet_like_case(seed, (32, 48, 48))
        pairs.append((case.prediction, case.label, case.spacing_mm))
    for index in range(3):
        case = phantoms.pet_phantom(index, 0, shape=(32, 48, 48))
        pairs.append((perturbed_prediction(case.label, rng), case.label, case.spacing_mm))
    label = np.zeros((20, 24, 24), np.uint8)
    pairs.append((label, label, (1.0, 1.0, 1.0)))  # both empty
    pairs.append((label, bench.autopet_like_case(9, (20, 24, 24)).label, (2.0, 1.0, 0.5)))
    for prediction, label, spacing in pairs:
        scores = score_classes(prediction, label, [1], spacing, ["dice", "nsd@2"])
        dice, nsd = bench.naive_dice_nsd(prediction, label, 1, spacing, 2.0)
        assert scores["dice"]["mean"] == pytest.approx(dice, abs=1e-12)
        assert scores["nsd@2"]["mean"] == pytest.approx(nsd, abs=1e-12)


# ---------------------------------------------------------------------------------- GPU path


def _cuda_available() -> bool:
    return base.cupy_modules() is not None


@pytest.mark.skipif(not _cuda_available(), reason="cupy with a CUDA device is not available here")
def test_gpu_edt_gives_identical_clicks():
    for seed in range(6):
        case = bench.autopet_like_case(seed, (40, 56, 48))
        for spacing in (None, case.spacing_mm):
            cpu = sakinis_click(case.label, case.prediction, spacing, device="cpu")
            gpu = sakinis_click(case.label, case.prediction, spacing, device="cuda")
            assert gpu == cpu


def test_gpu_request_falls_back_to_cpu_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setitem(sys.modules, "cupyx", None)
    with pytest.warns(RuntimeWarning, match="using the CPU"):
        assert resolve_edt_device("cuda") == "cpu"
    monkeypatch.setenv("SEGLOOP_EDT_DEVICE", "cuda")
    case = bench.autopet_like_case(3, (32, 40, 40))
    with pytest.warns(RuntimeWarning):
        fallback = sakinis_click(case.label, case.prediction)
    monkeypatch.setenv("SEGLOOP_EDT_DEVICE", "cpu")
    assert fallback == sakinis_click(case.label, case.prediction)
    assert resolve_edt_device() == "cpu"
    with pytest.raises(SegloopError, match="use cpu or cuda"):
        resolve_edt_device("tpu")


def stand_in_cupy(calls: list) -> dict[str, types.ModuleType]:
    """numpy/scipy dressed as cupy, to run the GPU code path on this CPU-only machine."""
    cupy = types.ModuleType("cupy")
    for name in ("asarray", "indices", "float64", "sqrt", "flatnonzero"):
        setattr(cupy, name, getattr(np, name))
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_ndimage = types.ModuleType("cupyx.scipy.ndimage")

    def distance_transform_edt(image, **kwargs):
        calls.append(image.shape)
        return ndimage.distance_transform_edt(image, **kwargs)

    cupyx_ndimage.distance_transform_edt = distance_transform_edt
    cupyx.scipy = cupyx_scipy
    cupyx_scipy.ndimage = cupyx_ndimage
    return {
        "cupy": cupy,
        "cupyx": cupyx,
        "cupyx.scipy": cupyx_scipy,
        "cupyx.scipy.ndimage": cupyx_ndimage,
    }


def test_gpu_code_path_gives_cpu_clicks_with_a_stand_in_cupy(monkeypatch):
    calls: list = []
    for name, module in stand_in_cupy(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    assert resolve_edt_device("cuda") == "cuda"
    for seed in range(8):
        case = bench.autopet_like_case(seed, (40, 56, 48))
        for spacing in (None, case.spacing_mm):
            cpu = sakinis_click(case.label, case.prediction, spacing, device="cpu")
            gpu = sakinis_click(case.label, case.prediction, spacing, device="cuda")
            assert gpu == cpu
    assert len(calls) >= 8  # the stand-in's EDT really ran
    monkeypatch.setenv("SEGLOOP_EDT_DEVICE", "cuda")
    before = len(calls)
    case = bench.autopet_like_case(0, (40, 56, 48))
    assert sakinis_click(case.label, case.prediction) == sakinis_click_naive(
        case.label == 1, case.prediction == 1
    )
    assert len(calls) == before + 1  # the environment variable chose the GPU path


# ---------------------------------------------------------------------------------- bench


def test_bench_case_is_deterministic_and_realistic():
    a = bench.autopet_like_case(11, (48, 64, 64))
    b = bench.autopet_like_case(11, (48, 64, 64))
    assert np.array_equal(a.label, b.label) and np.array_equal(a.prediction, b.prediction)
    assert a.label.dtype == np.uint8 and a.label.shape == (48, 64, 64)
    errors = np.not_equal(a.label, a.prediction)
    _, count = ndimage.label(errors, structure=np.ones((3, 3, 3)))
    assert count >= 3  # several error components: misses, boundaries, false positives
    assert a.label.any() and a.prediction.any()
    assert bench.autopet_like_case(12, (48, 64, 64)).label.tobytes() != a.label.tobytes()


@pytest.mark.slow
def test_bench_quick_prints_every_figure(tmp_path):
    figures_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "segloop", "bench", "--quick", "--json", str(figures_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in (
        "machine:",
        "Sakinis click",
        "Dice + NSD@2mm",
        "Full run throughput",
    ):
        assert heading in out
    assert out.count("naive / fast = ") == 2
    assert "same clicks fast vs naive: yes" in out
    assert "same values fast vs naive: yes" in out
    assert out.count("peak memory:") == 2
    assert "1 worker:" in out and "2 workers:" in out
    assert out.count("case files identical to 1 worker: yes") == 2
    figures = json.loads(figures_path.read_text())
    assert figures["click"]["fast"]["median_ms"] > 0
    assert figures["metrics"]["equal"]["same"] == 1
    assert [row["setting"] for row in figures["throughput"]["runs"]] == ["1 worker", "2 workers"]


SPACINGS = (0.7, 1.0, 1.3, 2.0, 3.0, 0.8, 2.5, 0.9765625)


def shell_maximum(component, spacing, border):
    """The peeled maxima as an EDT array: their distance there, 0 elsewhere."""
    found = base._shell_maxima(component, spacing, border)
    if found is None:
        return None
    maxima, distance = found
    assert np.array_equal(maxima, maxima[np.lexsort(maxima.T[::-1])])  # in C order
    out = np.zeros(component.mask.shape, dtype=np.float64)
    out[tuple(maxima.T)] = distance
    return out


@pytest.mark.parametrize("seed", range(4))
def test_click_maximum_without_a_full_edt_equals_scipys(seed):
    """Issue 16: the centre click's EDT maximum by peeling shells (thin, folded components)
    and by the float32 edt package plus exact candidates (spacing-aware): the maxima, their
    exact float64 distances and every tie order equal scipy's EDT of the padded crop."""
    rng = np.random.default_rng(seed)
    checked = {"shells": 0, "edt32": 0}
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(5, 36, size=3))
        noise = ndimage.uniform_filter(rng.random(shape), int(rng.integers(1, 5)))
        mask = noise > rng.uniform(0.3, 0.7)
        if not mask.any():
            continue
        component = base.largest_component(mask)
        spacing = tuple(float(s) for s in rng.choice(SPACINGS, size=3))
        for sp in (None, spacing):
            for border in (True, False):
                reference = base.component_edt(component, sp, border)
                fast = {"shells": shell_maximum(component, sp, border)}
                if sp is not None:
                    fast["edt32"] = base._maximum_distances_mm(component, sp, border)
                for kind, distances in fast.items():
                    if distances is None:
                        continue
                    checked[kind] += 1
                    top = distances == distances.max()
                    assert np.array_equal(top, reference == reference.max())
                    assert np.array_equal(distances[top], reference[top])
                    for tie in base.TIE_ORDERS:
                        assert base.pick_maximum(distances, component.mask, tie, sp) == (
                            base.pick_maximum(reference, component.mask, tie, sp)
                        )
    assert checked["shells"] > 10 and checked["edt32"] > 10
