"""Shared test set-up.

CI sets SEGLOOP_REQUIRE_DOCKER=1 and SEGLOOP_REQUIRE_BROWSER=1: then a Docker or browser test
that would be skipped (no engine, no chromium) fails instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRED_MARKERS = {
    "docker": "SEGLOOP_REQUIRE_DOCKER",
    "browser": "SEGLOOP_REQUIRE_BROWSER",
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped:
        return
    for marker, variable in REQUIRED_MARKERS.items():
        if item.get_closest_marker(marker) and os.environ.get(variable) == "1":
            report.outcome = "failed"
            report.longrepr = f"{marker} test skipped although {variable}=1: {report.longrepr}"
