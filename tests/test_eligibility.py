"""Eligibility masks as configuration (issue 18, item 4): regions written as data, checked,
evaluated exactly, and used by the click user of a TOML task."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.app import phantoms
from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.autopet import high_uptake_background
from segloop.protocols.eligibility import check_region, region_mask
from segloop.protocols.generic import EligibilityClickUser
from segloop.protocols.tasks import get_task


def small_case() -> Case:
    rng = np.random.default_rng(3)
    label = np.zeros((6, 10, 12), np.uint8)
    label[1:4, 2:6, 2:7] = 1
    label[2:5, 6:9, 8:11] = 2
    ct = rng.normal(0, 100, label.shape).astype(np.float32)
    pet = rng.gamma(2.0, 1.0, label.shape).astype(np.float32)
    liver = np.zeros(label.shape, bool)
    liver[:, :, :9] = True
    return Case("c", (ct, pet), label, Geometry((2.0, 1.0, 1.0)), {"liver": liver})


def test_named_regions_equal_their_definitions():
    case = small_case()
    prediction = np.zeros(case.shape, np.uint8)
    prediction[1:4, 3:7, 2:7] = 1
    truth, predicted = case.label == 1, prediction == 1
    expected = {
        "label": truth,
        "background": ~truth,
        "prediction": predicted,
        "error": truth ^ predicted,
        "false_negative": truth & ~predicted,
        "false_positive": predicted & ~truth,
        "everything": np.ones(case.shape, bool),
        "mask:liver": case.extra_masks["liver"],
    }
    for name, mask in expected.items():
        check_region(name)
        assert np.array_equal(region_mask(name, case, 1, prediction), mask), name
    # no prediction yet: counted as empty
    assert np.array_equal(region_mask("error", case, 1, None), truth)
    assert not region_mask("prediction", case, 1, None).any()


def test_set_operations_and_thresholds():
    case = small_case()
    ct, pet = case.channels
    liver, truth = case.extra_masks["liver"], case.label == 2
    region = {"minus": [{"and": ["mask:liver", {"channel": 0, "above": 50}]}, "label"]}
    check_region(region)
    assert np.array_equal(region_mask(region, case, 2, None), (liver & (ct > 50)) & ~truth)
    region = {"or": [{"channel": 0, "below": -120}, {"not": "mask:liver"}]}
    assert np.array_equal(region_mask(region, case, 2, None), (ct < -120) | ~liver)
    # autoPET's high-uptake background (Alg. 1 line 16), written as data
    autopet = {"and": ["background", {"channel": 1, "above_percentile": 99.75, "of": "background"}]}
    for class_id in (1, 2):
        background = case.label != class_id
        assert np.array_equal(
            region_mask(autopet, case, class_id, None),
            high_uptake_background(pet, background, 99.75),
        )
    # a percentile of an empty region selects nothing
    empty_of = {"channel": 1, "above_percentile": 50, "of": {"minus": ["label", "label"]}}
    assert not region_mask(empty_of, case, 1, None).any()


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("lable", "unknown region 'lable'"),
        ("mask:", "unknown region 'mask:'"),
        (3, "a region is a name or a table, not int"),
        ({}, "a region is a name or a table"),
        ({"and": "label"}, r"eligibility.and: a list of 1 to 32"),
        ({"and": ["label"], "or": ["label"]}, "one key"),
        ({"minus": ["label", "error", "everything"]}, "two regions"),
        ({"not": {"and": ["label", "nope"]}}, r"eligibility.not.and\[1\]: unknown region"),
        ({"channel": 1}, "exactly one of above"),
        ({"channel": 1, "above": 1, "below": 2}, "exactly one of above"),
        ({"channel": -1, "above": 1}, "channel must be an index"),
        ({"channel": True, "above": 1}, "channel must be an index"),
        ({"channel": 0, "above": float("nan")}, "finite number"),
        ({"channel": 0, "above_percentile": 101}, r"\[0, 100\]"),
        ({"channel": 0, "above": 1, "of": "label"}, "'of' goes with above_percentile"),
        ({"channel": 0, "above": 1, "colour": 2}, "unknown keys: \\['colour'\\]"),
    ],
)
def test_bad_regions_are_one_line_errors(region, message):
    with pytest.raises(SegloopError, match=message):
        check_region(region)


def test_deep_nesting_is_refused_without_recursion_error():
    region: object = "label"
    for _ in range(1000):
        region = {"not": region}
    with pytest.raises(SegloopError, match="nest deeper than 16"):
        check_region(region)


def test_missing_extra_mask_and_channel_name_the_case():
    case = small_case()
    with pytest.raises(SegloopError, match="case c: region 'mask:kidney' needs the extra mask"):
        region_mask("mask:kidney", case, 1, None)
    with pytest.raises(SegloopError, match="channel 5; the case has 2 channel"):
        region_mask({"channel": 5, "above": 0}, case, 1, None)


def test_toml_task_clicks_from_a_configured_region(tmp_path):
    """Negative prompts from the high-uptake background, several per step, inside their region,
    deterministic; the task file loads the region and the user checks it."""
    path = tmp_path / "uptake.toml"
    path.write_text(
        'base = "autopet"\n'
        "[protocol]\n"
        'name = "clicks"\n'
        'component = "random"\n'
        'placement = "random"\n'
        "clicks_per_step = 3\n"
        "eligibility = { and = ['background', "
        "{ channel = 1, above_percentile = 99.0, of = 'background' }] }\n",
        encoding="utf-8",
    )
    task = get_task(path)
    assert isinstance(task.robot_user, EligibilityClickUser)
    case = phantoms.pet_phantom(0, shape=(24, 40, 40))
    region = region_mask(task.robot_user.eligibility, case, 1, None)
    for step in range(3):
        clicks = task.robot_user.interactions(case, task.classes, step, None, 0)
        assert clicks == task.robot_user.interactions(case, task.classes, step, None, 0)
        assert 1 <= len(clicks) <= 3
        for click in clicks:
            point = click.coords[0]
            assert region[point] and not click.positive and case.label[point] != 1
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "autopet"\n[protocol]\nname = "clicks"\neligibility = "lable"\n')
    with pytest.raises(SegloopError, match="unknown region 'lable'"):
        get_task(bad)
