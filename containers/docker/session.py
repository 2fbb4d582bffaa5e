"""Session mode: one container per case (or per submission) answering step requests.

The container reads requests from ``/session/requests/<name>/`` (``request.json``, then ``ready``)
and answers in ``/session/responses/<name>/`` (``prediction.npy`` or ``error.txt``, then
``done``); see docs/containers.md. Everything under responses is read as untrusted bytes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import numpy as np

from segloop.containers.docker import workspace
from segloop.containers.docker.sandbox import (
    LOG_TAIL_CHARS,
    ContainerRun,
    failure_of_exit,
    safe_name,
    with_log_tail,
)
from segloop.core import untrusted
from segloop.core.contract import (
    REQUEST_FILE,
    ModelStepError,
    read_prediction,
    request_json,
    write_case_files,
)
from segloop.core.records import CaseInput, FailureReason, StepRequest
from segloop.core.untrusted import RefusedFile

if TYPE_CHECKING:  # the back-end creates these sessions: no import at run time
    from segloop.containers.docker.backend import DockerBackend

SESSION_STOP_GRACE_S = 5.0


POLL_START_S = 0.001


POLL_MAX_S = 0.02


# Session protocol (docs/containers.md, containers/sdk/segloop_sdk.py).
SESSION_MOUNT = "/session"
#: Entries the harness visits removing one answer folder: two full output areas' worth.
ANSWER_MAX_ENTRIES = 2 * workspace.OUTPUT_MAX_INODES


READY_MARKER = "ready"


DONE_MARKER = "done"


ERROR_FILE = "error.txt"


STOP_MARKER = "stop"


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
        folder = self.cases_dir / safe_name(case_input.case_id)
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
            self._remove_answer(name, run)

    def _remove_answer(self, name: str, run: ContainerRun) -> None:
        """Remove ``responses/<name>/``. A container that keeps filling it while it is removed
        is stopped (it is not answering, it is keeping the harness busy) and the step fails."""
        try:
            untrusted.remove_tree_at(self.responses_fd, name, ANSWER_MAX_ENTRIES)
        except RefusedFile:
            run.kill()
            run.remove()
            untrusted.remove_tree_at(self.responses_fd, name)
            raise ModelStepError(
                FailureReason.INVALID_OUTPUT,
                f"responses/{name}/ kept growing while it was removed (over "
                f"{ANSWER_MAX_ENTRIES} entries); the session container was stopped",
            ) from None

    def _read_answer(
        self, response_fd: int, name: str, case_input: CaseInput, run: ContainerRun
    ) -> np.ndarray:
        where = f"responses/{name}/"
        if untrusted.exists(response_fd, ERROR_FILE):
            try:
                text = untrusted.read_text_tail(response_fd, ERROR_FILE, LOG_TAIL_CHARS * 10)
            except RefusedFile as error:
                raise ModelStepError(
                    FailureReason.INVALID_OUTPUT, str(error), run.log_tail()
                ) from None
            last = text.strip().splitlines()[-1] if text.strip() else "predict raised"
            raise ModelStepError(FailureReason.MODEL_ERROR, last[:300], text[-LOG_TAIL_CHARS:])
        try:
            self.backend.check_outputs()
            return read_prediction(
                response_fd, case_input.shape, set(case_input.classes), where=where
            )
        except ModelStepError as error:
            raise with_log_tail(error, run.log_tail()) from None

    def _answer_fd(self, name: str) -> int | None:
        """A descriptor of ``responses/<name>/`` once it holds ``done``, else None. A symlink
        in its place (or any non-folder) is the model's invalid output."""
        try:
            folder_fd = untrusted.open_dir(self.responses_fd, name, "responses/")
        except RefusedFile as error:
            if "no such folder" in str(error):
                return None
            raise ModelStepError(FailureReason.INVALID_OUTPUT, str(error)) from None
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
                    FailureReason.EXIT_CODE, "the session container exited without answering", tail
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
