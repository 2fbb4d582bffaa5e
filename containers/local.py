"""Model back-ends that run on this machine without Docker: a Python callable, or a command.

A participant's model is a function ``predict(case: CaseInput, request: StepRequest) -> labels``.
``InProcessBackend`` calls it directly; ``SubprocessBackend`` runs a command per step under the
native file contract (``segloop.core.contract``), the same contract the Docker back-end uses, so a
participant can test the organizer's loop without Docker.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import shutil
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
from segloop.core.faults import check_space_after_failure
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


#: Folders never part of a model's code (caches, environments, version control).
_SKIPPED_FOLDERS = frozenset({"__pycache__", ".git", ".venv", "venv", "node_modules", ".tox"})
#: A package this big is not one model's code: refuse rather than hash for minutes.
MAX_MODEL_FILES = 5000


def _package_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_FOLDERS and not d.startswith("."))
        found += [Path(root, name) for name in sorted(files) if name.endswith(".py")]
        if len(found) > MAX_MODEL_FILES:
            raise SegloopError(
                f"{folder}: more than {MAX_MODEL_FILES} Python files; a model's package "
                "should hold its own code only"
            )
    return found


def python_model_files(target: str) -> dict[str, Path]:
    """The files that make a ``python:package.module:function`` model: every ``.py`` file of
    its top-level package (code imported from a sibling module changes results as much), or
    the module's own file for a top-level module; for segloop's own models (``baselines``),
    their sub-package. Keys are paths relative to the package's parent, so a moved checkout
    is the same model. Imports the module (as the run will)."""
    load_callable(target)  # a mistyped spec is refused before anything is written
    module_name = target.partition(":")[0]
    module = sys.modules.get(module_name) or import_model_module(module_name)
    package = module.__name__.partition(".")[0]
    if package == "segloop":  # segloop's own baselines: their sub-package, not all of segloop
        package = module.__name__.rpartition(".")[0] or package
    locations = list(getattr(sys.modules[package], "__path__", None) or [])
    if not locations:  # a top-level module: its own file
        path = Path(module.__file__ or "")
        return {path.name: path} if path.is_file() else {}
    files = {}
    for location in locations:
        base = Path(location).parent
        for path in _package_files(Path(location)):
            files[path.relative_to(base).as_posix()] = path
    return files


def command_files(command: tuple[str, ...]) -> dict[str, Path]:
    """The files a ``cmd:`` model names on its command line (the script, its weights...; in
    ``--weights=w.pt`` too), relative to the folder it runs in, and the package files of a
    ``-m module``. A program found on the PATH (python3) is the system's, not the model's,
    and folders are not read (they may be a dataset)."""
    files: dict[str, Path] = {}
    for index, part in enumerate(command):
        if "{input}" in part or "{output}" in part:
            continue
        if index > 0 and command[index - 1] == "-m":
            files.update(python_module_files(part))
            continue
        for candidate in {part, part.partition("=")[2]} - {""}:
            path = Path(candidate)
            if path.is_file():
                files[candidate] = path
    return files


def python_module_files(module_name: str) -> dict[str, Path]:
    """The files of ``python -m module``'s top-level package (found, not imported: it runs
    in another interpreter)."""
    top = module_name.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return {}
    if spec is None:
        return {}
    if spec.submodule_search_locations:
        files = {}
        for location in spec.submodule_search_locations:
            base = Path(location).parent
            for path in _package_files(Path(location)):
                files[path.relative_to(base).as_posix()] = path
        return files
    origin = Path(spec.origin or "")
    return {origin.name: origin} if origin.is_file() else {}


def check_command(command: tuple[str, ...]) -> None:
    """Refuse a ``cmd:`` model whose program does not exist (before anything is written)."""
    program = command[0]
    if shutil.which(program) is None:
        raise SegloopError(f"cmd model: program {program!r} not found (nor executable)")


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
        try:
            write_case_files(self.case_folder, case_input)
        except BaseException:  # e.g. no space: nothing of the case stays behind
            untrusted.remove_tree(self.work_dir)
            raise
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
                # /tmp is shared: a full one is not this model's failure to score
                check_space_after_failure(self.work_dir, "cmd: model's work folder")
                raise ModelStepError(
                    FailureReason.EXIT_CODE, f"exit code {return_code}", log_tail(log)
                )
            try:
                return read_prediction(
                    output_dir, self.case_input.shape, set(self.case_input.classes)
                )
            except ModelStepError as error:
                check_space_after_failure(self.work_dir, "cmd: model's work folder")
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
