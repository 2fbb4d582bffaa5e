"""The sandbox every segloop container runs in, and running one container to its end.

Sandbox (as autoPET IV and Grand Challenge run them): no network, memory limit with swap equal to
it, pids and CPU limits, cap-drop ALL, no-new-privileges, an init process, shm size, a read-only
image with a tmpfs /tmp, an open-files limit, a capped log, a non-root user, GPUs only when asked
(by index). Containers carry labels (``segloop=1``, ``segloop.run``, ``segloop.owner=host:pid:start``)
so that a later harness can remove what a killed one left (:func:`cleanup_leftovers`).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker.errors
import docker.types
import requests

from segloop.containers.docker import workspace
from segloop.containers.images import docker_client
from segloop.core import owners, untrusted_images
from segloop.core.contract import (
    ModelStepError,
)
from segloop.core.faults import HarnessFault, is_storage_error, storage_fault
from segloop.core.owners import owner_alive
from segloop.core.records import FailureReason
from segloop.core.task import Limits

LOG_TAIL_CHARS = 2000


LOG_TAIL_LINES = 200


# json-file log driver cap: a container cannot fill the disk through stdout.
LOG_MAX_SIZE = "10m"


LABEL_ROOT = "segloop"


LABEL_RUN = "segloop.run"


LABEL_OWNER = "segloop.owner"


LABEL_ROLE = "segloop.role"


LABEL_CASE = "segloop.case"


def cleanup_leftovers(client: Any = None, log: Callable[[str], None] | None = None) -> int:
    """Remove segloop containers and work folders whose owning harness process is dead.

    Containers of live harnesses (other runs, other workers on this host) are left alone.
    Returns the number of containers removed.
    """
    if client is None:
        client = docker_client()
    removed = 0
    for container in labelled_containers(client, LABEL_OWNER):
        token = (container.get("Labels") or {}).get(LABEL_OWNER, "")
        if owner_alive(token):
            continue
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
            removed += 1
            if log:
                log(f"removed leftover container {container['Id'][:12]} (owner {token} is gone)")
        except docker.errors.APIError:  # already gone, or being removed by someone else
            pass
    workspace.cleanup_dead_work_dirs(log)
    owners.remove_dead_temp_dirs(untrusted_images.PRIVATE_COPY_PREFIX)
    return removed


def labelled_containers(client: Any, label: str) -> list[dict[str, Any]]:
    """The containers carrying ``label`` (``key`` or ``key=value``), as the engine lists them
    (no per-container inspection: a container removed meanwhile by another harness would make
    that fail)."""
    return client.api.containers(all=True, filters={"label": label})


def remove_all_containers(client: Any, run_id: str | None = None) -> int:
    """Remove every segloop container (or those of one run), alive owner or not."""
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_ROOT
    containers = labelled_containers(client, label)
    for container in containers:
        try:
            client.api.remove_container(container["Id"], force=True, v=True)
        except docker.errors.APIError:  # already gone
            pass
    return len(containers)


def clean_container_path(path: str) -> str:
    """A container path as the engine (Go's ``filepath.Clean``) reads it: ``/data/`` and
    ``//data/.`` are ``/data``."""
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    return "/" + cleaned.lstrip("/")


def sandbox_kwargs(
    limits: Limits,
    labels: Mapping[str, str],
    user: str | None,
    declared_volumes: Sequence[str] = (),
) -> dict[str, Any]:
    """``containers.create`` arguments of the sandbox every segloop container runs in.

    ``declared_volumes``: the image's ``VOLUME`` paths not bind-mounted by segloop; each gets a
    tmpfs of ``limits.tmp_mb`` (else the engine would make an anonymous volume on the host
    disk, writable despite the read-only root and capped by nothing).
    """

    memory = f"{int(limits.memory_mb)}m"
    nofile = int(limits.nofile)
    kwargs: dict[str, Any] = {
        "network_mode": "none",
        # Nothing lands on the host disk but /output: the image's filesystem is read-only and
        # /tmp a tmpfs (its pages count against the memory limit too).
        "read_only": True,
        "tmpfs": {
            path: f"rw,nosuid,nodev,size={int(limits.tmp_mb)}m,mode=1777"
            for path in ("/tmp", *declared_volumes)
        },
        "ulimits": [
            docker.types.Ulimit(name="nofile", soft=nofile, hard=nofile),
            # no core dumps: on hosts that pipe them to a helper they would land on the host
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap beyond the memory limit
        "pids_limit": int(limits.pids),
        "nano_cpus": int(limits.cpus * 1e9),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "shm_size": f"{int(limits.shm_mb)}m",
        "labels": dict(labels),
        "log_config": docker.types.LogConfig(
            type="json-file", config={"max-size": LOG_MAX_SIZE, "max-file": "1"}
        ),
        "detach": True,
        "stdin_open": False,
        "tty": False,
    }
    if user:
        kwargs["user"] = user
    if limits.gpus:
        kwargs["device_requests"] = [
            docker.types.DeviceRequest(
                device_ids=[str(g) for g in limits.gpus], capabilities=[["gpu"]]
            )
        ]
    return kwargs


def container_env(limits: Limits, extra: Mapping[str, str]) -> dict[str, str]:
    threads = str(max(1, int(limits.cpus)))
    return {
        "HOME": "/tmp",
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        **extra,
    }


def failure_of_exit(state: Mapping[str, Any], log_tail: str) -> ModelStepError | None:
    """The step failure a finished container's State means (None for a clean exit)."""
    exit_code = int(state.get("ExitCode", 0) or 0)
    if exit_code == 0:
        return None
    if state.get("OOMKilled"):
        return ModelStepError(
            FailureReason.OOM, f"killed for memory (exit code {exit_code})", log_tail
        )
    detail = f"exit code {exit_code}"
    if exit_code > 128:
        detail += f" (signal {exit_code - 128})"
    if state.get("Error"):
        detail += f": {state['Error']}"
    return ModelStepError(FailureReason.EXIT_CODE, detail, log_tail)


def engine_fault(error: BaseException) -> HarnessFault | None:
    """The harness fault ``error`` means, if it is not about the model: the engine unreachable
    (connection refused, reset, closed mid-answer) or out of space; None otherwise."""
    if isinstance(error, HarnessFault):
        return error
    text = str(error).replace("\n", " ")[:300]
    if isinstance(error, docker.errors.APIError):
        # A 5xx answer is the engine's own trouble only when it says so: a model's broken
        # command or image also comes back as 500.
        if error.is_server_error() and "no space left on device" in text.lower():
            return HarnessFault(f"the Docker engine is out of space: {text}")
        return None
    if isinstance(
        error,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.Timeout,
            ConnectionError,
        ),
    ) or (isinstance(error, docker.errors.DockerException) and "server API version" in text):
        return HarnessFault(f"the Docker engine is unreachable ({type(error).__name__}: {text})")
    if is_storage_error(error):
        return storage_fault(error, getattr(error, "filename", None) or "work folder", "files")
    return None


def _is_request_timeout(error: BaseException) -> bool:
    return isinstance(error, (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError))


@dataclass
class ContainerRun:
    """A started container and what is known about how it ended."""

    container: Any
    started: float = field(default_factory=time.monotonic)

    def log_tail(self) -> str:
        try:
            raw = self.container.logs(stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        except Exception:  # noqa: BLE001 - the container may be gone
            return ""
        return raw.decode("utf-8", "replace")[-LOG_TAIL_CHARS:]

    def state(self) -> dict[str, Any]:
        """The container's State; {} if it is gone. An unreachable engine is a HarnessFault:
        an unknown end must not read as a clean exit (or as the model's failure)."""
        try:
            self.container.reload()
            return dict(self.container.attrs.get("State", {}))
        except Exception as error:  # noqa: BLE001
            fault = engine_fault(error)
            if fault is not None:
                raise fault from error
            return {}

    def wait(self, time_limit_s: float) -> bool:
        """Wait until the container exits or ``time_limit_s`` passes; True if it exited."""
        started = time.monotonic()
        try:
            self.container.wait(timeout=max(time_limit_s, 0.001))
            return True
        except Exception as error:  # noqa: BLE001
            # A read timeout (on the unix socket it surfaces as a ConnectionError) means the
            # limit passed; a connection error before that means the engine went away.
            if _is_request_timeout(error) and time.monotonic() - started >= 0.9 * time_limit_s:
                return False
            raise

    def kill(self) -> None:
        try:
            self.container.kill()
        except Exception:  # noqa: BLE001 - it may have exited just now
            pass

    def remove(self, make_sure: bool = False) -> None:
        """Force-remove the container; ``make_sure``: retry until the engine no longer has it
        (after an interrupted create/start the engine may still be busy with it)."""
        force_remove(self.container.client, self.container.id, make_sure)


def force_remove(client: Any, reference: str, make_sure: bool = False) -> None:
    """Remove a container by id or name, ignoring "already gone"; see ContainerRun.remove."""

    deadline = time.monotonic() + (3.0 if make_sure else 0.0)
    while True:
        try:
            client.api.remove_container(reference, force=True, v=True)
            if not make_sure:
                return
            client.api.inspect_container(reference)  # still there?
        except docker.errors.NotFound:
            return
        except Exception:  # noqa: BLE001 - e.g. "removal already in progress"
            pass
        if time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "x"


def with_log_tail(error: ModelStepError, tail: str) -> ModelStepError:
    return ModelStepError(error.reason, error.detail, error.log_tail or tail)
