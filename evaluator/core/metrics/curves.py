"""How a step curve becomes a case's AUC (raw and normalised) and Final value."""

from __future__ import annotations

import math
from collections.abc import Sequence

from segloop.core.metrics.scoring import finite_or_none
from segloop.core.records import SegloopError


def auc(values: Sequence[float | None], x: Sequence[float]) -> tuple[float | None, float | None]:
    """Trapezoid area under ``values`` over ``x`` (SPEC: AUC of the step curve).

    Returns (raw, normalised): raw = sum_i (x[i+1] - x[i]) * (v[i] + v[i+1]) / 2 on the task's
    x-axis (as the challenge reported it); normalised = raw / (x[-1] - x[0]). A single point:
    raw 0, normalised = the value. Any None or non-finite value: (None, None).
    """
    if len(values) != len(x):
        raise SegloopError(f"AUC: {len(values)} values but {len(x)} x positions")
    if len(values) == 0:
        raise SegloopError("AUC: the curve has no points")
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None, None
    ys = [float(v) for v in values]  # type: ignore[arg-type]
    xs = [float(v) for v in x]
    if len(ys) == 1:
        return 0.0, ys[0]
    raw = 0.0
    for i in range(len(ys) - 1):
        raw += (xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2.0
    span = xs[-1] - xs[0]
    if span == 0:
        raise SegloopError(f"AUC: x positions {xs} span no range")
    return raw, raw / span


#: The order in which a curve takes its steps: "numeric" (0, 1, 2, ...) or "text", the order
#: of the step numbers as text (0, 1, 10, 2, ..., 9), in which TriALS' evaluate.py
#: (``aggregate_group_metrics``, l. 338-357) integrated its ``sorted`` per-step files.
STEP_ORDERS = ("numeric", "text")


def ordered_steps(steps: Sequence[int], step_order: str = "numeric") -> list[int]:
    """``steps`` in the curve's ``step_order`` (:data:`STEP_ORDERS`)."""
    if step_order == "text":
        return sorted((int(s) for s in steps), key=str)
    if step_order != "numeric":
        raise SegloopError(f"step order must be one of {STEP_ORDERS}, not {step_order!r}")
    return sorted(int(s) for s in steps)


def summarise_curve(
    values_by_step: Sequence[float | None],
    auc_steps: Sequence[int],
    auc_x: Sequence[float],
    step_order: str = "numeric",
) -> dict[str, float | None]:
    """AUC (raw and normalised) over the values at ``auc_steps`` placed at ``auc_x``, and Final
    = the last step's value (SPEC Metrics). None wherever a value is missing or not finite.
    ``step_order="text"``: the steps are taken in text order (TriALS' script), so the k-th x
    gets the k-th step in that order and Final is the last step in it (9 of 0..10)."""
    if len(values_by_step) == 0:
        raise SegloopError("curve summary: no steps")
    missing = [s for s in auc_steps if not 0 <= int(s) < len(values_by_step)]
    if missing:
        raise SegloopError(
            f"curve summary: AUC steps {missing} are outside the {len(values_by_step)} recorded steps"
        )
    steps = ordered_steps(auc_steps, step_order)
    raw, normalised = auc([values_by_step[s] for s in steps], auc_x)
    final = values_by_step[ordered_steps(range(len(values_by_step)), step_order)[-1]]
    return {
        "auc_raw": raw,
        "auc_normalised": normalised,
        "final": finite_or_none(final),
    }
