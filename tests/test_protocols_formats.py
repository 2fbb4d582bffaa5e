"""Round trips of the three click formats, including axis order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.records import Geometry, Interaction, SegloopError
from protocols.formats import (
    from_gc_points,
    from_segloop_json,
    index_to_world,
    read_cvpr25_request,
    read_cvpr25_response,
    read_gc_points,
    read_segloop_json,
    to_gc_points,
    to_segloop_json,
    world_to_index,
    write_cvpr25_request,
    write_cvpr25_response,
    write_gc_points,
    write_segloop_json,
)


def click(class_id, positive, step, zyx):
    return Interaction("click", class_id, positive, step, (zyx,))


AUTOPET = tuple(
    i
    for k in range(1, 4)
    for i in (click(1, True, k, (k, 10 + k, 20 + k)), click(1, False, k, (30 - k, 5, 7 * k)))
)


def test_gc_voxel_points_are_xyz_and_named():
    data = to_gc_points(AUTOPET, {1: "tumor"})
    assert data["type"] == "Multiple points" and data["version"] == {"major": 1, "minor": 0}
    assert data["points"][0] == {"point": [21, 11, 1], "name": "tumor"}
    assert data["points"][1] == {"point": [7, 5, 29], "name": "background"}
    assert json.loads(json.dumps(data)) == data


def test_gc_round_trip_voxel_and_world(tmp_path):
    write_gc_points(tmp_path / "c.json", AUTOPET, {1: "tumor"})
    assert read_gc_points(tmp_path / "c.json", {1: "tumor"}) == AUTOPET
    theta = 0.3
    direction = (np.cos(theta), -np.sin(theta), 0.0, np.sin(theta), np.cos(theta), 0.0, 0, 0, 1)
    geometry = Geometry((3.0, 0.8, 1.2), (-100.0, 20.0, 5.5), tuple(float(v) for v in direction))
    options = {"coordinates": "world", "geometry": geometry}
    write_gc_points(tmp_path / "w.json", AUTOPET, {1: "tumor"}, **options)
    assert read_gc_points(tmp_path / "w.json", {1: "tumor"}, **options) == AUTOPET
    # world = origin + direction @ (index_xyz * spacing_xyz)
    assert index_to_world((0, 0, 0), geometry) == pytest.approx([-100.0, 20.0, 5.5])
    x, y, z = index_to_world((2, 0, 1), geometry)
    assert z == pytest.approx(5.5 + 2 * 3.0)
    assert x == pytest.approx(-100.0 + np.cos(theta) * 1.2)
    assert world_to_index(index_to_world((4, 9, 13), geometry), geometry) == (4, 9, 13)


def test_gc_toothfairy_names_and_steps():
    clicks = tuple(
        i for k in (1, 2) for i in (click(1, True, k, (k, 2, 3)), click(2, True, k, (k, 4, 5)))
    )
    classes = {1: "Left_IAC", 2: "Right_IAC"}
    data = to_gc_points(clicks, classes)
    assert [p["name"] for p in data["points"]] == ["Left_IAC", "Right_IAC"] * 2
    assert from_gc_points(data, classes) == clicks


def test_gc_errors(tmp_path):
    box = Interaction("box", 1, True, 0, ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(SegloopError, match="clicks only"):
        to_gc_points([box], {1: "tumor"})
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "Multiple points", "points": [{"point": [1, 2], "name": "tumor"}]}')
    with pytest.raises(SegloopError, match="bad.json"):
        read_gc_points(bad, {1: "tumor"})
    bad.write_text('{"type": "Multiple points", "points": [{"point": [1, 2, 3], "name": "x"}]}')
    with pytest.raises(SegloopError, match="named 'x'"):
        read_gc_points(bad, {1: "tumor"})


def test_cvpr25_npz_round_trip(tmp_path):
    image = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    prev = (image > 60).astype(np.uint8)
    interactions = (
        Interaction("box", 1, True, 0, ((0, 1, 2), (3, 4, 5))),
        Interaction("box", 2, True, 0, ((1, 0, 0), (2, 2, 3))),
        click(1, True, 1, (1, 2, 3)),
        click(2, False, 1, (0, 0, 1)),
        click(1, False, 2, (3, 3, 3)),
        click(2, True, 2, (2, 1, 1)),
    )
    path = tmp_path / "case.npz"
    write_cvpr25_request(
        path, image, (2.5, 0.7, 0.7), interactions, [1, 2], prev, box_mid_slices={1: 2, 2: 1}
    )
    with np.load(path, allow_pickle=True) as raw:
        assert set(raw.files) == {"imgs", "spacing", "boxes", "clicks", "clicks_order", "prev_pred"}
        assert raw["boxes"][0] == {
            "z_min": 0,
            "z_max": 3,
            "z_mid": 2,
            "z_mid_x_min": 2,
            "z_mid_y_min": 1,
            "z_mid_x_max": 5,
            "z_mid_y_max": 4,
        }
        assert raw["clicks"][0] == {"fg": [[1, 2, 3]], "bg": [[3, 3, 3]]}  # (z, y, x) indices
        assert list(raw["clicks_order"][1]) == ["bg", "fg"]
        assert list(raw["spacing"]) == [2.5, 0.7, 0.7]
    back = read_cvpr25_request(path, class_ids=[1, 2])
    assert back["interactions"] == interactions
    assert back["spacing_mm"] == (2.5, 0.7, 0.7)
    assert back["box_mid_slices"] == {1: 2, 2: 1}
    np.testing.assert_array_equal(back["image"], image)
    np.testing.assert_array_equal(back["prev_pred"], prev)
    write_cvpr25_request(tmp_path / "x.npz", image, (2.5, 0.7, 0.7), (), [1], spacing_order="xyz")
    assert read_cvpr25_request(tmp_path / "x.npz", spacing_order="xyz")["spacing_mm"] == (
        2.5,
        0.7,
        0.7,
    )
    with np.load(tmp_path / "x.npz", allow_pickle=True) as raw:
        assert list(raw["spacing"]) == [0.7, 0.7, 2.5] and "boxes" not in raw.files
    write_cvpr25_response(tmp_path / "out.npz", prev)
    np.testing.assert_array_equal(read_cvpr25_response(tmp_path / "out.npz"), prev)
    np.savez(tmp_path / "wrong.npz", seg=prev)
    with pytest.raises(SegloopError, match="wrong.npz.*segs"):
        read_cvpr25_response(tmp_path / "wrong.npz")


@pytest.mark.parametrize("axis_order", [("z", "y", "x"), ("x", "y", "z"), ("y", "x", "z")])
def test_segloop_json_round_trip_any_axis_order(tmp_path, axis_order):
    interactions = (
        *AUTOPET,
        Interaction("box", 2, True, 0, ((1, 2, 3), (4, 5, 6))),
        Interaction("scribble", 1, True, 1, ((1, 2, 3), (1, 2, 4), (1, 3, 5))),
    )
    path = tmp_path / "i.json"
    write_segloop_json(path, interactions, axis_order)
    data = json.loads(path.read_text())
    assert data["axis_order"] == list(axis_order)
    first = data["interactions"][0]["coords"][0]
    assert first == [dict(zip("zyx", (1, 11, 21), strict=True))[a] for a in axis_order]
    assert read_segloop_json(path) == interactions
    assert from_segloop_json(to_segloop_json(interactions)) == interactions


def test_segloop_json_needs_axis_order():
    data = to_segloop_json(AUTOPET)
    del data["axis_order"]
    with pytest.raises(SegloopError, match="axis_order"):
        from_segloop_json(data)
    with pytest.raises(SegloopError, match="permutation"):
        to_segloop_json(AUTOPET, ("z", "z", "x"))
