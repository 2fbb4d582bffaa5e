"""Challenge mode gives the challenges' own numbers (issue 15, D1 and D2).

Each preset's challenge mode is compared with the re-derived formulas of the challenge's
script (tests/challenge_reference.py, checked on their own in test_challenge_reference.py) on
random anisotropic cases, negative cases, empty predictions, one-voxel objects and multi-class
labels, step by step to 1e-9; then each preset runs end to end on phantoms with a model whose
predictions cover those situations, and every case's AUC and Final and the cohort means are
compared with the script's aggregation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from segloop import runs
from segloop.app import phantoms
from segloop.core import dataset
from segloop.core.challenges import CHALLENGES, Challenge, with_classes
from segloop.core.records import CaseInput
from segloop.core.results import mean_summary
from segloop.loop import case_result_of, run_case
from segloop.protocols.tasks import build_task
from tests import challenge_reference as ref

TOLERANCE = 1e-9


def same(ours: float | None, theirs: float) -> bool:
    """Equal to 1e-9 (relative above 1), undefined (None) exactly where the script gives NaN."""
    if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
        return ours is None
    return ours is not None and abs(ours - theirs) <= TOLERANCE * max(1.0, abs(theirs))


def float32_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    """Anisotropic spacings as a NIfTI header holds them (float32 values)."""
    return tuple(float(np.float32(v)) for v in rng.uniform(0.3, 3.0, 3))  # type: ignore[return-value]


def blob(rng: np.random.Generator, shape: tuple[int, ...], fraction: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.7, 1.6))
    return noise > np.quantile(noise, 1 - fraction)


def binary_situations(seed: int, count: int = 12):
    """(pred, gt) pairs: overlapping blobs, then the edge cases every script treats apart."""
    rng = np.random.default_rng(seed)
    shape = (9, 14, 12)
    one_voxel = np.zeros(shape, bool)
    one_voxel[4, 6, 5] = True
    other_voxel = np.zeros(shape, bool)
    other_voxel[2, 10, 3] = True
    empty = np.zeros(shape, bool)
    g = blob(rng, shape, 0.2)
    yield "empty prediction", empty, g
    yield "negative case, prediction", blob(rng, shape, 0.1), empty
    yield "negative case, empty prediction", empty, empty
    yield "one voxel each, apart", other_voxel, one_voxel
    yield "one voxel each, same", one_voxel, one_voxel
    yield "one-voxel ground truth", blob(rng, shape, 0.05), one_voxel
    for index in range(count):
        yield (
            f"random pair {index}",
            blob(rng, shape, rng.uniform(0.05, 0.3)),
            blob(rng, shape, rng.uniform(0.05, 0.3)),
        )


def metric(scores, name: str) -> float | None:
    return scores[name]["mean"]


# --------------------------------------------------------------------------- step by step


def test_autopet_challenge_mode_equals_evaluation_metrics_py():
    """D1: Dice and FNV undefined (NaN in the script) for a negative case, FPV defined; the
    voxel volume in float32 as the script computes it."""
    challenge = CHALLENGES["autopet"]
    rng = np.random.default_rng(1)
    for what, pred, gt in binary_situations(11):
        spacing = float32_spacing(rng)
        scores = challenge.score(pred.astype(np.uint8), gt.astype(np.uint8), spacing)
        dice, fpv, fnv = ref.autopet_metrics(gt, pred, spacing)
        assert same(metric(scores, "dice"), dice), what
        assert same(metric(scores, "fpv_f32"), fpv), what
        assert same(metric(scores, "fnv_f32"), fnv), what


def test_autopet_segloop_mode_is_what_the_issue_saw_before():
    """segloop's own mode keeps its well-defined values (Dice 1 for two empty masks, FNV 0)."""
    challenge = CHALLENGES["autopet"].in_scoring_mode("segloop")
    empty = np.zeros((4, 5, 6), np.uint8)
    scores = challenge.score(empty, empty, (1.0, 1.0, 1.0))
    assert metric(scores, "dice") == 1.0 and metric(scores, "fnv") == 0.0


def test_trials_challenge_mode_equals_evaluate_py():
    """D2: ASSD and MSD on 18-neighbourhood boundary voxels in mm; 9001 when the prediction
    lacks the lesion; no value without a reference lesion (the script cannot score one)."""
    challenge = CHALLENGES["trials"]
    rng = np.random.default_rng(2)
    for what, pred, gt in binary_situations(12):
        spacing = float32_spacing(rng)
        scores = challenge.score(pred.astype(np.uint8), gt.astype(np.uint8), spacing)
        theirs = ref.trials_object_scores(pred, gt, spacing)
        if not gt.any():
            assert theirs["dice"] == []  # the script's lists stay empty: no value
            assert metric(scores, "dice") is None, what
            assert metric(scores, "assd_voxel_boundary_n18") is None, what
            continue
        assert same(metric(scores, "dice"), theirs["dice"][0]), what
        assert same(metric(scores, "assd_voxel_boundary_n18"), theirs["assd"][0]), what
        assert same(metric(scores, "hd_voxel_boundary_n18"), theirs["msd"][0]), what
    assert metric(challenge.score(np.zeros_like(gt, np.uint8), gt.astype(np.uint8), spacing),
                  "hd_voxel_boundary_n18") == 9001.0  # fmt: skip


def test_toothfairy3_challenge_mode_equals_evaluation_py():
    """D2: medpy hd95 (6-neighbourhood, both directions pooled) in voxels, the array diagonal
    in voxels when one canal mask is empty, 0 when both are; mean of both canals."""
    challenge = CHALLENGES["toothfairy3"]
    rng = np.random.default_rng(3)
    situations = list(binary_situations(13))
    for index, (what, pred_left, gt_left) in enumerate(situations):
        _, pred_right, gt_right = situations[(index * 7 + 3) % len(situations)]
        pred = np.where(pred_left, 1, np.where(pred_right, 2, 0)).astype(np.uint8)
        gt = np.where(gt_left, 1, np.where(gt_right, 2, 0)).astype(np.uint8)
        spacing = float32_spacing(rng)
        scores = challenge.score(pred, gt, spacing)
        dice, hd95 = ref.toothfairy3_case(pred, gt)
        assert same(metric(scores, "dice"), dice), what
        assert same(metric(scores, "hd95_voxel_boundary_n6_voxels"), hd95), what


def test_medsegfm_challenge_mode_equals_cvpr25_iter_eval_py():
    """Multi-class labels, the GT's classes only, NSD only above the case's Dice 0.2."""
    rng = np.random.default_rng(4)
    shape = (10, 16, 14)
    for index in range(10):
        gt = np.zeros(shape, np.uint8)
        pred = np.zeros(shape, np.uint8)
        for class_id in (1, 2, 3):
            if index % 4 == class_id:  # a class the GT lacks (the prediction may have it)
                pred[blob(rng, shape, 0.05)] = class_id
                continue
            gt[blob(rng, shape, 0.08)] = class_id
            pred[blob(rng, shape, rng.uniform(0.02, 0.1))] = class_id
        spacing = float32_spacing(rng)
        challenge = with_classes(CHALLENGES["medsegfm"], {1: "a", 2: "b", 3: "c"})
        scores = challenge.score(pred, gt, spacing)
        dsc, nsd = ref.cvpr25_step_scores(gt, pred, spacing)
        assert same(metric(scores, "dice"), dsc), index
        assert same(metric(scores, "nsd@2"), nsd), index


# --------------------------------------------------------------------------- end to end


class StagedModel:
    """A back-end whose predictions walk through what the scripts treat apart: empty, a far
    false positive, the truth eroded, dilated, shifted, with one component dropped... chosen
    per (case, step) by a seeded generator from the case's ground truth. It records them."""

    name = "staged"

    def __init__(self, labels):
        self.labels = labels
        self.predictions: dict[str, list[np.ndarray]] = {}

    def open_case(self, case_input: CaseInput):
        label = self.labels[case_input.case_id]
        recorded = self.predictions.setdefault(case_input.case_id, [])
        seed = sum(map(ord, case_input.case_id))
        model = self

        class Session:
            def predict(self, request):
                prediction = model.staged(label, np.random.default_rng([seed, request.step]))
                recorded.append(prediction)
                return prediction

            def close(self):
                pass

        return Session()

    @staticmethod
    def staged(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        choice = int(rng.integers(0, 6))
        if choice == 0:
            return np.zeros_like(label)
        if choice == 1:
            return ndimage.grey_erosion(label, size=(1, 3, 3))
        if choice == 2:
            return ndimage.grey_dilation(label, size=(3, 3, 3))
        if choice == 3:
            return np.roll(label, int(rng.integers(1, 4)), axis=int(rng.integers(0, 3)))
        out = label.copy()
        z, y, x = (int(rng.integers(0, n)) for n in label.shape)
        out[z, max(0, y - 2) : y + 2, max(0, x - 2) : x + 2] = max(1, int(label.max()))
        if choice == 5:
            out[label == max(1, int(label.max()))] = 0  # a class missed, a far blob kept
        return out


def run_preset(tmp_path, kind: str, challenge: Challenge, cases: int = 4):
    data = tmp_path / kind
    phantoms.write_phantom_dataset(data, kind, cases, seed=5, shape=None)
    loaded = [runs.load_dataset_case(data, case_id) for case_id in dataset.list_case_ids(data)]
    if challenge.requires_foreground:
        loaded = [case for case in loaded if case.label.any()]
    model = StagedModel({case.case_id: case.label for case in loaded})
    task = build_task(challenge)
    results = [case_result_of(run_case(case, task, model), task, "staged", "") for case in loaded]
    return loaded, model.predictions, results


def test_autopet_end_to_end_auc_final_and_cohort_mean(tmp_path):
    """D1 end to end: negative cases leave Dice and FNV out of the cohort means, as pandas'
    mean of the script's per-case table does."""
    loaded, predictions, results = run_preset(tmp_path, "pet", CHALLENGES["autopet"], cases=6)
    assert any(not case.label.any() for case in loaded), "the PET phantoms hold a negative case"
    table = {name: {"auc": [], "final": []} for name in ("dice", "fpv_f32", "fnv_f32")}
    for case, result in zip(loaded, results, strict=True):
        steps = [
            ref.autopet_metrics(case.label, p, case.spacing_mm) for p in predictions[case.case_id]
        ]
        for index, name in enumerate(table):
            values = [s[index] for s in steps]
            auc, final = ref.trapezoid_auc(values), values[-1]
            assert same(result.summary[name].auc_raw, auc), (case.case_id, name)
            assert same(result.summary[name].final, final), (case.case_id, name)
            table[name]["auc"].append(auc)
            table[name]["final"].append(final)
    means = mean_summary(results)
    for name, columns in table.items():
        assert same(means[name]["auc_raw"], ref.pandas_mean_skipna(columns["auc"])), name
        assert same(means[name]["final"], ref.pandas_mean_skipna(columns["final"])), name


def test_trials_end_to_end_text_ordered_curve(tmp_path):
    loaded, predictions, results = run_preset(tmp_path, "abdomen", CHALLENGES["trials"])
    for case, result in zip(loaded, results, strict=True):
        steps = [
            ref.trials_object_scores(p, case.label, case.spacing_mm)
            for p in predictions[case.case_id]
        ]
        for ours, theirs in (
            ("dice", "dice"),
            ("assd_voxel_boundary_n18", "assd"),
            ("hd_voxel_boundary_n18", "msd"),
        ):
            auc, final = ref.trials_auc_final([s[theirs][0] for s in steps])
            assert same(result.summary[ours].auc_raw, auc), (case.case_id, ours)
            assert same(result.summary[ours].final, final), (case.case_id, ours)


def test_toothfairy3_end_to_end(tmp_path):
    loaded, predictions, results = run_preset(tmp_path, "jaw", CHALLENGES["toothfairy3"], cases=3)
    for case, result in zip(loaded, results, strict=True):
        steps = [ref.toothfairy3_case(p, case.label) for p in predictions[case.case_id]]
        for index, name in enumerate(("dice", "hd95_voxel_boundary_n6_voxels")):
            values = [s[index] for s in steps]
            assert same(result.summary[name].auc_raw, ref.trapezoid_auc(values)), name
            assert same(result.summary[name].final, values[-1]), name


def test_medsegfm_end_to_end(tmp_path):
    loaded, predictions, results = run_preset(tmp_path, "pet", CHALLENGES["medsegfm"])
    for case, result in zip(loaded, results, strict=True):
        steps = [
            ref.cvpr25_step_scores(case.label, p, case.spacing_mm)
            for p in predictions[case.case_id]
        ]
        for index, name in enumerate(("dice", "nsd@2")):
            auc, final = ref.cvpr25_auc_final([s[index] for s in steps])
            assert same(result.summary[name].auc_raw, auc), name
            assert same(result.summary[name].final, final), name


@pytest.mark.parametrize("name", ["autopet", "trials", "toothfairy3", "medsegfm"])
def test_every_result_says_how_it_was_scored(name):
    challenge = CHALLENGES[name]
    assert challenge.scoring.mode == "challenge" and challenge.scoring.reproduces
    own = challenge.in_scoring_mode("segloop").scoring
    assert own.mode == "segloop" and own.reproduces == ""


# --------------------------------------------------------------------------- task files


def test_toml_task_picks_a_scoring_mode_or_its_own_rules(tmp_path):
    from segloop.core.challenges import challenge_from_toml
    from segloop.core.records import SegloopError

    own = tmp_path / "own.toml"
    own.write_text('base = "trials"\nscoring = "segloop"\n')
    assert challenge_from_toml(own).metrics == ("dice", "assd", "hd")
    assert challenge_from_toml(own).scoring.mode == "segloop"

    custom = tmp_path / "custom.toml"
    custom.write_text(
        'base = "autopet"\nmetrics = ["dice", "nsd@2"]\nundefined_values = "worst"\n'
        "[empty_mask_policy]\nempty_gt_undefined = true\n"
    )
    task = challenge_from_toml(custom)
    assert task.scoring.mode == "custom" and task.scoring.reproduces == ""
    empty = np.zeros((4, 5, 6), np.uint8)
    predicted = empty.copy()
    predicted[1, 1, 1] = 1
    scores = task.score(predicted, empty, (1.0, 1.0, 1.0))  # negative case: worst, not null
    assert scores["dice"]["mean"] == 0.0 and scores["nsd@2"]["mean"] == 0.0

    unbounded = tmp_path / "unbounded.toml"
    unbounded.write_text('base = "toothfairy3"\nundefined_values = "worst"\n')
    with pytest.raises(SegloopError, match=r"unbounded\.toml: .*hd95.* no worst value"):
        challenge_from_toml(unbounded)

    wrong = tmp_path / "wrong.toml"
    wrong.write_text('base = "generic"\nscoring = "challenge"\n')
    with pytest.raises(SegloopError, match="no 'challenge' scoring mode"):
        challenge_from_toml(wrong)


def test_undefined_classes_are_left_out_of_a_step_mean():
    """Skip, as in the cohort means: a class without ground truth does not make the step's
    mean undefined when another class has a value."""
    challenge = with_classes(CHALLENGES["autopet"], {1: "a", 2: "b"})
    gt = np.zeros((4, 6, 6), np.uint8)
    gt[1:3, 1:3, 1:3] = 1
    scores = challenge.score(gt, gt, (1.0, 1.0, 1.0))
    assert scores["dice"]["per_class"] == {"1": 1.0, "2": None}
    assert scores["dice"]["mean"] == 1.0
