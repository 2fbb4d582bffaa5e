"""ScribblePrompt's click and box sampling (issue 18, item 4): uniform and interior-border
clicks with a random count and a minimum spacing, jittered boxes, several users at once, and
the ScribblePrompt presets."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.core.records import Case, Geometry, SegloopError
from segloop.protocols.base import bounding_box, rng_for
from segloop.protocols.generic import BoxUser, EligibilityClickUser, TogetherUser
from segloop.protocols.sampling import border_band, jittered_box, spread_clicks
from segloop.protocols.tasks import get_task, robot_user_from_json


def ball_case(radius: int = 9) -> Case:
    shape = (30, 40, 40)
    grid = np.indices(shape)
    centre = (15, 20, 20)
    label = (sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2).astype(
        np.uint8
    )
    image = np.zeros(shape, np.float32)
    return Case("ball", (image, image), label, Geometry((1.0, 1.0, 1.0)))


def test_spread_clicks_keep_their_distance_and_stay_in_the_region():
    region = ball_case().label.astype(bool)
    rng = np.random.default_rng(0)
    for spacing in (0.0, 4.0, 9.0):
        clicks = spread_clicks(region, 6, rng, spacing)
        assert len(clicks) == 6 and all(region[c] for c in clicks)
        for i, a in enumerate(clicks):
            for b in clicks[:i]:
                assert np.linalg.norm(np.subtract(a, b)) >= max(spacing, 1.0)
    # a region too small for the spacing gives fewer clicks, never a hang or a duplicate
    tiny = np.zeros((5, 5, 5), bool)
    tiny[2, 2, 1:4] = True
    clicks = spread_clicks(tiny, 5, np.random.default_rng(1), 2.0)
    assert 1 <= len(clicks) <= 2 and len(set(clicks)) == len(clicks)
    assert spread_clicks(np.zeros((3, 3, 3), bool), 2, rng) == []


def test_border_band_is_a_level_band_of_the_blurred_region():
    """{ỹ ∈ [a, b]} inside y, ỹ = min(y, y ∘ G): every region voxel whose ỹ lies within the
    band's range is in the band, and the deep interior (ỹ = 1 > b) never is."""
    from scipy import ndimage

    region = ball_case().label.astype(bool)
    y = region.astype(np.float64)
    blurred = np.minimum(y, ndimage.gaussian_filter(y, 2.0, mode="constant"))
    bands = set()
    for seed in range(8):
        band = border_band(region, np.random.default_rng(seed), 2.0)
        assert band.any() and not (band & ~region).any()
        low, high = blurred[band].min(), blurred[band].max()
        within = region & (blurred >= low) & (blurred <= high)
        assert np.array_equal(band, within)
        assert high < 1.0 and not band[15, 20, 20]
        bands.add(int(band.sum()))
    assert len(bands) > 1  # the band's depth is drawn


def test_jittered_box_contains_the_label_and_grows_at_most_20_per_dimension():
    label = ball_case().label.astype(bool)
    lo, hi = (np.asarray(v) for v in bounding_box(label))
    hi = hi - 1
    sizes = set()
    for seed in range(20):
        box = jittered_box(label, np.random.default_rng(seed))
        assert box == jittered_box(label, np.random.default_rng(seed))
        blo, bhi = np.asarray(box[0]), np.asarray(box[1])
        assert (blo <= lo).all() and (bhi >= hi).all()
        assert ((bhi - blo) - (hi - lo) <= 20).all() and (blo >= 0).all()
        assert (bhi < np.asarray(label.shape)).all()
        sizes.add(tuple(bhi - blo))
    assert len(sizes) > 1
    assert jittered_box(label, np.random.default_rng(0), 0) == (tuple(lo), tuple(hi))


def test_uniform_and_border_clicks_with_a_random_count():
    case = ball_case()
    user = EligibilityClickUser(placement="border", count_range=(1, 3), min_spacing_voxels=3.0)
    counts = set()
    for step in range(6):
        prediction = np.zeros(case.shape, np.uint8)
        clicks = user.interactions(case, {1: "ball"}, step, prediction, 7)
        assert clicks == user.interactions(case, {1: "ball"}, step, prediction, 7)
        counts.add(len(clicks))
        assert all(c.positive and case.label[c.coords[0]] == 1 for c in clicks)
        assert 1 <= len(clicks) <= 3
    assert len(counts) > 1  # the count is drawn, not fixed
    uniform = EligibilityClickUser(placement="uniform", clicks_per_step=4)
    clicks = uniform.interactions(case, {1: "ball"}, 0, None, 0)
    assert len(clicks) == 4 and all(case.label[c.coords[0]] == 1 for c in clicks)


def test_random_warm_start_preset_gives_three_positive_and_three_negative_clicks():
    case = ball_case()
    task = get_task("autopet+sp-random-warm-start")
    first = task.robot_user.interactions(case, {1: "ball"}, 0, None, 0)
    positive = [c for c in first if c.positive]
    negative = [c for c in first if not c.positive]
    assert len(positive) == 3 and len(negative) == 3
    assert all(case.label[c.coords[0]] == 1 for c in positive)
    assert all(case.label[c.coords[0]] == 0 for c in negative)
    # then one correction click at the centre of the largest error component
    later = task.robot_user.interactions(case, {1: "ball"}, 1, np.zeros(case.shape, np.uint8), 0)
    assert len(later) == 1 and later[0].coords[0] == (15, 20, 20)
    box = get_task("autopet+sp-box").robot_user.interactions(case, {1: "ball"}, 0, None, 0)
    assert [i.kind for i in box] == ["box"]


def test_together_round_trips_and_unions_in_order():
    spec = {"name": "together", "users": [{"name": "box"}, {"name": "clicks"}]}
    user = robot_user_from_json(spec)
    assert isinstance(user, TogetherUser)
    assert robot_user_from_json(user.to_json()) == user
    case = ball_case()
    kinds = [i.kind for i in user.interactions(case, {1: "ball"}, 0, None, 0)]
    assert kinds == ["box", "click"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "clicks", "placement": "everywhere"}, "placement must be one of"),
        ({"name": "clicks", "placement": "uniform", "count_range": [3, 1]}, "count_range"),
        ({"name": "clicks", "count_range": [1, 2, 3]}, "count_range"),
        ({"name": "clicks", "count_range": [1, True]}, "count_range"),
        ({"name": "clicks", "min_spacing_voxels": -1}, "min_spacing_voxels"),
        ({"name": "box", "style": "jitter", "jitter_voxels": -2}, "jitter_voxels"),
        ({"name": "together", "users": []}, "at least one user"),
        ({"name": "together", "users": "clicks"}, "a list of protocol tables"),
        ({"name": "together", "users": [{"name": "lasso"}]}, r"users\[0\]: unknown protocol"),
    ],
)
def test_bad_sampling_parameters_are_one_line_errors(spec, message):
    with pytest.raises(SegloopError, match=message):
        robot_user_from_json(spec)


def test_rng_is_the_users_own():
    """Draws come from rng_for(seed, case, class, step, purpose): another seed, other clicks."""
    case = ball_case()
    user = EligibilityClickUser(placement="uniform", clicks_per_step=2)
    a = user.interactions(case, {1: "ball"}, 0, None, 0)
    b = user.interactions(case, {1: "ball"}, 0, None, 1)
    assert a != b
    assert rng_for(0, "ball", 1, 0, "x").integers(1 << 30) == rng_for(
        0, "ball", 1, 0, "x"
    ).integers(1 << 30)
    assert BoxUser(style="jitter").to_json()["jitter_voxels"] == 20
