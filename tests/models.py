"""Participant-style models used by the tests (``python:tests.models:NAME``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from segloop.baselines import region_growing


def raises(case, request) -> np.ndarray:
    if request.step == 1:
        raise RuntimeError("model crashed on purpose")
    return region_growing.predict(case, request)


def wrong_shape(case, request) -> np.ndarray:
    if request.step == 1:
        return np.zeros((3, 3, 3), dtype=np.uint8)
    return region_growing.predict(case, request)


def kills_harness_once(case, request) -> np.ndarray:
    """Region growing, but SIGKILLs its own process (the harness) once, at a marked case/step.

    SEGLOOP_TEST_KILL="<case_id>:<step>:<marker file>"; the marker makes it happen only once.
    """
    case_id, step, marker = os.environ["SEGLOOP_TEST_KILL"].split(":", 2)
    if case.case_id == case_id and request.step == int(step) and not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return region_growing.predict(case, request)


def raises_with_escapes(case, request) -> np.ndarray:
    """Fails with terminal escape sequences in its error (window title, clipboard, clear)."""
    raise RuntimeError("boom\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZWNobyBoaQ==\x07")
