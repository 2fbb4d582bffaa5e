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
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import numpy as np

from segloop.containers.docker import workspace
from segloop.containers.docker.gc import GcStepSession, gc_interface
from segloop.containers.docker.per_step import DockerStepSession
from segloop.containers.docker.resolve import resolve_image
from segloop.containers.docker.sandbox import (
    LABEL_CASE,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_ROOT,
    LABEL_RUN,
    ContainerRun,
    clean_container_path,
    cleanup_leftovers,
    container_env,
    engine_fault,
    failure_of_exit,
    force_remove,
    remove_all_containers,
    safe_name,
    sandbox_kwargs,
)
from segloop.containers.docker.session import DockerSessionCase, SessionServer
from segloop.containers.docker.spec import SESSION_MODES, DockerOptions, default_user, parse_target
from segloop.containers.images import docker_client
from segloop.core.contract import (
    ModelStepError,
)
from segloop.core.faults import check_space_after_failure
from segloop.core.owners import owner_token
from segloop.core.records import CaseInput, FailureReason, SegloopError
from segloop.core.task import Limits, Terminated


class DockerBackend:
    """``ModelBackend`` running a participant image; see the module docstring for the spec."""

    def __init__(
        self,
        image: str,
        limits: Limits,
        send_previous_prediction: bool,
        options: DockerOptions | None = None,
        client: Any = None,
        name: str | None = None,
    ) -> None:
        self.client = client if client is not None else docker_client()
        self.image_id = resolve_image(self.client, image)
        config = self.client.images.get(self.image_id).attrs.get("Config") or {}
        # VOLUME paths of the image, cleaned as the engine cleans them ("/data/" is "/data"):
        # given a capped tmpfs each (sandbox_kwargs)
        self.declared_volumes = tuple(
            sorted({clean_container_path(path) for path in config.get("Volumes") or {}})
        )
        self.limits = limits
        self.send_previous_prediction = send_previous_prediction
        options = options or DockerOptions()
        self.options = options
        self.session_mode = options.session_mode or limits.session_mode
        if self.session_mode not in SESSION_MODES:
            raise SegloopError(
                f"docker session mode '{self.session_mode}': expected one of {SESSION_MODES}"
            )
        self.gc_interface = None
        if options.gc_preset:
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
                **sandbox_kwargs(
                    self.limits,
                    self.labels(role, case_id),
                    self.user,
                    declared_volumes=[
                        path
                        for path in self.declared_volumes
                        if all(path != mount["bind"] for mount in volumes.values())
                    ],
                ),
            )
        except BaseException:
            force_remove(self.client, name, make_sure=True)
            raise
        volumes_made = [m for m in container.attrs.get("Mounts", []) if m.get("Type") == "volume"]
        if volumes_made:  # a backstop: every declared volume should have had its tmpfs
            force_remove(self.client, container.id, make_sure=True)
            raise SegloopError(
                f"{self.name}: the image would get uncapped volumes on the host disk at "
                f"{[m.get('Destination') for m in volumes_made]}; refused"
            )
        run = ContainerRun(container)
        try:
            container.start()
        except Exception as error:  # noqa: BLE001 - e.g. a broken image or a missing command
            run.remove()
            fault = engine_fault(error)
            if fault is not None:  # the engine's trouble, not the image's
                raise fault from error
            raise ModelStepError(
                FailureReason.EXIT_CODE, f"container did not start: {error}"
            ) from None
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
        except Exception as error:
            self.check_terminated()
            fault = engine_fault(error)
            if fault is not None:  # the engine gone or full: not the model's failure
                raise fault from error
            raise

    def step_budget(self, case_deadline: float) -> tuple[float, str]:
        """(seconds this step may take, the reason to record if it takes longer)."""
        time_left_s = case_deadline - time.monotonic()
        if time_left_s <= 0:
            raise ModelStepError(
                FailureReason.CASE_TIMEOUT, "the case's wall-clock limit is used up"
            )
        if time_left_s < self.limits.step_time_limit_s:
            return time_left_s, FailureReason.CASE_TIMEOUT
        return self.limits.step_time_limit_s, FailureReason.TIMEOUT

    def new_work_dir(self, what: str) -> Path:
        """A fresh private folder for what the harness writes (inputs, requests)."""
        workspace.private_dir(self.work_dir)
        return Path(tempfile.mkdtemp(prefix=f"{safe_name(what)}-", dir=self.work_dir))

    def new_output_dir(self, what: str) -> Path:
        """A fresh, empty folder in the output area for a container to write into."""
        if self._outputs is None:
            workspace.private_dir(self.work_dir)
            self._outputs = workspace.OutputArea(
                self.work_dir / workspace.OUTPUT_FOLDER, self.limits.output_mb
            )
        return self._outputs.new_folder(
            f"{safe_name(what)}-{uuid.uuid4().hex[:8]}", self.container_ids
        )

    def check_outputs(self, log_tail: str = "") -> None:
        """Refuse a step whose container filled the output area (its output may be cut): the
        model's failure when the area is its own capped tmpfs, the harness's fault when it is a
        plain folder on a shared file system that is full (someone else may have filled it)."""
        if self._outputs is None:
            return
        if not self._outputs.capped:
            check_space_after_failure(self._outputs.folder, "container outputs")
        if self._outputs.exhausted():
            raise ModelStepError(
                FailureReason.INVALID_OUTPUT,
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
        try:
            if self._shared_server is not None:
                self._shared_server.stop()
                self._shared_server = None
            remove_all_containers(self.client, self.run_id)
        except Exception as error:
            # Engine gone: its containers are removed by the next harness on this host
            # (cleanup_leftovers); the folders go now, and the fault is told by the caller.
            if engine_fault(error) is None:
                raise
        finally:
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
