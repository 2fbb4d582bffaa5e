"""Turn a model spec from the command line into a back-end.

python:package.module:function   in-process call (fast, no isolation, no time limit)
cmd:"program --flag {input} {output}"   one process per step, native file contract
docker:IMAGE  or  docker:path/to/image.tar[.gz]   a container (see segloop.containers.docker.backend)

Lifetime: a run opens a back-end per case and gives it back with :func:`release_backend`
when the case is stored; shared back-ends (Docker ``--session-mode submission``: one container
for all cases of a process) outlive their cases and are closed by :func:`close_shared_backends`
when the process's part of the run is done. :func:`terminate_backends` is the emergency stop
(SIGTERM): every container of the process is removed at once and the cases in flight end with
:class:`Terminated` instead of being scored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from segloop.containers.local import (
    InProcessBackend,
    SubprocessBackend,
    load_callable,
    parse_command,
)
from segloop.core.records import SegloopError
from segloop.core.task import ModelBackend


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run; the harness enforces the wall-clock ones itself."""

    step_time_limit_s: float = 300.0
    case_time_limit_s: float = 3600.0
    memory_mb: int = 8192
    cpus: float = 2.0
    pids: int = 256
    shm_mb: int = 512
    tmp_mb: int = 1024  # the container's /tmp (a tmpfs; its root filesystem is read-only)
    output_mb: int = 4096  # what its outputs may hold (a tmpfs when the harness can mount one)
    nofile: int = 4096  # open files per process
    gpus: tuple[int, ...] = ()
    session_mode: str = "per-step"  # "per-step", "case" or "submission" (Docker only)


class Terminated(KeyboardInterrupt):
    """The harness was told to stop (SIGTERM, e.g. from a batch scheduler).

    A KeyboardInterrupt, so every clean-up path of Ctrl-C runs (containers removed, the case in
    flight not stored) and no ``except Exception`` records it as a failed step.
    """


def release_backend(backend: ModelBackend) -> None:
    """Give back a back-end opened for one case: close it, unless it is shared."""
    close = getattr(backend, "close", None)
    if callable(close) and not getattr(backend, "shared", False):
        close()


def _docker_module():
    # Only when this process has used Docker: never import the SDK (or reach an engine) for it.
    return sys.modules.get("segloop.containers.docker.backend")


def close_shared_backends(model_spec: str | None = None) -> int:
    """Close this process's shared back-ends (of ``model_spec`` only, if given); stops their
    containers. Returns how many were closed."""
    module = _docker_module()
    return module.close_shared_backends(model_spec) if module is not None else 0


def terminate_backends(model_spec: str | None = None, remove_files: bool = False) -> int:
    """Emergency stop: remove every container of this process's back-ends (of ``model_spec``
    only, if given) now; the cases in flight raise :class:`Terminated` at their next step.
    Safe to call from a signal handler or another thread. ``remove_files`` also deletes their
    work folders (only when the process exits right after). Returns the back-ends stopped."""
    module = _docker_module()
    return module.terminate_backends(model_spec, remove_files) if module is not None else 0


def model_identity(spec: str) -> str:
    """What the model spec names right now, beyond its text: the image id (``sha256:...``) of a
    ``docker:`` model, so a re-tagged image is a different configuration (a run folder does not
    resume into results of the old image); "" for ``python:`` and ``cmd:`` models."""
    kind, _, target = spec.partition(":")
    if kind != "docker" or not target:
        return ""
    from segloop.containers.docker.backend import parse_target, resolve_image
    from segloop.containers.images import docker_client

    _, image = parse_target(target)
    client = docker_client()
    try:
        return resolve_image(client, image)
    finally:
        client.close()


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
        from segloop.containers.docker.backend import DockerBackend

        return DockerBackend.from_spec(target, limits, send_previous_prediction)
    raise SegloopError(
        f"model '{spec}': expected python:package.module:function, cmd:\"...\" or docker:IMAGE"
    )
