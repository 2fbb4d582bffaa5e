"""Trivial reference models for tests and sanity checks.

``empty`` predicts nothing; ``OracleBackend`` returns the ground truth (a harness-side test
double: real participant models never see the label).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from segloop.core.records import CaseInput, StepRequest


def empty(case, request) -> np.ndarray:
    """Participant entry point that always predicts background."""
    return np.zeros(case.channels[0].shape, dtype=np.uint8)


@dataclass
class _OracleSession:
    label: np.ndarray

    def predict(self, request: StepRequest) -> np.ndarray:
        return self.label.copy()

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class OracleBackend:
    """Back-end answering every step with the case's ground truth."""

    labels_by_case: Mapping[str, np.ndarray]
    name: str = "oracle"

    def open_case(self, case_input: CaseInput) -> _OracleSession:
        return _OracleSession(self.labels_by_case[case_input.case_id])
