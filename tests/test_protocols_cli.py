"""`segloop tasks` and `segloop clicks`: challenge file formats, naming, errors, determinism."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core.challenges import CHALLENGES, ROBOT_USERS
from segloop.core.dataset import write_case
from segloop.core.formats import read_clicks, read_segloop_json
from segloop.core.records import Case, Geometry
from segloop.protocols.tasks import get_task

# non-cubic grids, anisotropic spacing, non-zero origin, rotated and flipped axes: a swapped
# axis order cannot go unnoticed
ROTATED = (0.8, -0.6, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, -1.0)


def odd(case: Case, spacing_mm) -> Case:
    return replace(case, geometry=Geometry(spacing_mm, (-87.5, 12.25, 40.0), ROTATED))


def jaw(case_id: str) -> Case:
    shape = (20, 24, 30)
    label = np.zeros(shape, np.uint8)
    label[3:17, 10:13, 5:8] = 1
    label[4:15, 10:13, 22:25] = 2
    image = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    return Case(case_id, (image,), label, Geometry((0.5, 0.4, 0.3), (3.0, -4.0, 5.0), ROTATED))


def clicks(*args: str) -> int:
    return main(["clicks", *args])


def test_tasks_lists_presets_one_line_each(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, challenge in CHALLENGES.items():
        (line,) = [ln for ln in lines if ln[:1].strip() and ln.split()[0] == name]
        assert challenge.title in line and "\n" not in challenge.title
    for name, (description, _) in ROBOT_USERS.items():  # indented, under their own heading
        (line,) = [ln for ln in lines if ln.startswith("  ") and ln.split()[0] == name]
        assert description in line
    assert main(["tasks", "medsegfm"]) == 0
    assert json.loads(capsys.readouterr().out)["auc_steps"] == [1, 2, 3, 4, 5]


def test_toothfairy3_clicks_as_the_challenge_published_them(tmp_path, capsys):
    import SimpleITK as sitk

    data = tmp_path / "data"
    for case_id in ("jaw_001", "jaw_002"):
        write_case(data, jaw(case_id))
    out = tmp_path / "clicks"
    assert clicks("--task", "toothfairy3", "--data", str(data), "--out", str(out)) == 0
    assert "gc voxel (z, y, x)" in capsys.readouterr().out
    task = get_task("toothfairy3")
    files = sorted(p.name for p in (out / "jaw_001").glob("jaw_001_step_*.json"))
    assert files == [f"jaw_001_step_{k:02d}.json" for k in range(6)]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labelsTs" / "jaw_001.nii.gz")))
    case = jaw("jaw_001")
    expected = []
    fmt = CHALLENGES["toothfairy3"].click_format
    for step in range(6):
        expected.extend(task.robot_user.interactions(case, task.classes, step, None, 0))
        path = out / "jaw_001" / f"jaw_001_step_{step:02d}.json"
        points = json.loads(path.read_text())["points"]
        # the first k Left_IAC points, then the first k Right_IAC points (0_clicks .. 5_clicks)
        assert [p["name"] for p in points] == ["Left_IAC"] * step + ["Right_IAC"] * step
        for p in points:  # voxel indices into sitk.GetArrayFromImage, as the challenge script
            assert label[tuple(p["point"])] == {"Left_IAC": 1, "Right_IAC": 2}[p["name"]]
        back = read_clicks(path, task.classes, fmt, shape=case.shape)
        assert back == tuple(sorted(expected, key=lambda i: (i.step, i.class_id)))
    assert read_segloop_json(out / "jaw_001" / "jaw_001_interactions.json") == tuple(expected)
    last = out / "jaw_001" / "jaw_001_step_05.json"
    assert (out / "jaw_001" / "jaw_001_clicks.json").read_text() == last.read_text()
    manifest = json.loads((out / "clicks_format.json").read_text())
    assert manifest["point_format"]["axis_order"] == ["z", "y", "x"]
    assert manifest["point_format"]["coordinates"] == "voxel"


def pet_dataset(tmp_path, count=3):
    data = tmp_path / "pet"
    for i in range(count):  # pet_004 of a 5-cycle has no lesion: use index 4 as the last case
        index = 4 if i == count - 1 else i
        write_case(data, odd(phantoms.pet_phantom(index, shape=(20, 28, 36)), (3.0, 2.0, 1.5)))
    return data


def test_autopet_clicks_index_nibabel_arrays_and_sort_by_step(tmp_path, capsys):
    import nibabel as nib

    data = pet_dataset(tmp_path)
    out = tmp_path / "clicks"
    assert clicks("--task", "autopet", "--data", str(data), "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert "pet_004: tumor absent from the ground truth" in captured.err  # a note, not an error
    for case_id in ("pet_000", "pet_004"):
        names = sorted(p.name for p in (out / case_id).glob(f"{case_id}_step_*.json"))
        # text order is step order: _10 after _09, never between _1 and _2
        assert names == [f"{case_id}_step_{k:02d}.json" for k in range(11)]
        label = nib.load(str(data / "labelsTs" / f"{case_id}.nii.gz")).get_fdata()
        final = json.loads((out / case_id / f"{case_id}_step_10.json").read_text())["points"]
        tumor = [p["point"] for p in final if p["name"] == "tumor"]
        background = [p["point"] for p in final if p["name"] == "background"]
        # voxel (x, y, z) indices into the nibabel array, as autoPET IV's simulate_clicks.py
        assert all(label[tuple(p)] == 1 for p in tumor)
        assert all(label[tuple(p)] == 0 for p in background) and len(background) == 10
        assert len(tumor) == (0 if case_id == "pet_004" else 10)  # empty GT: background only
        assert [p["name"] for p in final] == ["tumor"] * len(tumor) + ["background"] * 10
        for k in range(11):
            step = json.loads((out / case_id / f"{case_id}_step_{k:02d}.json").read_text())
            assert len(step["points"]) == min(k, len(tumor)) + k


def test_trials_clicks_are_point_lists_and_need_the_liver(tmp_path, capsys):
    import nibabel as nib

    data = tmp_path / "abdomen"
    write_case(data, odd(phantoms.abdomen_phantom(0, shape=(16, 30, 38)), (2.5, 0.8, 0.7)))
    out = tmp_path / "clicks"
    assert clicks("--task", "trials", "--data", str(data), "--out", str(out)) == 0
    lists = json.loads((out / "abdomen_000" / "abdomen_000_step_10.json").read_text())
    assert set(lists) == {"lesion", "background"} and len(lists["background"]) == 10
    liver = nib.load(str(data / "masksTs" / "liver" / "abdomen_000.nii.gz")).get_fdata()
    label = nib.load(str(data / "labelsTs" / "abdomen_000.nii.gz")).get_fdata()
    assert all(label[tuple(p)] == 1 for p in lists["lesion"])
    assert all(liver[tuple(p)] == 1 and label[tuple(p)] == 0 for p in lists["background"])
    capsys.readouterr()
    # the same dataset without its liver masks: one line, nothing written
    for path in (data / "masksTs" / "liver").iterdir():
        path.unlink()
    (data / "masksTs" / "liver").rmdir()
    (data / "masksTs").rmdir()
    assert clicks("--task", "trials", "--data", str(data), "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "liver" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "autopett"], "unknown task 'autopett'"),
        (["--task", "medsegfm"], "reacts to the model"),
        (["--task", "autopet"], "classes [2] that task 'autopet' does not define"),
        (["--task", "autopet", "--axis-order", "xxz"], "permutation of x, y, z"),
    ],
)
def test_clicks_errors_are_one_line(tmp_path, capsys, argv, message):
    write_case(tmp_path / "data", jaw("jaw_001"))
    out = tmp_path / "out"
    assert clicks(*argv, "--data", str(tmp_path / "data"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_toothfairy3_refuses_an_empty_label(tmp_path, capsys):
    case = jaw("jaw_001")
    write_case(tmp_path / "data", replace(case, label=np.zeros_like(case.label)))
    args = ("--task", "toothfairy3", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"))
    assert clicks(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "jaw_001" in err and "no foreground" in err


def test_clicks_are_the_same_bytes_every_run(tmp_path):
    data = pet_dataset(tmp_path, count=2)
    runs = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        assert (
            clicks("--task", "autopet", "--data", str(data), "--out", str(out), "--seed", seed) == 0
        )
        runs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.json"))})
    assert runs[0] == runs[1]
    assert runs[0].keys() == runs[2].keys() and runs[0] != runs[2]


def test_clicks_format_overrides(tmp_path):
    write_case(tmp_path / "data", jaw("jaw_001"))
    base = ["--task", "toothfairy3", "--data", str(tmp_path / "data")]
    assert clicks(*base, "--out", str(tmp_path / "zyx")) == 0
    assert clicks(*base, "--out", str(tmp_path / "xyz"), "--axis-order", "x,y,z") == 0
    assert clicks(*base, "--out", str(tmp_path / "mm"), "--coordinates", "world") == 0
    assert clicks(*base, "--out", str(tmp_path / "seg"), "--format", "segloop") == 0

    def points(folder):
        data = json.loads((tmp_path / folder / "jaw_001" / "jaw_001_step_05.json").read_text())
        return [p["point"] for p in data["points"]]

    assert points("xyz") == [p[::-1] for p in points("zyx")]
    case = jaw("jaw_001")
    from segloop.core.formats import index_to_world

    world = [index_to_world(p, case.geometry) for p in points("zyx")]
    assert np.allclose(points("mm"), world, atol=1e-5)  # the file's geometry: float32 header
    seg = json.loads((tmp_path / "seg" / "jaw_001" / "jaw_001_step_05.json").read_text())
    assert seg["axis_order"] == ["z", "y", "x"] and len(seg["interactions"]) == 10


def test_clicks_of_toml_tasks_follow_their_protocol(tmp_path):
    write_case(tmp_path / "data", jaw("jaw_001"))
    r5 = tmp_path / "r5.toml"
    r5.write_text(
        'base = "toothfairy3"\n[protocol]\nname = "realistic"\np_system = 0.5\n'
        '[protocol.base]\nname = "toothfairy3"\n',
        encoding="utf-8",
    )
    generic = tmp_path / "generic.toml"
    generic.write_text(
        'num_steps = 3\nmetrics = ["dice"]\n[classes]\n1 = "L"\n2 = "R"\n'
        '[protocol]\nname = "clicks"\nplacement = "random"\nreactive = false\n',
        encoding="utf-8",
    )
    orders = {}
    for path in (r5, generic):
        out = tmp_path / path.stem
        assert clicks("--task", str(path), "--data", str(tmp_path / "data"), "--out", str(out)) == 0
        manifest = json.loads((out / "clicks_format.json").read_text())
        orders[path.stem] = (
            manifest["point_format"]["challenge"],
            manifest["point_format"]["axis_order"],
        )
    assert orders == {
        "r5": ("toothfairy3", ["z", "y", "x"]),
        "generic": ("generic", ["x", "y", "z"]),
    }
