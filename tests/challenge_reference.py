"""Re-derived reference formulas of the 2025 challenges' public scripts (issue 15).

Each function restates what one script computes, as a small function on numpy arrays in
segloop's array order (z, y, x) with ``spacing_mm`` in that order, and cites the script, the
function and the lines it was read from. Nothing here is copied from those scripts: the formulas
are re-derived from reading them, so that tests can hold segloop to "the challenge's number"
(challenge mode) or show exactly where and why segloop differs (its own mode). Docstrings say
what each script does in the edge cases: empty ground truth, empty prediction, both empty, NaN.

Scripts read (repository, path, commit):

- autoPET IV: lab-midas/autoPETCTIV ``evaluation_metrics/evaluation_metrics.py`` and
  ``clicks/simulate_clicks.py`` (80af68d, 4 Jul 2025).
- CVPR 2025 MedSegFM: JunMa11/CVPR-MedSegFMCompetition ``CVPR25_iter_eval.py``,
  ``SurfaceDice.py``, ``get_boxes.py`` (748e862, 3 Jun 2025; get_boxes.py's rule since b53b654,
  1 May 2025).
- TriALS 2025 task 2: xmed-lab/TriALS
  ``TriALS_2025_Interactive_Task_2/eval_scripts_interactive_task/evaluate.py`` and
  ``.../sw_fastedit/utils/simulate_clicks_TriALS.py`` (de701ea).
- ToothFairy3 interactive: AImageLab-zip/ToothFairy
  ``ToothFairy3/Interactive-Segmentation/evaluation/evaluation.py`` (daac164, 16 Jul 2025; its
  HEAD text has duplicated lines that do not parse, ``class ...():`` twice at lines 158-159; the
  formulas are those of the deployed version, identical in 7b270fc of 1 Jul 2025 except that
  7b270fc had its own hd95 with the same definition, see ``toothfairy3_hd95``).
- medpy: loli/medpy ``medpy/metric/binary.py`` (d6abf41).

Axis order: the autoPET, TriALS scripts read NIfTI with nibabel, whose arrays are (x, y, z); ours
are SimpleITK's (z, y, x) of the same file, i.e. the same array with the axes reversed, and the
spacing reversed with it. Every formula here is invariant under that reversal except argmax tie
order (``nibabel_first_argmax``) and text-sorted file lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cc3d
import numpy as np
from scipy import ndimage

TRIALS_EMPTY = 9001.0  # evaluate.py line 15: LARGE = 9001


# --------------------------------------------------------------------------- shared pieces
def nibabel_first_argmax(values: np.ndarray) -> tuple[int, ...]:
    """Index (in our (z, y, x) order) of the first maximum in nibabel's (x, y, z) C order.

    autoPET ``simulate_clicks.py`` lines 103 and 172 and TriALS ``simulate_clicks_TriALS.py`` line
    132 take ``cp.unravel_index(cp.argmax(edt), edt.shape)`` on nibabel arrays (x, y, z): of
    tied maxima, the one with the smallest (x, y, z) tuple.
    """
    xyz = np.asarray(values).T  # our (z, y, x) array with its axes reversed = nibabel's array
    index_xyz = np.unravel_index(int(np.argmax(xyz)), xyz.shape)
    return tuple(int(v) for v in index_xyz[::-1])


def trapezoid_auc(values: Sequence[float]) -> float:
    """``scipy.integrate.cumulative_trapezoid(values, np.arange(n))[-1]``: the trapezoid over
    x = 0..n-1 (all four scripts; ToothFairy3 via ``np.trapz``). NaN anywhere -> NaN."""
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2.0))


def pandas_mean_skipna(values: Sequence[float]) -> float:
    """``pandas.Series.mean()`` (skipna=True): the mean of the non-NaN values, NaN if none.

    autoPET ``evaluation_metrics.py`` lines 288-290 (``metrics.mean()`` of the per-case table)
    and ToothFairy3 ``aggregate_series`` (``series.describe()``) aggregate cases this way.
    """
    y = np.asarray(values, dtype=np.float64)
    kept = y[~np.isnan(y)]
    return float(kept.mean()) if kept.size else math.nan


# --------------------------------------------------------------------------- autoPET IV
def autopet_voxel_volume_ml(spacing_mm: Sequence[float]) -> float:
    """``pixdim[1] * pixdim[2] * pixdim[3] / 1000`` (evaluation_metrics.py ``nii2numpy`` l. 23-24).

    The header's pixdim is float32, so the product and the division are float32 arithmetic.
    ``compute_metrics`` (l. 109-110) reads the GT, then the prediction into the same name: the
    voxel volume used is the *prediction* file's.
    """
    z, y, x = (np.float32(v) for v in spacing_mm)
    return float(x * y * z / np.float32(1000))


def autopet_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """evaluation_metrics.py ``dice_score`` (l. 85-102): NaN when the GT is empty (any
    prediction); else 2 * sum(gt * pred) / (sum(gt) + sum(pred)) on the 0/1 arrays."""
    g = np.asarray(gt, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if g.sum() == 0:
        return math.nan
    return float(2.0 * (g * p).sum() / (g.sum() + p.sum()))


def _components_18(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=18, return_N=True
    )
    return labels, int(count)


def autopet_false_positive_voxels(gt: np.ndarray, pred: np.ndarray) -> int:
    """evaluation_metrics.py ``false_pos_pix`` (l. 33-58): 0 for an empty prediction (also with
    an empty GT); else the voxels of the 18-connected prediction components that share no voxel
    with the GT. With an empty GT every predicted voxel counts."""
    p = np.asarray(pred) != 0
    g = np.asarray(gt) != 0
    if not p.any():
        return 0
    labels, count = _components_18(p)
    touched = np.unique(labels[g & p])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = np.ones(count + 1, bool)
    keep[0] = False
    keep[touched] = False
    return int(sizes[keep].sum())


def autopet_false_negative_voxels(gt: np.ndarray, pred: np.ndarray) -> float:
    """evaluation_metrics.py ``false_neg_pix`` (l. 60-83): NaN for an empty GT (any
    prediction); else the voxels of the 18-connected GT components that share no voxel with the
    prediction (an empty prediction: every GT voxel)."""
    p = np.asarray(pred) != 0
    g = np.asarray(gt) != 0
    if not g.any():
        return math.nan
    labels, count = _components_18(g)
    touched = np.unique(labels[g & p])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = np.ones(count + 1, bool)
    keep[0] = False
    keep[touched] = False
    return float(sizes[keep].sum())


def autopet_metrics(
    gt: np.ndarray, pred: np.ndarray, pred_spacing_mm: Sequence[float]
) -> tuple[float, float, float]:
    """``compute_metrics`` (l. 105-117): (Dice, FPV ml, FNV ml) of one step.

    Empty GT: (NaN, predicted volume of all components, NaN). Empty prediction with a GT:
    (0, 0, GT volume). Both empty: (NaN, 0, NaN). The case's AUC is ``trapezoid_auc`` of the
    11 steps (l. 134-136: NaN if any step is NaN, so a negative case has Dice AUC and FNV AUC
    NaN) and its Final the last step; the cohort mean skips NaN (``pandas_mean_skipna``).
    (As published the script does not run: ``args.c``/``args.n_clicks`` are never defined and
    ``compute_interactive_metrics`` asserts n_clicks paths but gets n_clicks + 1.)
    """
    volume = autopet_voxel_volume_ml(pred_spacing_mm)
    fnv = autopet_false_negative_voxels(gt, pred) * volume
    fpv = autopet_false_positive_voxels(gt, pred) * volume
    return autopet_dice(gt, pred), float(fpv), float(fnv)


def autopet_center_click(component: np.ndarray) -> tuple[int, int, int]:
    """simulate_clicks.py l. 88-106 (lesions) and 159-176 (background): the centre of one
    26-connected component is the argmax of ``distance_transform_edt`` of that component's mask
    *on the whole volume* (voxel units; the image border is not background: a component cut by
    the field of view has its maximum on the border), first maximum in nibabel (x, y, z) order.
    ``component``: the component's mask in our (z, y, x) order; returns (z, y, x).
    TriALS ``simulate_clicks_TriALS.py`` l. 111-136 does the same (``trials_center_click``).
    """
    distances = ndimage.distance_transform_edt(np.asarray(component, dtype=bool))
    return nibabel_first_argmax(distances)  # type: ignore[return-value]


trials_center_click = autopet_center_click


# --------------------------------------------------------------------------- medpy
def medpy_border(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """medpy ``__surface_distances`` l. 1261 and 1274-1277: ``mask ^ binary_erosion(mask,
    generate_binary_structure(ndim, connectivity))``; outside the array counts as background
    (binary_erosion's border_value 0). 3D: connectivity 1 = 6-, 2 = 18-, 3 = 26-neighbourhood."""
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)


def medpy_surface_distances(
    result: np.ndarray,
    reference: np.ndarray,
    spacing_mm: Sequence[float] | None = None,
    connectivity: int = 1,
) -> np.ndarray:
    """medpy ``__surface_distances`` (l. 1247-1285): for every border voxel of ``result``, the
    distance to the nearest border voxel of ``reference`` (EDT of the reference border's
    complement, ``sampling=spacing``; voxel units without spacing). Each border voxel counts once
    whatever its area. medpy raises RuntimeError if either mask is empty (l. 1264-1271)."""
    result = np.asarray(result, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if not result.any() or not reference.any():
        raise RuntimeError("medpy: an empty mask has no surface")
    sampling = None if spacing_mm is None else np.asarray(spacing_mm, dtype=np.float64)
    distances = ndimage.distance_transform_edt(
        ~medpy_border(reference, connectivity), sampling=sampling
    )
    return distances[medpy_border(result, connectivity)]


def medpy_dc(result: np.ndarray, reference: np.ndarray) -> float:
    """medpy ``dc`` (l. 39-86): 2|A∩B| / (|A| + |B|); both empty -> 1.0 (ZeroDivisionError)."""
    a = np.asarray(result, dtype=bool)
    b = np.asarray(reference, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def medpy_hd(result, reference, spacing_mm=None, connectivity: int = 1) -> float:
    """medpy ``hd`` (l. 323-368): max of both directed maxima of ``medpy_surface_distances``."""
    return float(
        max(
            medpy_surface_distances(result, reference, spacing_mm, connectivity).max(),
            medpy_surface_distances(reference, result, spacing_mm, connectivity).max(),
        )
    )


def medpy_hd95(result, reference, spacing_mm=None, connectivity: int = 1) -> float:
    """medpy ``hd95`` (l. 371-416): ``np.percentile`` (linear) at 95 of *both directions'
    distances pooled* (hstack), not the max of two directed percentiles."""
    both = np.hstack(
        (
            medpy_surface_distances(result, reference, spacing_mm, connectivity),
            medpy_surface_distances(reference, result, spacing_mm, connectivity),
        )
    )
    return float(np.percentile(both, 95))


def medpy_assd(result, reference, spacing_mm=None, connectivity: int = 1) -> float:
    """medpy ``assd`` (l. 419-476): the mean of both directions' distances concatenated, i.e.
    (sum d(A->B) + sum d(B->A)) / (|border A| + |border B|), every border voxel weight 1."""
    both = np.concatenate(
        (
            medpy_surface_distances(result, reference, spacing_mm, connectivity),
            medpy_surface_distances(reference, result, spacing_mm, connectivity),
        )
    )
    return float(both.mean())


# --------------------------------------------------------------------------- TriALS 2025
def trials_object_scores(
    pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float]
) -> dict[str, list[float]]:
    """evaluate.py ``compute_segmentation_scores`` (l. 563-628) for the metrics it aggregates.

    For every label id of the reference except 0, in ascending order (l. 586-588): where both
    the prediction and the reference hold the id, Dice (medpy ``dc``), ASSD and MSD (= HD) from
    the ``Surface`` class (l. 41-318, medpy's old ``surface`` module): border voxels by an
    erosion with ``generate_binary_structure(3, 2)``, the 18-neighbourhood (l. 312-318),
    coordinates times the spacing, nearest-neighbour distances both ways (KD-tree; the same
    values as ``medpy_surface_distances`` with connectivity 2), ASSD = mean over both border
    sets counted per voxel, MSD = the larger directed maximum; in mm, with the spacing of the
    *prediction* file (l. 643, ``pred_nii.header.get_zooms()``, float32). The crop to the
    bounding box of both masks (l. 590-595) changes nothing (outside it both are background).
    Where the prediction lacks the id: Dice 0, ASSD 9001, MSD 9001 (l. 613-626). A reference
    without any label gives empty lists: the script then fails (IndexError at l. 349), so
    TriALS has no negative cases.
    """
    scores: dict[str, list[float]] = {"dice": [], "assd": [], "msd": []}
    for object_id in np.unique(ref):
        if object_id == 0:
            continue
        p = np.asarray(pred) == object_id
        r = np.asarray(ref) == object_id
        if p.any() and r.any():
            scores["dice"].append(medpy_dc(p, r))
            scores["assd"].append(medpy_assd(p, r, spacing_mm, connectivity=2))
            scores["msd"].append(medpy_hd(p, r, spacing_mm, connectivity=2))
        else:
            scores["dice"].append(0.0)
            scores["assd"].append(TRIALS_EMPTY)
            scores["msd"].append(TRIALS_EMPTY)
    return scores


def trials_text_sorted_steps(num_steps: int = 11) -> list[int]:
    """The step order of evaluate.py ``aggregate_group_metrics`` (l. 338-357): the per-step JSON
    files ``<case>_<k>.json`` are ``sorted`` as text, so 0, 1, 10, 2, ..., 9 for 11 steps. A
    defect (never reproduced by segloop): the curve is integrated in that order."""
    return sorted(range(num_steps), key=lambda k: f"case_{k}.json")


def trials_auc_final(values_by_step: Sequence[float]) -> tuple[float, float]:
    """(AUC, Final) as evaluate.py computed them (l. 349-352): the first object's value of each
    step (``score[k][0]``: only the smallest label id counts), taken in text order of the step
    files (``trials_text_sorted_steps``), trapezoid over x = 0..10, Final = the last in that
    order (step 9, not 10). The cohort mean (l. 734-745) is a plain mean (no NaN can occur)."""
    ordered = [values_by_step[k] for k in trials_text_sorted_steps(len(values_by_step))]
    return trapezoid_auc(ordered), float(ordered[-1])


# --------------------------------------------------------------------------- ToothFairy3
def toothfairy3_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """evaluation.py ``compute_binary_dice`` (l. 109-120): both empty -> 1.0; else
    2|P∩G| / (|P| + |G|)."""
    return medpy_dc(pred, gt)


def toothfairy3_hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """evaluation.py ``compute_binary_hd95`` (l. 122-135): both empty -> 0.0; one empty ->
    ``np.linalg.norm(pred.shape)``, the array diagonal *in voxels*; else medpy ``hd95(pred, gt)``
    without spacing and with connectivity 1: 6-neighbourhood borders, both directions pooled,
    *in voxels*. (7b270fc's own ``hd95``: ``binary_erosion`` with scipy's default structure, the
    same 6-neighbourhood, cdist between border voxels, ``np.percentile`` 95 of both directions
    concatenated: the same numbers.)"""
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return float(np.linalg.norm(p.shape))
    return medpy_hd95(p, g, None, connectivity=1)


def toothfairy3_case(
    pred: np.ndarray, gt: np.ndarray, class_ids: Sequence[int] = (1, 2)
) -> tuple[float, float]:
    """evaluation.py ``compute_multiclass_dice_and_hd95`` (l. 137-156): (Dice, HD95) averaged over
    both canals (labels 1 and 2) whether or not a canal is in the GT. A case's AUC is
    ``np.trapz`` over x = 0..n-1 of the steps sorted by their numeric index (l. 256-277: the
    regex ``_(\\d+)\\.(nii\\.gz|mha)$``; numeric, not text), Final the last step; cases are
    aggregated with pandas ``describe`` (mean skips NaN; none occur)."""
    dices = [toothfairy3_dice(np.asarray(pred) == c, np.asarray(gt) == c) for c in class_ids]
    hds = [toothfairy3_hd95(np.asarray(pred) == c, np.asarray(gt) == c) for c in class_ids]
    return sum(dices) / len(dices), sum(hds) / len(hds)


# --------------------------------------------------------------------------- CVPR 2025 MedSegFM
def cvpr25_classes(gts: np.ndarray) -> list[int]:
    """``np.sort(pd.unique(gts.ravel()))[1:]`` (CVPR25_iter_eval.py l. 142, 151, 341, 348, 377):
    the sorted label values minus the *first*, which is 0 when the GT has background. (A GT
    without any 0 voxel would lose its smallest class; the challenge data always had 0.)"""
    return [int(v) for v in np.unique(np.asarray(gts))[1:]]


def cvpr25_dice(gt: np.ndarray, seg: np.ndarray) -> float:
    """SurfaceDice.py ``compute_dice_coefficient`` (l. 481-498): both empty -> NaN (``np.NaN``,
    gone in NumPy 2; never reached, since only GT-present classes are scored)."""
    g = np.asarray(gt, dtype=bool)
    s = np.asarray(seg, dtype=bool)
    total = int(g.sum()) + int(s.sum())
    return math.nan if total == 0 else 2.0 * int((g & s).sum()) / total


def cvpr25_nsd(
    gt: np.ndarray, seg: np.ndarray, spacing_mm: Sequence[float], tolerance_mm: float = 2.0
) -> float:
    """SurfaceDice.py ``compute_surface_distances`` + ``compute_surface_dice_at_tolerance``
    (l. 280-427, 469-478): DeepMind's surfel NSD, distance <= tolerance counts. The script is a
    copy of DeepMind's surface-distance, so the installed ``surface_distance`` package is the
    reference. ``spacing`` is the npz's ``spacing`` passed unchanged (l. 499), so it must be in
    the arrays' (z, y, x) order. An empty ``seg`` with a GT: 0.0 (the GT's distances are inf,
    none within tolerance); both empty: NaN (0 / 0; never reached, only GT classes are scored).
    Both the script and the package build that inf as ``np.Inf``, which NumPy 2 removed, so the
    empty cases are computed here instead of by the package.
    """
    import surface_distance

    g, s = np.asarray(gt, dtype=bool), np.asarray(seg, dtype=bool)
    if not g.any() or not s.any():
        return math.nan if not g.any() and not s.any() else 0.0
    distances = surface_distance.compute_surface_distances(g, s, tuple(spacing_mm))
    return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))


def cvpr25_step_scores(
    gts: np.ndarray, segs: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[float, float]:
    """(DSC, NSD) of one step (CVPR25_iter_eval.py l. 140-158 and 495-501): the means over the
    GT's classes; NSD is computed only when DSC > 0.2 (the case's mean, not per class), else 0.0.
    A failed step is scored as zeros (l. 488-490), unless an older output file is still there:
    the script then re-scores it (the file is never removed between steps)."""
    classes = cvpr25_classes(gts)
    dsc = float(np.mean([cvpr25_dice(gts == c, segs == c) for c in classes]))
    if not dsc > 0.2:
        return dsc, 0.0
    nsd = float(np.mean([cvpr25_nsd(gts == c, segs == c, spacing_mm) for c in classes]))
    return dsc, nsd


def cvpr25_auc_final(values_6_steps: Sequence[float]) -> tuple[float, float]:
    """l. 530-533: AUC = trapezoid of the last 5 values (the click steps) over x = 0..4, so at
    most 4; Final = the last value. A case without boxes scores step 0 as 0 and never runs it."""
    return trapezoid_auc(list(values_6_steps)[-5:]), float(values_6_steps[-1])


def cvpr25_tie_index(count: int) -> int:
    """``sample_coord`` (l. 164-175): ``np.random.seed(42)`` before every click, then
    ``np.random.choice(len(max_coords))`` among the EDT maxima listed by ``np.argwhere`` (C order
    of the (z, y, x) array): the index ``RandomState(42).randint(count)``, the same for every click
    with ``count`` tied maxima (0 for 2 ties, 2 for 3, 3 for 5, 6 for 10)."""
    return int(np.random.RandomState(42).choice(count))


def cvpr25_click(
    gts: np.ndarray, segs: np.ndarray, class_id: int
) -> tuple[tuple[int, int, int], str] | None:
    """One refinement click of one class (l. 377-426); None when the class has no error (the
    script then appends ``None`` to ``clicks_order``, l. 424).

    error = (segs == c) != (gts == c); its 26-connected components (cc3d, l. 387); the largest
    (``np.argmax`` of the sizes: of equal sizes the smallest cc3d label, the first in raster
    order); its EDT on the crop padded by ``max(int(0.25 * crop), 1)`` zero voxels per side
    (``compute_edt`` l. 178-244: the image border counts as background; crops above 6e7 voxels
    are 2x block-reduced, not reproduced here), times the component mask; the click is the
    maximum ``cvpr25_tie_index`` of the tied maxima in C order; "fg" where the GT is c, else "bg".
    """
    error = (np.asarray(segs) == class_id) != (np.asarray(gts) == class_id)
    if not error.any():
        return None
    labels = cc3d.connected_components(error.astype(np.uint8), connectivity=26)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    component = labels == int(np.argmax(sizes))
    box = ndimage.find_objects(component.astype(np.uint8))[0]
    crop = component[box]
    pad = [max(int(n * 0.25), 1) for n in crop.shape]
    distances = ndimage.distance_transform_edt(np.pad(crop, [(p, p) for p in pad]))
    inner = distances[tuple(slice(p, p + n) for p, n in zip(pad, crop.shape, strict=True))]
    full = np.zeros(component.shape)
    full[box] = inner
    full *= component
    maxima = np.argwhere(full == full.max())
    centre = tuple(int(v) for v in maxima[cvpr25_tie_index(len(maxima))])
    kind = "fg" if np.asarray(gts)[centre] == class_id else "bg"
    return centre, kind  # type: ignore[return-value]


def get_boxes_mid_slice(gt3d: np.ndarray) -> int:
    """get_boxes.py ``mask3D_to_bbox`` at HEAD (l. 68-72, since b53b654, 1 May 2025): the distinct
    foreground slices ``np.unique(z)`` in ascending order, the one at index ``len // 2`` (for an
    even count the upper middle)."""
    z = np.unique(np.nonzero(np.asarray(gt3d) > 0)[0])
    return int(z[len(z) // 2])


def get_boxes_mid_slice_before_may_2025(gt3d: np.ndarray) -> int:
    """get_boxes.py before b53b654: ``z_indices[len(z_indices) // 2]`` over the z of *every*
    foreground voxel (``np.where``, C order): the z of the median foreground voxel."""
    z = np.nonzero(np.asarray(gt3d) > 0)[0]
    return int(z[len(z) // 2])


def get_boxes_box(gt3d: np.ndarray, shift: int) -> dict[str, int]:
    """get_boxes.py ``mask3D_to_bbox`` + ``mask2D_to_bbox`` (l. 44-90) for one class: the class's
    z range (not enlarged), its 2D box on ``get_boxes_mid_slice``, each in-plane side moved out by
    ``int(shift * W / 256)`` (x) and ``int(shift * H / 256)`` (y) voxels, clipped to the image;
    ``shift = np.random.randint(0, 6)`` per class (l. 51). Classes were relabelled 1..n first
    (``relabel_sequential``, l. 110), one dict per label of ``np.unique(gts)[1:]``."""
    gt3d = np.asarray(gt3d) > 0
    z_all = np.nonzero(gt3d)[0]
    z_mid = get_boxes_mid_slice(gt3d)
    ys, xs = np.nonzero(gt3d[z_mid])
    _, height, width = gt3d.shape
    dy, dx = int(shift * height / 256), int(shift * width / 256)
    return {
        "z_min": int(z_all.min()),
        "z_max": int(z_all.max()),
        "z_mid": z_mid,
        "z_mid_x_min": max(0, int(xs.min()) - dx),
        "z_mid_y_min": max(0, int(ys.min()) - dy),
        "z_mid_x_max": min(width - 1, int(xs.max()) + dx),
        "z_mid_y_max": min(height - 1, int(ys.max()) + dy),
    }
