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

from segloop.containers.docker import backend as docker_backend
from segloop.containers.docker.resolve import resolve_image
from segloop.containers.docker.sandbox import engine_fault as docker_engine_fault
from segloop.containers.docker.spec import parse_target
from segloop.containers.images import docker_client
from segloop.containers.local import (
    InProcessBackend,
    SubprocessBackend,
    check_command,
    command_files,
    load_callable,
    parse_command,
    python_model_files,
)
from segloop.core.faults import HarnessFault
from segloop.core.records import SegloopError
from segloop.core.stamps import file_sha256
from segloop.core.task import Limits, ModelBackend


def release_backend(backend: ModelBackend) -> None:
    """Give back a back-end opened for one case: close it, unless it is shared."""
    close = getattr(backend, "close", None)
    if callable(close) and not getattr(backend, "shared", False):
        close()


def close_shared_backends(model_spec: str | None = None) -> int:
    """Close this process's shared back-ends (of ``model_spec`` only, if given); stops their
    containers. Returns how many were closed."""
    return docker_backend.close_shared_backends(model_spec)


def terminate_backends(model_spec: str | None = None, remove_files: bool = False) -> int:
    """Emergency stop: remove every container of this process's back-ends (of ``model_spec``
    only, if given) now; the cases in flight raise :class:`Terminated` at their next step.
    Safe to call from a signal handler or another thread. ``remove_files`` also deletes their
    work folders (only when the process exits right after). Returns the back-ends stopped."""
    return docker_backend.terminate_backends(model_spec, remove_files)


def harness_fault_of(error: BaseException) -> HarnessFault | None:
    """The harness fault an error from a back-end means (the Docker engine unreachable or out
    of space, no space where the harness writes), or None: then it is the model's."""
    return docker_engine_fault(error)


def model_identity(spec: str) -> str:
    """What the model spec names right now, beyond its text: the image id (``sha256:...``) of a
    ``docker:`` model, so a re-tagged image is a different configuration (a run folder does not
    resume into results of the old image); "" for ``python:`` and ``cmd:`` models."""
    kind, _, target = spec.partition(":")
    if kind != "docker" or not target:
        return ""

    _, image = parse_target(target)
    client = docker_client()
    try:
        return resolve_image(client, image)
    finally:
        client.close()


#: The smallest CPU limit the Docker engine enforces (below it, it refuses the container;
#: a limit that rounds to 0 nano-CPUs would mean no limit at all).
MIN_DOCKER_CPUS = 0.01


def check_limits(spec: str, limits: Limits) -> None:
    """Refuse limits the model's engine cannot enforce (before anything runs): a ``docker:``
    CPU limit below :data:`MIN_DOCKER_CPUS` or above the engine's CPU count."""
    kind, _, target = spec.partition(":")
    if kind != "docker" or not target:
        return
    if limits.cpus < MIN_DOCKER_CPUS:
        raise SegloopError(
            f"--cpus {limits.cpus:g}: the Docker engine enforces {MIN_DOCKER_CPUS} CPUs at least"
        )
    client = docker_client()  # (a missing engine is a clear line here too)
    try:
        engine_cpus = int(client.info().get("NCPU") or 0)
    finally:
        client.close()
    if engine_cpus and limits.cpus > engine_cpus:
        raise SegloopError(
            f"--cpus {limits.cpus:g}: the Docker engine has {engine_cpus} CPUs and refuses a "
            "larger limit"
        )


def model_files(spec: str) -> dict[str, str]:
    """``{file: sha256}`` of the files that make a ``python:`` or ``cmd:`` model (see
    :func:`segloop.containers.local.python_model_files` and ``command_files``), so that a
    changed model is a different configuration; {} for ``docker:`` (its image id is its
    identity). Checks the spec on the way: a mistyped one is refused here, before a run
    folder is written."""
    kind, _, target = spec.partition(":")
    if kind == "python" and target:
        found = python_model_files(target)
    elif kind == "cmd" and target:
        command = parse_command(target)
        check_command(command)
        found = command_files(command)
    elif kind == "docker" and target:
        return {}
    else:
        raise SegloopError(
            f"model '{spec}': expected python:package.module:function, cmd:\"...\" or docker:IMAGE"
        )
    return {name: file_sha256(path) for name, path in sorted(found.items())}


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
        return docker_backend.DockerBackend.from_spec(target, limits, send_previous_prediction)
    raise SegloopError(
        f"model '{spec}': expected python:package.module:function, cmd:\"...\" or docker:IMAGE"
    )
