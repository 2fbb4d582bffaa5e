"""`segloop tasks` and `segloop clicks`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.cli import main
from evaluator.io import write_case
from evaluator.records import Case, Geometry
from protocols.formats import read_gc_points, read_segloop_json
from protocols.tasks import get_task


def jaw(case_id: str) -> Case:
    shape = (20, 24, 30)
    label = np.zeros(shape, np.uint8)
    label[3:17, 10:13, 5:8] = 1
    label[4:15, 10:13, 22:25] = 2
    image = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    return Case(case_id, (image,), label, Geometry((0.5, 0.4, 0.4)))


def test_tasks_lists_presets(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("autopet", "toothfairy3", "trials", "medsegfm", "generic"):
        assert name in out
    assert main(["tasks", "medsegfm"]) == 0
    assert json.loads(capsys.readouterr().out)["auc_steps"] == [1, 2, 3, 4, 5]


def test_clicks_writes_gc_files_per_case_and_step(tmp_path, capsys):
    data = tmp_path / "data"
    for case_id in ("jaw_001", "jaw_002"):
        write_case(data, jaw(case_id))
    out = tmp_path / "clicks"
    assert main(["clicks", "--task", "toothfairy3", "--data", str(data), "--out", str(out)]) == 0
    task = get_task("toothfairy3")
    files = sorted(p.name for p in (out / "jaw_001").glob("jaw_001_step_*.json"))
    assert files == [f"jaw_001_step_{k:02d}.json" for k in range(6)]
    case = jaw("jaw_001")
    expected = []
    for step in range(6):
        expected.extend(task.robot_user.interactions(case, task.classes, step, None, 0))
        points = json.loads((out / "jaw_001" / f"jaw_001_step_{step:02d}.json").read_text())
        assert len(points["points"]) == 2 * step
        assert {p["name"] for p in points["points"]} <= {"Left_IAC", "Right_IAC"}
        back = read_gc_points(out / "jaw_001" / f"jaw_001_step_{step:02d}.json", task.classes)
        assert sorted(back, key=str) == sorted(expected, key=str)
    assert read_segloop_json(out / "jaw_001" / "jaw_001_interactions.json") == tuple(expected)


def test_clicks_refuses_reactive_task(tmp_path, capsys):
    write_case(tmp_path / "data", jaw("jaw_001"))
    code = main(
        ["clicks", "--task", "medsegfm", "--data", str(tmp_path / "data"), "--out", str(tmp_path)]
    )
    assert code == 2
    assert "reacts to the model" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["autopet", "trials", "toothfairy3", "medsegfm", "generic"])
def test_task_json_is_plain_json(name):
    text = json.dumps(get_task(name).to_json())
    assert "NaN" not in text
