"""The metric registry: every metric segloop computes is one entry of :data:`METRICS`.

An entry says how the metric's names look (``nsd@2`` is NSD with a 2 mm tolerance), its unit,
its direction, its bounds, how an empty mask scores, and the function that computes it for one
class from a :class:`ClassPair`. Adding a metric is adding an entry here (and, if it needs new
arithmetic, the function it names). Everything else reads the registry: the names a task or
``--metrics`` may use, which way a leaderboard ranks, the units on its axes and columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from segloop.core.metrics.binary import (
    dice_from_counts,
    empty_state,
    policy_distance,
    policy_overlap,
    untouched_voxels,
    volume_ml,
)
from segloop.core.metrics.surface import (
    SurfaceDistances,
    assd_from,
    hausdorff_from,
    nsd_from,
    surface_distances_crop,
)
from segloop.core.records import EmptyMaskPolicy, SegloopError


@dataclass
class ClassPair:
    """One class of one step: the prediction and ground-truth masks on a crop that holds both
    (``origin``: its first voxel in the full ``shape``), with what every metric of the class
    shares computed once (counts, Dice, surface distances)."""

    pred: np.ndarray
    gt: np.ndarray
    origin: Sequence[int]
    shape: Sequence[int]
    spacing_mm: tuple[float, ...]
    policy: EmptyMaskPolicy
    surface_reach_mm: float | None = None  # no surface metric looks farther than this

    @cached_property
    def counts(self) -> tuple[int, int, int]:
        """(predicted voxels, ground-truth voxels, voxels in both)."""
        pred_count = int(np.count_nonzero(self.pred))
        gt_count = int(np.count_nonzero(self.gt))
        both = int(np.count_nonzero(self.pred & self.gt)) if pred_count and gt_count else 0
        return pred_count, gt_count, both

    @cached_property
    def empty(self) -> str | None:
        """ "both" or "one" when a mask is empty (the policy decides), else None."""
        return empty_state(*self.counts[:2])

    @cached_property
    def dice(self) -> float:
        return dice_from_counts(*self.counts, self.policy)

    @cached_property
    def surface(self) -> SurfaceDistances:
        """The surfel distances of both surfaces (computed once per class)."""
        return surface_distances_crop(
            self.pred, self.gt, self.origin, self.shape, self.spacing_mm, self.surface_reach_mm
        )

    def empty_overlap(self) -> float:
        return policy_overlap(self.empty, self.policy)

    def empty_distance_mm(self) -> float:
        return policy_distance(self.empty, self.policy, self.shape, self.spacing_mm)


@dataclass(frozen=True)
class Metric:
    """One registry entry.

    pattern: the names of the metric, a regular expression whose named groups are its
      parameters (floats), e.g. ``nsd@(?P<tolerance_mm>...)``.
    title: how a page names it, with the parameters filled in (``"NSD@{tolerance_mm:g} mm"``).
    unit: of its values ("" for fractions, "mm", "ml").
    bounds: the range of its values (None: unbounded); a normalised AUC of a metric bounded in
      [0, 1] is in [0, 1] too.
    surface: whether it reads the class's surface distances (computed once for all of them).
    compute: the value for one class; the empty-mask policy is its business.
    """

    key: str
    pattern: str
    title: str
    unit: str
    higher_is_better: bool
    bounds: tuple[float | None, float | None]
    surface: bool
    compute: Callable[[ClassPair, Mapping[str, float]], float]
    description: str

    def matches(self, name: str) -> dict[str, float] | None:
        match = re.fullmatch(self.pattern, name)
        if match is None:
            return None
        return {key: float(value) for key, value in match.groupdict().items()}


def _nsd(pair: ClassPair, parameters: Mapping[str, float]) -> float:
    if pair.empty:
        return pair.empty_overlap()
    return nsd_from(pair.surface, parameters["tolerance_mm"])


def _hausdorff(percentile: float) -> Callable[[ClassPair, Mapping[str, float]], float]:
    def compute(pair: ClassPair, parameters: Mapping[str, float]) -> float:
        if pair.empty:
            return pair.empty_distance_mm()
        return hausdorff_from(pair.surface, percentile)

    return compute


def _assd(pair: ClassPair, parameters: Mapping[str, float]) -> float:
    return pair.empty_distance_mm() if pair.empty else assd_from(pair.surface)


_NUMBER = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"

#: Every metric segloop computes (SPEC "Metrics"; docs/architecture.md: "add a metric").
METRICS: tuple[Metric, ...] = (
    Metric(
        "dice",
        "dice",
        "Dice",
        "",
        True,
        (0.0, 1.0),
        False,
        lambda pair, parameters: pair.dice,
        "2 |P & G| / (|P| + |G|), from voxel counts",
    ),
    Metric(
        "nsd",
        rf"nsd@(?P<tolerance_mm>{_NUMBER})",
        "NSD@{tolerance_mm:g} mm",
        "",
        True,
        (0.0, 1.0),
        True,
        _nsd,
        "normalised surface Dice at a tolerance in mm (DeepMind surfels, area-weighted)",
    ),
    Metric(
        "hd95",
        "hd95",
        "HD95",
        "mm",
        False,
        (0.0, None),
        True,
        _hausdorff(95.0),
        "95th percentile Hausdorff distance, area-weighted per direction, max of both",
    ),
    Metric(
        "hd",
        "hd",
        "HD",
        "mm",
        False,
        (0.0, None),
        True,
        _hausdorff(100.0),
        "Hausdorff distance (the largest surfel distance of either surface)",
    ),
    Metric(
        "assd",
        "assd",
        "ASSD",
        "mm",
        False,
        (0.0, None),
        True,
        _assd,
        "average symmetric surface distance, surfels weighted by area",
    ),
    Metric(
        "fpv",
        "fpv",
        "FPV",
        "ml",
        False,
        (0.0, None),
        False,
        lambda pair, parameters: volume_ml(untouched_voxels(pair.pred, pair.gt), pair.spacing_mm),
        "false-positive volume: predicted 18-connected components touching no ground truth",
    ),
    Metric(
        "fnv",
        "fnv",
        "FNV",
        "ml",
        False,
        (0.0, None),
        False,
        lambda pair, parameters: volume_ml(untouched_voxels(pair.gt, pair.pred), pair.spacing_mm),
        "false-negative volume: ground-truth 18-connected components no prediction touches",
    ),
)

METRIC_NAMES_HELP = ", ".join(
    re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", metric.pattern) for metric in METRICS
)


@dataclass(frozen=True)
class MetricSpec:
    """A metric name as a task or ``--metrics`` gives it, parsed: its registry entry and
    parameters (e.g. ``nsd@2``: the NSD entry, ``tolerance_mm`` 2)."""

    name: str
    metric: Metric
    parameters: Mapping[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.metric.key

    @property
    def tolerance_mm(self) -> float | None:
        return self.parameters.get("tolerance_mm")

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better

    @property
    def title(self) -> str:
        return self.metric.title.format(**self.parameters)

    @property
    def unit(self) -> str:
        return self.metric.unit

    def value(self, pair: ClassPair) -> float:
        return self.metric.compute(pair, self.parameters)


def parse_metric_name(name: str) -> MetricSpec:
    """The registry entry and parameters of a metric name ("dice", "nsd@2", "hd95", ...)."""
    text = str(name).strip().lower()
    for metric in METRICS:
        parameters = metric.matches(text)
        if parameters is None:
            continue
        if not all(math.isfinite(v) and v >= 0 for v in parameters.values()):
            raise SegloopError(f"metric {name!r}: its parameters must be finite numbers >= 0")
        return MetricSpec(str(name), metric, parameters)
    if text.startswith("nsd@"):
        raise SegloopError(
            f"metric {name!r}: the NSD tolerance must be a finite number of mm >= 0 (e.g. nsd@2)"
        )
    raise SegloopError(f"unknown metric {name!r}; known metrics: {METRIC_NAMES_HELP}")


def higher_is_better(name: str) -> bool:
    """True for overlap metrics (Dice, NSD), False for distances and error volumes."""
    return parse_metric_name(name).higher_is_better
