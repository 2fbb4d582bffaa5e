"""The Docker back-end: a participant image run in a sandbox under segloop's contract.

Model spec (``segloop run --model docker:...``)::

    docker:IMAGE                       an image already in the engine (never pulled)
    docker:path/to/image.tar[.gz]      an image archive, loaded like ``docker load``
    docker:OPTIONS+IMAGE               options, comma-separated, before a '+':
        per-step | session-case | session-submission   mode (default: Limits.session_mode)
        gc-autopet | gc-toothfairy3    an unchanged Grand Challenge algorithm container
                                       (segloop.containers.docker.gc; per-step only)
        user=UID:GID | user=image      user inside the container (default: 65534 "nobody"
                                       when the harness is root, else the harness's own uid)

Modes (docs/containers.md):

* per-step: one container per step with a fresh read-only ``/input`` and an empty ``/output``.
* session-case: one container per case answering step requests through ``/session``
  (``requests/<name>/`` + ``ready`` -> ``responses/<name>/prediction.npy`` + ``done``), so the
  model loads once per case. A step that times out kills the container; the next step starts a
  new one.
* session-submission: one container per submission (per harness process) for all its cases.

Sandbox of every container (as autoPET IV and Grand Challenge run them): no network, memory
limit with swap equal to it, pids limit, CPU limit, cap-drop ALL, no-new-privileges, an init
process, shm size, read-only inputs, a capped log, a non-root user, GPUs only when asked (by
index). The wall-clock limits are enforced here (docker's wait(timeout) is only an HTTP timeout):
the container is killed and the step recorded as "timeout" (or "case_timeout"); "oom" when the
kernel killed it for memory; "exit_code" for any other non-zero exit; "invalid_output" when the
output fails validation; "model_error" when predict raised in session mode.

Containers carry labels (``segloop=1``, ``segloop.run``, ``segloop.owner=host:pid:start``) and
are removed after use, on errors, on Ctrl-C and on SIGTERM (``terminate_backends``: the
containers go at once, the case in flight ends with ``Terminated``); if the harness itself was
killed, the next back-end created on this host removes what its dead owners left
(``cleanup_leftovers``).
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segloop.containers.docker import archives, workspace
from segloop.containers.docker.workspace import owner_alive, owner_token
from segloop.containers.registry import Limits, Terminated
from segloop.core import untrusted
from segloop.core.contract import (
    PREDICTION_FILE,
    REQUEST_FILE,
    ModelStepError,
    prepare_step_input,
    read_prediction,
    request_json,
    write_case_files,
)
from segloop.core.io import file_signature
from segloop.core.records import CaseInput, SegloopError, StepRequest
from segloop.core.untrusted import RefusedFile

LOG_TAIL_CHARS = 2000
LOG_TAIL_LINES = 200
# json-file log driver cap: a container cannot fill the disk through stdout.
LOG_MAX_SIZE = "10m"
NOBODY = "65534:65534"
SESSION_MODES = ("per-step", "case", "submission")
SESSION_STOP_GRACE_S = 5.0
POLL_START_S = 0.001
POLL_MAX_S = 0.02
ARCHIVE_SUFFIXES = archives.ARCHIVE_SUFFIXES

# Session protocol (docs/containers.md, containers/sdk/segloop_sdk.py).
SESSION_MOUNT = "/session"
READY_MARKER = "ready"
DONE_MARKER = "done"
ERROR_FILE = "error.txt"
STOP_MARKER = "stop"

LABEL_ROOT = "segloop"
LABEL_RUN = "segloop.run"
LABEL_OWNER = "segloop.owner"
LABEL_ROLE = "segloop.role"
LABEL_CASE = "segloop.case"


# --------------------------------------------------------------------------------------------
# Leftovers of a killed harness


def cleanup_leftovers(client: Any = None, log: Callable[[str], None] | None = None) -> int:
    """Remove segloop containers and work folders whose owning harness process is dead.

    Containers of live harnesses (other runs, other workers on this host) are left alone.
    Returns the number of containers removed.
    """
    if client is None:
        from segloop.containers.images import docker_client

        client = docker_client()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL_OWNER}):
        token = container.labels.get(LABEL_OWNER, "")
        if owner_alive(token):
            continue
        try:
            container.remove(force=True, v=True)
            removed += 1
            if log:
                log(f"removed leftover container {container.short_id} (owner {token} is gone)")
        except Exception:  # noqa: BLE001 - already gone, or being removed by someone else
            pass
    workspace.cleanup_dead_work_dirs(log)
    return removed


def remove_all_containers(client: Any, run_id: str | None = None) -> int:
    """Remove every segloop container (or those of one run), alive owner or not."""
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_ROOT
    containers = client.containers.list(all=True, filters={"label": label})
    for container in containers:
        try:
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001
            pass
    return len(containers)


# --------------------------------------------------------------------------------------------
# Options and sandbox


@dataclass(frozen=True)
class DockerOptions:
    """What the ``OPTIONS+`` prefix of a docker: spec chose (None: take it from Limits)."""

    session_mode: str | None = None
    gc_preset: str | None = None
    user: str | None = None  # "image" = the image's own USER


def parse_target(target: str) -> tuple[DockerOptions, str]:
    """Split ``[OPTIONS+]IMAGE`` (image references never contain '+')."""
    if "+" not in target:
        return DockerOptions(), target
    prefix, _, image = target.partition("+")
    options = DockerOptions()
    for token in filter(None, (t.strip() for t in prefix.split(","))):
        if token in ("per-step", "session-case", "session-submission"):
            mode = token.removeprefix("session-")
            options = replace(options, session_mode=mode)
        elif token.startswith("gc-"):
            options = replace(options, gc_preset=token[3:])
        elif token.startswith("user="):
            options = replace(options, user=token[5:])
        else:
            raise SegloopError(
                f"docker model option '{token}': expected per-step, session-case, "
                "session-submission, gc-<preset> or user=UID:GID|image"
            )
    if not image:
        raise SegloopError(f"docker model '{target}': no image after '+'")
    return options, image


def default_user() -> str:
    """Non-root in the container: nobody when the harness is root, else the harness's uid."""
    uid = os.getuid()
    return NOBODY if uid == 0 else f"{uid}:{os.getgid()}"


def sandbox_kwargs(limits: Limits, labels: Mapping[str, str], user: str | None) -> dict[str, Any]:
    """``containers.create`` arguments of the sandbox every segloop container runs in."""
    import docker.types

    memory = f"{int(limits.memory_mb)}m"
    nofile = int(limits.nofile)
    kwargs: dict[str, Any] = {
        "network_mode": "none",
        # Nothing lands on the host disk but /output: the image's filesystem is read-only and
        # /tmp a tmpfs (its pages count against the memory limit too).
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={int(limits.tmp_mb)}m,mode=1777"},
        "ulimits": [docker.types.Ulimit(name="nofile", soft=nofile, hard=nofile)],
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
        return ModelStepError("oom", f"killed for memory (exit code {exit_code})", log_tail)
    detail = f"exit code {exit_code}"
    if exit_code > 128:
        detail += f" (signal {exit_code - 128})"
    if state.get("Error"):
        detail += f": {state['Error']}"
    return ModelStepError("exit_code", detail, log_tail)


def _is_request_timeout(error: BaseException) -> bool:
    import requests

    return isinstance(error, (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError))


# --------------------------------------------------------------------------------------------
# Running one container


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
        try:
            self.container.reload()
            return dict(self.container.attrs.get("State", {}))
        except Exception:  # noqa: BLE001
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
    import docker.errors

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


class DockerBackend:
    """``ModelBackend`` running a participant image; see the module docstring for the spec."""

    def __init__(
        self,
        image: str,
        limits: Limits,
        send_previous_prediction: bool,
        options: DockerOptions = DockerOptions(),
        client: Any = None,
        name: str | None = None,
    ) -> None:
        from segloop.containers.images import docker_client

        self.client = client if client is not None else docker_client()
        self.image_ref = image
        self.image_id = resolve_image(self.client, image)
        self.limits = limits
        self.send_previous_prediction = send_previous_prediction
        self.options = options
        self.session_mode = options.session_mode or limits.session_mode
        if self.session_mode not in SESSION_MODES:
            raise SegloopError(
                f"docker session mode '{self.session_mode}': expected one of {SESSION_MODES}"
            )
        self.gc_interface = None
        if options.gc_preset:
            from segloop.containers.docker.gc import gc_interface

            self.gc_interface = gc_interface(options.gc_preset)
            if self.session_mode != "per-step":
                raise SegloopError(
                    "Grand Challenge containers run once per step: use per-step mode with gc-"
                )
        self.user = (
            default_user()
            if options.user is None
            else (None if options.user == "image" else options.user)
        )
        self.container_ids = workspace.container_ids(self.user)
        self.name = name or f"docker:{image}"
        self.run_id = uuid.uuid4().hex[:12]
        self.owner = owner_token()
        # <pid>.<start>.<run id>: cleanup_leftovers can tell when its owner is gone
        _, pid_text, start = self.owner.rsplit(":", 2)
        self.work_dir = workspace.work_root() / f"{pid_text}.{start}.{self.run_id}"
        self._outputs: workspace.OutputArea | None = None
        self.closed = False
        self.terminated = False
        self.shared = False  # session-submission: serves every case of this process
        self.container_count = 0
        self._shared_server: SessionServer | None = None
        _LIVE_BACKENDS.add(self)

    @classmethod
    def from_spec(
        cls, target: str, limits: Limits, send_previous_prediction: bool
    ) -> DockerBackend:
        """The back-end of ``docker:TARGET``; removes dead harnesses' leftovers first.

        In session-submission mode the back-end (and its one container) is shared by every
        case this process runs with the same spec and limits.
        """
        from segloop.containers.images import docker_client

        options, image = parse_target(target)
        client = docker_client()
        cleanup_leftovers(client)
        mode = options.session_mode or limits.session_mode
        if mode == "submission":
            key = (target, limits, send_previous_prediction)
            backend = _SHARED_BACKENDS.get(key)
            if backend is None or backend.closed:
                backend = cls(
                    image, limits, send_previous_prediction, options, client, f"docker:{target}"
                )
                backend.shared = True
                _SHARED_BACKENDS[key] = backend
            return backend
        return cls(image, limits, send_previous_prediction, options, client, f"docker:{target}")

    # -- container plumbing ------------------------------------------------------------------

    def labels(self, role: str, case_id: str = "") -> dict[str, str]:
        labels = {
            LABEL_ROOT: "1",
            LABEL_RUN: self.run_id,
            LABEL_OWNER: self.owner,
            LABEL_ROLE: role,
        }
        if case_id:
            labels[LABEL_CASE] = case_id[:200]
        return labels

    def start_container(
        self,
        volumes: Mapping[str, Mapping[str, str]],
        env: Mapping[str, str],
        role: str,
        case_id: str,
    ) -> ContainerRun:
        self.check_terminated()
        # A known name: if Ctrl-C lands while the engine creates it, it can still be removed.
        self.container_count += 1
        name = f"segloop-{self.run_id}-{self.container_count}"
        try:
            container = self.client.containers.create(
                self.image_id,
                name=name,
                volumes={k: dict(v) for k, v in volumes.items()},
                environment=container_env(self.limits, env),
                **sandbox_kwargs(self.limits, self.labels(role, case_id), self.user),
            )
        except BaseException:
            force_remove(self.client, name, make_sure=True)
            raise
        run = ContainerRun(container)
        try:
            container.start()
        except Exception as error:  # noqa: BLE001 - e.g. a broken image or a missing command
            run.remove()
            raise ModelStepError("exit_code", f"container did not start: {error}") from None
        except BaseException:  # Ctrl-C while starting
            run.remove(make_sure=True)
            raise
        return run

    def run_to_end(
        self,
        volumes: Mapping[str, Mapping[str, str]],
        env: Mapping[str, str],
        time_limit_s: float,
        timeout_reason: str,
        case_id: str,
    ) -> str:
        """Run a container to its end within ``time_limit_s``; return its log tail.

        Raises ModelStepError (timeout / case_timeout / oom / exit_code). The container is
        removed in every case, Ctrl-C included.
        """
        run = self.start_container(volumes, env, "step", case_id)
        try:
            if not run.wait(time_limit_s):
                run.kill()
                run.wait(10.0)
                raise ModelStepError(
                    timeout_reason, f"killed after {time_limit_s:.1f} s", run.log_tail()
                )
            tail = run.log_tail()
            failure = failure_of_exit(run.state(), tail)
            if failure is not None:
                self.check_outputs(tail)  # a full output area explains the crash best
                raise failure
            return tail
        finally:
            run.remove()

    def check_terminated(self) -> None:
        """Raise Terminated once :meth:`terminate` was called (from a signal or another thread)."""
        if self.terminated:
            raise Terminated(f"{self.name}: the harness is terminating")

    def guarded_step(self, step: Callable[[], np.ndarray]) -> np.ndarray:
        """Run one step; after :meth:`terminate` it raises Terminated, never a step failure
        (a container removed under a running step must not be scored as the model's fault)."""
        self.check_terminated()
        try:
            return step()
        except Exception:
            self.check_terminated()
            raise

    def step_budget(self, case_deadline: float) -> tuple[float, str]:
        """(seconds this step may take, the reason to record if it takes longer)."""
        time_left_s = case_deadline - time.monotonic()
        if time_left_s <= 0:
            raise ModelStepError("case_timeout", "the case's wall-clock limit is used up")
        if time_left_s < self.limits.step_time_limit_s:
            return time_left_s, "case_timeout"
        return self.limits.step_time_limit_s, "timeout"

    def new_work_dir(self, what: str) -> Path:
        """A fresh private folder for what the harness writes (inputs, requests)."""
        workspace.private_dir(self.work_dir)
        return Path(tempfile.mkdtemp(prefix=f"{_safe_name(what)}-", dir=self.work_dir))

    def new_output_dir(self, what: str) -> Path:
        """A fresh, empty folder in the output area for a container to write into."""
        if self._outputs is None:
            workspace.private_dir(self.work_dir)
            self._outputs = workspace.OutputArea(
                self.work_dir / workspace.OUTPUT_FOLDER, self.limits.output_mb
            )
        return self._outputs.new_folder(
            f"{_safe_name(what)}-{uuid.uuid4().hex[:8]}", self.container_ids
        )

    def check_outputs(self, log_tail: str = "") -> None:
        """Refuse a step whose container filled the output area (its output may be cut)."""
        if self._outputs is not None and self._outputs.exhausted():
            raise ModelStepError(
                "invalid_output",
                f"the container's outputs filled their {self._outputs.size_mb} MiB / "
                f"{workspace.OUTPUT_MAX_INODES} files cap",
                log_tail,
            )

    def share_inputs(self, folder: Path) -> None:
        """Make a harness-written input folder readable by the container's user only."""
        workspace.share_with_container(folder, self.container_ids, writable=False)

    def _remove_work_dir(self) -> None:
        if self._outputs is not None:
            self._outputs.close()
            self._outputs = None
        workspace.remove_work_dir(self.work_dir)

    # -- ModelBackend ------------------------------------------------------------------------

    def open_case(self, case_input: CaseInput):
        if self.closed:
            raise SegloopError(f"{self.name}: the back-end is closed")
        if self.gc_interface is not None:
            from segloop.containers.docker.gc import GcStepSession

            return GcStepSession(self, case_input, self.gc_interface)
        if self.session_mode == "per-step":
            return DockerStepSession(self, case_input)
        if self.session_mode == "case":
            server = SessionServer(self, self.new_work_dir(f"session-{case_input.case_id}"), "case")
            return DockerSessionCase(self, server, case_input, owns_server=True)
        if self._shared_server is None:
            self._shared_server = SessionServer(self, self.new_work_dir("session"), "submission")
        return DockerSessionCase(self, self._shared_server, case_input, owns_server=False)

    def close(self) -> None:
        """Stop the shared session container (if any) and remove this back-end's folders."""
        if self.closed:
            return
        self.closed = True
        if self._shared_server is not None:
            self._shared_server.stop()
            self._shared_server = None
        remove_all_containers(self.client, self.run_id)
        self._remove_work_dir()

    def terminate(self, remove_files: bool = False) -> None:
        """Emergency stop, callable from a signal handler or another thread: remove every
        container of this back-end now (no grace period); a step in flight, or the next one,
        raises Terminated in the thread running the case. ``remove_files``: also delete the
        work folders (only when the process is about to exit: a case may still be using them).
        """
        self.terminated = True
        self.closed = True
        try:
            import docker

            client = docker.from_env(timeout=30)  # our own: the case's thread may be using
            try:  # self.client right now
                remove_all_containers(client, self.run_id)
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - no engine: nothing we can remove
            pass
        if remove_files:
            self._remove_work_dir()

    def __enter__(self) -> DockerBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_LIVE_BACKENDS: weakref.WeakSet[DockerBackend] = weakref.WeakSet()
_SHARED_BACKENDS: dict[tuple, DockerBackend] = {}


def close_shared_backends(model_spec: str | None = None) -> int:
    """Close the session-submission back-ends of this process (stops their containers); only
    those of ``model_spec`` (``docker:...``) if given. Returns how many were open.

    A run calls it when its cases are done (segloop.runs.execute, in every worker process
    too); at interpreter exit it runs anyway.
    """
    closed = 0
    for key, backend in list(_SHARED_BACKENDS.items()):
        if model_spec is not None and backend.name != model_spec:
            continue
        del _SHARED_BACKENDS[key]
        if not backend.closed:
            backend.close()
            closed += 1
    return closed


def terminate_backends(model_spec: str | None = None, remove_files: bool = False) -> int:
    """:meth:`DockerBackend.terminate` every live back-end of this process (of ``model_spec``
    only, if given). Returns how many were stopped."""
    stopped = 0
    for backend in list(_LIVE_BACKENDS):
        if model_spec is not None and backend.name != model_spec:
            continue
        if not backend.terminated:
            backend.terminate(remove_files)
            stopped += 1
    return stopped


@atexit.register
def _close_live_backends() -> None:
    for backend in list(_LIVE_BACKENDS):
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "x"


# --------------------------------------------------------------------------------------------
# Image resolution (never pull)


def _archive_cache_path() -> Path:
    from segloop.containers.images import cache_dir

    return cache_dir() / "loaded-archives.json"


def resolve_image(client: Any, reference: str) -> str:
    """The image id of ``reference``: a local image, or an archive loaded once by content
    (:func:`segloop.containers.docker.archives.load_archive`: its tags are never applied), cached by path and
    :func:`segloop.core.io.file_signature` (a rewritten archive is loaded again). Never pulls."""
    import docker.errors

    if reference.endswith(ARCHIVE_SUFFIXES) or Path(reference).is_file():
        path = Path(reference).resolve()
        if not path.is_file():
            raise SegloopError(f"docker model: image archive {path} does not exist")
        key = ":".join([str(path), *map(str, file_signature(path.stat()).values())])
        cache_path = _archive_cache_path()
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        image_id = cache.get(key)
        if image_id:
            try:
                return client.images.get(image_id).id
            except docker.errors.ImageNotFound:
                pass
        image_id = archives.load_archive(client, path)  # by content: no tag moves
        cache[key] = image_id
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(cache, indent=1))
        os.replace(partial, cache_path)
        return image_id
    try:
        return client.images.get(reference).id
    except docker.errors.ImageNotFound:
        raise SegloopError(
            f"docker image '{reference}' is not in the engine and segloop never pulls: "
            "`docker load -i FILE`, pass the archive (docker:FILE.tar.gz), or build it "
            "(`segloop images build` for segloop's own images)"
        ) from None
    except docker.errors.APIError as error:
        raise SegloopError(f"docker image '{reference}': {error.explanation or error}") from None


# --------------------------------------------------------------------------------------------
# Per-step mode


def _with_tail(error: ModelStepError, tail: str) -> ModelStepError:
    return ModelStepError(error.reason, error.detail, error.log_tail or tail)


class DockerStepSession:
    """One case, one container per step (fresh /input read-only, empty /output)."""

    def __init__(self, backend: DockerBackend, case_input: CaseInput) -> None:
        self.backend = backend
        self.case_input = case_input
        self.case_deadline = time.monotonic() + backend.limits.case_time_limit_s
        self.work_dir = backend.new_work_dir(case_input.case_id)
        self.case_folder = self.work_dir / "case"
        write_case_files(self.case_folder, case_input)

    def predict(self, request: StepRequest) -> np.ndarray:
        return self.backend.guarded_step(lambda: self._predict(request))

    def _predict(self, request: StepRequest) -> np.ndarray:
        time_limit_s, timeout_reason = self.backend.step_budget(self.case_deadline)
        step_folder = self.work_dir / f"step_{request.step:03d}"
        untrusted.remove_tree(step_folder)
        input_dir = prepare_step_input(
            self.case_folder, step_folder, request, self.backend.send_previous_prediction
        )
        self.backend.share_inputs(input_dir)
        output_dir = self.backend.new_output_dir(f"{self.case_input.case_id}-{request.step}")
        try:
            tail = self.backend.run_to_end(
                {
                    str(input_dir): {"bind": "/input", "mode": "ro"},
                    str(output_dir): {"bind": "/output", "mode": "rw"},
                },
                {
                    "SEGLOOP_MODE": "per-step",
                    "SEGLOOP_INPUT": "/input",
                    "SEGLOOP_OUTPUT": "/output",
                },
                time_limit_s,
                timeout_reason,
                self.case_input.case_id,
            )
            try:
                self.backend.check_outputs()
                return read_prediction(
                    output_dir, self.case_input.shape, set(self.case_input.classes)
                )
            except ModelStepError as error:
                raise _with_tail(error, tail) from None
        finally:
            untrusted.remove_tree(step_folder)
            untrusted.remove_tree(output_dir)

    def close(self) -> None:
        untrusted.remove_tree(self.work_dir)


# --------------------------------------------------------------------------------------------
# Session mode


class SessionServer:
    """A long-lived container answering step requests through mounted folders.

    Host layout (mounted under /session in the container)::

        root/cases/<case_id>/        read-only: case.json, image_0000.npy, ...
        root/requests/<name>/        read-only: request.json (+ case_dir, previous prediction),
                                     then an empty ``ready``; root/requests/stop ends the server
        <output area>/responses-*/<name>/   written by the container: prediction.npy + ``done``,
                                     or error.txt + ``done``

    Everything under responses is the container's: it is read through a descriptor of the
    responses folder (the mount point, which the container cannot replace), one name at a
    time, links never followed (:mod:`segloop.core.untrusted`).
    """

    def __init__(self, backend: DockerBackend, root: Path, scope: str) -> None:
        self.backend = backend
        self.root = root
        self.scope = scope
        self.cases_dir = root / "cases"
        self.requests_dir = root / "requests"
        for folder in (self.cases_dir, self.requests_dir):
            folder.mkdir(parents=True, exist_ok=True)
            backend.share_inputs(folder)
        self.responses_dir = backend.new_output_dir(f"responses-{scope}")
        self.responses_fd = untrusted.open_dir(None, self.responses_dir)
        self.run: ContainerRun | None = None
        self.exited = threading.Event()
        self.sequence = 0
        self.started_count = 0
        self.busy = False  # a request is out and unanswered: stop() kills without a grace

    def ensure_running(self, case_id: str) -> ContainerRun:
        if self.run is not None and not self.exited.is_set():
            return self.run
        if self.run is not None:
            self.run.remove()
        self.exited = threading.Event()
        self.run = self.backend.start_container(
            {
                str(self.cases_dir): {"bind": f"{SESSION_MOUNT}/cases", "mode": "ro"},
                str(self.requests_dir): {"bind": f"{SESSION_MOUNT}/requests", "mode": "ro"},
                str(self.responses_dir): {"bind": f"{SESSION_MOUNT}/responses", "mode": "rw"},
            },
            {"SEGLOOP_MODE": "session", "SEGLOOP_SESSION": SESSION_MOUNT},
            f"session-{self.scope}",
            case_id if self.scope == "case" else "",
        )
        self.started_count += 1
        watcher = threading.Thread(
            target=_watch_exit, args=(self.run.container.id, self.exited), daemon=True
        )
        watcher.start()
        return self.run

    def add_case(self, case_input: CaseInput) -> Path:
        folder = self.cases_dir / _safe_name(case_input.case_id)
        untrusted.remove_tree(folder)
        write_case_files(folder, case_input)
        self.backend.share_inputs(folder)
        return folder

    def remove_case(self, folder: Path) -> None:
        untrusted.remove_tree(folder)

    def ask(
        self,
        case_input: CaseInput,
        case_folder: Path,
        request: StepRequest,
        time_limit_s: float,
        timeout_reason: str,
    ) -> np.ndarray:
        run = self.ensure_running(case_input.case_id)
        self.sequence += 1
        name = f"{self.sequence:06d}"
        request_dir = self.requests_dir / name
        self.busy = True
        try:
            request_dir.mkdir()
            payload = request_json(request, self.backend.send_previous_prediction)
            payload["case_dir"] = f"cases/{case_folder.name}"
            if payload["previous_prediction"]:
                np.save(request_dir / payload["previous_prediction"], request.previous_prediction)
            (request_dir / REQUEST_FILE).write_text(json.dumps(payload, indent=1))
            self.backend.share_inputs(request_dir)
            (request_dir / READY_MARKER).touch()  # last: the request is complete
            response_fd = self._wait_for_answer(run, name, time_limit_s, timeout_reason)
            self.busy = False
            try:
                return self._read_answer(response_fd, name, case_input, run)
            finally:
                os.close(response_fd)
        finally:
            untrusted.remove_tree(request_dir)
            untrusted.remove_tree_at(self.responses_fd, name)

    def _read_answer(
        self, response_fd: int, name: str, case_input: CaseInput, run: ContainerRun
    ) -> np.ndarray:
        where = f"responses/{name}/"
        if untrusted.exists(response_fd, ERROR_FILE):
            try:
                text = untrusted.read_text_tail(response_fd, ERROR_FILE, LOG_TAIL_CHARS * 10)
            except RefusedFile as error:
                raise ModelStepError("invalid_output", str(error), run.log_tail()) from None
            last = text.strip().splitlines()[-1] if text.strip() else "predict raised"
            raise ModelStepError("model_error", last[:300], text[-LOG_TAIL_CHARS:])
        try:
            self.backend.check_outputs()
            return read_prediction(
                response_fd, case_input.shape, set(case_input.classes), where=where
            )
        except ModelStepError as error:
            raise _with_tail(error, run.log_tail()) from None

    def _answer_fd(self, name: str) -> int | None:
        """A descriptor of ``responses/<name>/`` once it holds ``done``, else None. A symlink
        in its place (or any non-folder) is the model's invalid output."""
        try:
            folder_fd = untrusted.open_dir(self.responses_fd, name, "responses/")
        except RefusedFile as error:
            if "no such folder" in str(error):
                return None
            raise ModelStepError("invalid_output", str(error)) from None
        if untrusted.exists(folder_fd, DONE_MARKER):
            return folder_fd
        os.close(folder_fd)
        return None

    def _wait_for_answer(
        self, run: ContainerRun, name: str, time_limit_s: float, timeout_reason: str
    ) -> int:
        deadline = time.monotonic() + time_limit_s
        interval = POLL_START_S
        while True:
            self.backend.check_terminated()
            answer = self._answer_fd(name)
            if answer is not None:
                return answer
            if self.exited.is_set():
                answer = self._answer_fd(name)
                if answer is not None:
                    return answer
                tail = run.log_tail()
                failure = failure_of_exit(run.state(), tail) or ModelStepError(
                    "exit_code", "the session container exited without answering", tail
                )
                run.remove()
                self.backend.check_outputs(tail)
                raise failure
            if time.monotonic() >= deadline:
                run.kill()
                self.exited.wait(10.0)
                tail = run.log_tail()
                run.remove()
                raise ModelStepError(timeout_reason, f"killed after {time_limit_s:.1f} s", tail)
            time.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX_S)

    def stop(self) -> None:
        """Ask the server to exit, give it a moment if it is idle, then remove the container
        (at once when a step was interrupted: it would not look at the stop marker)."""
        if self.run is not None:
            run, self.run = self.run, None
            if not self.exited.is_set() and not self.busy:
                try:
                    (self.requests_dir / STOP_MARKER).touch()
                except OSError:
                    pass
                self.exited.wait(SESSION_STOP_GRACE_S)
            run.remove()
        if self.responses_fd >= 0:
            os.close(self.responses_fd)
            self.responses_fd = -1
        untrusted.remove_tree(self.responses_dir)
        untrusted.remove_tree(self.root)


def _watch_exit(container_id: str, exited: threading.Event) -> None:
    """Set ``exited`` when the container stops (or is removed, or the engine is lost).

    Blocks on its own client: requests sessions are not meant to be shared across threads.
    """
    try:
        import docker

        client = docker.from_env(timeout=60)
        try:
            client.api.wait(container_id, timeout=None)  # no timeout: until it stops
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        pass
    exited.set()


class DockerSessionCase:
    """One case answered by a session container (its own, or the submission's shared one)."""

    def __init__(
        self,
        backend: DockerBackend,
        server: SessionServer,
        case_input: CaseInput,
        owns_server: bool,
    ) -> None:
        self.backend = backend
        self.server = server
        self.case_input = case_input
        self.owns_server = owns_server
        self.case_deadline = time.monotonic() + backend.limits.case_time_limit_s
        self.case_folder = server.add_case(case_input)
        try:
            server.ensure_running(case_input.case_id)  # the model loads while the robot thinks
        except ModelStepError:
            pass  # recorded at the first step, which retries the start

    def predict(self, request: StepRequest) -> np.ndarray:
        def step() -> np.ndarray:
            time_limit_s, timeout_reason = self.backend.step_budget(self.case_deadline)
            return self.server.ask(
                self.case_input, self.case_folder, request, time_limit_s, timeout_reason
            )

        return self.backend.guarded_step(step)

    def close(self) -> None:
        if self.owns_server:
            self.server.stop()
        else:
            self.server.remove_case(self.case_folder)


__all__ = [
    "DockerBackend",
    "DockerOptions",
    "cleanup_leftovers",
    "close_shared_backends",
    "terminate_backends",
    "parse_target",
    "sandbox_kwargs",
    "PREDICTION_FILE",
]
