"""``segloop bench``: speed figures of the harness's own work, against naive baselines (issue 6).

What it measures, side by side, in one run:

* one reactive Sakinis click (largest 26-connected error component, exact EDT argmax; SPEC
  "Sakinis / MedSegFM click", thesis §4.2 Table 9: 955 ms originally, 49 ms per click on an
  A100 after its optimisations) on autoPET-sized cases: ``segloop.protocols.sakinis.sakinis_click``
  against ``sakinis_click_naive`` (scipy label and scipy EDT on the full volume);
* one step's Dice + NSD at 2 mm: ``segloop.core.metrics.score_classes`` against
  :func:`naive_dice_nsd` (the DeepMind method on the full volume: neighbour codes of every cell,
  scipy EDT of the other surface over the whole volume, no crop);
* the peak memory of each: in a fresh process, the growth of the peak resident memory
  (VmHWM, reset before the call) over the first call, and the peak of the numpy/Python allocations
  (``tracemalloc``), which also counts memory freed before the resident peak moved;
* the throughput of a full run (cases per minute) with 1 and N local workers (and optionally
  a Dask LocalCluster) on phantoms, and whether their case files are byte-identical;
* the Docker harness overhead per step (``segloop.app.bench_docker.bench_docker_overhead``): a trivial
  model image (``segloop/trivial``, predicts background) on a 256^3 case in per-step mode (one
  container per step) and in session mode (one container per case), against the same model
  called in-process, with the ratio. Skipped, with the reason, when no Docker engine is
  reachable or the image is not built; ``--no-docker`` skips it.

The autoPET-sized cases come from :func:`autopet_like_case`: 400 x 400 x 352 voxels of
2 x 2 x 3 mm (array shape (352, 400, 400), spacing (3, 2, 2) mm in (z, y, x) order), lesions of
0.1-200 ml with irregular borders, and a prediction with realistic errors: missed lesions,
over- and under-segmented and shifted boundaries, false-positive blobs.

Timings in a fresh subprocess per measurement (no state shared with the other measurements).
``--quick`` shrinks everything for a CI smoke test (the figures then mean little).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from segloop import runs
from segloop.app import bench_surface, phantoms
from segloop.app.bench_docker import bench_docker_overhead
from segloop.app.bench_surface import peak_rss_mib, reset_peak_rss
from segloop.containers.images import docker_client, image_exists
from segloop.core.metrics.scoring import score_classes
from segloop.core.metrics.surface import surfel_area_table
from segloop.core.records import SegloopError
from segloop.core.timing import TimeBudget
from segloop.protocols.base import cupy_modules
from segloop.protocols.sakinis import sakinis_click, sakinis_click_naive

AUTOPET_SHAPE = (352, 400, 400)  # (z, y, x): 400 x 400 x 352 voxels
AUTOPET_SPACING_MM = (3.0, 2.0, 2.0)  # (z, y, x): 2 x 2 x 3 mm
CLICK_TARGET_MS = 50.0
METRICS_TARGET_MS = 150.0
QUICK_SHAPE = (48, 64, 64)
RUN_SHAPE = (176, 200, 200)
QUICK_RUN_SHAPE = (24, 32, 32)
DOCKER_SHAPE = (256, 256, 256)
QUICK_DOCKER_SHAPE = (32, 32, 32)
DOCKER_STEPS = 10
DOCKER_IMAGE = "segloop/trivial:latest"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# autoPET-sized cases


@dataclass(frozen=True)
class BenchCase:
    """A ground truth and a prediction with realistic errors (both uint8 label maps, class 1)."""

    label: np.ndarray
    prediction: np.ndarray
    spacing_mm: tuple[float, float, float]
    lesions: int
    missed: int
    false_positive_blobs: int

    def volume_ml(self, mask: np.ndarray) -> float:
        return int(np.count_nonzero(mask)) * math.prod(self.spacing_mm) / 1000.0


def _paint_blob(
    target: np.ndarray,
    rng: np.random.Generator,
    centre_vox: np.ndarray,
    semi_axes_vox: np.ndarray,
    roughness: float = 0.2,
) -> None:
    """OR an irregular ellipsoid into ``target``, computed on its own box only.

    Irregular border: the normalised squared radius is compared with 1 + roughness * smooth
    unit noise, which gives lobulated, non-convex lesions like real ones.
    """
    shape = np.array(target.shape)
    reach = np.ceil(semi_axes_vox * (1.0 + roughness) + 1).astype(int)
    lo = np.clip(centre_vox - reach, 0, shape)
    hi = np.clip(centre_vox + reach + 1, 0, shape)
    if np.any(hi <= lo):
        return
    grids = np.ogrid[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
    r2 = sum(
        ((g - c) / max(float(s), 0.5)) ** 2
        for g, c, s in zip(grids, centre_vox, semi_axes_vox, strict=True)
    )
    noise = ndimage.gaussian_filter(rng.standard_normal(r2.shape), 1.5)
    noise /= max(float(noise.std()), 1e-6)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    target[box] |= r2 <= 1.0 + roughness * noise


def autopet_like_case(
    seed: int,
    shape: Sequence[int] = AUTOPET_SHAPE,
    spacing_mm: Sequence[float] = AUTOPET_SPACING_MM,
) -> BenchCase:
    """A whole-body lesion case and a prediction with realistic errors (deterministic in seed).

    Ground truth: 4-15 lesions inside an elliptic-cylinder "body", radii log-uniform in 3-35 mm
    (0.1-180 ml; capped at 15 % of the body for small test volumes), a third of them in clusters
    of touching lesions (lymphoma-like conglomerates). Prediction: each lesion missed with
    probability 0.2, else re-drawn with its radii scaled by 0.75-1.3 (under-/over-segmentation)
    and its centre shifted by up to 2 voxels per axis; plus 2-6 false-positive blobs of radius
    4-30 mm (physiological uptake: bladder, kidneys, brown fat).
    """
    shape_array = np.array([int(v) for v in shape])
    spacing = np.array([float(v) for v in spacing_mm])
    if shape_array.size != 3 or spacing.size != 3 or shape_array.min() < 8 or spacing.min() <= 0:
        raise SegloopError(f"bench case: shape {tuple(shape)} and spacing {tuple(spacing_mm)} mm")
    rng = np.random.default_rng([int(seed), 6])
    label = np.zeros(tuple(shape_array), dtype=bool)
    prediction = np.zeros(tuple(shape_array), dtype=bool)
    body_semi = shape_array * np.array([0.45, 0.3, 0.38])
    centre = (shape_array - 1) / 2.0
    radius_cap_mm = 0.15 * float(np.min(body_semi * spacing))

    def body_point() -> np.ndarray:
        while True:
            u = rng.uniform(-1.0, 1.0, 3)
            if u[1] ** 2 + u[2] ** 2 <= 1.0:
                return np.rint(centre + u * body_semi).astype(int)

    def semi_axes(low_mm: float, high_mm: float) -> np.ndarray:
        high = min(high_mm, radius_cap_mm)
        low = min(low_mm, high)
        radius = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return radius * rng.uniform(0.75, 1.25, 3) / spacing

    lesions = int(rng.integers(4, 16))
    missed = 0
    anchor = body_point()
    for index in range(lesions):
        axes = semi_axes(3.0, 35.0)
        if index % 3 == 1:  # touches the previous lesion: a conglomerate
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            lesion_centre = np.rint(anchor + direction * axes.max() * 1.6).astype(int)
            lesion_centre = np.clip(lesion_centre, 0, shape_array - 1)
        else:
            lesion_centre = body_point()
        anchor = lesion_centre
        _paint_blob(label, rng, lesion_centre, axes)
        if rng.random() < 0.2:
            missed += 1
            continue
        shift = rng.integers(-2, 3, 3)
        _paint_blob(prediction, rng, lesion_centre + shift, axes * rng.uniform(0.75, 1.3))
    blobs = int(rng.integers(2, 7))
    for _ in range(blobs):
        _paint_blob(prediction, rng, body_point(), semi_axes(4.0, 30.0))
    return BenchCase(
        label=label.view(np.uint8),
        prediction=prediction.view(np.uint8),
        spacing_mm=tuple(float(v) for v in spacing),  # type: ignore[arg-type]
        lesions=lesions,
        missed=missed,
        false_positive_blobs=blobs,
    )


# --------------------------------------------------------------------------------------------
# Naive full-volume Dice + NSD (the reference the fast metrics are measured against)


def _full_neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour code of every cell of the whole zero-padded volume (shape + 1 per axis).

    Cell j covers voxels j-1 and j on every axis; corner (c_0, .., c_{n-1}) is bit
    sum(c_a * 2**(n-1-a)), the convention of ``segloop.core.metrics.surfel_area_table``.
    """
    padded = np.pad(mask.astype(bool), 1).view(np.uint8)
    ndim = mask.ndim
    codes = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.uint8)
    for corner in itertools.product((0, 1), repeat=ndim):
        bit = sum(c << (ndim - 1 - a) for a, c in enumerate(corner))
        window = tuple(slice(c, c + n + 1) for c, n in zip(corner, mask.shape, strict=True))
        codes |= padded[window] << bit
    return codes


def naive_dice_nsd(
    prediction: np.ndarray,
    label: np.ndarray,
    class_id: int,
    spacing_mm: Sequence[float],
    tolerance_mm: float,
) -> tuple[float, float]:
    """(Dice, NSD at ``tolerance_mm``) of one class the DeepMind way on the full volume.

    Dice = 2|P & G| / (|P| + |G|). NSD: surfels are the cells whose 8 voxels are neither all
    inside nor all outside, with the area of their neighbour code; the distance of a surfel to
    the other surface is scipy's EDT (in mm) of the other mask's non-surfel cells over the
    whole cell grid, read at the surfel; NSD = (area of P's surfels within tolerance + same for
    G) / (total surfel area) (Nikolov et al. 2021; SPEC Metrics). Empty masks: the default
    policy (both empty -> 1, 1; one empty -> 0, 0). No crop anywhere: the reference.
    """

    p = np.asarray(prediction) == class_id
    g = np.asarray(label) == class_id
    p_count, g_count = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    if p_count == 0 and g_count == 0:
        return 1.0, 1.0
    if p_count == 0 or g_count == 0:
        return 0.0, 0.0
    dice = 2.0 * int(np.count_nonzero(p & g)) / (p_count + g_count)
    spacing = tuple(float(s) for s in spacing_mm)
    table = surfel_area_table(spacing)
    full = (1 << (1 << p.ndim)) - 1
    codes_p, codes_g = _full_neighbour_codes(p), _full_neighbour_codes(g)
    surface_p = (codes_p != 0) & (codes_p != full)
    surface_g = (codes_g != 0) & (codes_g != full)
    to_g = ndimage.distance_transform_edt(~surface_g, sampling=spacing)[surface_p]
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing)[surface_g]
    areas_p, areas_g = table[codes_p[surface_p]], table[codes_g[surface_g]]
    overlap = np.sum(areas_p[to_g <= tolerance_mm]) + np.sum(areas_g[to_p <= tolerance_mm])
    return dice, float(overlap / (np.sum(areas_p) + np.sum(areas_g)))


# --------------------------------------------------------------------------------------------
# Measurements in fresh subprocesses


def _probe_operation(kind: str, label: np.ndarray, prediction: np.ndarray, spacing: tuple):
    if kind == "click":
        return lambda: sakinis_click(label, prediction, class_id=1)
    if kind == "click_naive":
        return lambda: sakinis_click_naive(label == 1, prediction == 1)
    if kind == "metrics":

        def fast() -> tuple[float, float]:
            scores = score_classes(prediction, label, [1], spacing, ["dice", "nsd@2"])
            return scores["dice"]["mean"], scores["nsd@2"]["mean"]

        return fast
    if kind == "metrics_naive":
        return lambda: naive_dice_nsd(prediction, label, 1, spacing, 2.0)
    raise SegloopError(f"bench: unknown measurement {kind!r}")


def probe_main(argv: Sequence[str]) -> int:
    """Child process: load one case, run one operation cold, traced, then ``repeats`` times warm.

    Memory: the growth of the peak resident memory over the cold call (VmHWM after resetting it
    through /proc/self/clear_refs, else ``ru_maxrss``: everything the process touched, C++
    buffers included) and the peak of the numpy/Python
    allocations of the traced call (``tracemalloc``). ``times_s``: the cold call, then the warm
    ones (the traced call is not timed).
    """
    kind, folder, index, repeats = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    label = np.load(folder / f"label_{index}.npy")
    prediction = np.load(folder / f"prediction_{index}.npy")
    spacing = tuple(json.loads((folder / "spacing.json").read_text()))
    operation = _probe_operation(kind, label, prediction, spacing)
    reset_peak_rss()
    before = peak_rss_mib()
    started = time.perf_counter()
    result = operation()  # cold call
    times = [time.perf_counter() - started]
    extra = peak_rss_mib() - before
    tracemalloc.start()  # a second, untimed call (tracing slows allocations)
    operation()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for _ in range(max(0, repeats)):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "times_s": times,
                "peak_extra_mib": extra,
                "peak_traced_mib": traced_peak / 2**20,
                "result": _jsonable(result),
            }
        )
    )
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _probe(kind: str, folder: Path, index: int, repeats: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys; from segloop.app.bench import probe_main; sys.exit(probe_main(sys.argv[1:]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, kind, str(folder), str(index), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise SegloopError(f"bench: the {kind} measurement failed: {completed.stderr[-800:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Throughput of full runs


def _run_throughput(
    folder: Path, cases: int, shape: Sequence[int], task: str, model: str, jobs: int, dask: bool
) -> dict[str, Any]:
    data = folder / "data"
    phantoms.write_phantom_dataset(data, "pet", cases, seed=0, shape=tuple(shape))
    spec = runs.RunSpec(data, task, model, "bench", 0)
    settings = [("1 worker", {"jobs": 1}), (f"{jobs} workers", {"jobs": jobs})]
    if dask:
        settings.append((f"Dask LocalCluster, {jobs} workers", {"jobs": jobs, "use_dask": True}))
    out: dict[str, Any] = {"cases": cases, "shape": list(shape), "task": task, "model": model}
    rows, reference = [], None
    for name, options in settings:
        run_dir = folder / f"run_{len(rows)}"
        pending = runs.pending_case_ids(spec, run_dir)
        started = time.perf_counter()
        runs.execute(spec, run_dir, pending, **options)
        elapsed = time.perf_counter() - started
        files = {
            p.name: p.read_bytes()
            for p in sorted((run_dir / "cases").glob("*.json"))
            if not p.name.endswith(".timing.json")
        }
        reference = files if reference is None else reference
        rows.append(
            {
                "setting": name,
                "seconds": elapsed,
                "cases_per_minute": 60.0 * len(files) / elapsed,
                "identical_to_first": files == reference and len(files) == cases,
                "time_budget": runs.time_budget_of(run_dir, pending).to_json(),
            }
        )
    out["runs"] = rows
    return out


# --------------------------------------------------------------------------------------------
# The whole benchmark


@dataclass(frozen=True)
class BenchOptions:
    shape: tuple[int, int, int] = AUTOPET_SHAPE
    spacing_mm: tuple[float, float, float] = AUTOPET_SPACING_MM
    cases: int = 3
    repeats: int = 10
    naive_cases: int = 1
    run_cases: int = 12
    run_shape: tuple[int, int, int] = RUN_SHAPE
    jobs: int = 2
    task: str = "autopet"
    model: str = "python:segloop.baselines.region_growing:predict"
    dask: bool = False
    naive: bool = True
    docker: bool = True
    docker_shape: tuple[int, int, int] = DOCKER_SHAPE
    docker_steps: int = DOCKER_STEPS


def machine_info() -> dict[str, Any]:
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = float("nan")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpu_edt": cupy_modules() is not None,
    }


def _summary_ms(times_s: Sequence[float]) -> dict[str, float]:
    ms = [1000.0 * t for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms)}


def run_bench(options: BenchOptions, progress=lambda text: None) -> dict[str, Any]:
    """All figures as a dict (printed by :func:`format_report`)."""
    figures: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="segloop-bench-") as temporary:
        folder = Path(temporary)
        (folder / "spacing.json").write_text(json.dumps(list(options.spacing_mm)))
        cases = []
        for index in range(options.cases):
            progress(f"case {index}: generating {options.shape}")
            case = autopet_like_case(index, options.shape, options.spacing_mm)
            np.save(folder / f"label_{index}.npy", case.label)
            np.save(folder / f"prediction_{index}.npy", case.prediction)
            cases.append(
                {
                    "seed": index,
                    "lesions": case.lesions,
                    "missed": case.missed,
                    "false_positive_blobs": case.false_positive_blobs,
                    "gt_ml": case.volume_ml(case.label),
                    "prediction_ml": case.volume_ml(case.prediction),
                }
            )
        figures["cases"] = {
            "shape_zyx": list(options.shape),
            "spacing_mm_zyx": list(options.spacing_mm),
            "list": cases,
        }
        for name, fast_kind, naive_kind in (
            ("click", "click", "click_naive"),
            ("metrics", "metrics", "metrics_naive"),
        ):
            fast_times, fast_results, fast_peak, fast_traced = [], [], 0.0, 0.0
            for index in range(options.cases):
                progress(f"{name}: fast, case {index}")
                probe = _probe(fast_kind, folder, index, options.repeats)
                fast_times += probe["times_s"][1:]  # warm calls
                fast_results.append(probe["result"])
                fast_peak = max(fast_peak, probe["peak_extra_mib"])
                fast_traced = max(fast_traced, probe["peak_traced_mib"])
            entry: dict[str, Any] = {
                "fast": {
                    **_summary_ms(fast_times),
                    "peak_extra_mib": fast_peak,
                    "peak_traced_mib": fast_traced,
                },
            }
            if options.naive and options.naive_cases > 0:
                naive_times, naive_peak, naive_traced, same, deviation = [], 0.0, 0.0, 0, 0.0
                count = min(options.naive_cases, options.cases)
                for index in range(count):
                    progress(f"{name}: naive, case {index} (slow)")
                    probe = _probe(naive_kind, folder, index, 0)
                    naive_times += probe["times_s"][:1]  # the naive versions run once, cold
                    naive_peak = max(naive_peak, probe["peak_extra_mib"])
                    naive_traced = max(naive_traced, probe["peak_traced_mib"])
                    if name == "click":
                        same += probe["result"] == fast_results[index]
                    else:
                        gap = max(
                            abs(a - b)
                            for a, b in zip(probe["result"], fast_results[index], strict=True)
                        )
                        deviation = max(deviation, gap)
                        same += gap <= 1e-9
                naive = {
                    **_summary_ms(naive_times),
                    "peak_extra_mib": naive_peak,
                    "peak_traced_mib": naive_traced,
                }
                entry["naive"] = naive
                entry["speedup"] = naive["median_ms"] / entry["fast"]["median_ms"]
                entry["equal"] = {"same": same, "compared": count}
                if name == "metrics":
                    entry["equal"]["max_abs_difference"] = deviation
            figures[name] = entry
        progress(f"full runs: {options.run_cases} phantoms, 1 and {options.jobs} workers")
        figures["throughput"] = _run_throughput(
            folder / "runs",
            options.run_cases,
            options.run_shape,
            options.task,
            options.model,
            options.jobs,
            options.dask,
        )
    if options.docker:
        progress(
            f"Docker harness overhead: {DOCKER_IMAGE}, {options.docker_shape}, "
            f"{options.docker_steps} steps per mode"
        )
        figures["docker"] = docker_overhead(options.docker_shape, options.docker_steps)
    else:
        figures["docker"] = {"skipped": "--no-docker"}
    return figures


def docker_overhead(
    shape: Sequence[int] = DOCKER_SHAPE, steps: int = DOCKER_STEPS, image: str = DOCKER_IMAGE
) -> dict[str, Any]:
    """Per-step vs session-mode harness overhead (``segloop.app.bench_docker.bench_docker_overhead``).

    Returns its figures (seconds) plus ``image``, ``shape`` and ``steps``, and
    ``step_ratio`` = median per-step-mode step / median session-mode step; or ``{"skipped":
    reason}`` when no engine is reachable or ``image`` is not in it (nothing is pulled).
    """
    try:
        client = docker_client()
    except SegloopError as error:
        return {"skipped": str(error)}
    try:
        if not image_exists(client, image):
            return {"skipped": f"{image} is not built: run `segloop images build`"}
    finally:
        client.close()

    figures: dict[str, Any] = dict(
        bench_docker_overhead(image, tuple(shape), steps, print_fn=lambda text: None)
    )
    figures["step_ratio"] = figures["per_step_step_median_s"] / figures["session_step_median_s"]
    return {"image": image, "shape": [int(n) for n in shape], "steps": int(steps), **figures}


def _memory(entry: dict[str, Any]) -> str:
    return (
        f"{entry['peak_extra_mib']:.0f} MiB extra RSS, {entry['peak_traced_mib']:.1f} MiB "
        "numpy/Python (tracemalloc)"
    )


def format_report(figures: dict[str, Any]) -> str:
    """The plain-text report ``segloop bench`` prints."""
    m = figures["machine"]
    c = figures["cases"]
    z, y, x = c["shape_zyx"]
    sz, sy, sx = c["spacing_mm_zyx"]
    lines = [
        "segloop bench",
        f"machine: {m['cpus']} CPUs, {m['memory_gib']} GiB RAM, {m['system']}, Python "
        f"{m['python']}, numpy {m['numpy']}, GPU EDT (cupy): "
        f"{'available' if m['gpu_edt'] else 'not available'}",
        f"cases: {len(c['list'])} autoPET-sized, {x} x {y} x {z} voxels of {sx:g} x {sy:g} x "
        f"{sz:g} mm (array shape ({z}, {y}, {x}), spacing ({sz:g}, {sy:g}, {sx:g}) mm)",
    ]
    for case in c["list"]:
        lines.append(
            f"  seed {case['seed']}: {case['lesions']} lesions ({case['missed']} missed), "
            f"{case['false_positive_blobs']} false-positive blobs, GT {case['gt_ml']:.1f} ml, "
            f"prediction {case['prediction_ml']:.1f} ml"
        )
    sections = (
        (
            "click",
            "Sakinis click (largest 26-connected error component, EDT argmax)",
            CLICK_TARGET_MS,
        ),
        ("metrics", "Dice + NSD@2mm of one step (score_classes)", METRICS_TARGET_MS),
    )
    for key, title, target in sections:
        entry = figures[key]
        fast = entry["fast"]
        met = "met" if fast["median_ms"] <= target else "NOT met"
        lines += [
            "",
            title,
            f"  fast:   median {fast['median_ms']:.1f} ms (min {fast['min_ms']:.1f}, max "
            f"{fast['max_ms']:.1f}, {fast['n']} calls); target <= {target:g} ms: {met}",
        ]
        if "naive" in entry:
            naive = entry["naive"]
            lines += [
                f"  naive:  median {naive['median_ms']:.1f} ms ({naive['n']} calls, full volume)",
                f"  ratio:  naive / fast = {entry['speedup']:.0f}x",
            ]
            equal = entry["equal"]
            verdict = "yes" if equal["same"] == equal["compared"] else "NO"
            detail = f"{equal['same']}/{equal['compared']} cases"
            if "max_abs_difference" in equal:
                detail += f", max |difference| {equal['max_abs_difference']:.1e}"
            what = "clicks" if key == "click" else "values"
            lines.append(f"  same {what} fast vs naive: {verdict} ({detail})")
            lines.append(f"  peak memory: fast {_memory(fast)}; naive {_memory(naive)}")
        else:
            lines.append(f"  peak memory: fast {_memory(fast)}")
    t = figures["throughput"]
    rz, ry, rx = t["shape"]
    lines += [
        "",
        f"Full run throughput ({t['task']} task, {t['model']}, {t['cases']} PET phantoms of "
        f"{rx} x {ry} x {rz} voxels)",
    ]
    first = t["runs"][0]["cases_per_minute"]
    for row in t["runs"]:
        lines.append(
            f"  {row['setting']}: {row['cases_per_minute']:.1f} cases/min ({row['seconds']:.1f} s"
            f", x{row['cases_per_minute'] / first:.2f}); case files identical to 1 worker: "
            f"{'yes' if row['identical_to_first'] else 'NO'}"
        )
        lines.append(f"    {TimeBudget(**row['time_budget']).line()}")
    lines += ["", *format_docker(figures.get("docker", {"skipped": "not measured"}))]
    return "\n".join(lines)


def format_docker(docker: dict[str, Any]) -> list[str]:
    """The Docker harness overhead section of the report."""
    if "skipped" in docker:
        return [f"Docker harness overhead: skipped ({docker['skipped']})"]
    z, y, x = docker["shape"]
    floor_ms = 1000.0 * docker["in_process_step_s"]
    lines = [
        f"Docker harness overhead ({docker['image']}: predicts background; a {x} x {y} x {z} "
        f"float32 case, {docker['steps']} steps per mode, medians)",
        f"  in-process call (floor, validation included): {floor_ms:.1f} ms/step",
    ]
    for key, label in (("per_step", "per-step mode:"), ("session", "session mode:")):
        lines.append(
            f"  {label:<14} {1000.0 * docker[f'{key}_step_median_s']:.1f} ms/step (mean "
            f"{1000.0 * docker[f'{key}_step_mean_s']:.1f}), overhead over the floor "
            f"{1000.0 * docker[f'{key}_overhead_s']:.1f} ms/step, open_case "
            f"{1000.0 * docker[f'{key}_open_case_s']:.0f} ms"
        )
    lines.append(
        f"  ratio per-step / session: {docker['step_ratio']:.1f}x per step, "
        f"{docker['overhead_ratio']:.1f}x in overhead"
    )
    return lines


def _shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 8:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give z,y,x voxels, each >= 8 (e.g. 352,400,400)"
        )
    return values  # type: ignore[return-value]


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give z,y,x spacing in mm (e.g. 3,2,2)")
    return values  # type: ignore[return-value]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segloop bench``."""
    bench = subparsers.add_parser(
        "bench",
        help="time clicks, metrics and full runs against naive implementations",
        description=(
            "Speed of the harness's own work on autoPET-sized cases (400 x 400 x 352 voxels, "
            "2 x 2 x 3 mm): one Sakinis click and one step's Dice + NSD@2mm, fast vs. naive "
            "full-volume implementations (times, ratio, identical results, peak memory), "
            "the throughput of full runs on phantoms with 1 and N workers, and the Docker "
            "harness overhead per step of per-step vs session mode (trivial model, 256^3)."
        ),
    )
    bench.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test for CI")
    bench.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="workers for the parallel run"
    )
    bench.add_argument(
        "--shape", type=_shape, help="z,y,x voxels of the click/metric cases (default 352,400,400)"
    )
    bench.add_argument(
        "--spacing", type=_spacing, help="z,y,x spacing in mm of those cases (default 3,2,2)"
    )
    bench.add_argument("--cases", type=int, help="autoPET-sized cases (default 3)")
    bench.add_argument(
        "--repeats", type=int, help="calls per case for the fast timings (default 10)"
    )
    bench.add_argument(
        "--naive-cases", type=int, help="cases the slow naive versions run on (default 1)"
    )
    bench.add_argument("--no-naive", action="store_true", help="skip the naive implementations")
    bench.add_argument("--run-cases", type=int, help="phantom cases per full run (default 12)")
    bench.add_argument(
        "--run-shape", type=_shape, help="z,y,x voxels of those phantoms (default 176,200,200)"
    )
    bench.add_argument(
        "--task", default="autopet", help="task of the full runs on PET phantoms (default autopet)"
    )
    bench.add_argument(
        "--model",
        default="python:segloop.baselines.region_growing:predict",
        help="model of the full runs (default the region-growing baseline)",
    )
    bench.add_argument("--dask", action="store_true", help="also time a Dask LocalCluster run")
    bench.add_argument(
        "--no-docker",
        action="store_true",
        help="skip the Docker harness overhead (per-step vs session mode)",
    )
    bench.add_argument(
        "--docker-shape",
        type=_shape,
        help="z,y,x voxels of the Docker overhead case (default 256,256,256)",
    )
    bench.add_argument(
        "--docker-steps", type=int, help="steps per mode of the Docker overhead (default 10)"
    )
    bench.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    bench.add_argument(
        "--real",
        action="store_true",
        help="organ scale instead (issue 16): Dice + NSD@2 + HD95 and the Sakinis click on a "
        "folded organ phantom and on the MNI152 white matter (nilearn's wheel, fetched once "
        "with pip download into --cache; skipped without the network), side by side with "
        "surface-distance and the naive click, and a 100-class 512 x 512 x 300 parcellation",
    )
    bench.add_argument(
        "--cache",
        type=Path,
        default=bench_surface.DEFAULT_CACHE,
        help="with --real: folder of the nilearn wheel (default ~/.cache/segloop/nilearn)",
    )
    bench.add_argument(
        "--no-download", action="store_true", help="with --real: use the wheel only if cached"
    )
    bench.set_defaults(handler=bench_command)


def options_from(args: argparse.Namespace) -> BenchOptions:
    quick = bool(args.quick)

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    options = BenchOptions(
        shape=pick(args.shape, AUTOPET_SHAPE, QUICK_SHAPE),
        spacing_mm=pick(args.spacing, AUTOPET_SPACING_MM, AUTOPET_SPACING_MM),
        cases=pick(args.cases, 3, 1),
        repeats=pick(args.repeats, 10, 3),
        naive_cases=pick(args.naive_cases, 1, 1),
        run_cases=pick(args.run_cases, 12, 2),
        run_shape=pick(args.run_shape, RUN_SHAPE, QUICK_RUN_SHAPE),
        jobs=max(1, int(args.jobs)),
        task=args.task,
        model=args.model,
        dask=bool(args.dask),
        naive=not args.no_naive,
        docker=not args.no_docker,
        docker_shape=pick(args.docker_shape, DOCKER_SHAPE, QUICK_DOCKER_SHAPE),
        docker_steps=pick(args.docker_steps, DOCKER_STEPS, 2),
    )
    if min(options.cases, options.repeats, options.run_cases, options.docker_steps) < 1:
        raise SegloopError("bench: --cases, --repeats, --run-cases and --docker-steps must be >= 1")
    return options


def bench_command(args: argparse.Namespace) -> int:
    if args.real:
        print(
            bench_surface.run(
                repeats=3 if args.quick else 7,
                quick=bool(args.quick),
                download=not args.no_download,
                cache_dir=args.cache,
                progress=lambda text: print(f"  ... {text}", file=sys.stderr),
            )
        )
        return 0
    options = options_from(args)
    figures = run_bench(options, progress=lambda text: print(f"  ... {text}", file=sys.stderr))
    print(format_report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0
