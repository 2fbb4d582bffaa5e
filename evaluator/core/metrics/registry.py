"""Metric names: what ``dice``, ``nsd@2``, ``hd95`` ... mean, their units and directions."""

from __future__ import annotations

import math
from dataclasses import dataclass

from segloop.core.records import SegloopError

OVERLAP_METRICS = ("dice", "nsd")


DISTANCE_METRICS = ("hd95", "hd", "assd")


VOLUME_METRICS = ("fpv", "fnv")


SURFACE_KINDS = ("nsd", "hd95", "hd", "assd")


METRIC_NAMES_HELP = "dice, nsd@<tolerance mm> (e.g. nsd@2), hd95, hd, assd, fpv, fnv"


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name.

    kind: "dice", "nsd", "hd95", "hd", "assd", "fpv" or "fnv".
    tolerance_mm: the NSD tolerance (only for "nsd").
    percentile: the Hausdorff percentile (95 for "hd95", 100 for "hd").
    """

    name: str
    kind: str
    tolerance_mm: float | None = None
    percentile: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind in OVERLAP_METRICS


def parse_metric_name(name: str) -> MetricSpec:
    """Parse "dice", "nsd@2" (NSD at 2 mm; "nsd@1.5" works), "hd95", "hd", "assd", "fpv", "fnv"."""
    text = str(name).strip().lower()
    if text in ("dice", "assd", "fpv", "fnv"):
        return MetricSpec(name=str(name), kind=text)
    if text == "hd95":
        return MetricSpec(name=str(name), kind="hd95", percentile=95.0)
    if text == "hd":
        return MetricSpec(name=str(name), kind="hd", percentile=100.0)
    if text.startswith("nsd@"):
        try:
            tolerance_mm = float(text[4:])
        except ValueError:
            tolerance_mm = math.nan
        if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
            raise SegloopError(
                f"metric {name!r}: the NSD tolerance must be a finite number of mm >= 0 (e.g. nsd@2)"
            )
        return MetricSpec(name=str(name), kind="nsd", tolerance_mm=tolerance_mm)
    raise SegloopError(f"unknown metric {name!r}; known metrics: {METRIC_NAMES_HELP}")


def higher_is_better(name: str) -> bool:
    """True for overlap metrics (Dice, NSD), False for distances and error volumes."""
    return parse_metric_name(name).higher_is_better
