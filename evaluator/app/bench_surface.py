"""``segloop bench --real``: organ-scale and many-class work on real data (issue 16).

Figures, each as min / median / max over repeated calls in this process:

1. Dice + NSD@2 mm + HD95 of one class, one step, on (a) a synthetic organ-scale phantom
   (:func:`organ_phantom`: a folded, white-matter-like label in an ellipsoid) and (b) the real
   MNI152 2009a white matter: :func:`segloop.core.metrics.scoring.score_classes` (what a run
   computes) against DeepMind's surface-distance (``compute_surface_distances`` +
   ``compute_surface_dice_at_tolerance`` + ``compute_robust_hausdorff`` +
   ``compute_dice_coefficient``) in the same run, with the ratio of the medians and the largest
   difference of the values.
2. The Sakinis click of that class in voxel units and spacing-aware, against the naive
   full-volume click (scipy label + scipy EDT), with whether the clicks are the same.
3. All classes' Dice + NSD@2 mm and all classes' Sakinis clicks of a 100-class 512 x 512 x 300
   anatomy-like parcellation (:func:`parcellation_phantom`), with the peak memory of one call:
   numpy's allocations (``tracemalloc``) and the growth of the resident set (VmHWM), against
   the two label maps.

The MNI152 2009a template, white- and grey-matter maps ship inside nilearn's wheel
(``nilearn/datasets/data/mni_icbm152_{t1,wm,gm}_tal_nlin_sym_09a_converted.nii.gz``, uint8 0..255
for probabilities 0..1). :func:`mni_white_matter` fetches the wheel once with ``pip download
nilearn --no-deps`` into a cache folder (default ``~/.cache/segloop/nilearn``) and reads the
files straight out of the zip; only when asked (never at import) and, without the network, the
MNI rows are skipped with a message. Label = white matter > 0.5 (632,004 voxels, 197 x 233 x 189
at 1 mm); the prediction is the label shifted by two voxels, dilated once, with 5 % of the
voxels of its boundary band flipped (Dice 0.83) (:func:`perturbed_prediction`).

Timings are wall-clock (``time.perf_counter``) in one process; the machine may be shared, so
the min is the figure least disturbed by other work. Run: ``python -m segloop.app.bench_surface``
(``--quick`` for small sizes, ``--no-download`` to skip the MNI rows unless cached).
"""

from __future__ import annotations

import argparse
import gzip
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
from scipy import ndimage

from segloop.core.metrics.scoring import score_classes
from segloop.protocols.sakinis import sakinis_click, sakinis_click_naive, sakinis_clicks

DEFAULT_CACHE = Path.home() / ".cache" / "segloop" / "nilearn"
MNI_PREFIX = "nilearn/datasets/data/mni_icbm152_"
MNI_SUFFIX = "_tal_nlin_sym_09a_converted.nii.gz"
ONE_CLASS_TARGET_MS = 150.0
ONE_CLASS_TARGET_RATIO = 20.0
MANY_CLASSES_TARGET_S = 3.0
MANY_CLICKS_TARGET_S = 1.0
CLICK_TARGET_MS = 50.0
AWARE_CLICK_TARGET_MS = 100.0
MEMORY_TARGET_RATIO = 3.0


# --------------------------------------------------------------------------------------------
# Cases


def perturbed_prediction(
    label: np.ndarray, rng: np.random.Generator, shift_voxels: int = 2, axis: int = 1
) -> np.ndarray:
    """The issue's prediction: ``label`` shifted by ``shift_voxels`` along ``axis``, dilated
    once (6-neighbourhood), then 5 % of the voxels of the band between its erosion and its
    dilation flipped (a rough, partly disagreeing surface)."""
    moved = np.roll(label, shift_voxels, axis=axis)
    moved = ndimage.binary_dilation(moved)
    band = ndimage.binary_dilation(moved) & ~ndimage.binary_erosion(moved)
    return moved ^ (band & (rng.random(label.shape) < 0.05))


def organ_phantom(
    shape: Sequence[int] = (160, 176, 160), seed: int = 0, smooth_voxels: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction): a folded, white-matter-like organ and the issue's prediction.

    Label = Gaussian-smoothed white noise above its median, inside an ellipsoid filling the
    volume: a labyrinth of sheets and tubes a few voxels thick, of about the surface-to-volume
    ratio of the MNI white matter.
    """
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), smooth_voxels)
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    inside = sum(((a - (n - 1) / 2) / (0.45 * n)) ** 2 for a, n in zip(axes, shape, strict=True))
    label = (noise > np.median(noise)) & (inside <= 1.0)
    return label, perturbed_prediction(label, rng)


def _voronoi_labels(
    shape: Sequence[int], seeds: np.ndarray, centre: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Label 1 + index of the nearest seed inside the ellipsoid, 0 outside: the nearest seed
    maximises the linear 2 x.s - |s|^2, one image row at a time (float32 is plenty here)."""
    out = np.zeros(tuple(shape), dtype=np.uint8)
    w = (2.0 * seeds).astype(np.float32)
    b = -(seeds**2).sum(axis=1).astype(np.float32)
    ys = np.arange(shape[1], dtype=np.float32)
    xs = np.arange(shape[2], dtype=np.float32)
    dy = ((ys - centre[1]) / radii[1]) ** 2
    dx = ((xs - centre[2]) / radii[2]) ** 2
    by_x = np.outer(xs, w[:, 2])
    by_y = np.outer(ys, w[:, 1])
    for z in range(shape[0]):
        inside = (((z - centre[0]) / radii[0]) ** 2 + dy[:, None] + dx[None, :]) <= 1.0
        base = w[:, 0] * z + b
        for y in np.flatnonzero(inside.any(axis=1)):
            nearest = np.argmax(by_x + (by_y[y] + base)[None, :], axis=1)
            out[z, y] = np.where(inside[y], nearest + 1, 0)
    return out


def parcellation_phantom(
    shape: Sequence[int] = (300, 512, 512), n_classes: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(label, prediction) uint8 maps of an anatomy-like parcellation: ``n_classes`` Voronoi
    cells of random seeds filling a body ellipsoid (background 0 outside); the prediction moves
    every seed by N(0, 1.5 voxels) per axis, so every internal boundary tilts and shifts a
    little (per-class Dice ~0.95), the body outline stays. About 10 s for the full size."""
    rng = np.random.default_rng(seed)
    size = np.asarray(shape, dtype=np.float64)
    centre = (size - 1) / 2
    radii = 0.46 * size
    seeds: list[np.ndarray] = []
    while len(seeds) < n_classes:
        point = rng.random(3) * (size - 1)
        if (((point - centre) / radii) ** 2).sum() <= 1.0:
            seeds.append(point)
    seeds_array = np.array(seeds)
    label = _voronoi_labels(shape, seeds_array, centre, radii)
    moved = seeds_array + rng.normal(0.0, 1.5, seeds_array.shape)
    return label, _voronoi_labels(shape, moved, centre, radii)


def _nilearn_wheel(cache_dir: Path, download: bool) -> Path | None:
    wheels = sorted(cache_dir.glob("nilearn-*.whl"))
    if wheels or not download:
        return wheels[-1] if wheels else None
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"MNI152: fetching nilearn's wheel once (pip download nilearn --no-deps -d {cache_dir})",
        file=sys.stderr,
    )
    command = [sys.executable, "-m", "pip", "download", "nilearn", "--no-deps", "-d", cache_dir]
    completed = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=600, check=False
    )
    if completed.returncode != 0:
        print(f"MNI152 skipped: pip download nilearn failed: {completed.stderr.strip()[-300:]}")
        return None
    wheels = sorted(cache_dir.glob("nilearn-*.whl"))
    return wheels[-1] if wheels else None


def read_mni_map(wheel: Path, kind: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """One of the MNI152 2009a maps (``kind`` "t1", "wm" or "gm") from nilearn's wheel, as a
    (z, y, x) C-ordered array (the transpose of nibabel's (x, y, z) Fortran-ordered one, as
    SimpleITK would give it) with its spacing in mm in the same order."""

    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(f"{MNI_PREFIX}{kind}{MNI_SUFFIX}")
    image = nibabel.Nifti1Image.from_bytes(gzip.decompress(data))
    array = np.asarray(image.dataobj).T
    spacing = tuple(float(s) for s in reversed(image.header.get_zooms()[:3]))
    return array, spacing


def mni_white_matter(
    cache_dir: Path = DEFAULT_CACHE, download: bool = True, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]] | None:
    """(label, prediction, spacing_mm) of the MNI152 white matter, or None (with a message)
    when the wheel is not cached and cannot be downloaded. Label = probability > 0.5 (the
    uint8 map / 255); prediction: :func:`perturbed_prediction`."""
    try:
        wheel = _nilearn_wheel(Path(cache_dir), download)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"MNI152 skipped: {error}")
        return None
    if wheel is None:
        if not download:
            print(f"MNI152 skipped: no nilearn wheel in {cache_dir} and downloading is off")
        return None
    template, _ = read_mni_map(wheel, "t1")
    white, spacing = read_mni_map(wheel, "wm")
    if template.shape != white.shape:
        raise ValueError(f"MNI template {template.shape} and white matter {white.shape} differ")
    label = white / 255.0 > 0.5
    return label, perturbed_prediction(label, np.random.default_rng(seed)), spacing


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls and the last call's result."""

    seconds: tuple[float, ...]
    result: Any

    @property
    def summary_ms(self) -> tuple[float, float, float]:
        ms = [1000.0 * s for s in self.seconds]
        return min(ms), statistics.median(ms), max(ms)


def timed(call: Callable[[], Any], repeats: int) -> Timing:
    seconds, result = [], None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return Timing(tuple(seconds), result)


def segloop_one_class(
    label: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[float, float, float]:
    """(Dice, NSD@2, HD95) of class 1 as a run scores a step
    (:func:`segloop.core.metrics.scoring.score_classes`)."""
    scores = score_classes(
        prediction.view(np.uint8), label.view(np.uint8), [1], spacing_mm, ["dice", "nsd@2", "hd95"]
    )
    return scores["dice"]["mean"], scores["nsd@2"]["mean"], scores["hd95"]["mean"]


def deepmind_one_class(
    label: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[float, float, float]:
    """The same three values by DeepMind's surface-distance package."""
    import surface_distance  # lazy: optional, only the bench compares with it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its scipy.ndimage.filters import
        distances = surface_distance.compute_surface_distances(label, prediction, spacing_mm)
        return (
            float(surface_distance.compute_dice_coefficient(label, prediction)),
            float(surface_distance.compute_surface_dice_at_tolerance(distances, 2.0)),
            float(surface_distance.compute_robust_hausdorff(distances, 95.0)),
        )


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def reset_peak_rss() -> None:
    """Start a new peak at the current resident size (Linux >= 4.0: clear_refs 5), if we can."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # the peak then includes loading and imports: an underestimate of the growth


def _peak_memory(call: Callable[[], Any]) -> tuple[float, float]:
    """(numpy/Python allocation peak, growth of the resident-set peak) of one call, MiB."""

    reset_peak_rss()
    before = peak_rss_mib()
    tracemalloc.start()
    call()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the resident peak cannot go down; without clear_refs it may hide the call's growth
    return traced / 2**20, max(0.0, peak_rss_mib() - before)


def one_class_rows(
    name: str,
    label: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Sequence[float],
    repeats: int,
    reference_repeats: int,
) -> dict[str, Any]:
    ours = timed(lambda: segloop_one_class(label, prediction, spacing_mm), repeats)
    theirs = timed(lambda: deepmind_one_class(label, prediction, spacing_mm), reference_repeats)
    ratio = statistics.median(theirs.seconds) / statistics.median(ours.seconds)
    return {
        "case": name,
        "shape": label.shape,
        "spacing_mm": tuple(spacing_mm),
        "voxels": int(label.sum()),
        "values": ours.result,
        "max_difference": max(abs(a - b) for a, b in zip(ours.result, theirs.result, strict=True)),
        "engine_ms": ours.summary_ms,
        "surface_distance_ms": theirs.summary_ms,
        "ratio": ratio,
    }


def click_row(
    name: str,
    label: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Sequence[float],
    repeats: int,
    naive_repeats: int,
) -> dict[str, Any]:
    """The Sakinis click of class 1, in voxel units and spacing-aware, against the naive
    full-volume version (scipy label + scipy EDT) in the same run."""
    gt, pred = label.view(np.uint8), prediction.view(np.uint8)
    voxel = timed(lambda: sakinis_click(gt, pred), repeats)
    aware = timed(lambda: sakinis_click(gt, pred, spacing_mm), repeats)
    naive = timed(lambda: sakinis_click_naive(label, prediction), naive_repeats)
    naive_aware = sakinis_click_naive(label, prediction, spacing_mm)
    return {
        "case": name,
        "voxel_ms": voxel.summary_ms,
        "spacing_aware_ms": aware.summary_ms,
        "naive_ms": naive.summary_ms,
        "same_clicks": voxel.result == naive.result and aware.result == naive_aware,
    }


def many_class_row(
    label: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float], repeats: int
) -> dict[str, Any]:
    """All classes' Dice + NSD@2 of one step (``score_classes``) and all classes' Sakinis
    clicks (``sakinis_clicks``), with the peak memory of each."""
    ids = [int(c) for c in np.unique(label) if c != 0]

    def score() -> dict[str, Any]:
        return score_classes(prediction, label, ids, spacing_mm, ["dice", "nsd@2"])

    def clicks() -> list[Any]:
        return sakinis_clicks(label, prediction, ids)

    scored = timed(score, repeats)
    clicked = timed(clicks, repeats)
    maps_mib = (label.nbytes + prediction.nbytes) / 2**20
    return {
        "classes": len(ids),
        "shape": label.shape,
        "spacing_mm": tuple(spacing_mm),
        "mean_dice": scored.result["dice"]["mean"],
        "mean_nsd": scored.result["nsd@2"]["mean"],
        "ms": scored.summary_ms,
        "clicks": len(clicked.result),
        "clicks_ms": clicked.summary_ms,
        "maps_mib": maps_mib,
        "peak_mib": _peak_memory(score),  # (numpy allocations, resident growth)
        "clicks_peak_mib": _peak_memory(clicks),
    }


# --------------------------------------------------------------------------------------------
# Report


def _ms(summary: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in summary)


def format_table(
    one_class: Sequence[dict[str, Any]],
    clicks: Sequence[dict[str, Any]],
    many: dict[str, Any] | None,
) -> str:
    lines = [
        "Dice + NSD@2 + HD95, one class, one step (score_classes; ms, min / median / max)",
        "| case | segloop | surface-distance | ratio (medians) | values | max diff |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in one_class:
        values = ", ".join(f"{v:.4f}" for v in row["values"])
        lines.append(
            f"| {row['case']} {'x'.join(map(str, row['shape']))} | {_ms(row['engine_ms'])} | "
            f"{_ms(row['surface_distance_ms'])} | {row['ratio']:.1f}x | {values} | "
            f"{row['max_difference']:.1e} |"
        )
    lines.append(
        f"targets: segloop <= {ONE_CLASS_TARGET_MS:.0f} ms and >= {ONE_CLASS_TARGET_RATIO:.0f}x"
        " faster than surface-distance"
    )
    lines += [
        "",
        "Sakinis click of one class (ms, min / median / max)",
        "| case | voxel EDT | spacing-aware | naive (full volume, voxel) | same clicks |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in clicks:
        lines.append(
            f"| {row['case']} | {_ms(row['voxel_ms'])} | {_ms(row['spacing_aware_ms'])} | "
            f"{_ms(row['naive_ms'])} | {'yes' if row['same_clicks'] else 'NO'} |"
        )
    lines.append(
        f"targets: voxel <= {CLICK_TARGET_MS:.0f} ms, spacing-aware <= "
        f"{AWARE_CLICK_TARGET_MS:.0f} ms"
    )
    if many is not None:
        peak, resident = many["peak_mib"]
        click_peak, click_resident = many["clicks_peak_mib"]
        lines += [
            "",
            f"{many['classes']} classes, {'x'.join(map(str, many['shape']))}, one step "
            "(ms, min / median / max; peak: numpy allocations / resident growth)",
            "| work | time | result | peak memory | two maps |",
            "| --- | --- | --- | --- | --- |",
            f"| all classes' Dice + NSD@2 | {_ms(many['ms'])} | mean Dice "
            f"{many['mean_dice']:.4f}, NSD {many['mean_nsd']:.4f} | {peak:.0f} / "
            f"{resident:.0f} MiB | {many['maps_mib']:.0f} MiB |",
            f"| all classes' Sakinis clicks | {_ms(many['clicks_ms'])} | {many['clicks']} clicks"
            f" | {click_peak:.0f} / {click_resident:.0f} MiB | {many['maps_mib']:.0f} MiB |",
            f"targets: metrics <= {MANY_CLASSES_TARGET_S:.0f} s, clicks <= "
            f"{MANY_CLICKS_TARGET_S:.0f} s; peak < {MEMORY_TARGET_RATIO:.0f}x the two label maps",
        ]
    return "\n".join(lines)


def run(
    repeats: int = 7,
    reference_repeats: int = 3,
    many_repeats: int = 3,
    quick: bool = False,
    download: bool = True,
    cache_dir: Path = DEFAULT_CACHE,
    progress: Callable[[str], None] = print,
) -> str:
    """All figures as a printed table (see the module docstring)."""
    one_class = []
    progress("organ phantom ...")
    shape = (48, 56, 48) if quick else (160, 176, 160)
    label, prediction = organ_phantom(shape)
    one_class.append(
        one_class_rows(
            "organ phantom", label, prediction, (1.0, 1.0, 1.0), repeats, reference_repeats
        )
    )
    clicks = [click_row("organ phantom", label, prediction, (1.2, 0.9, 0.9), repeats, 1)]
    progress("MNI152 white matter ...")
    mni = mni_white_matter(cache_dir, download)
    if mni is not None:
        label, prediction, spacing = mni
        one_class.append(
            one_class_rows(
                "MNI152 white matter", label, prediction, spacing, repeats, reference_repeats
            )
        )
        clicks.append(click_row("MNI152 white matter", label, prediction, spacing, repeats, 2))
    progress("100-class parcellation (generating, ~10 s) ...")
    many_shape, classes = ((40, 64, 64), 12) if quick else ((300, 512, 512), 100)
    label_map, prediction_map = parcellation_phantom(many_shape, classes)
    many = many_class_row(label_map, prediction_map, (1.5, 0.8, 0.8), many_repeats)
    return format_table(one_class, clicks, many)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--repeats", type=int, default=7, help="engine calls per case")
    parser.add_argument("--reference-repeats", type=int, default=3, help="surface-distance calls")
    parser.add_argument("--many-repeats", type=int, default=3, help="100-class calls")
    parser.add_argument("--no-download", action="store_true", help="MNI only if already cached")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="nilearn wheel cache")
    args = parser.parse_args(argv)
    print(
        run(
            repeats=args.repeats,
            reference_repeats=args.reference_repeats,
            many_repeats=args.many_repeats,
            quick=args.quick,
            download=not args.no_download,
            cache_dir=args.cache,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
