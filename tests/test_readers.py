"""The leaderboard for readers (issue 17, item 5): per-class tables and curves of a
multi-class task, units, what a normalised AUC means, the title and dataset name, no local paths
unless asked, missing cases stated."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from segloop.app import phantoms
from segloop.cli.commands import execute_run
from segloop.cli.main import main
from segloop.core import store
from segloop.leaderboard import html, html_cells
from tests.test_leaderboard_helpers import flat_curves, write_run


@pytest.fixture(scope="module")
def tooth_site(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, site) of ToothFairy3 (two canals) on two small jaw phantoms."""
    root = tmp_path_factory.mktemp("tooth")
    phantoms.write_phantom_dataset(root / "data", "jaw", 2, seed=0, shape=(24, 48, 48))
    run = root / "run"
    model = "python:segloop.baselines.region_growing:predict"
    execute_run(
        root / "data", "toothfairy3", model, run, "rg", show_progress=False, save_predictions=True
    )
    site = root / "site"
    assert main(["leaderboard", str(run), "--out", str(site), "--bootstrap", "0"]) == 0
    return run, site


def cell_texts(page: str, table_id: str) -> tuple[list[str], list[list[str]]]:
    table = page[page.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    headers = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    rows = [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]
    return headers, [r for r in rows if r]


def test_multi_class_task_gets_per_class_columns_and_curves(tooth_site):
    run, site = tooth_site
    page = (site / html_cells.task_page("toothfairy3")).read_text()
    headers, rows = cell_texts(page, "classes")
    assert headers[0] == "Submission" and len(headers) == 1 + 2 * 2 * 2  # classes x metrics x 2
    assert any(h.startswith("Left_IAC: Dice") for h in headers)
    assert any(h.startswith("Right_IAC: Dice Final") for h in headers)
    # the Dice Final of each class is the mean over cases of that class's last step
    record = store.read_run(run)
    for key, name in (("1", "Left_IAC"), ("2", "Right_IAC")):
        finals = [r.steps[-1].metrics["dice"].per_class[key] for r in record.cases.values()]
        shown = float(rows[0][headers.index(f"{name}: Dice Final")])
        assert shown == pytest.approx(sum(finals) / len(finals), abs=5e-5)
    classes_csv = pd.read_csv(site / "data" / "classes.csv")
    dice = classes_csv[(classes_csv["metric"] == "dice") & (classes_csv["class_id"] == 2)]
    assert set(dice["class_name"]) == {"Right_IAC"} and len(dice) == 2  # one row per case
    finals = {c: r.steps[-1].metrics["dice"].per_class["2"] for c, r in record.cases.items()}
    assert dict(zip(dice["case_id"], dice["final"], strict=True)) == pytest.approx(finals)
    case_page = (site / html_cells.case_page("toothfairy3", "rg", "jaw_000")).read_text()
    headers, rows = cell_texts(case_page, "steps")
    assert headers[:3] == ["Step", "New interactions (voxel z, y, x)", "Dice"]
    assert "Left_IAC: Dice" in headers and len(rows) == 6
    assert "Interaction curves per class" in page
    charts = re.findall(r'aria-label="([^"]*\(class \d\), mean over cases)"', page)
    assert len(charts) == 4 and charts[0].startswith("Dice, Left_IAC (class 1)")  # metric x class
    # a one-class task has no per-class section
    autopet = write_run(site.parent / "one", "x", flat_curves({"c": 0.5}))
    one = site.parent / "one-site"
    assert main(["leaderboard", str(autopet), "--out", str(one), "--bootstrap", "0"]) == 0
    assert 'id="classes"' not in (one / html_cells.task_page("autopet")).read_text()


def test_columns_have_units_and_the_auc_meaning_is_stated(tooth_site):
    _, site = tooth_site
    page = (site / html_cells.task_page("toothfairy3")).read_text()
    headers, _ = cell_texts(page, "leaderboard")
    assert headers[:3] == ["Rank", "Submission", "Score"]
    assert headers[3].startswith("Dice AUC") and headers[4] == "Dice Final"
    assert any("Final (" in h and "voxel" in h or "Final (mm)" in h for h in headers[3:7])
    assert "in [0, 1]; 1 = perfect at every step" in page  # Dice
    assert "not bounded above, lower is better" in page  # HD95


def test_title_dataset_name_paths_and_missing_cases(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a", "a", flat_curves({"c1": 0.9, "c2": 0.8}))
    write_run(runs / "b", "b", flat_curves({"c1": 0.95}))  # lacks c2
    site = tmp_path / "site"
    args = ["leaderboard", str(runs), "--out", str(site), "--bootstrap", "50"]
    assert main([*args, "--title", "MNI tissue", "--dataset-name", "MNI152 2009c"]) == 0
    index = (site / "index.html").read_text()
    assert "<title>MNI tissue</title>" in index and "Dataset: MNI152 2009c" in index
    every_page = "".join(p.read_text() for p in site.glob("*.html"))
    assert str(runs) not in every_page and "/nowhere" not in every_page  # no local path
    b_page = (site / html_cells.submission_page("autopet", "b")).read_text()
    assert "1 case(s) of this task have no result from this submission" in b_page
    assert "c2" in b_page[b_page.index('id="missing-cases"') :][:400]
    a_page = (site / html_cells.submission_page("autopet", "a")).read_text()
    assert 'id="missing-cases"' not in a_page
    # wins always carry one decimal
    _, rows = cell_texts((site / html_cells.task_page("autopet")).read_text(), "leaderboard")
    assert all(re.fullmatch(r"\d+\.\d", row[-1]) for row in rows)
    shown = tmp_path / "shown"
    assert main(["leaderboard", str(runs), "--out", str(shown), "--show-paths"]) == 0
    a_shown = (shown / html_cells.submission_page("autopet", "a")).read_text()
    assert str((runs / "a").resolve()) in a_shown and "/nowhere" in a_shown


def test_absolute_paths_in_model_specs_are_cut_to_their_names():
    assert html.hide_paths("cmd:python /home/me/team/model.py {input}") == (
        "cmd:python …/model.py {input}"
    )
    assert html.hide_paths("docker:gc-autopet+team/model:1") == "docker:gc-autopet+team/model:1"
    assert html.hide_paths("python:model:predict") == "python:model:predict"
