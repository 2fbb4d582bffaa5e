"""Every robot user gives the same interactions bit for bit: across runs, case orders and processes.

SPEC "Determinism": every draw comes from a generator seeded by (protocol seed, case, class,
step), so results depend neither on run order nor on parallelism. Checked for every task preset,
the R5 wrapper over each challenge protocol (and over the reactive Sakinis user), with
perturbations switched on, and for every generic user style: a run in order, a run in shuffled
order with shared (cached) user objects, and a run in two freshly spawned interpreters (their
own hash seeds) working through the cases in reverse.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from functools import cache

import numpy as np

from segloop.app import phantoms
from segloop.core.challenges import CHALLENGES
from segloop.protocols.tasks import get_task, robot_user_from_json

KINDS = {
    "pet": (lambda i: phantoms.pet_phantom(i, shape=(24, 40, 40)), {1: "tumor"}),
    "jaw": (lambda i: phantoms.jaw_phantom(i, shape=(24, 36, 40)), {1: "Left_IAC", 2: "Right_IAC"}),
    "abdomen": (lambda i: phantoms.abdomen_phantom(i, shape=(20, 40, 40)), {1: "lesion"}),
}
R5_HIGH = {"p_perturb": 0.5, "p_system": 0.5, "amplitude_voxels": 4}
USERS: dict[str, tuple[dict, str, int]] = {
    **{f"preset-{name}": ({"preset": name}, kind, 0) for name, kind in (
        ("autopet", "pet"),
        ("toothfairy3", "jaw"),
        ("trials", "abdomen"),
        ("medsegfm", "abdomen"),
        ("generic", "pet"),
        ("r1", "pet"),
        ("r3", "pet"),
        ("r4", "pet"),
        ("r5", "pet"),
    )},
    "autopet-sigma": ({"name": "autopet", "sigma_voxels": 1.5}, "pet", 11),
    "trials-sigma": ({"name": "trials", "sigma_voxels": 1.0}, "abdomen", 11),
    "toothfairy3-sigma": ({"name": "toothfairy3", "sigma_voxels": 2.0}, "jaw", 6),
    "r5-autopet": ({"name": "realistic", "base": {"name": "autopet"}}, "pet", 11),
    "r5-autopet-high": ({"name": "realistic", "base": {"name": "autopet"}, **R5_HIGH}, "pet", 11),
    "r5-r1-high": ({"name": "realistic", **R5_HIGH}, "pet", 11),
    "r5-toothfairy3": ({"name": "realistic", "base": {"name": "toothfairy3"}, **R5_HIGH}, "jaw", 6),
    "r5-trials": ({"name": "realistic", "base": {"name": "trials"}, **R5_HIGH}, "abdomen", 11),
    "r5-sakinis": ({"name": "realistic", "base": {"name": "sakinis"}, **R5_HIGH}, "abdomen", 6),
    **{
        f"clicks-{component}-{placement}": (
            {"name": "clicks", "component": component, "placement": placement, "clicks_per_step": 2},
            "pet",
            4,
        )
        for component in ("largest", "random")
        for placement in ("center", "boundary", "random")
    },
    **{f"box-{style}": ({"name": "box", "style": style}, "abdomen", 2) for style in (
        "perfect", "careful", "sloppy"
    )},
    **{f"scribble-{style}": ({"name": "scribble", "style": style}, "jaw", 3) for style in (
        "line", "centerline", "contour"
    )},
    "box-reactive": ({"name": "box", "style": "careful", "reactive": True}, "jaw", 3),
    "polygon": ({"name": "polygon", "num_vertices": 9, "reactive": True}, "abdomen", 3),
    "sequence": (
        {
            "name": "sequence",
            "initial": {"name": "box", "style": "sloppy"},
            "then": {"name": "scribble", "style": "contour"},
        },
        "abdomen",
        3,
    ),
}  # fmt: skip
JOBS = [(user, index) for user in USERS for index in (0, 1)]


@cache
def case_of(kind: str, index: int):
    return KINDS[kind][0](index)


def build(spec: dict):
    """(robot user, its preset's step count or None, seed) of a user spec."""
    if "preset" in spec:
        task = get_task(spec["preset"], seed=3)
        return task.robot_user, task.num_steps, task.seed
    return robot_user_from_json(spec), None, 3


def prediction(label: np.ndarray, step: int) -> np.ndarray:
    """A deterministic imperfect 'model output': the label shifted and with a slab removed."""
    out = np.roll(label, step, axis=2)
    out[: step + 1] = 0
    return out


def trace(job: tuple[str, int], user=None) -> str:
    """All interactions of one (user, case) through every step, as canonical JSON."""
    name, index = job
    spec, kind, steps = USERS[name]
    built, preset_steps, seed = build(spec)
    user = built if user is None else user
    steps = preset_steps or steps
    case = case_of(kind, index)
    classes = KINDS[kind][1]
    out, previous = [], None
    for step in range(steps):
        new = user.interactions(case, classes, step, previous, seed)
        out.append([i.to_json() for i in new])
        previous = prediction(case.label, step)
    return json.dumps(out, sort_keys=True)


def trace_in_worker(job: tuple[str, int]) -> tuple[tuple[str, int], str]:
    return job, trace(job)


def test_every_user_is_deterministic_across_runs_orders_and_processes():
    first = {job: trace(job) for job in JOBS}
    assert all(json.loads(text) for text in first.values())
    # every user gave something on at least one of its cases (the check is not vacuous)
    for name in USERS:
        assert any(any(step for step in json.loads(first[(name, i)])) for i in (0, 1)), name

    # second run: shuffled order, one shared user object per user (its caches warm and mixed)
    shared = {name: build(USERS[name][0])[0] for name in USERS}
    shuffled = list(JOBS)
    random.Random(7).shuffle(shuffled)
    again = {job: trace(job, shared[job[0]]) for job in shuffled}
    assert again == first

    # third run: two freshly spawned interpreters, cases in reverse order
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        remote = dict(pool.map(trace_in_worker, list(reversed(JOBS)), chunksize=4))
    assert remote == first


def test_r5_and_perturbations_change_clicks_but_seeds_matter():
    """The draws are real (R5 and sigma move clicks) and keyed: another seed, other clicks."""
    plain = {job: trace(job) for job in JOBS if job[0] in ("preset-autopet", "preset-trials")}
    assert trace(("r5-autopet-high", 0)) != plain[("preset-autopet", 0)]
    assert trace(("autopet-sigma", 0)) != plain[("preset-autopet", 0)]
    user, _, _ = build(USERS["r5-trials"][0])
    case = case_of("abdomen", 0)
    a = [user.interactions(case, {1: "lesion"}, s, None, 3) for s in range(11)]
    b = [user.interactions(case, {1: "lesion"}, s, None, 4) for s in range(11)]
    assert a != b


def test_every_preset_is_covered():
    assert {f"preset-{name}" for name in CHALLENGES} <= set(USERS)
