"""The realistic robot user R5: rates, eligibility of systematic clicks, determinism."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from segloop.core.records import Case, Geometry, Interaction, SegloopError
from segloop.protocols.realistic import RealisticUser, high_uptake_outside_label
from segloop.protocols.tasks import robot_user_from_json

SHAPE = (20, 40, 40)
CLICKS_PER_STEP = 50


@dataclass(frozen=True)
class FixedClicks:
    """A stand-in protocol: the same 50 clicks in the lesion at every step, plus one box."""

    name: str = "fixed"

    def to_json(self):
        return {"protocol": "fixed"}

    def interactions(self, case, classes, step, previous_prediction, seed):
        clicks = tuple(
            Interaction("click", 1, k % 2 == 0, step, ((10, 20, 20),))
            for k in range(CLICKS_PER_STEP)
        )
        return (Interaction("box", 1, True, step, ((9, 19, 19), (11, 21, 21))),) + clicks


def case_for(case_id: str) -> Case:
    rng = np.random.default_rng(int(case_id.rsplit("_", 1)[1]))
    pet = rng.gamma(2.0, 1.0, SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, np.uint8)
    label[8:13, 18:23, 18:23] = 1
    pet[label == 1] += 20
    return Case(case_id, (pet,), label, Geometry((2.0, 2.0, 2.0)))


def moved_fraction(user, cases, steps=10):
    moved = total = 0
    for case in cases:
        for step in range(steps):
            for interaction in user.interactions(case, {1: "t"}, step, None, seed=1):
                if interaction.kind != "click":
                    assert interaction.coords == ((9, 19, 19), (11, 21, 21))
                    continue
                total += 1
                moved += interaction.coords[0] != (10, 20, 20)
    return moved / total, total


def within(observed, expected, n, sds=4.5):
    return abs(observed - expected) <= sds * np.sqrt(expected * (1 - expected) / n)


CASES = [case_for(f"r5_{k}") for k in range(4)]


def test_perturbation_rate_and_amplitude():
    user = RealisticUser(FixedClicks(), p_perturb=0.134, p_system=0.0, amplitude_voxels=3)
    fraction, n = moved_fraction(user, CASES)
    # a perturbation can be the zero offset with probability 1/7^3
    assert within(fraction, 0.134 * (1 - 1 / 343), n)
    for step in range(5):
        for click in user.interactions(CASES[0], {1: "t"}, step, None, 1)[1:]:
            assert all(abs(a - b) <= 3 for a, b in zip(click.coords[0], (10, 20, 20), strict=True))


def test_systematic_rate_and_region():
    user = RealisticUser(FixedClicks(), p_perturb=0.0, p_system=0.134)
    fraction, n = moved_fraction(user, CASES)
    assert within(fraction, 0.134, n)
    case = CASES[1]
    region = np.zeros(SHAPE, bool).ravel()
    region[high_uptake_outside_label(case.channels[0], case.label, 95.0)] = True
    region = region.reshape(SHAPE)
    for step in range(10):
        for click in user.interactions(case, {1: "t"}, step, None, 1)[1:]:
            point = click.coords[0]
            assert point == (10, 20, 20) or (region[point] and case.label[point] == 0)


def test_published_defaults_combined_rate():
    user = RealisticUser(FixedClicks())
    assert (user.p_perturb, user.p_system, user.amplitude_voxels) == (0.134, 0.134, 35)
    fraction, n = moved_fraction(user, CASES)
    assert within(fraction, 1 - (1 - 0.134) ** 2, n)


def test_zero_rates_change_nothing_and_determinism():
    quiet = RealisticUser(FixedClicks(), p_perturb=0.0, p_system=0.0)
    assert moved_fraction(quiet, CASES[:1], steps=2)[0] == 0.0
    user = RealisticUser(FixedClicks())
    a = [user.interactions(c, {1: "t"}, 3, None, 7) for c in CASES]
    b = [
        RealisticUser(FixedClicks()).interactions(c, {1: "t"}, 3, None, 7) for c in reversed(CASES)
    ]
    assert a == list(reversed(b))
    assert a != [user.interactions(c, {1: "t"}, 3, None, 8) for c in CASES]


def test_wraps_r1_by_default_autopet_as_an_option_and_round_trips():
    user = RealisticUser()
    assert user.base.name == "r1"  # eq. 28: R5 is built on R1's clicks
    assert robot_user_from_json(user.to_json()) == user
    algorithm_1 = robot_user_from_json({"name": "realistic", "base": {"name": "autopet"}})
    assert algorithm_1.base.name == "autopet" and algorithm_1.p_perturb == 0.134
    spec = {"name": "realistic", "p_system": 0.5, "base": {"name": "trials", "num_clicks": 3}}
    built = robot_user_from_json(spec)
    assert built.p_system == 0.5 and built.base.name == "trials" and built.base.num_clicks == 3
    with pytest.raises(SegloopError, match="p_perturb"):
        RealisticUser(p_perturb=1.5)
