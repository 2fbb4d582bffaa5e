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
    volume_ml_float32,
)
from segloop.core.metrics.surface_engine import (
    BoundaryDistances,
    SurfelDistances,
    assd_mm,
    boundary_distances,
    medpy_assd_mm,
    medpy_hausdorff_mm,
    medpy_percentile_hausdorff_mm,
    robust_hausdorff_mm,
    surface_dice,
    surfel_distances,
)
from segloop.core.records import EmptyMaskPolicy, SegloopError

#: The point sets a surface metric reads (:mod:`segloop.core.metrics.surface_engine`):
#: DeepMind's surfels, or medpy's boundary voxels at a connectivity, in mm or in voxels.
SURFELS = ("surfels", 0, False)
PointSource = tuple[str, int, bool]


@dataclass(frozen=True)
class SurfaceRequest:
    """What a surface metric needs from the engine for one class, so that one engine pass per
    class and point set serves every requested metric (issue 16): its points (``source``,
    :data:`SURFELS` or ``("boundary", connectivity, in_voxels)``) and which distances: every
    one up to the NSD ``tolerances_mm``, enough for the Hausdorff ``percentiles``, or all of
    them (``complete``: HD, ASSD). The engine stops searching once these are determined."""

    source: PointSource = SURFELS
    tolerances_mm: tuple[float, ...] = ()
    percentiles: tuple[float, ...] = ()
    complete: bool = False

    def merged(self, other: SurfaceRequest) -> SurfaceRequest:
        if other.source != self.source:
            raise ValueError(f"cannot merge requests for {self.source} and {other.source}")
        return SurfaceRequest(
            self.source,
            tuple(sorted(set(self.tolerances_mm) | set(other.tolerances_mm))),
            tuple(sorted(set(self.percentiles) | set(other.percentiles))),
            self.complete or other.complete,
        )


def merge_requests(requests: Sequence[SurfaceRequest]) -> dict[PointSource, SurfaceRequest]:
    """One request per point set: the union of what the metrics reading it need."""
    out: dict[PointSource, SurfaceRequest] = {}
    for request in requests:
        known = out.get(request.source)
        out[request.source] = request if known is None else known.merged(request)
    return out


@dataclass
class ClassPair:
    """One class of one step: the prediction and ground-truth masks on a crop that holds both
    (of an image of ``shape``), with what every metric of the class shares computed once
    (counts, Dice, surface distances per point set).

    ``requests``: what the step's surface metrics need per point set (:func:`merge_requests`);
    a point set nobody announced is computed completely. ``known_counts``: (pred, gt, both)
    voxel counts already known (the one-pass class statistics), else counted on the crop."""

    pred: np.ndarray
    gt: np.ndarray
    shape: Sequence[int]
    spacing_mm: tuple[float, ...]
    policy: EmptyMaskPolicy
    requests: Mapping[PointSource, SurfaceRequest] = field(default_factory=dict)
    known_counts: tuple[int, int, int] | None = None
    _boundaries: dict[tuple[int, bool], BoundaryDistances] = field(
        default_factory=dict, init=False, repr=False
    )

    @cached_property
    def counts(self) -> tuple[int, int, int]:
        """(predicted voxels, ground-truth voxels, voxels in both)."""
        if self.known_counts is not None:
            return self.known_counts
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

    def _request(self, source: PointSource) -> SurfaceRequest:
        return self.requests.get(source, SurfaceRequest(source, complete=True))

    @cached_property
    def surface(self) -> SurfelDistances:
        """The surfel distances of both surfaces (one engine pass per class)."""
        request = self._request(SURFELS)
        return surfel_distances(
            self.pred,
            self.gt,
            self.spacing_mm,
            tolerances_mm=request.tolerances_mm,
            percentiles=request.percentiles,
            complete=request.complete,
            box=tuple(slice(0, n) for n in self.pred.shape),  # the crop holds both masks
        )

    def boundary(self, connectivity: int, in_voxels: bool) -> BoundaryDistances:
        """The boundary-voxel (medpy) distances at a ``connectivity`` (1, 2, 3: 6-, 18-,
        26-neighbourhood), in mm or in voxels (one engine pass per class and kind)."""
        key = (connectivity, in_voxels)
        if key not in self._boundaries:
            request = self._request(("boundary", connectivity, in_voxels))
            spacing = (1.0,) * len(self.spacing_mm) if in_voxels else self.spacing_mm
            self._boundaries[key] = boundary_distances(
                self.pred,
                self.gt,
                spacing,
                connectivity,
                percentiles=request.percentiles,
                complete=request.complete,
            )
        return self._boundaries[key]

    def empty_overlap(self) -> float:
        return policy_overlap(self.empty, self.policy)

    def empty_distance_mm(self, in_voxels: bool = False) -> float:
        """The policy's distance for an empty mask; the image diagonal in voxels for a metric
        measured in voxels (ToothFairy3: ``np.linalg.norm(shape)``)."""
        spacing = (1.0,) * len(self.spacing_mm) if in_voxels else self.spacing_mm
        return policy_distance(self.empty, self.policy, self.shape, spacing)


@dataclass(frozen=True)
class Metric:
    """One registry entry.

    pattern: the names of the metric, a regular expression whose named groups are its
      parameters (floats), e.g. ``nsd@(?P<tolerance_mm>...)``.
    title: how a page names it, with the parameters filled in (``"NSD@{tolerance_mm:g} mm"``).
    unit: of its values ("" for fractions, "mm", "ml").
    bounds: the range of its values (None: unbounded); a normalised AUC of a metric bounded in
      [0, 1] is in [0, 1] too.
    request: for a metric that reads surface distances, what it needs of them
      (:class:`SurfaceRequest`, from its parameters); None for the others.
    compute: the value for one class; the empty-mask policy is its business.
    defined_without_gt: a metric of the prediction alone (FPV) keeps its value where the
      policy leaves a class with an empty ground truth undefined.
    """

    key: str
    pattern: str
    title: str
    unit: str
    higher_is_better: bool
    bounds: tuple[float | None, float | None]
    request: Callable[[Mapping[str, float]], SurfaceRequest] | None
    compute: Callable[[ClassPair, Mapping[str, float]], float]
    description: str
    defined_without_gt: bool = False

    def matches(self, name: str) -> dict[str, float] | None:
        match = re.fullmatch(self.pattern, name)
        if match is None:
            return None
        return {key: float(value) for key, value in match.groupdict().items()}


def _nsd(pair: ClassPair, parameters: Mapping[str, float]) -> float:
    if pair.empty:
        return pair.empty_overlap()
    return surface_dice(pair.surface, parameters["tolerance_mm"])


def _nsd_request(parameters: Mapping[str, float]) -> SurfaceRequest:
    return SurfaceRequest(tolerances_mm=(float(parameters["tolerance_mm"]),))


def _hausdorff(percentile: float) -> Callable[[ClassPair, Mapping[str, float]], float]:
    def compute(pair: ClassPair, parameters: Mapping[str, float]) -> float:
        if pair.empty:
            return pair.empty_distance_mm()
        return robust_hausdorff_mm(pair.surface, percentile)

    return compute


def _percentile_request(percentile: float) -> Callable[[Mapping[str, float]], SurfaceRequest]:
    return lambda parameters: SurfaceRequest(percentiles=(percentile,))


def _complete_request(parameters: Mapping[str, float]) -> SurfaceRequest:
    return SurfaceRequest(complete=True)


def _assd(pair: ClassPair, parameters: Mapping[str, float]) -> float:
    return pair.empty_distance_mm() if pair.empty else assd_mm(pair.surface)


#: medpy's ``connectivity`` argument for each neighbourhood a boundary-voxel metric names.
CONNECTIVITY_OF_NEIGHBOURHOOD = {6: 1, 18: 2, 26: 3}


def _voxel_boundary(
    kind: str, in_voxels: bool
) -> Callable[[ClassPair, Mapping[str, float]], float]:
    def compute(pair: ClassPair, parameters: Mapping[str, float]) -> float:
        if pair.empty:
            return pair.empty_distance_mm(in_voxels)
        connectivity = CONNECTIVITY_OF_NEIGHBOURHOOD[int(parameters["neighbourhood"])]
        distances = pair.boundary(connectivity, in_voxels)
        if kind == "hd":
            return medpy_hausdorff_mm(distances)
        if kind == "hd95":
            return medpy_percentile_hausdorff_mm(distances, 95.0)
        return medpy_assd_mm(distances, pooling="pooled")

    return compute


def _boundary_request(
    kind: str, in_voxels: bool
) -> Callable[[Mapping[str, float]], SurfaceRequest]:
    def request(parameters: Mapping[str, float]) -> SurfaceRequest:
        connectivity = CONNECTIVITY_OF_NEIGHBOURHOOD[int(parameters["neighbourhood"])]
        source = ("boundary", connectivity, in_voxels)
        if kind == "hd95":
            return SurfaceRequest(source, percentiles=(95.0,))
        return SurfaceRequest(source, complete=True)

    return request


_VOXEL_BOUNDARY_TEXT = {
    "hd": ("HD", "the largest distance of either direction"),
    "hd95": ("HD95", "95th percentile (linear) of both directions' distances pooled"),
    "assd": ("ASSD", "mean of both directions' distances pooled, each voxel weight 1"),
}


def _voxel_boundary_metrics() -> tuple[Metric, ...]:
    """HD, HD95 and ASSD on boundary voxels, as medpy and the challenges' scripts define them
    (TriALS evaluate.py's ``Surface`` class: 18-neighbourhood, mm; ToothFairy3 evaluation.py:
    medpy ``hd95``, 6-neighbourhood, voxels). Boundary = mask XOR its erosion by the
    neighbourhood, outside the image background; a boundary voxel's distance = to the nearest
    boundary voxel of the other mask, centre to centre, in mm (or voxels with ``_voxels``).
    Every voxel counts once, whatever its surface area (unlike the surfel metrics)."""
    out = []
    for kind, (title, formula) in _VOXEL_BOUNDARY_TEXT.items():
        for in_voxels in (False, True):
            suffix = "_voxels" if in_voxels else ""
            out.append(
                Metric(
                    f"{kind}_voxel_boundary{suffix}",
                    rf"{kind}_voxel_boundary_n(?P<neighbourhood>6|18|26){suffix}",
                    f"{title} (boundary voxels, {{neighbourhood:g}}-neighbourhood)",
                    "voxels" if in_voxels else "mm",
                    False,
                    (0.0, None),
                    _boundary_request(kind, in_voxels),
                    _voxel_boundary(kind, in_voxels),
                    f"medpy-style {title}: {formula}; boundary voxels from an erosion by the "
                    f"named neighbourhood{' (voxel units)' if in_voxels else ''}",
                )
            )
    return tuple(out)


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
        None,
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
        _nsd_request,
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
        _percentile_request(95.0),
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
        _complete_request,
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
        _complete_request,
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
        None,
        lambda pair, parameters: volume_ml(untouched_voxels(pair.pred, pair.gt), pair.spacing_mm),
        "false-positive volume: predicted 18-connected components touching no ground truth",
        defined_without_gt=True,
    ),
    Metric(
        "fnv",
        "fnv",
        "FNV",
        "ml",
        False,
        (0.0, None),
        None,
        lambda pair, parameters: volume_ml(untouched_voxels(pair.gt, pair.pred), pair.spacing_mm),
        "false-negative volume: ground-truth 18-connected components no prediction touches",
    ),
    Metric(
        "fpv_f32",
        "fpv_f32",
        "FPV",
        "ml",
        False,
        (0.0, None),
        None,
        lambda pair, parameters: (
            untouched_voxels(pair.pred, pair.gt) * volume_ml_float32(pair.spacing_mm)
        ),
        "FPV with autoPET's voxel volume: the float32 product x*y*z/1000 of the spacing",
        defined_without_gt=True,
    ),
    Metric(
        "fnv_f32",
        "fnv_f32",
        "FNV",
        "ml",
        False,
        (0.0, None),
        None,
        lambda pair, parameters: (
            untouched_voxels(pair.gt, pair.pred) * volume_ml_float32(pair.spacing_mm)
        ),
        "FNV with autoPET's voxel volume: the float32 product x*y*z/1000 of the spacing",
    ),
    *_voxel_boundary_metrics(),
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

    @property
    def surface_request(self) -> SurfaceRequest | None:
        """What it needs of a class's surface distances (None: it reads none)."""
        return None if self.metric.request is None else self.metric.request(self.parameters)

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
