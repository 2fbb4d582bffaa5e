"""The thesis's iterative robot users R1-R4 (§5.2.1.1, eqs. 17-20), one lesion and one background
click per class and step.

Steps. Step 0 gives no interaction (the model's Dice before any click is ``dice[0]``, the
``i - 1 = 0`` term of eq. 25). The first click step (``first_step``, default 1 = the thesis's
click i = 1) draws from the ground truth; every later step s draws from the error of the
model's prediction of step s - 1 (``err(I)[i - 1]``). With the default 11 steps (0..10) a user
gives the thesis's 10 clicks of each kind.

Lesion and background clicks (the note under eq. 20): per class c the lesion click comes from
the under-segmentation ``(label == c) & (prediction != c)`` and is positive, the background
click from the over-segmentation ``(prediction == c) & (label != c)`` and is negative; each is
drawn independently and none is given when its region is empty (a perfect prediction gets no
click). At the first click step, eqs. 17-20 use "the label": for the lesion click the class's
ground truth ``label == c``; for the background click we read the background class's own label,
``label != c`` (``initial_background="label"``, every click keeps the polarity of its region);
``initial_background="none"`` gives no background click at that step instead.

- R1 (eq. 17): the centre of the largest 26-connected component of the region. ``center`` is
  the EDT argmax (``segloop.protocols.base.center_point``, ties: first voxel in C order): unlike a
  centroid it always lies in the component. EDT in voxel units unless ``edt_spacing_aware``.
- R2 (eq. 18): the first click uniform over the region; later clicks drawn with probability
  proportional to the model's normalised epistemic uncertainty u (values in [0, 1]) of its last
  prediction, restricted to the class's ground truth (lesion click) or its complement
  (background click), so that every click keeps its polarity. Eq. 18 names no error region: with
  a uniform u this is exactly the first-click rule. The uncertainty map is an extra argument of
  ``interactions`` (``uncertainty=``: one (z, y, x) array, or one per class id); the loop does
  not deliver one yet, so without it R2 raises a SegloopError saying it cannot run.
- R3 (eq. 19): the first click uniform over the region; later clicks drawn with probability
  proportional to EDT(err) over the error voxels (distance to the nearest voxel outside the
  error, voxel units unless ``edt_spacing_aware``), the EDT-weighted sampling of the methods the
  thesis cites (Sakinis et al. and followers). Eq. 19 writes the distribution as
  ``1 - EDT(err)``; read literally that is no distribution (<= 0 on every error voxel, 1 outside
  the error), so we take the cited methods' weighting: clicks favour the interior of the error.
- R4 (eq. 20): uniform over the region: every voxel of the label (first click) or of the error
  equally likely, whatever component it belongs to.

Every draw comes from ``rng_for(seed, case, class, step, "<user>/<lesion|background>")``; R1
draws nothing. The users are reactive: a missing previous prediction (a failed model step)
counts as an empty prediction, as for the Sakinis user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from segloop.core.records import Case, Interaction, SegloopError
from segloop.protocols.base import (
    Component,
    Coord,
    center_point,
    component_edt,
    largest_component,
    random_point,
    rng_for,
    whole_mask,
)

INITIAL_BACKGROUND = ("label", "none")


def click_regions(
    label: np.ndarray,
    prediction: np.ndarray | None,
    class_id: int,
    initial: bool,
    initial_background: str = "label",
) -> tuple[np.ndarray, np.ndarray | None]:
    """(lesion region, background region) of one class at one click step (module docstring).

    initial: the first click step, regions from the label (``label == c`` and ``label != c``,
    or no background region with ``initial_background="none"``); else the under- and
    over-segmentation of ``prediction`` (None counts as an empty prediction).
    """
    truth = label == class_id
    if initial:
        return truth, (~truth if initial_background == "label" else None)
    if prediction is None:
        return truth, None  # nothing predicted: no over-segmentation
    predicted = prediction == class_id
    return truth & ~predicted, predicted & ~truth


def uniform_click(region: np.ndarray, rng: np.random.Generator) -> Coord | None:
    """A voxel of ``region`` drawn uniformly (eqs. 18-20, ``uniform(X)``); None if empty."""
    component = whole_mask(region)
    return None if component is None else random_point(component, rng)


def weighted_voxel(
    component: Component, weights: np.ndarray, rng: np.random.Generator
) -> Coord | None:
    """A voxel of ``component`` drawn with probability ``weights / sum(weights)``.

    ``weights``: non-negative, on the component's crop; voxels outside the component or of weight
    0 are never drawn (inverse CDF on the cumulative sum: a zero weight adds no interval). None
    when every weight is 0.
    """
    flat = np.where(component.mask, weights, 0.0).ravel().astype(np.float64)
    cumulative = np.cumsum(flat)
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if not total > 0.0:
        return None
    pick = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
    pick = min(pick, flat.size - 1)
    return component.to_image(np.unravel_index(pick, component.mask.shape))  # type: ignore[return-value]


def edt_weighted_click(
    region: np.ndarray,
    rng: np.random.Generator,
    spacing_mm: Sequence[float] | None = None,
) -> Coord | None:
    """R3 (eq. 19): a voxel of ``region`` with probability proportional to its EDT.

    The EDT is the distance to the nearest voxel outside the region (the image border counts as
    outside), voxel units unless ``spacing_mm``; computed on the region's padded bounding box
    only (``segloop.protocols.base.component_edt``).
    """
    component = whole_mask(region)
    if component is None:
        return None
    return weighted_voxel(component, component_edt(component, spacing_mm), rng)


def uncertainty_weighted_click(
    region: np.ndarray, uncertainty: np.ndarray, rng: np.random.Generator
) -> Coord | None:
    """R2 (eq. 18): a voxel of ``region`` with probability proportional to ``uncertainty``.

    None when the region is empty or the model is certain (u = 0) on all of it.
    """
    component = whole_mask(region)
    if component is None:
        return None
    return weighted_voxel(component, np.asarray(uncertainty)[component.slices], rng)


def center_click(region: np.ndarray, spacing_mm: Sequence[float] | None = None) -> Coord | None:
    """R1 (eq. 17): the EDT argmax of the largest 26-connected component of ``region``."""
    component = largest_component(region, connectivity=26)
    return None if component is None else center_point(component, spacing_mm)


def _check_prediction(case: Case, prediction: np.ndarray | None) -> None:
    if prediction is not None and tuple(prediction.shape) != case.shape:
        raise SegloopError(
            f"case {case.case_id}: previous prediction has shape {tuple(prediction.shape)}, "
            f"the image {case.shape}"
        )


ExtraOf = Callable[[int], Any]  # class id -> the extra input of a user's draw (R2: uncertainty)


@dataclass(frozen=True)
class _ThesisUser:
    """Shared step logic of R1-R4: which regions at which step, polarity, seeding."""

    first_step: int = 1
    initial_background: str = "label"
    edt_spacing_aware: bool = False
    name: str = "thesis"
    reactive: ClassVar[bool] = (
        True  # segloop.protocols.tasks.is_reactive: clicks follow predictions
    )

    def __post_init__(self) -> None:
        if self.first_step < 0:
            raise SegloopError(f"{self.name}: first_step must be >= 0")
        if self.initial_background not in INITIAL_BACKGROUND:
            raise SegloopError(
                f"{self.name}: initial_background must be one of "
                f"{', '.join(INITIAL_BACKGROUND)}, not {self.initial_background!r}"
            )

    def to_json(self) -> dict[str, Any]:
        params = asdict(self)
        params.pop("name")
        return {"protocol": self.name, **params}

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        return self._clicks(case, classes, step, previous_prediction, seed, None)

    def _regions(
        self, label: np.ndarray, prediction: np.ndarray | None, class_id: int, initial: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return click_regions(label, prediction, class_id, initial, self.initial_background)

    def _click(
        self,
        region: np.ndarray,
        initial: bool,
        rng: np.random.Generator,
        spacing_mm: Sequence[float] | None,
        extra: Any,
    ) -> Coord | None:
        raise NotImplementedError

    def _clicks(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        prediction: np.ndarray | None,
        seed: int,
        extra_of: ExtraOf | None,
    ) -> tuple[Interaction, ...]:
        """One lesion and one background click per class (when their regions are not empty)."""
        if step < self.first_step:
            return ()
        initial = step == self.first_step
        _check_prediction(case, prediction)
        spacing = case.spacing_mm if self.edt_spacing_aware else None
        out = []
        for class_id in sorted(classes):
            lesion, background = self._regions(
                case.label, None if initial else prediction, class_id, initial
            )
            extra = None if initial or extra_of is None else extra_of(class_id)
            for region, positive in ((lesion, True), (background, False)):
                if region is None:
                    continue
                purpose = f"{self.name}/{'lesion' if positive else 'background'}"
                rng = rng_for(seed, case.case_id, class_id, step, purpose)
                point = self._click(region, initial, rng, spacing, extra)
                if point is not None:
                    out.append(Interaction("click", int(class_id), positive, step, (point,)))
        return tuple(out)


@dataclass(frozen=True)
class R1User(_ThesisUser):
    """R1, centre click (eq. 17): centre of the largest component of the label, then of the error."""

    name: str = "r1"

    def _click(self, region, initial, rng, spacing_mm, extra):  # type: ignore[no-untyped-def]
        return center_click(region, spacing_mm)


@dataclass(frozen=True)
class R3User(_ThesisUser):
    """R3, EDT sampling (eq. 19): uniform over the label, then EDT-weighted over the error."""

    name: str = "r3"

    def _click(self, region, initial, rng, spacing_mm, extra):  # type: ignore[no-untyped-def]
        if initial:
            return uniform_click(region, rng)
        return edt_weighted_click(region, rng, spacing_mm)


@dataclass(frozen=True)
class R4User(_ThesisUser):
    """R4, uniform sampling (eq. 20): uniform over the label, then over the error voxels."""

    name: str = "r4"

    def _click(self, region, initial, rng, spacing_mm, extra):  # type: ignore[no-untyped-def]
        return uniform_click(region, rng)


NOT_GIVEN: Any = object()  # R2's uncertainty argument was not passed at all (the loop has none)


def check_uncertainty(
    uncertainty: Any, shape: Sequence[int], class_id: int, where: str
) -> np.ndarray:
    """The (z, y, x) uncertainty map of ``class_id`` from R2's argument (one array or one per
    class id), checked: the image's shape, finite, normalised to [0, 1] (eq. 18)."""
    if uncertainty is None:
        raise SegloopError(
            f"{where}: the model gave no uncertainty map for its last prediction; R2 (eq. 18) "
            "samples its clicks from it"
        )
    if isinstance(uncertainty, Mapping):
        if class_id not in uncertainty:
            raise SegloopError(f"{where}: no uncertainty map for class {class_id}")
        uncertainty = uncertainty[class_id]
    values = np.asarray(uncertainty)
    if tuple(values.shape) != tuple(shape):
        raise SegloopError(
            f"{where}: uncertainty map has shape {tuple(values.shape)}, the image {tuple(shape)}"
        )
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        raise SegloopError(f"{where}: the uncertainty map is not finite numbers")
    if values.size and (float(values.min()) < 0.0 or float(values.max()) > 1.0):
        raise SegloopError(
            f"{where}: uncertainty must be normalised to [0, 1] (eq. 18), found "
            f"[{float(values.min()):g}, {float(values.max()):g}]"
        )
    return values


@dataclass(frozen=True)
class R2User(_ThesisUser):
    """R2, uncertainty sampling (eq. 18): uniform over the label, then proportional to the model's
    epistemic uncertainty. Needs ``interactions(..., uncertainty=map)`` (module docstring)."""

    name: str = "r2"

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
        uncertainty: Any = NOT_GIVEN,
    ) -> tuple[Interaction, ...]:
        """As every robot user, plus ``uncertainty``: the normalised epistemic uncertainty of the
        previous prediction, a (z, y, x) array in [0, 1] or ``{class id: array}``; it may be None
        only up to the first click step (no prediction to be uncertain about yet)."""
        if uncertainty is NOT_GIVEN:
            # refused at every step, step 0 included, so that a run stops before a model runs
            raise SegloopError(
                f"{self.name}: R2 (eq. 18) samples clicks from the model's epistemic uncertainty "
                "map and this loop gives robot users none (the model contract has no uncertainty "
                "output yet): R2 cannot run; use r1, r3, r4 or r5"
            )
        where = f"{self.name}: case {case.case_id} step {step}"

        def extra_of(class_id: int) -> np.ndarray:
            return check_uncertainty(uncertainty, case.shape, class_id, where)

        return self._clicks(case, classes, step, previous_prediction, seed, extra_of)

    def _regions(
        self, label: np.ndarray, prediction: np.ndarray | None, class_id: int, initial: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        # eq. 18 names no error region: every click step draws from the class's ground truth
        # (lesion) and its complement (background); the first step may drop the background
        background = self.initial_background if initial else "label"
        return click_regions(label, None, class_id, True, background)

    def _click(self, region, initial, rng, spacing_mm, extra):  # type: ignore[no-untyped-def]
        if initial:
            return uniform_click(region, rng)
        return uncertainty_weighted_click(region, extra, rng)
