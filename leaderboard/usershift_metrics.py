"""User-shift metrics M1-M7 (thesis §5.2.1.2, eqs. 21-27): how far a robot user is from people.

Notation of the thesis: Ω the images (cases), 𝒜 the annotators, L the binary ground truth of an
image, clicks(A, I) a user's clicks on image I and dice(A, I)[i] the Dice after its i-th click
(i = 0: before any click). Clicks are voxel indices (z, y, x) with a polarity.

Which clicks. The study's users gave one lesion (positive) and one background (negative) click
per step; eqs. 21-24 look at "the" clicks of a user and ask whether L[c] = 1, with N = 10 = the
lesion clicks per image. We read them as the positive clicks (``lesion_clicks``): a background
click outside the label is no disagreement, and the thesis's "about 25 % of annotator clicks
outside the ground truth" (and R5's off-label clicks) are about lesion clicks. Negative clicks
are ignored by M1-M4; M5 and M7 use Dice curves only. Boxes, scribbles and polygons are not
clicks and are ignored. With several classes ``class_id`` picks one (its label ``== class_id``
and its positive clicks); None merges every class (``label != 0``), the thesis's lesion task.

Per-image normalisation. Where an equation divides by the number of terms of an image (10 clicks,
|C̄(A, I)|, |Ĉ(A, I)|, min(...), 10 steps), we divide by the number of terms actually present,
which equals the thesis's constants in its studies. An image whose term has nothing to average
(no positive click for M1, no agreeing click for M2, no disagreeing click for M4, no component
or no click for M3, no defined step pair for M5/M7) contributes the empty sum 0 and still counts
in 1/|Ω| (``undefined_case="zero"``, the equations read literally: this is how R1-R4, whose
lesion clicks never leave the label, get an M4 at all and hence an M6, Table 10);
``undefined_case="skip"`` leaves such images out of the mean instead (NaN when no image is left).
Use "skip" (or drop the images) for datasets with empty labels, which the thesis's Ω never had.

Distances are in voxel units (``spacing_mm=None``, as the robot users' EDT) or, with a spacing
(z, y, x), in mm; outside the image counts as outside the label (segloop's convention for EDT
centres: a lesion cut by the field of view has its boundary there; ``LabelIndex`` can turn it
off).

Results are fractions in [0, 1] (M4 in 1/voxel or 1/mm, <= 1 in voxel units); the thesis's
tables show them x 100 (``format_table`` does too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from segloop.core.records import Interaction, SegloopError
from segloop.protocols.base import component_edt, whole_mask

UNDEFINED_CASE = ("zero", "skip")
METRICS = ("m1", "m2", "m3", "m4", "m5")


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, eq=False)
class Session:
    """One source's interactions on one case: clicks (z, y, x), their polarity, step and class,
    and the Dice curve of the model under them (step 0 first; None when not known)."""

    case_id: str
    clicks_zyx: np.ndarray  # (n, 3) int64
    positive: np.ndarray  # (n,) bool
    steps: np.ndarray  # (n,) int64
    class_ids: np.ndarray  # (n,) int64
    dice: np.ndarray | None = None  # (steps,) float64, NaN where undefined

    @classmethod
    def from_interactions(
        cls,
        case_id: str,
        interactions: Iterable[Interaction],
        dice: Sequence[float | None] | None = None,
    ) -> Session:
        """The clicks of ``interactions`` (other kinds dropped) and an optional Dice curve."""
        clicks = [i for i in interactions if i.kind == "click"]
        curve = None
        if dice is not None:
            curve = np.array([np.nan if v is None else float(v) for v in dice], dtype=np.float64)
        return cls(
            case_id,
            np.array([i.coords[0] for i in clicks], dtype=np.int64).reshape(-1, 3),
            np.array([i.positive for i in clicks], dtype=bool),
            np.array([i.step for i in clicks], dtype=np.int64),
            np.array([i.class_id for i in clicks], dtype=np.int64),
            curve,
        )

    def lesion_clicks(self, class_id: int | None = None) -> np.ndarray:
        """The positive clicks (of ``class_id``, or of every class), (n, 3)."""
        keep = self.positive if class_id is None else self.positive & (self.class_ids == class_id)
        return self.clicks_zyx[keep]


def _points(clicks_zyx: np.ndarray | Sequence[Sequence[int]], shape: Sequence[int]) -> np.ndarray:
    """Clicks as an (n, 3) int64 array, every one inside the image (else a SegloopError)."""
    points = np.asarray(clicks_zyx, dtype=np.int64).reshape(-1, len(shape))
    outside = ~np.all((points >= 0) & (points < np.asarray(shape)), axis=1)
    if outside.any():
        raise SegloopError(
            f"click (z, y, x) = {tuple(int(v) for v in points[outside][0])} lies outside the "
            f"label of shape {tuple(shape)}"
        )
    return points


def _scale(spacing_mm: Sequence[float] | None, ndim: int) -> np.ndarray:
    return np.ones(ndim) if spacing_mm is None else np.asarray(spacing_mm, dtype=np.float64)


# --------------------------------------------------------------------------- per-image terms
class LabelIndex:
    """What eqs. 22-24 need of one binary label, computed once and shared by every source's
    clicks on the case: the label's bounding-box crop, its EDT (distance to the nearest voxel
    outside L, image border as outside unless told otherwise), its connected components, each
    component's centre set (computed when first asked) and a k-d tree of its surface voxels
    (built when first asked). Distances in voxel units, or in mm with ``spacing_mm``."""

    def __init__(
        self,
        label: np.ndarray,
        spacing_mm: Sequence[float] | None = None,
        image_border_is_background: bool = True,
        connectivity: int = 26,
    ) -> None:
        self.mask = np.asarray(label, dtype=bool)
        self.scale = _scale(spacing_mm, self.mask.ndim)
        self.spacing_mm = spacing_mm
        self.image_border_is_background = image_border_is_background
        self.crop = whole_mask(self.mask)
        self.components = 0
        if self.crop is not None:
            self.offset = np.asarray(self.crop.offset)
            self.labels, self.components = cc3d.connected_components(
                np.ascontiguousarray(self.crop.mask).view(np.uint8),
                connectivity=connectivity,
                return_N=True,
            )
        self._distances: np.ndarray | None = None
        self._centres: dict[int, np.ndarray] = {}
        self._tree: cKDTree | None = None

    @property
    def distances(self) -> np.ndarray:
        """EDT of L on the crop. The EDT of the whole label equals each component's own EDT on
        that component: its nearest outside voxel is never in another component (the voxel
        before it would touch both)."""
        if self._distances is None:
            assert self.crop is not None
            self._distances = component_edt(
                self.crop, self.spacing_mm, self.image_border_is_background
            )
        return self._distances

    def local(self, points: np.ndarray) -> np.ndarray:
        return points - self.offset

    def centre(self, component: int) -> np.ndarray:
        """The crop voxels of maximal EDT in a component (R1's centre with all its ties)."""
        if component not in self._centres:
            inside = self.labels == component
            peak = self.distances[inside].max()
            self._centres[component] = np.argwhere(inside & (self.distances == peak))
        return self._centres[component]

    def nearest_label_distance(self, points: np.ndarray) -> np.ndarray:
        """d(c, L) of points outside L: distance to the nearest label voxel (inf: empty label).

        The nearest label voxel of an outside point is a surface voxel (one with a 6-neighbour
        outside L): a step from it towards the point would otherwise be a nearer label voxel.
        """
        if self.crop is None:
            return np.full(len(points), np.inf)
        if self._tree is None:
            padded = np.pad(self.crop.mask, 1)
            surface = padded & ~ndimage.binary_erosion(padded)
            voxels = np.argwhere(surface[tuple(slice(1, -1) for _ in range(self.mask.ndim))])
            self._tree = cKDTree((voxels + self.offset) * self.scale)
        distances, _ = self._tree.query(points * self.scale)
        return np.asarray(distances, dtype=np.float64)


def _index(label: np.ndarray | LabelIndex, spacing_mm: Sequence[float] | None) -> LabelIndex:
    return label if isinstance(label, LabelIndex) else LabelIndex(label, spacing_mm)


def label_agreement(clicks_zyx: np.ndarray, label: np.ndarray | LabelIndex) -> float:
    """Eq. 21's term of one image: (1/n) sum_i [L[c_i] = 1], the fraction of the clicks inside
    the label. NaN without clicks."""
    mask = label.mask if isinstance(label, LabelIndex) else np.asarray(label, dtype=bool)
    points = _points(clicks_zyx, mask.shape)
    if len(points) == 0:
        return math.nan
    return float(np.mean(mask[tuple(points.T)]))


def centerness_terms(
    clicks_zyx: np.ndarray,
    label: np.ndarray | LabelIndex,
    spacing_mm: Sequence[float] | None = None,
) -> np.ndarray:
    """Eq. 22's summands, one per agreeing click c (L[c] = 1, in click order):

        bound(c, L) / (bound(c, L) + cent_dist(c, L))

    bound: the distance from c to the nearest voxel outside L (the EDT of L at c; >= 1 voxel, so
    the term is never 0/0; the image border counts as outside). cent_dist: the distance from c to
    the centre of the 26-connected component of L holding c, the centre being the set of the
    component's voxels of maximal EDT (the EDT argmax of R1's centre click,
    ``segloop.protocols.base.center_point``, with all its ties; the equation's "minimum distance to the
    center"). 1 at a centre, -> 0 at the boundary; a single-voxel component gives 1. An empty
    array when no click agrees. ``label``: a label or its ``LabelIndex`` (which fixes units).
    """
    index = _index(label, spacing_mm)
    points = _points(clicks_zyx, index.mask.shape)
    agree = points[index.mask[tuple(points.T)]] if len(points) else points
    if len(agree) == 0:
        return np.zeros(0)
    terms = []
    for point in index.local(agree):
        bound = float(index.distances[tuple(point)])
        centre = index.centre(int(index.labels[tuple(point)]))
        cent_dist = float(np.min(np.linalg.norm((centre - point) * index.scale, axis=1)))
        terms.append(bound / (bound + cent_dist))
    return np.asarray(terms, dtype=np.float64)


def centerness(
    clicks_zyx: np.ndarray,
    label: np.ndarray | LabelIndex,
    spacing_mm: Sequence[float] | None = None,
) -> float:
    """Eq. 22's term of one image: the mean of ``centerness_terms`` over the agreeing clicks
    C̄(A, I); NaN when no click agrees."""
    terms = centerness_terms(clicks_zyx, label, spacing_mm)
    return float(terms.mean()) if terms.size else math.nan


def click_diversity(clicks_zyx: np.ndarray, label: np.ndarray | LabelIndex) -> float:
    """Eq. 23's term of one image:

        |{components of L holding a click}| / min(|components(L)|, |clicks|)

    26-connected components. 1 when the clicks reach as many components as they could; a label
    with one component gives 1 if any click lies in it, else 0. NaN without a component (empty
    label) or without a click (0/0).
    """
    index = _index(label, None)
    points = _points(clicks_zyx, index.mask.shape)
    if index.components == 0 or len(points) == 0:
        return math.nan
    local = index.local(points[index.mask[tuple(points.T)]])
    reached = len({int(v) for v in index.labels[tuple(local.T)]}) if len(local) else 0
    return reached / min(int(index.components), len(points))


def label_proximity_terms(
    clicks_zyx: np.ndarray,
    label: np.ndarray | LabelIndex,
    spacing_mm: Sequence[float] | None = None,
) -> np.ndarray:
    """Eq. 24's summands, one per disagreeing click c (L[c] = 0, in click order): 1 / d(c, L),
    d the Euclidean distance to the nearest label voxel (>= 1 voxel). An empty label is
    infinitely far: 0. An empty array when no click disagrees.
    """
    index = _index(label, spacing_mm)
    points = _points(clicks_zyx, index.mask.shape)
    disagree = points[~index.mask[tuple(points.T)]] if len(points) else points
    if len(disagree) == 0:
        return np.zeros(0)
    return 1.0 / index.nearest_label_distance(disagree)


def label_proximity(
    clicks_zyx: np.ndarray,
    label: np.ndarray | LabelIndex,
    spacing_mm: Sequence[float] | None = None,
) -> float:
    """Eq. 24's term of one image: the mean of ``label_proximity_terms`` over the disagreeing
    clicks Ĉ(A, I); NaN when no click disagrees."""
    terms = label_proximity_terms(clicks_zyx, label, spacing_mm)
    return float(terms.mean()) if terms.size else math.nan


def consistent_improvement(dice_curve: Sequence[float]) -> float:
    """Eq. 25's term of one image: the fraction of steps i >= 1 with dice[i] > dice[i - 1]
    (strictly: a plateau is no improvement). Pairs with an undefined (NaN) Dice are left out;
    NaN when none is left (fewer than two steps, or all undefined)."""
    curve = np.asarray(dice_curve, dtype=np.float64)
    if curve.size < 2:
        return math.nan
    before, after = curve[:-1], curve[1:]
    defined = np.isfinite(before) & np.isfinite(after)
    if not defined.any():
        return math.nan
    return float(np.mean(after[defined] > before[defined]))


def dice_difference(
    robot_curve: Sequence[float], annotator_curves: Sequence[Sequence[float]], first_step: int = 1
) -> float:
    """Eq. 27's term of one image: the mean over annotators A and steps i >= ``first_step`` of
    |dice(A, I)[i] - dice(R, I)[i]| (i = 1..10 in the thesis: step 0, before any click, is the
    same model output for every user). Pairs with a NaN Dice are left out; NaN when none is left.
    The curves must have the same length."""
    robot = np.asarray(robot_curve, dtype=np.float64)
    gaps = []
    for curve in annotator_curves:
        other = np.asarray(curve, dtype=np.float64)
        if other.shape != robot.shape:
            raise SegloopError(
                f"Dice curves of {other.size} and {robot.size} steps cannot be compared"
            )
        gaps.append(np.abs(other[first_step:] - robot[first_step:]))
    if not gaps:
        return math.nan
    values = np.concatenate(gaps)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


# --------------------------------------------------------------------------- over a dataset
def dataset_mean(per_case: Sequence[float], undefined_case: str = "zero") -> float:
    """(1/|Ω|) sum over images of a per-image term; undefined (NaN) terms count 0 ("zero", the
    equations' empty sums) or are left out ("skip"). NaN for an empty Ω (or nothing left)."""
    if undefined_case not in UNDEFINED_CASE:
        raise SegloopError(f"undefined_case must be zero or skip, not {undefined_case!r}")
    values = np.asarray(per_case, dtype=np.float64)
    if undefined_case == "zero":
        values = np.where(np.isnan(values), 0.0, values)
    else:
        values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def m1_label_agreement(
    clicks: Sequence[np.ndarray], labels: Sequence[np.ndarray], undefined_case: str = "zero"
) -> float:
    """M1 (eq. 21), label agreement: the mean over images of the fraction of the (lesion) clicks
    that lie inside the label. In [0, 1]."""
    terms = [label_agreement(c, lab) for c, lab in zip(clicks, labels, strict=True)]
    return dataset_mean(terms, undefined_case)


def m2_centerness(
    clicks: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spacing_mm: Sequence[Sequence[float] | None] | None = None,
    undefined_case: str = "zero",
) -> float:
    """M2 (eq. 22), centerness: the mean over images of bound / (bound + cent_dist) of the
    agreeing clicks (``centerness_terms``). In [0, 1]: 1 = clicks at the centres."""
    spacings = spacing_mm if spacing_mm is not None else [None] * len(labels)
    terms = [centerness(c, lab, s) for c, lab, s in zip(clicks, labels, spacings, strict=True)]
    return dataset_mean(terms, undefined_case)


def m3_click_diversity(
    clicks: Sequence[np.ndarray], labels: Sequence[np.ndarray], undefined_case: str = "zero"
) -> float:
    """M3 (eq. 23), click diversity: the mean over images of the share of the reachable label
    components that the clicks reach (``click_diversity``). In [0, 1]."""
    terms = [click_diversity(c, lab) for c, lab in zip(clicks, labels, strict=True)]
    return dataset_mean(terms, undefined_case)


def m4_label_proximity(
    clicks: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spacing_mm: Sequence[Sequence[float] | None] | None = None,
    undefined_case: str = "zero",
) -> float:
    """M4 (eq. 24), label proximity: the mean over images of 1 / d(c, L) over the clicks outside
    the label (``label_proximity_terms``). 1/voxel (or 1/mm); high = disagreeing clicks hug the
    label (ambiguous edges), low = far away (unannotated regions); 0 when none disagrees."""
    spacings = spacing_mm if spacing_mm is not None else [None] * len(labels)
    terms = [label_proximity(c, lab, s) for c, lab, s in zip(clicks, labels, spacings, strict=True)]
    return dataset_mean(terms, undefined_case)


def m5_consistent_improvement(
    dice_curves: Sequence[Sequence[float]], undefined_case: str = "zero"
) -> float:
    """M5 (eq. 25), consistent improvement: the mean over images of the fraction of clicks after
    which the Dice strictly rose. In [0, 1]."""
    return dataset_mean([consistent_improvement(c) for c in dice_curves], undefined_case)


def m6_user_shift(robot: Sequence[float], annotators: Sequence[Sequence[float]]) -> float:
    """M6 (eq. 26), user shift: (1/|𝒜|)(1/5) sum_A sum_i |M_i(R) - M_i(A)| over M1-M5.

    ``robot``: its (M1, ..., M5); ``annotators``: one such vector each. Mixed units as in the
    thesis (fractions and M4's 1/voxel). NaN when any value is NaN or there is no annotator.
    """
    reference = np.asarray(robot, dtype=np.float64)
    others = [np.asarray(a, dtype=np.float64) for a in annotators]
    if any(v.shape != (5,) for v in (reference, *others)):
        raise SegloopError("M6 compares the five metrics M1-M5 of each user")
    if not others:
        return math.nan
    return float(np.mean(np.abs(np.stack(others) - reference)))


def m7_dice_difference(
    robot: Mapping[str, Sequence[float]],
    annotators: Sequence[Mapping[str, Sequence[float]]],
    first_step: int = 1,
    undefined_case: str = "zero",
) -> float:
    """M7 (eq. 27), Dice difference: (1/|Ω|)(1/|𝒜|)(1/10) sum_I sum_A sum_i |dice(A, I)[i] -
    dice(R, I)[i]|, Dice as a fraction (the thesis shows x 100, "Dice points per click").

    ``robot`` and each annotator: {case id: Dice curve}; Ω is the annotators' cases (every
    annotator and the robot must have each of them, on the same model).
    """
    if not annotators:
        return math.nan
    cases = sorted(set.intersection(*(set(a) for a in annotators)))
    missing = [c for c in cases if c not in robot]
    if missing:
        raise SegloopError(f"M7: no Dice curve of the robot user for case(s) {missing[:5]}")
    terms = [dice_difference(robot[c], [a[c] for a in annotators], first_step) for c in cases]
    return dataset_mean(terms, undefined_case)


# --------------------------------------------------------------------------- one source
LabelSource = Mapping[str, np.ndarray] | Callable[[str], np.ndarray]


def label_getter(labels: LabelSource) -> Callable[[str], np.ndarray]:
    if isinstance(labels, Mapping):
        return lambda case_id: labels[case_id]
    return labels


@dataclass(frozen=True)
class CaseTerms:
    """The per-image terms of eqs. 21-25 for one source on one case (NaN: undefined)."""

    case_id: str
    m1: float
    m2: float
    m3: float
    m4: float
    m5: float
    lesion_clicks: int


def case_terms(
    session: Session,
    label: np.ndarray | LabelIndex,
    class_id: int | None = None,
    spacing_mm: Sequence[float] | None = None,
) -> CaseTerms:
    """Eqs. 21-25's terms of one session on its case (module docstring: which clicks).

    ``label``: the case's label map, or a ``LabelIndex`` of its binary mask for ``class_id``
    (shared by the sources of a table: computed once per case).
    """
    index = (
        label
        if isinstance(label, LabelIndex)
        else LabelIndex(foreground(label, class_id), spacing_mm)
    )
    clicks = session.lesion_clicks(class_id)
    return CaseTerms(
        session.case_id,
        label_agreement(clicks, index),
        centerness(clicks, index),
        click_diversity(clicks, index),
        label_proximity(clicks, index),
        consistent_improvement(session.dice) if session.dice is not None else math.nan,
        int(len(clicks)),
    )


def foreground(label: np.ndarray, class_id: int | None = None) -> np.ndarray:
    """The binary label L of the metrics: ``label == class_id``, or every class (``!= 0``)."""
    label = np.asarray(label)
    return (label != 0) if class_id is None else (label == class_id)
