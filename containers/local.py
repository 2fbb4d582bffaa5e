"""Model back-ends that run on this machine without Docker: a Python callable, or a command.

A participant's model is a function ``predict(case: CaseInput, request: StepRequest) -> labels``.
``InProcessBackend`` calls it directly; ``SubprocessBackend`` runs a command per step under the
native file contract (``segloop.core.contract``), the same contract the Docker back-end uses, so a
participant can test the organizer's loop without Docker.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np

from segloop.core import untrusted
from segloop.core.contract import (
    ModelStepError,
    prepare_step_input,
    read_prediction,
    validate_prediction,
    write_case_files,
)
from segloop.core.records import CaseInput, FailureReason, SegloopError, StepRequest

PredictFn = Callable[[CaseInput, StepRequest], np.ndarray]
LOG_TAIL_CHARS = 2000


#: segloop's top-level packages before 0.2: ``python:baselines.trivial:empty`` still names
#: ``segloop.baselines.trivial`` (so run folders of those versions resume).
LEGACY_PACKAGES = {
    "baselines": "segloop.baselines",
    "containers": "segloop.containers",
    "protocols": "segloop.protocols",
    "leaderboard": "segloop.leaderboard",
    "evaluator": "segloop",
}


def import_model_module(module_name: str) -> ModuleType:
    """Import a participant's module as ``python -m`` would: the current folder first, then the
    installed packages; a legacy segloop name (``baselines.trivial``) is found under
    ``segloop`` when nothing else answers to it."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top, _, rest = module_name.partition(".")
        missing_top = error.name in (top, module_name)
        if top not in LEGACY_PACKAGES or not missing_top:
            raise
        return importlib.import_module(".".join(filter(None, (LEGACY_PACKAGES[top], rest))))


def load_callable(target: str) -> PredictFn:
    """Import ``package.module:function`` (see :func:`import_model_module`) and return the
    function."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SegloopError(f"python model '{target}': expected 'package.module:function'")
    try:
        module = import_model_module(module_name)
    except ImportError as error:
        raise SegloopError(
            f"python model '{target}': cannot import {module_name}: {error} (looked in the "
            f"current folder {os.getcwd()} and the installed packages; set PYTHONPATH for others)"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SegloopError(f"python model '{target}': {module_name} has no function {attribute}")
    return function


@dataclass
class InProcessSession:
    predict_fn: PredictFn
    case_input: CaseInput

    def predict(self, request: StepRequest) -> np.ndarray:
        output = self.predict_fn(self.case_input, request)
        return validate_prediction(output, self.case_input.shape, set(self.case_input.classes))

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class InProcessBackend:
    """Calls a Python function in the harness's own process (no isolation, no time limit)."""

    predict_fn: PredictFn
    name: str = "python"

    def open_case(self, case_input: CaseInput) -> InProcessSession:
        return InProcessSession(self.predict_fn, case_input)


def log_tail(handle: BinaryIO, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of the log the harness opened (read from its own handle:
    the model may replace the file behind the name), decoded leniently."""
    try:
        handle.flush()
        size = os.fstat(handle.fileno()).st_size
        return os.pread(handle.fileno(), 4 * chars, max(0, size - 4 * chars)).decode(
            "utf-8", "replace"
        )[-chars:]
    except OSError:
        return ""


class SubprocessSession:
    """One case under a ``cmd:`` back-end: one process per step, killed at the step limit."""

    def __init__(self, backend: SubprocessBackend, case_input: CaseInput) -> None:
        self.backend = backend
        self.case_input = case_input
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"segloop-{case_input.case_id}-"))
        self.case_folder = self.work_dir / "case"
        write_case_files(self.case_folder, case_input)
        self.case_deadline = time.monotonic() + backend.case_time_limit_s

    def predict(self, request: StepRequest) -> np.ndarray:
        time_left_s = self.case_deadline - time.monotonic()
        if time_left_s <= 0:
            raise ModelStepError(
                FailureReason.CASE_TIMEOUT, "the case's wall-clock limit is used up"
            )
        step_limit_s = min(self.backend.step_time_limit_s, time_left_s)
        step_folder = self.work_dir / f"step_{request.step:03d}"
        input_dir = prepare_step_input(
            self.case_folder, step_folder, request, self.backend.send_previous_prediction
        )
        output_dir = step_folder / "output"
        output_dir.mkdir()
        log_path = step_folder / "log.txt"
        command = [
            part.replace("{input}", str(input_dir)).replace("{output}", str(output_dir))
            for part in self.backend.command
        ]
        env = {**os.environ, "SEGLOOP_INPUT": str(input_dir), "SEGLOOP_OUTPUT": str(output_dir)}
        with open(log_path, "w+b") as log:
            try:
                process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.backend.working_dir,  # the caller's: `python my_model.py` works
                    start_new_session=True,  # so the whole process group can be killed
                )
            except OSError as error:
                raise ModelStepError(
                    FailureReason.EXIT_CODE, f"cannot start {command[0]}: {error}"
                ) from None
            try:
                return_code = process.wait(timeout=step_limit_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                reason = (
                    FailureReason.TIMEOUT
                    if step_limit_s == self.backend.step_time_limit_s
                    else FailureReason.CASE_TIMEOUT
                )
                raise ModelStepError(
                    reason, f"killed after {step_limit_s:.1f} s", log_tail(log)
                ) from None
            finally:
                _kill_group(process)  # children left running after the leader exited
            if return_code != 0:
                raise ModelStepError(
                    FailureReason.EXIT_CODE, f"exit code {return_code}", log_tail(log)
                )
            try:
                return read_prediction(
                    output_dir, self.case_input.shape, set(self.case_input.classes)
                )
            except ModelStepError as error:
                raise ModelStepError(error.reason, error.detail, log_tail(log)) from None

    def close(self) -> None:
        untrusted.remove_tree(self.work_dir)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


@dataclass(frozen=True)
class SubprocessBackend:
    """Runs ``command`` once per step under the native file contract."""

    command: tuple[str, ...]
    working_dir: Path = field(default_factory=Path.cwd)  # where the command runs
    step_time_limit_s: float = 300.0
    case_time_limit_s: float = 3600.0
    send_previous_prediction: bool = True
    name: str = "cmd"

    def open_case(self, case_input: CaseInput) -> SubprocessSession:
        return SubprocessSession(self, case_input)


def parse_command(text: str) -> tuple[str, ...]:
    parts = tuple(shlex.split(text))
    if not parts:
        raise SegloopError("cmd model: the command is empty")
    return parts
