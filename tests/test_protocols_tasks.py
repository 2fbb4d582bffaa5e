"""Task presets and user-defined TOML tasks."""

from __future__ import annotations

import pytest

from segloop.core.challenges import CHALLENGES
from segloop.core.records import SegloopError
from segloop.protocols.tasks import get_task, robot_user_from_json


def test_presets_match_the_spec_table():
    autopet = get_task("autopet")
    assert autopet.num_steps == 11 and autopet.metrics == ("dice", "fpv_f32", "fnv_f32")
    assert autopet.scoring_mode == "challenge" and autopet.empty_mask_policy.empty_gt_undefined
    own = get_task("autopet", scoring="segloop")
    assert own.metrics == ("dice", "fpv", "fnv") and not own.empty_mask_policy.empty_gt_undefined
    assert autopet.auc_steps == tuple(range(11)) and autopet.auc_x == tuple(map(float, range(11)))
    assert dict(autopet.classes) == {1: "tumor"}
    tooth = get_task("toothfairy3")
    assert tooth.num_steps == 6 and tooth.metrics == ("dice", "hd95_voxel_boundary_n6_voxels")
    assert get_task("toothfairy3", scoring="segloop").metrics == ("dice", "hd95")
    assert dict(tooth.classes) == {1: "Left_IAC", 2: "Right_IAC"}
    assert tooth.auc_x == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    trials = get_task("trials")
    assert trials.num_steps == 11 and trials.metrics == (
        "dice",
        "assd_voxel_boundary_n18",
        "hd_voxel_boundary_n18",
    )
    assert trials.curve_step_order == "text"
    assert trials.empty_mask_policy.one_empty_distance_mm == 9001
    assert get_task("trials", scoring="segloop").metrics == ("dice", "assd", "hd")
    med = get_task("medsegfm", seed=4)
    assert med.num_steps == 6 and med.metrics == ("dice", "nsd@2")
    assert med.auc_steps == (1, 2, 3, 4, 5) and med.auc_x == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert med.nsd_zero_below_dice == 0.2 and med.send_previous_prediction and med.seed == 4
    assert med.robot_user.name == "sakinis"
    assert not autopet.send_previous_prediction
    assert set(CHALLENGES) >= {"autopet", "toothfairy3", "trials", "medsegfm", "generic"}
    for name, preset in CHALLENGES.items():
        assert preset.description and get_task(name).to_json()["name"] == name


def test_fresh_task_each_call_and_class_override():
    assert get_task("medsegfm") is not get_task("medsegfm")
    med = get_task("medsegfm", classes={1: "liver", 2: "spleen"})
    assert dict(med.classes) == {1: "liver", 2: "spleen"}


def test_robot_user_round_trips_through_json():
    for name in CHALLENGES:
        user = get_task(name).robot_user
        assert robot_user_from_json(user.to_json()) == user


def test_unknown_task_and_protocol():
    with pytest.raises(SegloopError, match="unknown task"):
        get_task("nope")
    with pytest.raises(SegloopError, match="unknown protocol"):
        robot_user_from_json({"name": "nope"})
    with pytest.raises(SegloopError, match="no parameter"):
        robot_user_from_json({"name": "sakinis", "colour": 1})


def test_toml_task(tmp_path):
    path = tmp_path / "liver.toml"
    path.write_text(
        """
name = "liver-clicks"
description = "liver, 4 steps"
num_steps = 4
metrics = ["dice", "hd95"]
seed = 9

[classes]
1 = "liver"
2 = "spleen"

[protocol]
name = "autopet"
num_clicks = 3
sigma_voxels = 1.0
""",
        encoding="utf-8",
    )
    task = get_task(path)
    assert task.name == "liver-clicks" and task.num_steps == 4 and task.seed == 9
    assert task.robot_user.num_clicks == 3 and task.robot_user.sigma_voxels == 1.0
    assert dict(task.classes) == {1: "liver", 2: "spleen"}
    assert task.auc_steps == (0, 1, 2, 3) and task.auc_x == (0.0, 1.0, 2.0, 3.0)
    assert get_task(str(path), seed=2).seed == 2


def test_toml_task_from_base(tmp_path):
    path = tmp_path / "short.toml"
    path.write_text('base = "medsegfm"\n[classes]\n3 = "kidney"\n', encoding="utf-8")
    task = get_task(path)
    assert task.num_steps == 6 and task.auc_steps == (1, 2, 3, 4, 5)
    assert dict(task.classes) == {3: "kidney"} and task.nsd_zero_below_dice == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_steps = [", "not a readable TOML"),
        ("num_steps = 3\nmetrics = ['dice']", "missing 'protocol'"),
        ("colour = 1", "unknown key"),
        ("base = 'nope'", "not a preset"),
        (
            "base = 'medsegfm'\nnum_steps = 3\nauc_steps = [5]\nauc_x = [0]",
            "auc_steps must lie in 0..num_steps-1",
        ),
        ("base = 'medsegfm'\n[protocol]\nname = 'sakinis'\ninitial = 'lasso'", "lasso"),
        ("base = 'autopet'\n[limits]\nwall_time = 5", "limits: unknown wall_time"),
        ("base = 'autopet'\n[limits]\nmemory_mb = 0", "limits must be > 0"),
        ("base = 'autopet'\nlimits = 5", r"\[limits\] must be a table"),
    ],
)
def test_bad_toml_names_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SegloopError, match=message) as error:
        get_task(path)
    assert "bad.toml" in str(error.value)


def test_reactivity_of_protocols():
    from segloop.protocols.tasks import is_reactive

    assert is_reactive(get_task("medsegfm").robot_user)
    assert not is_reactive(get_task("autopet").robot_user)
    assert is_reactive(robot_user_from_json({"name": "clicks"}))
    assert not is_reactive(robot_user_from_json({"name": "clicks", "reactive": False}))
    assert is_reactive(robot_user_from_json({"name": "realistic"}))  # R5 over R1 (eq. 28)
    assert not is_reactive(robot_user_from_json({"name": "realistic", "base": {"name": "autopet"}}))
    assert is_reactive(robot_user_from_json({"name": "sequence"}))


def test_toml_base_autopet_with_reactive_protocol_sends_previous_prediction(tmp_path):
    """Issue 15: base = "autopet" kept autoPET's send_previous_prediction = false under a
    reactive [protocol], so the user reacted to predictions the model never received."""
    reactive = tmp_path / "reactive.toml"
    reactive.write_text('base = "autopet"\n[protocol]\nname = "sakinis"\n', encoding="utf-8")
    assert get_task(reactive).send_previous_prediction is True
    wrapped = tmp_path / "wrapped.toml"
    wrapped.write_text(
        'base = "autopet"\n[protocol]\nname = "sequence"\n[protocol.initial]\nname = "box"\n'
        '[protocol.then]\nname = "clicks"\n',
        encoding="utf-8",
    )
    assert get_task(wrapped).send_previous_prediction is True
    # a non-reactive protocol on autoPET stays without; an explicit value always wins
    fixed = tmp_path / "fixed.toml"
    fixed.write_text('base = "autopet"\n[protocol]\nname = "trials"\n', encoding="utf-8")
    assert get_task(fixed).send_previous_prediction is False
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(
        'base = "autopet"\nsend_previous_prediction = false\n[protocol]\nname = "sakinis"\n',
        encoding="utf-8",
    )
    assert get_task(explicit).send_previous_prediction is False
    # a base that sends it (MedSegFM's prev_pred) keeps sending under another protocol
    medsegfm = tmp_path / "medsegfm.toml"
    medsegfm.write_text('base = "medsegfm"\n[protocol]\nname = "box"\n', encoding="utf-8")
    assert get_task(medsegfm).send_previous_prediction is True
