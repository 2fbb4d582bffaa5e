"""The participant on-ramp (issue 17, item 3): sdk init, the Grand Challenge SDK helper's
interfaces, failure warnings that quote the model's last log line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core.challenges import CHALLENGES
from tests.test_leaderboard_helpers import SMALL_PET

SDK_DIR = Path(__file__).resolve().parents[1] / "containers" / "sdk"


def gc_module(folder: Path):
    """segloop_gc as a container imports it: from a folder holding it and segloop_sdk."""
    sys.path.insert(0, str(folder))
    try:
        import segloop_gc

        return segloop_gc
    finally:
        sys.path.remove(str(folder))


def test_sdk_init_writes_a_native_and_a_gc_folder_and_never_overwrites(tmp_path, capsys):
    assert main(["sdk", "init", str(tmp_path / "native")]) == 0
    assert sorted(p.name for p in (tmp_path / "native").iterdir()) == [
        "Dockerfile",
        "model.py",
        "segloop_sdk.py",
    ]
    assert main(["sdk", "init", str(tmp_path / "gc"), "--gc", "toothfairy3"]) == 0
    model = (tmp_path / "gc" / "model.py").read_text()
    assert 'serve_gc(predict, "toothfairy3")' in model and "serve(predict)" not in model
    assert "segloop_gc.py" in (tmp_path / "gc" / "Dockerfile").read_text()
    assert (tmp_path / "gc" / "segloop_gc.py").read_text() == (
        SDK_DIR / "segloop_gc.py"
    ).read_text()
    capsys.readouterr()
    assert main(["sdk", "init", str(tmp_path / "native")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds Dockerfile, model.py, segloop_sdk.py" in err and "\n" not in err


def test_gc_helper_interfaces_are_segloops_presets():
    segloop_gc = gc_module(SDK_DIR)
    presets = {name: c.gc for name, c in CHALLENGES.items() if c.gc is not None}
    assert sorted(segloop_gc.GC_INTERFACES) == sorted(presets)
    for name, interface in presets.items():
        mine = segloop_gc.GC_INTERFACES[name]
        assert tuple(mine["image_slugs"]) == interface.image_slugs
        assert mine["clicks_slug"] == interface.clicks_slug
        assert mine["output_slug"] == interface.output_slug
        assert mine["point_names"] == dict(interface.point_names)
        assert mine["background_name"] == interface.background_name
        assert mine["point_order"] == interface.point_order


def test_gc_helper_reads_segloops_gc_files_and_writes_on_the_input_grid(tmp_path):
    """A job folder as segloop's docker:gc-autopet back-end writes it (SimpleITK MetaImage,
    a rotated direction), through run_gc_job, read back by SimpleITK."""
    segloop_gc = gc_module(SDK_DIR)
    shape, spacing_xyz = (4, 5, 6), (0.8, 1.5, 3.0)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    for slug, value in (("ct", 1.0), ("pet", 2.0)):
        image = sitk.GetImageFromArray(np.full(shape, value, np.float32))
        image.SetSpacing(spacing_xyz)
        image.SetOrigin((1.0, 2.0, 3.0))
        image.SetDirection(direction)
        (tmp_path / "in" / "images" / slug).mkdir(parents=True)
        sitk.WriteImage(image, str(tmp_path / "in" / "images" / slug / "abc.mha"), False)
    points = [
        {"point": [5, 4, 3], "name": "tumor"},  # x, y, z
        {"point": [1, 2, 0], "name": "tumor"},
        {"point": [0, 0, 1], "name": "background"},
    ]
    clicks = {"type": "Multiple points", "points": points}
    (tmp_path / "in" / "lesion-clicks.json").write_text(json.dumps(clicks))
    seen = {}

    def predict(case, request):
        seen.update(case=case, request=request)
        labels = np.zeros(case.shape, np.uint8)
        for click in request.interactions:
            labels[click.coords[0]] = 1 if click.positive else 0
        return labels

    out = segloop_gc.run_gc_job(predict, "autopet", tmp_path / "in", tmp_path / "out")
    assert out == tmp_path / "out" / "images" / "tumor-lesion-segmentation" / "abc.mha"
    case, request = seen["case"], seen["request"]
    assert [float(c.max()) for c in case.channels] == [1.0, 2.0]  # CT, then PET
    assert case.geometry.spacing_mm == pytest.approx(spacing_xyz[::-1])
    assert case.geometry.direction == pytest.approx(direction)
    assert request.step == 2 and request.previous_prediction is None
    assert [(i.coords[0], i.positive, i.step) for i in request.interactions] == [
        ((3, 4, 5), True, 1),
        ((0, 2, 1), True, 2),
        ((1, 0, 0), False, 1),
    ]
    written = sitk.ReadImage(str(out))
    assert written.GetSpacing() == pytest.approx(spacing_xyz)
    assert written.GetOrigin() == pytest.approx((1.0, 2.0, 3.0))
    assert written.GetDirection() == pytest.approx(direction)
    labels = sitk.GetArrayFromImage(written)
    assert labels.dtype == np.uint8 and labels[3, 4, 5] == 1 and labels[0, 2, 1] == 1
    assert int(labels.sum()) == 2


def test_a_failure_warning_quotes_the_last_line_of_the_models_log(tmp_path):
    data = tmp_path / "data"
    phantoms.write_phantom_dataset(data, "pet", 1, seed=2, shape=SMALL_PET)
    (tmp_path / "broken.py").write_text(
        "import sys\nprint('loading weights')\nraise FileNotFoundError('weights.pt is missing')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "segloop", "run", "--data", str(data), "--task", "autopet"]
        + ["--model", "cmd:python3 broken.py {input} {output}", "--out", str(tmp_path / "run")]
        + ["--no-progress"],
        cwd=tmp_path,  # cmd: runs here, so the relative broken.py is found
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1
    assert "11 step(s) failed with exit_code" in warning[0]
    assert "the model's log ends: FileNotFoundError: weights.pt is missing" in warning[0]
