"""segloop.api (issue 17, item 2): the README's notebook example runs as written; the tables
hold the run's own numbers; a function object scores as the same function through python:."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from segloop import api
from segloop.cli.main import main
from segloop.core.records import SegloopError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("### Python API (notebooks)", 1)[1]
    return re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)[0]


def test_the_readme_example_runs_and_its_tables_are_the_runs_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102
    run = namespace["run"]
    summary = json.loads((tmp_path / "runs" / "balls" / "summary.json").read_text())
    assert summary["submission"] == "balls" and summary["num_cases"] == 2
    assert run.summary.loc["dice", "final"] == pytest.approx(summary["mean"]["dice"]["final"])
    assert sorted(run.cases["case_id"]) == ["pet_000", "pet_001"]
    assert len(run.steps) == 2 * 11 and set(run.steps["step"]) == set(range(11))
    case = json.loads((tmp_path / "runs" / "balls" / "cases" / "pet_000.json").read_text())
    dice = run.steps[run.steps["case_id"] == "pet_000"].sort_values("step")["dice"].tolist()
    assert dice == pytest.approx([s["metrics"]["dice"]["mean"] for s in case["steps"]])
    picture = run.show("pet_000", step=3)
    assert picture._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.save(tmp_path / "p.png").stat().st_size > 10_000
    assert "dice_final" in printed.getvalue()


def test_a_function_object_scores_as_the_python_spec_of_the_same_function(tmp_path):
    from segloop.app.phantoms import write_phantom_dataset
    from segloop.baselines import region_growing
    from tests.test_leaderboard_helpers import SMALL_PET

    data = tmp_path / "data"
    write_phantom_dataset(data, "pet", 2, seed=5, shape=SMALL_PET)
    through_api = api.run(region_growing.predict, data, "autopet", tmp_path / "api", name="rg")
    model = "python:segloop.baselines.region_growing:predict"
    args = ["run", "--data", str(data), "--task", "autopet", "--model", model, "--name", "rg"]
    assert main([*args, "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    for case_id in ("pet_000", "pet_001"):
        a = json.loads((tmp_path / "api" / "cases" / f"{case_id}.json").read_text())
        b = json.loads((tmp_path / "cli" / "cases" / f"{case_id}.json").read_text())
        assert a["steps"] == b["steps"] and a["summary"] == b["summary"]
    # resumable: a second call runs nothing and reads the same
    again = api.run(region_growing.predict, data, "autopet", tmp_path / "api", name="rg")
    assert again.cases.equals(through_api.cases)
    assert api.open_run(tmp_path / "cli").cases["dice_final"].tolist() == pytest.approx(
        through_api.cases["dice_final"].tolist()
    )


def test_api_errors_are_segloop_errors(tmp_path):
    with pytest.raises(SegloopError, match="must be a function"):
        api.run("python:x:y", tmp_path, "autopet", tmp_path / "out")  # type: ignore[arg-type]
    with pytest.raises(SegloopError, match="unknown task"):
        api.run(lambda c, r: np.zeros(c.shape), tmp_path, "autopett", tmp_path / "out")
    with pytest.raises(SegloopError, match="not a segloop run folder"):
        api.open_run(tmp_path)
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == []
