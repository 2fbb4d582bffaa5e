"""autoPET IV interactive track: Algorithm 1 (thesis §7.3.2.1) as its public code ran it.

Lesion clicks: pick up to ``num_clicks`` 26-connected lesion components at random (without
replacement); click at each one's EDT argmax; with fewer components than clicks, add boundary
clicks (a voxel of minimal EDT inside the component, drawn at random) cycling over the picked
components until ``num_clicks``. Background clicks: the same procedure on the high-uptake
non-lesion mask ``PET > P99.75(PET[label == 0]) & label == 0``. An empty ground truth gets
background clicks only. Step 0 has no click; step k (1..num_clicks) reveals the k-th lesion and
the k-th background click (fewer when fewer exist).

Differences from the challenge script (simulate_clicks.py), each deliberate:
- every draw comes from ``rng_for(seed, case, class, 0, purpose)``, not a global seed 42;
- its background "boundary" clicks selected voxels *outside* the component (a bug that fell
  back to any voxel of the component, or of the whole image); ours are true boundary clicks;
- the perturbation N(0, sigma) of Algorithm 1 was not applied by the script: ``sigma_voxels``
  defaults to 0 (same clicks as the challenge's procedure); with sigma > 0 a perturbed click is
  redrawn (up to 10 times) to stay in its eligibility mask (``perturb_within_mask``);
- the image border counts as background for the EDT (the script used the full-volume EDT,
  where it does not): differs only for components cut by the field of view.

Same as the script: the centre of a component whose EDT has several maxima is the *first
maximum in nibabel's (x, y, z) array order* (``center_tie_order="xyz"``, the default): the
script took ``cp.argmax`` of the EDT of ``nib.load(label).get_fdata()``, an (x, y, z) array
(``clicks/simulate_clicks.py``: label read at line 72, EDT and argmax at lines 94 and 103 for
lesions, 164 and 172 for the background), so of the tied voxels the one with the smallest (x, y, z) index tuple. Our arrays are
(z, y, x) (SimpleITK), where ``np.argmax`` would take the smallest (z, y, x) tuple instead
(``center_tie_order="zyx"``, segloop's order before issue 15); ``"centroid"`` takes the maximum
nearest the component's centroid.
The lesion mask is every voxel whose label is one of the task's classes; clicks carry the
smallest class id ("tumor" = 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from segloop.core.records import Case, Interaction, SegloopError
from segloop.protocols.base import (
    Coord,
    boundary_point,
    center_point,
    check_tie_order,
    connected_components,
    perturb_point,
    rng_for,
)


def component_clicks(
    mask: np.ndarray,
    count: int,
    rng: np.random.Generator,
    sigma_voxels: float = 0.0,
    spacing_mm: Sequence[float] | None = None,
    perturb_within_mask: bool = True,
    tie_order: str = "xyz",
) -> list[Coord]:
    """Centre clicks of up to ``count`` random components, then boundary clicks (Alg. 1 / 3).

    Returns at most ``count`` voxels; none when the mask is empty. ``tie_order``: which of
    several EDT maxima is a component's centre (``segloop.protocols.base.pick_maximum``; "xyz" as the
    autoPET and TriALS scripts).
    """
    components = connected_components(mask, connectivity=26)
    if not components or count <= 0:
        return []
    picked = rng.choice(len(components), size=min(count, len(components)), replace=False)
    chosen = [components[int(i)] for i in picked]
    keep = mask if perturb_within_mask else None
    clicks: list[Coord] = []
    for component in chosen:
        point = center_point(component, spacing_mm, tie_order=tie_order)
        clicks.append(perturb_point(point, rng, sigma_voxels, mask.shape, keep))
    while len(clicks) < count:
        for component in chosen:
            point = boundary_point(component, rng, spacing_mm)
            clicks.append(perturb_point(point, rng, sigma_voxels, mask.shape, keep))
            if len(clicks) == count:
                break
    return clicks


class PrecomputedClicks:
    """Mix-in for non-reactive protocols: the whole click list of a case is computed once.

    ``_steps(case, classes, seed)`` returns, per step, the interactions of that step. A small
    per-object cache (keyed by case id, seed, classes and the very label array) avoids
    recomputing it at every step; it never changes results.
    """

    _cache: dict

    def _compute(
        self, case: Case, classes: Mapping[int, str], seed: int
    ) -> tuple[tuple[Interaction, ...], ...]:
        raise NotImplementedError

    def _steps(
        self, case: Case, classes: Mapping[int, str], seed: int
    ) -> tuple[tuple[Interaction, ...], ...]:
        key = (case.case_id, int(seed), tuple(sorted((int(k), str(v)) for k, v in classes.items())))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is case.label:
            return hit[1]
        result = self._compute(case, classes, seed)
        if len(self._cache) >= 4:
            self._cache.clear()
        self._cache[key] = (case.label, result)
        return result

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        steps = self._steps(case, classes, seed)
        return steps[step] if 0 <= step < len(steps) else ()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}  # never ship cached arrays to worker processes
        return state

    def to_json(self) -> dict[str, Any]:
        params = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}  # type: ignore[arg-type]
        params.pop("name", None)
        return {"protocol": self.name, **params}  # type: ignore[attr-defined]


def paired_steps(
    positives: list[Coord], negatives: list[Coord], class_id: int, num_clicks: int
) -> tuple[tuple[Interaction, ...], ...]:
    """Step 0: nothing; step k: the k-th positive and the k-th negative click (when they exist)."""
    steps: list[tuple[Interaction, ...]] = [()]
    for k in range(1, num_clicks + 1):
        step: list[Interaction] = []
        if k <= len(positives):
            step.append(Interaction("click", class_id, True, k, (positives[k - 1],)))
        if k <= len(negatives):
            step.append(Interaction("click", class_id, False, k, (negatives[k - 1],)))
        steps.append(tuple(step))
    return tuple(steps)


def pet_channel_of(case: Case, channel: int | None) -> np.ndarray:
    """The PET channel: ``channel`` if given, else 1 with two channels (CT, PET) and 0 otherwise."""
    index = channel if channel is not None else (1 if len(case.channels) == 2 else 0)
    if not 0 <= index < len(case.channels):
        raise SegloopError(
            f"case {case.case_id}: PET channel {index} requested, the case has "
            f"{len(case.channels)} channel(s)"
        )
    return np.asarray(case.channels[index])


@dataclass(frozen=True)
class AutoPETUser(PrecomputedClicks):
    """Algorithm 1: 10 lesion + 10 high-uptake background clicks, revealed one pair per step."""

    num_clicks: int = 10
    sigma_voxels: float = 0.0
    background_percentile: float = 99.75
    pet_channel: int | None = None
    edt_spacing_aware: bool = False
    perturb_within_mask: bool = True
    center_tie_order: str = "xyz"
    name: str = "autopet"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_tie_order(self.center_tie_order)

    def _compute(
        self, case: Case, classes: Mapping[int, str], seed: int
    ) -> tuple[tuple[Interaction, ...], ...]:
        class_id = min(classes)
        lesion = np.isin(case.label, list(classes))
        spacing = case.spacing_mm if self.edt_spacing_aware else None
        lesion_clicks = component_clicks(
            lesion,
            self.num_clicks,
            rng_for(seed, case.case_id, class_id, 0, "autopet-lesion"),
            self.sigma_voxels,
            spacing,
            self.perturb_within_mask,
            self.center_tie_order,
        )
        eligible = high_uptake_background(
            pet_channel_of(case, self.pet_channel), case.label == 0, self.background_percentile
        )
        background_clicks = component_clicks(
            eligible,
            self.num_clicks,
            rng_for(seed, case.case_id, class_id, 0, "autopet-background"),
            self.sigma_voxels,
            spacing,
            self.perturb_within_mask,
            self.center_tie_order,
        )
        return paired_steps(lesion_clicks, background_clicks, class_id, self.num_clicks)


def high_uptake_background(
    pet: np.ndarray, background: np.ndarray, percentile: float
) -> np.ndarray:
    """Alg. 1 line 16: ``(PET > P_percentile(PET[background])) & background``; empty if no background."""
    if not background.any():
        return np.zeros(background.shape, dtype=bool)
    threshold = np.percentile(pet[background], percentile)
    return (pet > threshold) & background
