"""Generic eligibility-mask robot users: clicks, boxes, scribbles, polygons, composition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.base import rng_for
from segloop.protocols.generic import (
    BoxUser,
    EligibilityClickUser,
    PolygonUser,
    ScribbleUser,
    SequenceUser,
    styled_box,
    trace_boundary,
    zhang_suen_skeleton,
)
from segloop.protocols.sakinis import SakinisUser
from segloop.protocols.tasks import robot_user_from_json


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def three_blobs_case(case_id="gen") -> Case:
    shape = (16, 40, 40)
    label = np.zeros(shape, np.uint8)
    label[ball(shape, (8, 10, 10), 5)] = 1
    label[ball(shape, (8, 30, 30), 3)] = 1
    label[ball(shape, (8, 10, 30), 2)] = 1
    label[ball(shape, (8, 28, 10), 4)] = 2
    return Case(case_id, (label.astype(np.float32),), label, Geometry((2.0, 1.0, 1.0)))


@pytest.mark.parametrize("component", ["largest", "random"])
@pytest.mark.parametrize("placement", ["center", "boundary", "random"])
def test_six_click_styles_initial_and_reactive(component, placement):
    case = three_blobs_case()
    user = EligibilityClickUser(component, placement, clicks_per_step=2)
    initial = user.interactions(case, {1: "a", 2: "b"}, 0, None, seed=0)
    assert [i.class_id for i in initial] == [1, 1, 2]  # class 2 has a single component
    for click in initial:
        assert click.positive and case.label[click.coords[0]] == click.class_id
    edt = ndimage.distance_transform_edt(np.pad(case.label == 1, 1))[1:-1, 1:-1, 1:-1]
    points = [c.coords[0] for c in initial if c.class_id == 1]
    if placement == "boundary":
        assert all(edt[p] == 1.0 for p in points)
    if component == "largest" and placement == "center":
        assert points[0] == (8, 10, 10)
    # reactive: over-segmentation of class 1 -> negative clicks in the false positive region
    prediction = case.label.copy()
    prediction[0:3] = 1
    reactive = user.interactions(case, {1: "a"}, 1, prediction, seed=0)
    assert reactive and all(not c.positive and c.coords[0][0] < 3 for c in reactive)
    assert user.interactions(case, {1: "a", 2: "b"}, 2, case.label, seed=0) == ()


def test_largest_center_reactive_equals_sakinis():
    """With Sakinis' tie order (first maximum in C order) the generic user is the Sakinis user;
    its own default breaks ties towards the centroid (issue 15), so it is given explicitly."""
    case = three_blobs_case()
    prediction = np.zeros(case.shape, np.uint8)
    prediction[ball(case.shape, (8, 11, 11), 5)] = 1
    user = EligibilityClickUser(center_tie_order="zyx")
    generic = user.interactions(case, {1: "a", 2: "b"}, 1, prediction, 0)
    sakinis = SakinisUser().interactions(case, {1: "a", 2: "b"}, 1, prediction, 0)
    assert generic == sakinis


def test_non_reactive_clicks_ignore_prediction():
    """Non-reactive: step 0 only (issue 15; before, clicks came again at every step)."""
    case = three_blobs_case()
    user = EligibilityClickUser("random", "random", reactive=False)
    a = user.interactions(case, {1: "a"}, 0, case.label, 0)
    b = user.interactions(case, {1: "a"}, 0, None, 0)
    assert a == b and a[0].positive and case.label[a[0].coords[0]] == 1
    assert user.interactions(case, {1: "a"}, 3, None, 0) == ()
    with pytest.raises(SegloopError):
        EligibilityClickUser(placement="middle")
    with pytest.raises(SegloopError, match="center_tie_order"):
        EligibilityClickUser(center_tie_order="random")


def flat_lesion_case() -> Case:
    """A lesion 2 slices thick and 9 x 9 across: every voxel is 1 voxel from the background."""
    label = np.zeros((6, 20, 20), np.uint8)
    label[2:4, 5:14, 5:14] = 1
    return Case("flat", (label.astype(np.float32),), label, Geometry((3.0, 1.0, 1.0)))


@pytest.mark.parametrize("spacing_aware", [False, True])
def test_centre_click_of_a_flat_lesion_is_its_middle(spacing_aware):
    """Issue 15: all EDT maxima tie; the first in array order is the corner (2, 5, 5). The
    generic user takes the maximum nearest the centroid (9, 9) in-plane, of the two middle
    voxels the first in C order; the old rule stays available as center_tie_order="zyx"."""
    case = flat_lesion_case()
    user = EligibilityClickUser(edt_spacing_aware=spacing_aware)
    (click,) = user.interactions(case, {1: "a"}, 0, None, 0)
    assert click.coords == ((2, 9, 9),)
    corner = EligibilityClickUser(edt_spacing_aware=spacing_aware, center_tie_order="zyx")
    # voxels: all tie, the first is the corner; mm (3 mm slices): ties from 3 mm in-plane on
    expected = ((2, 7, 7),) if spacing_aware else ((2, 5, 5),)
    assert corner.interactions(case, {1: "a"}, 0, None, 0)[0].coords == expected


def test_centroid_ties_are_deterministic_and_inside():
    """Random flat and thin shapes: the centroid rule's click is an EDT maximum of the component,
    the same on every call, and never farther from the centroid than the C-order first maximum."""
    from segloop.protocols.base import center_point, component_centroid, component_edt, whole_mask

    rng = np.random.default_rng(15)
    for _ in range(40):
        shape = (int(rng.integers(1, 4)), int(rng.integers(3, 14)), int(rng.integers(3, 14)))
        mask = rng.random(shape) < 0.85
        component = whole_mask(mask)
        if component is None:
            continue
        point = center_point(component, tie_order="centroid")
        assert point == center_point(component, tie_order="centroid")
        distances = component_edt(component)
        local = tuple(p - o for p, o in zip(point, component.offset, strict=True))
        assert distances[local] == distances.max() and component.mask[local]
        centre = component_centroid(component.mask)
        first = np.unravel_index(int(np.argmax(distances)), distances.shape)
        assert np.sum((np.array(local) - centre) ** 2) <= np.sum((np.array(first) - centre) ** 2)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_sloppy_boxes_of_small_objects_differ_from_perfect(size):
    """Issue 15: 5-10 % of 5 voxels or less rounded to 0, so sloppy boxes of small objects were
    perfect boxes. Now every side moves by at least one voxel, as careful boxes grow; only an
    axis one voxel thick whose two sides both move inwards stays put (it cannot shrink)."""
    mask = np.zeros((20, 20, 20), bool)
    mask[8 : 8 + size, 8 : 8 + size, 8 : 8 + size] = True
    perfect = styled_box(mask, "perfect", rng_for(0, "c", 1, 0))
    same = 0
    for k in range(64):
        lo, hi = styled_box(mask, "sloppy", rng_for(0, "c", 1, k))
        if size > 1:  # every axis differs (two inward moves that cross meet in the middle)
            for axis in range(3):
                assert (lo[axis], hi[axis]) != (perfect[0][axis], perfect[1][axis])
        same += (lo, hi) == perfect
    assert same <= (4 if size == 1 else 0)  # 1/64 expected for a single voxel


def test_box_styles():
    mask = np.zeros((20, 60, 80), bool)
    mask[5:15, 10:50, 20:60] = True
    perfect = styled_box(mask, "perfect", rng_for(0, "c", 1, 0))
    assert perfect == ((5, 10, 20), (14, 49, 59))
    for k in range(20):
        (lo, hi) = styled_box(mask, "careful", rng_for(0, "c", 1, k))
        for axis, extent in enumerate((10, 40, 40)):
            grow_lo = perfect[0][axis] - lo[axis]
            grow_hi = hi[axis] - perfect[1][axis]
            assert grow_lo == grow_hi  # symmetric
            assert np.ceil(0.05 * extent) <= grow_lo <= np.ceil(0.10 * extent)
        (lo, hi) = styled_box(mask, "sloppy", rng_for(0, "c", 1, k))
        for axis, extent in enumerate((10, 40, 40)):
            for moved in (abs(lo[axis] - perfect[0][axis]), abs(hi[axis] - perfect[1][axis])):
                assert np.rint(0.05 * extent) <= moved <= np.rint(0.10 * extent)
    edge = np.zeros((4, 10, 10), bool)
    edge[0:4, 0:10, 0:3] = True
    lo, hi = styled_box(edge, "careful", rng_for(0, "c", 1, 0))
    assert min(lo) >= 0 and hi[0] <= 3 and hi[1] <= 9
    case = three_blobs_case()
    boxes = BoxUser("careful").interactions(case, {1: "a", 2: "b", 3: "c"}, 0, None, 0)
    assert [b.class_id for b in boxes] == [1, 2] and all(b.kind == "box" for b in boxes)
    assert BoxUser().interactions(case, {1: "a"}, 1, None, 0) == ()


@pytest.mark.parametrize("style", ["line", "centerline", "contour"])
def test_scribbles_lie_in_the_mask_and_are_connected(style):
    case = three_blobs_case()
    user = ScribbleUser(style)
    scribbles = user.interactions(case, {1: "a", 2: "b"}, 0, None, seed=1)
    assert {s.class_id for s in scribbles} == {1, 2}
    for scribble in scribbles:
        assert scribble.kind == "scribble" and scribble.positive
        zs = {c[0] for c in scribble.coords}
        assert len(zs) == 1
        for a, b in zip(scribble.coords, scribble.coords[1:], strict=False):
            assert max(abs(a[1] - b[1]), abs(a[2] - b[2])) == 1  # 8-connected drawing order
        assert all(case.label[c] == scribble.class_id for c in scribble.coords)
    again = ScribbleUser(style).interactions(case, {1: "a", 2: "b"}, 0, None, seed=1)
    assert again == scribbles
    prediction = case.label.copy()
    prediction[ball(case.shape, (8, 10, 10), 5)] = 0  # miss the big blob: positive scribble
    reactive = user.interactions(case, {1: "a"}, 1, prediction, seed=1)
    assert reactive and all(s.positive for s in reactive)
    for scribble in reactive:
        assert all(case.label[c] == 1 and prediction[c] == 0 for c in scribble.coords)


def centerline_scribbles(plane: np.ndarray, seed: int = 0):
    label = plane[None].astype(np.uint8)
    case = Case("cl", (label.astype(np.float32),), label, Geometry((1.0, 1.0, 1.0)))
    return ScribbleUser("centerline").interactions(case, {1: "a"}, 0, None, seed)


def test_centerline_scribble_of_small_shapes_never_vanishes():
    """Issue 15: Zhang-Suen thinning erases a 2x2 square, a 4x5 block minus a corner and some
    small ellipses entirely, and the user then gave no scribble for a present target. A piece
    whose skeleton vanished now gets its centre pixel."""
    square = np.zeros((8, 8), bool)
    square[3:5, 3:5] = True
    assert not zhang_suen_skeleton(square).any()  # the defect's cause, still there
    (scribble,) = centerline_scribbles(square)
    assert scribble.coords == ((0, 3, 3),)
    block = np.zeros((8, 9), bool)
    block[2:6, 2:7] = True
    block[2, 2] = False
    assert centerline_scribbles(block)
    vanished = 0
    rng = np.random.default_rng(3)
    for k in range(200):
        ry, rx = rng.uniform(1.0, 3.5, 2)
        cy, cx = rng.uniform(5.0, 7.0, 2)
        yy, xx = np.indices((13, 13))
        ellipse = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        if not ellipse.any():
            continue
        vanished += not zhang_suen_skeleton(ellipse).any()
        scribbles = centerline_scribbles(ellipse, seed=k)
        assert scribbles and all(ellipse[y, x] for s in scribbles for _, y, x in s.coords)
    assert vanished > 0  # the fallback was exercised


def test_skeleton_of_a_bar_is_its_midline():
    bar = np.zeros((11, 30), bool)
    bar[3:8, 2:28] = True
    rows = {int(y) for y, _ in np.argwhere(zhang_suen_skeleton(bar))}
    assert rows == {5}


def test_polygon_vertices_on_the_boundary_in_order():
    shape = (1, 50, 50)
    label = ball(shape, (0, 25, 25), 15).astype(np.uint8)
    case = Case("poly", (label.astype(np.float32),), label, Geometry((1.0, 1.0, 1.0)))
    (polygon,) = PolygonUser(num_vertices=10).interactions(case, {1: "a"}, 0, None, 0)
    assert polygon.kind == "polygon" and len(polygon.coords) == 10
    interior = ndimage.binary_erosion(label[0], border_value=0)
    angles = []
    for _, y, x in polygon.coords:
        assert label[0, y, x] and not interior[y, x]
        angles.append(np.arctan2(y - 25, x - 25))
    turns = np.diff(np.unwrap(angles))
    assert np.all(turns > 0) or np.all(turns < 0)  # vertices go round in one direction
    square = np.zeros((6, 6), bool)
    square[1:4, 1:4] = True
    assert trace_boundary(square) == [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 3),
        (3, 3),
        (3, 2),
        (3, 1),
        (2, 1),
    ]
    assert PolygonUser().interactions(case, {1: "a"}, 1, None, 0) == ()


@pytest.mark.parametrize(
    "user",
    [
        EligibilityClickUser(reactive=False),
        EligibilityClickUser("random", "random", reactive=False),
        ScribbleUser("line", reactive=False),
        ScribbleUser("centerline", reactive=False),
        BoxUser("careful", reactive=False),
        PolygonUser(6, reactive=False),
    ],
    ids=lambda u: u.name,
)
def test_non_reactive_means_step_zero_only_for_every_kind(user):
    """Issue 15: reactive=False meant two things (clicks and scribbles at every step, boxes and
    polygons at step 0 only). Now every kind interacts at step 0 only, whatever the prediction."""
    case = three_blobs_case()
    missed = np.zeros(case.shape, np.uint8)
    first = user.interactions(case, {1: "a", 2: "b"}, 0, None, 0)
    assert first and all(i.step == 0 and i.positive for i in first)
    assert user.interactions(case, {1: "a", 2: "b"}, 0, missed, 0) == first
    for step in (1, 2, 5):
        assert user.interactions(case, {1: "a", 2: "b"}, step, missed, 0) == ()
        assert user.interactions(case, {1: "a", 2: "b"}, step, None, 0) == ()


def test_sequence_box_then_clicks_and_json():
    case = three_blobs_case()
    user = SequenceUser(BoxUser("sloppy"), EligibilityClickUser())
    assert [i.kind for i in user.interactions(case, {1: "a"}, 0, None, 0)] == ["box"]
    assert [i.kind for i in user.interactions(case, {1: "a"}, 1, None, 0)] == ["click"]
    for built in (
        user,
        ScribbleUser("contour"),
        PolygonUser(7),
        EligibilityClickUser("random", "boundary"),
    ):
        assert robot_user_from_json(built.to_json()) == built


def test_reactive_boxes_frame_the_largest_error():
    case = three_blobs_case()
    user = BoxUser("perfect", reactive=True)
    assert [b.step for b in user.interactions(case, {1: "a"}, 0, None, 0)] == [0]
    missed = case.label.copy()
    missed[ball(case.shape, (8, 10, 10), 5)] = 0  # the big blob of class 1 is missed
    (box,) = user.interactions(case, {1: "a"}, 1, missed, 0)
    assert box.kind == "box" and box.positive and box.step == 1
    assert box.coords == ((3, 5, 5), (13, 15, 15))  # exactly the missed ball of radius 5
    extra = case.label.copy()
    extra[0:2, 30:40, 0:6] = 1  # a false-positive slab
    (box,) = user.interactions(case, {1: "a"}, 2, extra, 0)
    assert not box.positive and box.coords == ((0, 30, 0), (1, 39, 5))
    assert user.interactions(case, {1: "a", 2: "b"}, 3, case.label, 0) == ()
    assert BoxUser("sloppy").interactions(case, {1: "a"}, 1, missed, 0) == ()
    assert robot_user_from_json(user.to_json()) == user
