"""Turn a model spec from the command line into a back-end.

python:package.module:function   in-process call (fast, no isolation, no time limit)
cmd:"program --flag {input} {output}"   one process per step, native file contract
docker:IMAGE  or  docker:path/to/image.tar[.gz]   a container (see containers.docker_backend)
"""

from __future__ import annotations

from dataclasses import dataclass

from containers.local import InProcessBackend, SubprocessBackend, load_callable, parse_command
from evaluator.records import SegloopError
from evaluator.task import ModelBackend


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; the harness enforces the wall-clock ones itself."""

    step_time_limit_s: float = 300.0
    case_time_limit_s: float = 3600.0
    memory_mb: int = 8192
    cpus: float = 2.0
    pids: int = 256
    shm_mb: int = 512
    gpus: tuple[int, ...] = ()
    session_mode: str = "per-step"  # "per-step", "case" or "submission" (Docker only)


def open_backend(spec: str, limits: Limits, send_previous_prediction: bool) -> ModelBackend:
    kind, _, target = spec.partition(":")
    if kind == "python" and target:
        return InProcessBackend(load_callable(target), name=spec)
    if kind == "cmd" and target:
        return SubprocessBackend(
            parse_command(target),
            step_time_limit_s=limits.step_time_limit_s,
            case_time_limit_s=limits.case_time_limit_s,
            send_previous_prediction=send_previous_prediction,
            name=spec,
        )
    if kind == "docker" and target:
        from containers.docker_backend import DockerBackend  # needs the docker SDK and engine

        return DockerBackend.from_spec(target, limits, send_previous_prediction)
    raise SegloopError(
        f"model '{spec}': expected python:package.module:function, cmd:\"...\" or docker:IMAGE"
    )
