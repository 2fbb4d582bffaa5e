"""A battery of hostile or broken participant containers (tests/hostile/hostile.py).

Each runs through the real loop for two steps: every step is recorded as failed with its
reason (scored as an empty prediction) while the run goes on, and no container is left behind.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from segloop.containers.docker.backend import DockerBackend
from segloop.containers.images import HOSTILE_BEHAVIOURS, hostile_image
from segloop.core.owners import owner_token
from segloop.core.records import Case, Geometry
from segloop.core.task import Limits
from segloop.loop import run_case
from segloop.protocols.tasks import get_task
from tests.test_docker import docker_client  # noqa: F401 - the session fixture

pytestmark = pytest.mark.docker

LIMITS = Limits(step_time_limit_s=4.0, case_time_limit_s=120.0, memory_mb=256, cpus=1.0, pids=64)

# behaviour -> (reason of every step, text the detail or log tail must contain)
EXPECTED = {
    "sleep": ("timeout", "killed after 4.0 s"),
    "exit-nonzero": ("exit_code", "giving up with exit code 3"),
    "oom": ("oom", "holding"),
    "fork-bomb": ("exit_code", "fork failed after"),
    "network": ("exit_code", "network unreachable"),
    "ground-truth": ("exit_code", "no ground truth found"),
    "no-output": ("invalid_output", "no prediction.npy written"),
    "wrong-shape": ("invalid_output", "(17, 17, 17) differs from the image's (16, 16, 16)"),
    "nan": ("invalid_output", "NaN"),
    "out-of-range": ("invalid_output", "labels [7] not in the task's classes"),
    "huge-file": ("invalid_output", "more than"),
    "symlink": ("invalid_output", "a symlink (links are never followed)"),
    "write-input": ("exit_code", "Read-only file system"),
}


def test_every_behaviour_has_an_expectation():
    assert set(EXPECTED) == set(HOSTILE_BEHAVIOURS)


@pytest.fixture(scope="module")
def lesion_case() -> Case:
    """A 16^3 PET-like case with one hot lesion, its ground truth on the host only."""
    rng = np.random.default_rng(7)
    pet = rng.random((16, 16, 16), dtype=np.float32)
    label = np.zeros((16, 16, 16), dtype=np.uint8)
    label[6:10, 6:10, 6:10] = 1
    pet[label == 1] += 5.0
    return Case("hostile_001", (pet * 0.1, pet), label, Geometry((2.0, 2.0, 2.0)))


@pytest.fixture(scope="module")
def two_step_task():
    task = get_task("autopet")
    return replace(task, num_steps=2, auc_steps=(0, 1), auc_x=(0.0, 1.0))


def text_of(failure) -> str:
    return f"{failure.detail}\n{failure.log_tail}"


@pytest.mark.parametrize("behaviour", HOSTILE_BEHAVIOURS)
def test_hostile_container_per_step(docker_client, lesion_case, two_step_task, behaviour):  # noqa: F811
    reason, evidence = EXPECTED[behaviour]
    backend = DockerBackend(hostile_image(behaviour), LIMITS, False)
    before = [channel.copy() for channel in lesion_case.channels]
    outcome = run_case(lesion_case, two_step_task, backend)
    assert len(outcome.steps) == 2  # the run went on after the first failure
    for step in outcome.steps:
        assert step.failure is not None, f"{behaviour}: step {step.step} did not fail"
        assert step.failure.reason == reason, text_of(step.failure)
        assert evidence in text_of(step.failure), text_of(step.failure)
        assert step.metrics["dice"]["mean"] == 0.0  # scored as an empty prediction
    if behaviour == "write-input":
        assert "WROTE" not in text_of(outcome.steps[0].failure)
    if behaviour == "fork-bomb":
        forks = int(text_of(outcome.steps[0].failure).split("fork failed after ")[1].split()[0])
        assert forks < LIMITS.pids
    for channel, original in zip(lesion_case.channels, before, strict=True):
        assert np.array_equal(channel, original)
    assert (
        docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"segloop.run={backend.run_id}"}
        )
        == []
    )
    backend.close()


@pytest.mark.parametrize(
    "behaviour, restarts",
    [("sleep", 2), ("exit-nonzero", 2), ("oom", 2), ("nan", 1), ("out-of-range", 1)],
)
def test_hostile_container_in_session_mode(
    docker_client,  # noqa: F811
    lesion_case,
    two_step_task,
    behaviour,
    restarts,
):
    """A session container that dies or times out is replaced at the next step; one that
    answers badly keeps running."""
    reason, evidence = EXPECTED[behaviour]
    backend = DockerBackend(hostile_image(behaviour), replace(LIMITS, session_mode="case"), False)
    sessions = []
    original_open = backend.open_case

    def open_and_keep(case_input):
        sessions.append(original_open(case_input))
        return sessions[-1]

    backend.open_case = open_and_keep
    outcome = run_case(lesion_case, two_step_task, backend)
    assert [s.failure.reason if s.failure else None for s in outcome.steps] == [reason] * 2
    assert all(evidence in text_of(s.failure) for s in outcome.steps)
    assert sessions[0].server.started_count == restarts
    assert (
        docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"segloop.run={backend.run_id}"}
        )
        == []
    )
    backend.close()


def test_nothing_left_behind(docker_client):  # noqa: F811
    assert (
        docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"segloop.owner={owner_token()}"}
        )
        == []
    )
