"""Per-step mode: one container per step, a fresh read-only ``/input`` and an empty ``/output``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from segloop.containers.docker.sandbox import with_log_tail
from segloop.core import untrusted
from segloop.core.contract import (
    ModelStepError,
    prepare_step_input,
    read_prediction,
    write_case_files,
)
from segloop.core.records import CaseInput, StepRequest

if TYPE_CHECKING:  # the back-end creates these sessions: no import at run time
    from segloop.containers.docker.backend import DockerBackend


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
                raise with_log_tail(error, tail) from None
        finally:
            untrusted.remove_tree(step_folder)
            untrusted.remove_tree(output_dir)

    def close(self) -> None:
        untrusted.remove_tree(self.work_dir)
