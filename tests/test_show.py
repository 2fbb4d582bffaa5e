"""Keeping and showing what the model did (issue 17, item 1): ``segloop run --save-predictions``,
``segloop show``, and the leaderboard's case pages. Real runs on PET phantoms, real NIfTI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core import store
from segloop.core.metrics import binary
from segloop.core.records import Interaction
from segloop.core.results import CaseResult
from segloop.leaderboard import case_view, html_cells, pictures
from tests.test_leaderboard_helpers import SMALL_PET
from tests.test_pictures import colour_mask

MODEL = "python:segloop.baselines.region_growing:predict"


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, run folder) of an autoPET run that kept its predictions."""
    root = tmp_path_factory.mktemp("kept")
    data, run = root / "data", root / "run"
    phantoms.write_phantom_dataset(data, "pet", 2, seed=3, shape=SMALL_PET)
    code = main(
        ["run", "--data", str(data), "--task", "autopet", "--model", MODEL, "--out", str(run)]
        + ["--save-predictions", "--no-progress"]
    )
    assert code == 0
    return data, run


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_every_step_is_kept_with_the_case_geometry_and_scores_as_stored(kept):
    data, run = kept
    for case_path in sorted((run / "cases").glob("pet_00?.json")):
        result = CaseResult.from_json(json.loads(case_path.read_text()), str(case_path))
        steps = store.saved_prediction_steps(run, result.case_id)
        assert steps == list(range(11))
        label = sitk.ReadImage(str(data / "labelsTs" / f"{result.case_id}.nii.gz"))
        truth = sitk.GetArrayFromImage(label)
        for record in result.steps:
            path = store.prediction_path(run, result.case_id, record.step)
            assert path.name == f"step_{record.step:02d}.nii.gz"
            kept_image = sitk.ReadImage(str(path))
            assert kept_image.GetSpacing() == label.GetSpacing()
            assert kept_image.GetOrigin() == label.GetOrigin()
            assert kept_image.GetDirection() == label.GetDirection()
            assert kept_image.GetPixelID() == sitk.sitkUInt8
            prediction = sitk.GetArrayFromImage(kept_image)
            # the kept file is the prediction that was scored: its Dice is the stored one
            dice = binary.dice(prediction == 1, truth == 1)
            assert dice == pytest.approx(record.metrics["dice"].mean, abs=1e-9)


def test_a_killed_attempts_predictions_do_not_outlive_it(kept, tmp_path):
    data, run = kept
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    store.forget_case(copy, "pet_001")
    assert store.saved_prediction_steps(copy, "pet_001") == []  # forgotten with its result
    stale = store.prediction_path(copy, "pet_001", 42)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    # resumed without --save-predictions: the case runs again and keeps nothing stale
    code = main(
        ["run", "--data", str(data), "--task", "autopet", "--model", MODEL, "--out", str(copy)]
        + ["--no-progress"]
    )
    assert code == 0
    assert not stale.exists()
    assert store.saved_prediction_steps(copy, "pet_001") == []
    assert store.saved_prediction_steps(copy, "pet_000") == list(range(11))


def test_show_draws_a_strip_and_a_step_deterministically(kept, tmp_path, capsys):
    _, run = kept
    assert main(["show", str(run), "pet_000"]) == 0
    strip = run / "pictures" / "pet_000.png"
    assert f"picture: {strip}" in capsys.readouterr().out
    step = tmp_path / "step3.png"
    assert main(["show", str(run), "pet_000", "--step", "3", "--out", str(step)]) == 0
    again = tmp_path / "again.png"
    assert main(["show", str(run), "pet_000", "--step", "3", "--out", str(again)]) == 0
    assert step.read_bytes() == again.read_bytes()
    pixels = png_pixels(step)
    assert pixels.shape[1] == 1200
    # the prediction's blue contour and the ground truth's yellow one are both on the picture
    assert colour_mask(pixels, pictures.PREDICTION_COLOUR, 40).sum() > 50
    assert colour_mask(pixels, pictures.GT_COLOUR, 40).sum() > 50
    assert png_pixels(strip).shape[1] > 1000  # 11 steps, 6 panels a row


def test_show_user_errors_are_one_line(kept, tmp_path, capsys):
    data, run = kept
    capsys.readouterr()
    assert main(["show", str(run), "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segloop: error:") and "no finished case 'nope'" in err
    assert "pet_000" in err and "\n" not in err
    assert main(["show", str(run), "pet_000", "--step", "11"]) == 2
    assert "no step 11 (steps 0..10)" in capsys.readouterr().err
    assert main(["show", str(run), "pet_000", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "*.png" in capsys.readouterr().err
    # a run whose dataset moved: one line naming run.json, then --data finds it
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    info = json.loads((moved / "run.json").read_text())
    info["dataset"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(info))
    assert main(["show", str(moved), "pet_000"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(moved / "run.json") in err and "--data" in err and "\n" not in err
    assert main(["show", str(moved), "pet_000", "--data", str(data)]) == 0


def test_show_without_kept_predictions_says_so(kept, tmp_path, capsys):
    data, run = kept
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    shutil.rmtree(bare / "cases" / "pet_001")
    capsys.readouterr()
    assert main(["show", str(bare), "pet_001", "--step", "2"]) == 0
    out = capsys.readouterr().out
    assert "kept no prediction" in out and "--save-predictions" in out


def test_worst_step_is_where_the_first_metric_fell_most(kept):
    _, run = kept
    view = case_view.load_case_view(run, "pet_000", steps=[])
    assert view.predictions == {}
    dice = [s.metrics["dice"].mean for s in view.result.steps]
    worst = case_view.worst_step(view)
    drops = [dice[k - 1] - dice[k] for k in range(1, len(dice))]
    if max(drops) > 0:
        assert worst == 1 + int(np.argmax(drops))
    else:
        assert worst is None


def test_a_step_with_both_polarities_is_shown_through_its_positive_click():
    label = np.zeros((10, 20, 20), np.uint8)
    label[4:7, 4:9, 4:9] = 1
    clicks = [
        Interaction("click", 1, True, 1, ((5, 6, 6),)),
        Interaction("click", 1, False, 1, ((1, 18, 18),)),  # newest, in the background
    ]
    assert pictures.focus_voxel(label, None, clicks, 1, (1.0, 1.0, 1.0)) == (5, 6, 6)
    negative_only = clicks[1:]
    assert pictures.focus_voxel(label, None, negative_only, 1, (1.0, 1.0, 1.0)) == (1, 18, 18)


def test_leaderboard_links_case_pages_with_pictures(kept, tmp_path):
    _, run = kept
    site = tmp_path / "site"
    assert main(["leaderboard", str(run), "--out", str(site), "--bootstrap", "0"]) == 0
    submission = site / html_cells.submission_page("autopet", MODEL)
    text = submission.read_text()
    for case_id in ("pet_000", "pet_001"):
        page = html_cells.case_page("autopet", MODEL, case_id)
        assert f'href="{page}"' in text
        case_text = (site / page).read_text()
        assert case_text.count('src="data:image/png;base64,') >= 2  # the strip and a step
        assert "Step 10: the last step" in case_text
    # without kept predictions: no case page, and the submission page says why
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("pet_00?"))
    other = tmp_path / "other"
    assert main(["leaderboard", str(bare), "--out", str(other), "--bootstrap", "0"]) == 0
    assert not list(other.glob("case-*.html"))
    assert "kept no predictions" in (other / submission.name).read_text()
    # and none on request, e.g. for hundreds of submissions
    skip = tmp_path / "skip"
    assert main(["leaderboard", str(run), "--out", str(skip), "--no-case-pages"]) == 0
    assert not list(skip.glob("case-*.html"))
    assert "--no-case-pages" in (skip / submission.name).read_text()


def test_show_can_cut_through_the_largest_error_instead_of_the_click(kept, tmp_path):
    _, run = kept
    view = case_view.load_case_view(run, "pet_000", steps=[2])
    error_centre = pictures.focus_voxel(
        view.label, view.predictions[2], view.interactions, 2, view.spacing_mm, prefer="error"
    )
    assert view.predictions[2][error_centre] != view.label[error_centre]  # inside an error
    figure = case_view.step_figure(view, 2, focus="error")
    titles = [ax.get_title() for ax in figure.axes[:3]]
    assert titles[0] == f"axial  z = {error_centre[0]}"
    assert titles[1] == f"coronal  y = {error_centre[1]}"
    out = tmp_path / "error.png"
    args = ["show", str(run), "pet_000", "--step", "2", "--focus", "error", "--out", str(out)]
    assert main(args) == 0 and out.read_bytes() == pictures.png_bytes(figure)
