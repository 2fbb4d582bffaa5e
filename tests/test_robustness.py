"""Robustness to the user (issue 18, items 2, 5 and 6): robot-user presets in any task's place,
`segloop run --robot-users`, the leaderboard's robustness and user-shift sections, and
`segloop user-shift`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core.challenges import CHALLENGES, ROBOT_USERS, get_challenge
from segloop.core.dataset import write_case
from segloop.core.records import SegloopError
from segloop.leaderboard.board import build_leaderboard
from segloop.leaderboard.usershift import (
    read_dataset_label,
    read_run_sessions,
    read_table,
    user_shift_table,
)
from segloop.protocols.tasks import get_task

RG = "python:segloop.baselines.region_growing:predict"
EMPTY = "python:segloop.baselines.trivial:empty"


@pytest.fixture(scope="module")
def pet_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pet")
    for i in range(3):
        write_case(root, phantoms.pet_phantom(i, shape=(24, 40, 40)))
    return root


@pytest.mark.parametrize("user", sorted(ROBOT_USERS))
def test_every_robot_user_preset_runs_in_a_task_deterministically(user):
    """Each preset takes the task's place (only the user changes) and gives interactions inside
    the image, positive ones at step 0 inside the ground truth, the same ones twice."""
    base = CHALLENGES["autopet"]
    variant = get_challenge(f"autopet+{user}")
    assert variant.name == f"autopet+{user}" and variant.protocol == ROBOT_USERS[user][1]
    same = {"protocol", "name", "title", "description"}
    for field in base.__dataclass_fields__:
        if field not in same:
            assert getattr(variant, field) == getattr(base, field), field
    case = phantoms.pet_phantom(1, shape=(24, 40, 40))
    task = get_task(f"autopet+{user}")
    rng_prediction = np.zeros(case.shape, np.uint8)
    for step in range(3):
        first = task.robot_user.interactions(case, task.classes, step, rng_prediction, 0)
        again = get_task(f"autopet+{user}").robot_user.interactions(
            case, task.classes, step, rng_prediction, 0
        )
        assert first == again
        for interaction in first:
            coords = np.asarray(interaction.coords)
            assert coords.min() >= 0 and (coords < np.asarray(case.shape)).all()
            if step == 0 and interaction.positive and interaction.kind == "click" and user != "r5":
                assert case.label[tuple(coords[0])] == interaction.class_id
    assert any(
        task.robot_user.interactions(case, task.classes, s, rng_prediction, 0) for s in range(3)
    )


def test_unknown_robot_user_and_task_are_one_line_errors():
    with pytest.raises(SegloopError, match="unknown task 'autopet\\+r9'.*\\+<robot user>"):
        get_challenge("autopet+r9")
    with pytest.raises(SegloopError, match="unknown task 'nothing'"):
        get_challenge("nothing+r1")


def test_run_under_several_robot_users_and_the_robustness_table(pet_data, tmp_path, capsys):
    for name, model in (("region-growing", RG), ("empty", EMPTY)):
        code = main(
            ["run", "--data", str(pet_data), "--task", "autopet", "--model", model,
             "--out", str(tmp_path / name), "--name", name, "--no-progress",
             "--robot-users", "own,r1,generic-box"]
        )  # fmt: skip
        assert code == 0
    out = capsys.readouterr().out
    assert "robot user r1: task autopet+r1" in out
    for user in ("own", "r1", "generic-box"):
        run = json.loads((tmp_path / "region-growing" / user / "run.json").read_text())
        assert run["task"]["name"] == ("autopet" if user == "own" else f"autopet+{user}")

    board = build_leaderboard([tmp_path / "region-growing", tmp_path / "empty"], n_bootstrap=0)
    table = board.robustness.set_index("submission")
    assert list(board.robustness.columns) == [
        "task", "value", "submission", "own", "generic-box", "r1", "users", "mean", "worst", "spread"
    ]  # fmt: skip
    assert list(table.index) == ["region-growing", "empty"]  # best worst value first
    for user in ("own", "r1", "generic-box"):
        summary = json.loads((tmp_path / "region-growing" / user / "summary.json").read_text())
        expected = summary["mean"]["dice"]["auc_normalised"]
        assert table.loc["region-growing", user] == pytest.approx(expected, abs=1e-12)
    values = table.loc["region-growing", ["own", "generic-box", "r1"]].astype(float)
    assert table.loc["region-growing", "worst"] == values.min()
    assert table.loc["region-growing", "spread"] == pytest.approx(values.max() - values.min())
    assert table.loc["empty", "worst"] == 0.0 and table.loc["empty", "spread"] == 0.0
    # the variants are shown as robustness, not counted as more tasks in the consensus
    task_ranks = [c for c in board.consensus.columns if c.endswith("_rank")]
    assert task_ranks == ["autopet_rank", "mean_rank", "consensus_rank"]

    site = tmp_path / "site"
    assert main(["leaderboard", str(tmp_path / "region-growing"), str(tmp_path / "empty"),
                 "--out", str(site), "--bootstrap", "0"]) == 0  # fmt: skip
    page = (site / "index.html").read_text()
    assert "Robustness to the user" in page and "user generic-box" in page
    written = pd.read_csv(site / "data" / "robustness.csv")
    assert list(written["submission"]) == ["region-growing", "empty"]


def test_robot_users_option_checks_every_name_before_running(pet_data, tmp_path, capsys):
    code = main(
        ["run", "--data", str(pet_data), "--task", "autopet", "--model", RG,
         "--out", str(tmp_path / "x"), "--robot-users", "r1,r9", "--no-progress"]
    )  # fmt: skip
    assert code == 2
    assert "unknown task 'autopet+r9'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing ran
    assert main(["run", "--data", str(pet_data), "--task", "autopet", "--model", RG,
                 "--out", str(tmp_path / "y"), "--robot-users", "r1,r1"]) == 2  # fmt: skip


def test_user_shift_command_and_leaderboard_section(pet_data, tmp_path, capsys):
    runs = {}
    for name, task, seed in (
        ("anna", "r5", 1),
        ("bert", "r5", 2),
        ("r1", "r1", 0),
        ("r4", "r4", 0),
    ):
        runs[name] = tmp_path / name
        assert main(["run", "--data", str(pet_data), "--task", task, "--seed", str(seed),
                     "--model", RG, "--out", str(runs[name]), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(
        ["user-shift", "--data", str(pet_data), "--annotators", f"anna={runs['anna']}",
         f"bert={runs['bert']}", "--robots", str(runs["r1"]), str(runs["r4"]),
         "--out", str(tmp_path / "shift")]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("source") and "(x 100)" in printed
    rows = read_table(tmp_path / "shift" / "user-shift.json")
    expected = user_shift_table(
        {n: read_run_sessions(runs[n]) for n in ("anna", "bert")},
        {n: read_run_sessions(runs[n]) for n in ("r1", "r4")},
        lambda case_id: read_dataset_label(pet_data, case_id)[0],
    )
    assert [r.source for r in rows] == ["anna", "bert", "r1", "r4"]
    for got, want in zip(rows, expected, strict=True):
        assert got.metrics() == pytest.approx(want.metrics(), nan_ok=True)
        assert (got.m6, got.m7) == pytest.approx((want.m6, want.m7))
    assert rows[2].m1 == 1.0  # R1 never clicks outside the label

    site = tmp_path / "site"
    assert main(["leaderboard", str(runs["r1"]), "--out", str(site), "--bootstrap", "0",
                 "--user-shift", str(tmp_path / "shift" / "user-shift.json")]) == 0  # fmt: skip
    page = (site / "index.html").read_text()
    assert "User shift: how far the robot users are from people" in page
    assert (site / "data" / "user-shift.json").is_file()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{", "not a readable user-shift table"),
        (b"[]", "not a user-shift table"),
        (b'{"format": "segloop-user-shift", "rows": []}', "non-empty list"),
        (b'{"format": "segloop-user-shift", "rows": [{"source": "a"}]}', "exactly the keys"),
        (
            json.dumps(
                {
                    "format": "segloop-user-shift",
                    "rows": [
                        {
                            "source": "a",
                            "role": "robot",
                            "cases": "3",
                            "lesion_clicks": 1,
                            "m1": 1,
                            "m2": 1,
                            "m3": 1,
                            "m4": 1,
                            "m5": 1,
                            "m6": None,
                            "m7": None,
                        }
                    ],
                }
            ).encode(),
            "bad value of cases",
        ),  # fmt: skip
        (b"[" * 100_000, "not a readable user-shift table"),
    ],
)
def test_a_bad_user_shift_file_is_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "user-shift.json"
    path.write_bytes(content)
    assert main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "s"),
                 "--user-shift", str(path)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert problem in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_user_shift_names_must_be_distinct(tmp_path, capsys):
    assert main(["user-shift", "--data", str(tmp_path), "--annotators", f"a={tmp_path}",
                 f"a={tmp_path}"]) == 2  # fmt: skip
    assert "distinct name" in capsys.readouterr().err


def test_variant_keeps_the_scoring_mode():
    segloop_mode = get_task("autopet+r4", scoring="segloop")
    assert segloop_mode.metrics == ("dice", "fpv", "fnv")
    assert replace(CHALLENGES["autopet"], name="x").metrics == get_task("autopet+r4").metrics


def test_gallery_draws_each_users_interactions(tmp_path):
    from segloop.app.gallery import draw_gallery

    paths = draw_gallery(tmp_path, ["r1", "generic-scribble"])
    assert [p.name for p in paths] == ["r1.png", "generic-scribble.png"]
    images = [p.read_bytes() for p in paths]
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in images) and images[0] != images[1]
    assert draw_gallery(tmp_path / "again", ["r1"])[0].read_bytes() == images[0]  # deterministic


def test_docs_show_every_robot_user():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "robot-users.md").read_text()
    for user in ROBOT_USERS:
        assert f"| `{user}` |" in page, user
        assert (root / "docs" / "images" / "robot-users" / f"{user}.png").is_file(), user
