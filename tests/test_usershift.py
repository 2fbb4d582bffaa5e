"""User-shift metrics M1-M7 (thesis eqs. 21-27): hand computations of every term, properties,
run-folder reading, and the user-shift table of R1-R5 against two synthetic annotators."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from segloop.app import phantoms
from segloop.core import store
from segloop.core.records import Interaction, SegloopError
from segloop.core.results import CaseResult
from segloop.leaderboard.usershift import (
    format_table,
    read_run_sessions,
    session_from_case_result,
    user_shift_table,
    write_table,
)
from segloop.leaderboard.usershift_metrics import (
    Session,
    case_terms,
    centerness,
    centerness_terms,
    click_diversity,
    consistent_improvement,
    dataset_mean,
    dice_difference,
    label_agreement,
    label_proximity,
    label_proximity_terms,
    m1_label_agreement,
    m2_centerness,
    m3_click_diversity,
    m4_label_proximity,
    m5_consistent_improvement,
    m6_user_shift,
    m7_dice_difference,
)
from segloop.loop import case_result_of, run_case

SHAPE = (5, 7, 9)


def label_a() -> np.ndarray:
    """A 3x3x3 cube (centre (2, 2, 2), EDT 2 there, 1 elsewhere) and a single voxel (2, 5, 7)."""
    label = np.zeros(SHAPE, np.uint8)
    label[1:4, 1:4, 1:4] = 1
    label[2, 5, 7] = 1
    return label


# clicks on label A: the centre, a corner, two outside, the single voxel
CLICKS_A = np.array([(2, 2, 2), (1, 1, 1), (2, 2, 5), (2, 5, 7), (4, 6, 8)])
M2_A = (1 + 1 / (1 + math.sqrt(3)) + 1) / 3  # centre 2/(2+0), corner 1/(1+sqrt 3), voxel 1/(1+0)
M4_A = (1 / 2 + 1 / math.sqrt(6)) / 2  # (2,2,5) is 2 from (2,2,3); (4,6,8) sqrt(6) from (2,5,7)


def label_b() -> np.ndarray:
    """Three single voxels far apart."""
    label = np.zeros(SHAPE, np.uint8)
    for point in ((1, 1, 1), (1, 5, 1), (3, 1, 7)):
        label[point] = 1
    return label


CLICKS_B = np.array([(1, 1, 1), (1, 1, 1)])  # twice the same component
LABEL_C = np.zeros(SHAPE, np.uint8)  # empty label
CLICKS_C = np.array([(2, 2, 2)])


def test_m1_label_agreement_eq21():
    assert label_agreement(CLICKS_A, label_a()) == pytest.approx(3 / 5)
    assert label_agreement(CLICKS_B, label_b()) == 1.0
    assert label_agreement(CLICKS_C, LABEL_C) == 0.0
    assert math.isnan(label_agreement(np.zeros((0, 3)), label_a()))
    labels = [label_a(), label_b(), LABEL_C]
    clicks = [CLICKS_A, CLICKS_B, CLICKS_C]
    assert m1_label_agreement(clicks, labels) == pytest.approx((3 / 5 + 1 + 0) / 3)
    # an image without lesion clicks: the empty sum 0 ("zero") or left out ("skip")
    with_empty = [*clicks, np.zeros((0, 3))]
    assert m1_label_agreement(with_empty, [*labels, label_a()]) == pytest.approx(1.6 / 4)
    assert m1_label_agreement(with_empty, [*labels, label_a()], "skip") == pytest.approx(1.6 / 3)


def test_m2_centerness_eq22_every_term():
    terms = centerness_terms(CLICKS_A, label_a())
    assert terms == pytest.approx([1.0, 1 / (1 + math.sqrt(3)), 1.0])  # agreeing clicks, in order
    assert centerness(CLICKS_A, label_a()) == pytest.approx(M2_A)
    assert centerness(CLICKS_B, label_b()) == 1.0  # single-voxel components: bound 1, cent_dist 0
    assert math.isnan(centerness(CLICKS_C, LABEL_C))  # no agreeing click
    labels, clicks = [label_a(), label_b(), LABEL_C], [CLICKS_A, CLICKS_B, CLICKS_C]
    assert m2_centerness(clicks, labels) == pytest.approx((M2_A + 1 + 0) / 3)
    assert m2_centerness(clicks, labels, undefined_case="skip") == pytest.approx((M2_A + 1) / 2)


def test_m2_in_mm_the_centre_is_the_set_of_edt_maxima():
    """Spacing (3, 1, 1) mm: the cube's EDT is 2 mm on the whole z-column through its middle
    (z = 1..3: 2 mm to the y/x faces, >= 3 mm to the z faces), so the corner (1, 1, 1) is
    sqrt(2) mm from the centre set, 1 mm from the boundary."""
    terms = centerness_terms(CLICKS_A[:2], label_a(), spacing_mm=(3.0, 1.0, 1.0))
    assert terms == pytest.approx([1.0, 1 / (1 + math.sqrt(2))])
    assert centerness_terms(np.array([(3, 2, 2)]), label_a(), (3.0, 1.0, 1.0)) == pytest.approx(
        [1.0]
    )
    # in voxel units (3, 2, 2) is a face voxel: bound 1, 1 voxel from the single centre
    assert centerness_terms(np.array([(3, 2, 2)]), label_a()) == pytest.approx([0.5])


def test_m2_image_border_counts_as_outside():
    label = np.zeros((3, 3, 3), np.uint8)
    label[:, :, :] = 1  # the whole image: its boundary is the image border
    assert centerness_terms(np.array([(1, 1, 1), (0, 0, 0)]), label) == pytest.approx(
        [1.0, 1 / (1 + math.sqrt(3))]
    )


def test_m3_click_diversity_eq23():
    assert click_diversity(CLICKS_A, label_a()) == 1.0  # 2 of min(2 components, 5 clicks)
    assert click_diversity(CLICKS_B, label_b()) == 0.5  # 1 of min(3, 2)
    assert math.isnan(click_diversity(CLICKS_C, LABEL_C))  # no component: 0/0
    one = np.zeros(SHAPE, np.uint8)
    one[1:3, 1:3, 1:3] = 1  # a label with one component
    assert click_diversity(np.array([(1, 1, 1), (2, 2, 2), (4, 6, 8)]), one) == 1.0
    assert click_diversity(np.array([(4, 6, 8)]), one) == 0.0
    # 26-connectivity: two voxels touching at a corner are one component
    corner = np.zeros(SHAPE, np.uint8)
    corner[1, 1, 1] = corner[2, 2, 2] = 1
    assert click_diversity(np.array([(1, 1, 1), (1, 1, 1)]), corner) == 1.0
    labels, clicks = [label_a(), label_b(), LABEL_C], [CLICKS_A, CLICKS_B, CLICKS_C]
    assert m3_click_diversity(clicks, labels) == pytest.approx(1.5 / 3)
    assert m3_click_diversity(clicks, labels, "skip") == pytest.approx(1.5 / 2)


def test_m4_label_proximity_eq24_every_term():
    assert label_proximity_terms(CLICKS_A, label_a()) == pytest.approx([1 / 2, 1 / math.sqrt(6)])
    assert label_proximity(CLICKS_A, label_a()) == pytest.approx(M4_A)
    assert math.isnan(label_proximity(CLICKS_B, label_b()))  # no disagreeing click
    assert label_proximity(CLICKS_C, LABEL_C) == 0.0  # an empty label is infinitely far
    mm = label_proximity_terms(CLICKS_A, label_a(), spacing_mm=(3.0, 1.0, 1.0))
    assert mm == pytest.approx([1 / 2, 1 / math.sqrt(38)])  # (4,6,8)-(2,5,7): (6, 1, 1) mm
    labels, clicks = [label_a(), label_b(), LABEL_C], [CLICKS_A, CLICKS_B, CLICKS_C]
    assert m4_label_proximity(clicks, labels) == pytest.approx(M4_A / 3)
    assert m4_label_proximity(clicks, labels, undefined_case="skip") == pytest.approx(M4_A / 2)


def test_m5_consistent_improvement_eq25():
    assert consistent_improvement([0.1, 0.3, 0.3, 0.2, 0.5]) == 0.5  # up, plateau, down, up
    assert consistent_improvement([np.nan, 0.2, 0.4]) == 1.0  # an undefined Dice: pair left out
    assert math.isnan(consistent_improvement([0.4]))
    curves = [[0.1, 0.3, 0.3, 0.2, 0.5], [0.0, 0.1, 0.2], [0.5, 0.5]]
    assert m5_consistent_improvement(curves) == pytest.approx((0.5 + 1 + 0) / 3)


def test_m6_user_shift_eq26():
    robot = (0.9, 0.8, 0.7, 0.1, 0.5)
    a1, a2 = (0.7, 0.6, 0.7, 0.3, 0.5), (0.8, 0.8, 0.5, 0.2, 0.4)
    # |diffs| A1: .2 .2 0 .2 0 (sum .6); A2: .1 0 .2 .1 .1 (sum .5); / (2 annotators x 5)
    assert m6_user_shift(robot, [a1, a2]) == pytest.approx(1.1 / 10)
    assert m6_user_shift(a1, [a1]) == 0.0  # a user against itself
    assert math.isnan(m6_user_shift(robot, []))
    assert math.isnan(m6_user_shift(robot, [(0.7, 0.6, 0.7, math.nan, 0.5)]))
    with pytest.raises(SegloopError, match="five"):
        m6_user_shift(robot[:4], [a1[:4]])


def test_m7_dice_difference_eq27():
    robot = {"i1": [0.3, 0.5, 0.7], "i2": [0.0, 0.2, 0.4]}  # step 0 differs: not counted
    a1 = {"i1": [0.0, 0.4, 0.6], "i2": [0.0, 0.3, 0.3]}
    a2 = {"i1": [0.0, 0.5, 0.9], "i2": [0.0, 0.1, 0.8]}
    # i1: .1 + .1 + 0 + .2 = .4 over 2 x 2 -> .1; i2: .1 + .1 + .1 + .4 = .7 -> .175
    assert dice_difference(robot["i1"], [a1["i1"], a2["i1"]]) == pytest.approx(0.1)
    assert m7_dice_difference(robot, [a1, a2]) == pytest.approx((0.1 + 0.175) / 2)
    assert m7_dice_difference(a1, [a1]) == 0.0
    assert m7_dice_difference(robot, [a1], first_step=0) == pytest.approx(
        (0.3 + 0.1 + 0.1 + 0 + 0.1 + 0.1) / 6
    )
    with pytest.raises(SegloopError, match="no Dice curve"):
        m7_dice_difference({"i1": robot["i1"]}, [a1])
    with pytest.raises(SegloopError, match="cannot be compared"):
        dice_difference([0.1, 0.2], [[0.1, 0.2, 0.3]])


def test_clicks_outside_the_image_and_bad_options_are_refused():
    with pytest.raises(SegloopError, match="outside"):
        label_agreement(np.array([(5, 0, 0)]), label_a())
    with pytest.raises(SegloopError, match="zero or skip"):
        dataset_mean([0.5], "mean")
    assert math.isnan(dataset_mean([]))


@st.composite
def label_and_clicks(draw):
    shape = tuple(draw(st.integers(2, 7)) for _ in range(3))
    bits = draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    label = np.array(bits, dtype=bool).reshape(shape)
    count = draw(st.integers(1, 6))
    clicks = np.array(
        [[draw(st.integers(0, n - 1)) for n in shape] for _ in range(count)], dtype=np.int64
    )
    spacing = draw(st.sampled_from([None, (2.0, 1.0, 1.0), (1.0, 0.7, 1.3)]))
    return label, clicks, spacing


@settings(max_examples=60, deadline=None)
@given(label_and_clicks())
def test_terms_equal_brute_force_definitions(data):
    """bound = full-volume EDT of the label padded with background, the centre set = the
    component's EDT maxima, d(c, L) = distance to the nearest label voxel: by brute force."""
    label, clicks, spacing = data
    scale = np.ones(3) if spacing is None else np.asarray(spacing)
    inside = label[tuple(clicks.T)]
    padded = np.pad(label, 1)
    edt = ndimage.distance_transform_edt(padded, sampling=scale)[1:-1, 1:-1, 1:-1]
    components, _ = ndimage.label(label, structure=np.ones((3, 3, 3)))
    expected = []
    for click in clicks[inside]:
        own = components == components[tuple(click)]
        centre = np.argwhere(own & np.isclose(edt, edt[own].max()))
        cent_dist = np.min(np.linalg.norm((centre - click) * scale, axis=1))
        bound = edt[tuple(click)]
        expected.append(bound / (bound + cent_dist))
    assert centerness_terms(clicks, label, spacing) == pytest.approx(expected)
    voxels = np.argwhere(label)
    far = [
        0.0 if voxels.size == 0 else 1 / np.min(np.linalg.norm((voxels - c) * scale, axis=1))
        for c in clicks[~inside]
    ]
    assert label_proximity_terms(clicks, label, spacing) == pytest.approx(far)
    m1 = label_agreement(clicks, label)
    assert m1 == pytest.approx(inside.mean())
    reached = {int(components[tuple(c)]) for c in clicks[inside]}
    count = int(components.max())
    m3 = click_diversity(clicks, label)
    if count == 0:
        assert math.isnan(m3)
    else:
        assert m3 == pytest.approx(len(reached) / min(count, len(clicks)))


def session(case_id, clicks, positive=None, dice=None):
    positive = [True] * len(clicks) if positive is None else positive
    interactions = [
        Interaction("click", 1, bool(p), k + 1, (tuple(int(v) for v in c),))
        for k, (c, p) in enumerate(zip(clicks, positive, strict=True))
    ]
    interactions.append(Interaction("box", 1, True, 0, ((0, 0, 0), (1, 1, 1))))  # ignored
    return Session.from_interactions(case_id, interactions, dice)


def test_table_rows_equal_the_metric_functions():
    labels = {"a": label_a(), "b": label_b(), "c": LABEL_C}
    # annotator 1 clicks as above (a negative click on the cube changes nothing: lesion clicks
    # only), annotator 2 and the robot elsewhere; each with a Dice curve
    ann1 = {
        "a": session("a", [*CLICKS_A, (2, 2, 2)], [True] * 5 + [False], [0.0, 0.2, 0.4]),
        "b": session("b", CLICKS_B, dice=[0.0, 0.5, 0.5]),
        "c": session("c", CLICKS_C, dice=[1.0, 0.0, 0.0]),
        "extra": session("extra", [(0, 0, 0)], dice=[0.0, 0.0, 0.0]),  # not shared: dropped
    }
    ann2 = {
        "a": session("a", [(1, 1, 1), (4, 6, 8)], dice=[0.0, 0.3, 0.2]),
        "b": session("b", [(1, 5, 1), (3, 1, 7)], dice=[0.0, 0.4, 0.6]),
        "c": session("c", [], dice=[1.0, 1.0, 1.0]),
    }
    robot = {
        "a": session("a", [(2, 2, 2), (2, 5, 7)], dice=[0.0, 0.5, 0.9]),
        "b": session("b", [(1, 1, 1), (1, 5, 1)], dice=[0.0, 0.3, 0.6]),
        "c": session("c", [], dice=[1.0, 1.0, 1.0]),
    }
    rows = user_shift_table({"ann1": ann1, "ann2": ann2}, {"r": robot, "ann1 again": ann1}, labels)
    by_name = {(r.role, r.source): r for r in rows}
    assert [r.source for r in rows] == ["ann1", "ann2", "r", "ann1 again"]
    assert all(r.cases == 3 for r in rows)

    def metrics_of(sessions):
        ids = ["a", "b", "c"]
        clicks = [sessions[i].lesion_clicks() for i in ids]
        lab = [labels[i] for i in ids]
        return (
            m1_label_agreement(clicks, lab),
            m2_centerness(clicks, lab),
            m3_click_diversity(clicks, lab),
            m4_label_proximity(clicks, lab),
            m5_consistent_improvement([sessions[i].dice for i in ids]),
        )

    expected = {name: metrics_of(s) for name, s in (("ann1", ann1), ("ann2", ann2), ("r", robot))}
    assert by_name[("annotator", "ann1")].metrics() == pytest.approx(expected["ann1"])
    assert expected["ann1"][:4] == pytest.approx(((3 / 5 + 1) / 3, (M2_A + 1) / 3, 0.5, M4_A / 3))
    assert by_name[("robot", "r")].metrics() == pytest.approx(expected["r"])
    assert by_name[("robot", "r")].m1 == 2 / 3  # the empty-label case adds 0 to M1
    assert by_name[("robot", "r")].m6 == pytest.approx(
        m6_user_shift(expected["r"], [expected["ann1"], expected["ann2"]])
    )
    curves = {
        n: {i: s[i].dice for i in "abc"} for n, s in (("a1", ann1), ("a2", ann2), ("r", robot))
    }
    assert by_name[("robot", "r")].m7 == pytest.approx(
        m7_dice_difference(curves["r"], [curves["a1"], curves["a2"]])
    )
    # an annotator is compared with the others; the same sessions as a "robot" give shift 0 to it
    assert by_name[("annotator", "ann1")].m6 == pytest.approx(
        m6_user_shift(expected["ann1"], [expected["ann2"]])
    )
    again = by_name[("robot", "ann1 again")]
    assert again.metrics() == by_name[("annotator", "ann1")].metrics()
    assert m6_user_shift(again.metrics(), [expected["ann1"]]) == 0.0
    assert by_name[("robot", "ann1 again")].lesion_clicks == 5 + 2 + 1
    text = format_table(rows)
    assert "ann1 again" in text and f"{100 * expected['r'][0]:6.1f}" in text
    with pytest.raises(SegloopError, match="share no case"):
        user_shift_table({"x": {"a": ann1["a"]}}, {"y": {"b": robot["b"]}}, labels)


def write_run(run_dir, results):
    """A minimal run folder: run.json and one case result per case."""
    run = {"format": "segloop-run", "config_hash": "t", "submission": "rg", "model": "python:x"}
    store.write_json_atomic(run_dir / store.RUN_FILE, {**run, "task": {"name": "r1"}})
    for result in results:
        store.write_json_atomic(store.case_result_path(run_dir, result["case_id"]), result)
        store.write_json_atomic(store.case_timing_path(run_dir, result["case_id"]), {"x": 1})


# --------------------------------------------------------------------------- synthetic study
PET_CASES = (0, 1, 2, 3, 5)  # PET phantoms with lesions (every 5th phantom has none)


def test_robot_users_against_two_synthetic_annotators(tmp_path, capsys):
    """Two "annotators" (R5 over R1 with other parameters, standing in for people) are recorded
    on PET phantoms with the region-growing baseline; their sessions go to one CSV and are
    replayed through the replay user on the same model; then R1, R3, R4 and R5 run on it and
    the user-shift table (M1-M7) compares them with the replayed annotators."""
    from segloop.baselines.region_growing import predict
    from segloop.containers.local import InProcessBackend
    from segloop.protocols.realistic import RealisticUser
    from segloop.protocols.replay import ReplayUser
    from segloop.protocols.tasks import get_task
    from segloop.protocols.thesis import R1User

    cases = {c.case_id: c for c in (phantoms.pet_phantom(i, shape=(32, 48, 48)) for i in PET_CASES)}
    backend = InProcessBackend(predict)
    template = get_task("r1")

    def run(task, name):
        results = [
            case_result_of(run_case(case, task, backend), task, name, "t").to_json()
            for case in cases.values()
        ]
        write_run(tmp_path / name, results)
        return read_run_sessions(tmp_path / name)

    people = {
        "anna": RealisticUser(R1User(), p_perturb=0.25, p_system=0.10, amplitude_voxels=4),
        "bert": RealisticUser(R1User(), p_perturb=0.10, p_system=0.25, amplitude_voxels=8),
    }
    recorded = {
        name: run(replace(template, robot_user=u), f"rec-{name}") for name, u in people.items()
    }

    # the sessions, as a user study would hand them over: one CSV, one row per click
    recording = tmp_path / "study.csv"
    with recording.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "annotator", "step", "class", "z", "y", "x", "positive"])
        for name in people:
            for case_id in cases:
                result = json.loads(
                    (tmp_path / f"rec-{name}" / "cases" / f"{case_id}.json").read_text()
                )
                for step in result["steps"]:
                    for i in step["new_interactions"]:
                        writer.writerow(
                            [
                                case_id,
                                name,
                                i["step"],
                                i["class_id"],
                                *i["coords"][0],
                                int(i["positive"]),
                            ]
                        )
    replayed = {
        name: run(replace(template, robot_user=ReplayUser(str(recording), annotator=name)), name)
        for name in people
    }
    for name in people:  # the replay gives the recorded clicks, hence the same Dice curves
        for case_id in cases:
            a, b = recorded[name][case_id], replayed[name][case_id]
            assert np.array_equal(a.clicks_zyx, b.clicks_zyx) and np.array_equal(a.steps, b.steps)
            assert np.array_equal(a.positive, b.positive) and np.array_equal(a.dice, b.dice)

    robots = {name: run(get_task(name), name) for name in ("r1", "r3", "r4", "r5")}
    robots["anna (recorded)"] = recorded["anna"]
    rows = user_shift_table(replayed, robots, {k: c.label for k, c in cases.items()})
    with capsys.disabled():
        print(
            "\nUser shift of the thesis robot users against two synthetic annotators "
            f"({len(cases)} PET phantoms, region-growing baseline):"
        )
        print(format_table(rows))
    write_table(rows, tmp_path / "shift.csv", tmp_path / "shift.json")
    by_name = {r.source: r for r in rows}

    for row in rows:  # every metric defined and in range (M4 in 1/voxel <= 1)
        assert row.cases == len(cases) and row.lesion_clicks > 0
        assert all(0.0 <= v <= 1.0 for v in (*row.metrics(), row.m6, row.m7)), row
    # a user against itself: shift 0, Dice difference 0
    anna = by_name["anna"]
    assert by_name["anna (recorded)"].metrics() == anna.metrics()
    assert m6_user_shift(anna.metrics(), [anna.metrics()]) == 0.0
    curves = {k: s.dice for k, s in replayed["anna"].items()}
    assert m7_dice_difference(curves, [curves]) == 0.0
    # R1 clicks the centre of the label, then of the missed lesion: always inside, never near
    r1 = by_name["r1"]
    assert r1.m1 == 1.0 and r1.m4 == 0.0 and r1.lesion_clicks == 10 * len(cases)
    assert by_name["r3"].m1 == by_name["r4"].m1 == 1.0
    # the annotators and R5 put some lesion clicks outside the label (the thesis's 25 %)
    assert anna.m1 < 1.0 and by_name["bert"].m1 < 1.0 and by_name["r5"].m1 < 1.0
    assert by_name["r5"].m4 > 0.0
    # annotator rows compare with the other annotator: symmetric
    assert anna.m6 == pytest.approx(by_name["bert"].m6) and anna.m7 == pytest.approx(
        by_name["bert"].m7
    )
    saved = json.loads((tmp_path / "shift.json").read_text())
    assert [r["source"] for r in saved["rows"]] == [r.source for r in rows]
    assert (tmp_path / "shift.csv").read_text().splitlines()[0].startswith("source,role,cases")


def test_session_from_case_result_reads_clicks_and_dice(tmp_path):
    result = {
        "case_id": "x",
        "summary": {},
        "steps": [
            {"step": 0, "new_interactions": [], "metrics": {"dice": {"mean": None}}},
            {
                "step": 1,
                "new_interactions": [
                    Interaction("click", 1, True, 1, ((1, 2, 3),)).to_json(),
                    Interaction("click", 1, False, 1, ((0, 0, 0),)).to_json(),
                    Interaction("box", 1, True, 1, ((0, 0, 0), (1, 1, 1))).to_json(),
                ],
                "metrics": {"dice": {"mean": 0.5}},
            },
        ],
    }
    s = session_from_case_result(CaseResult.from_json(result, "x"))
    assert s.case_id == "x" and s.clicks_zyx.tolist() == [[1, 2, 3], [0, 0, 0]]
    assert s.positive.tolist() == [True, False] and s.steps.tolist() == [1, 1]
    assert np.isnan(s.dice[0]) and s.dice[1] == 0.5
    assert s.lesion_clicks().tolist() == [[1, 2, 3]]
    no_dice = {
        "case_id": "y",
        "summary": {},
        "steps": [{"step": 0, "new_interactions": [], "metrics": {"nsd@2": {"mean": None}}}],
    }
    assert session_from_case_result(CaseResult.from_json(no_dice, "y")).dice is None
    write_run(tmp_path / "run", [result])
    assert set(read_run_sessions(tmp_path / "run")) == {"x"}  # timing files are not cases
    with pytest.raises(SegloopError, match="not a segloop run folder"):
        read_run_sessions(tmp_path)
    terms = case_terms(s, np.ones((2, 3, 4), np.uint8))
    assert terms.m1 == 1.0 and terms.lesion_clicks == 1 and math.isnan(terms.m5)


def test_read_dataset_label_reads_the_label_and_its_spacing(tmp_path):
    from segloop.core.dataset import write_case
    from segloop.leaderboard.usershift import read_dataset_label

    pet = phantoms.pet_phantom(1, shape=(12, 20, 16), spacing_mm=(3.0, 2.0, 1.5))
    write_case(tmp_path, pet)
    label, spacing = read_dataset_label(tmp_path, pet.case_id)
    assert np.array_equal(label, pet.label) and spacing == pytest.approx((3.0, 2.0, 1.5))
