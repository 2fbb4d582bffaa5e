"""TriALS: Algorithm 3 (thesis §7.3.2.3).

Lesion clicks exactly as autoPET's (``segloop.protocols.autopet.component_clicks``); background clicks
drawn uniformly without replacement from the liver minus the lesions. The liver mask is case
metadata: ``case.extra_masks["liver"]`` (TotalSegmentator's in the challenge). Step 0 has no
click; step k reveals the k-th lesion and the k-th background click.

Ties of a component's EDT maxima go, as in the challenge script, to the first maximum in
nibabel's (x, y, z) array order (``center_tie_order="xyz"``, the default):
``simulate_clicks_TriALS.py`` (xmed-lab/TriALS, TriALS_2025_Interactive_Task_2/.../utils/)
took ``cp.argmax`` of the EDT of ``nib.load(label).get_fdata()`` (lines 103, 122 and 132), an
(x, y, z) array. ``"zyx"`` (the first in our (z, y, x) array, segloop's order before issue 15)
and ``"centroid"`` remain available.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from segloop.core.records import Case, Interaction, SegloopError
from segloop.protocols.autopet import PrecomputedClicks, component_clicks, paired_steps
from segloop.protocols.base import check_tie_order, random_mask_voxels, rng_for


@dataclass(frozen=True)
class TriALSUser(PrecomputedClicks):
    """Algorithm 3: 10 lesion clicks (centres, then boundaries) + 10 uniform liver clicks."""

    num_clicks: int = 10
    sigma_voxels: float = 0.0
    liver_mask: str = "liver"
    edt_spacing_aware: bool = False
    perturb_within_mask: bool = True
    center_tie_order: str = "xyz"
    name: str = "trials"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_tie_order(self.center_tie_order)

    def _compute(
        self, case: Case, classes: Mapping[int, str], seed: int
    ) -> tuple[tuple[Interaction, ...], ...]:
        if self.liver_mask not in case.extra_masks:
            raise SegloopError(
                f"case {case.case_id}: TriALS needs the extra mask {self.liver_mask!r} "
                f"(the liver), the case has {sorted(case.extra_masks) or 'none'}"
            )
        liver = np.asarray(case.extra_masks[self.liver_mask], dtype=bool)
        if liver.shape != case.shape:
            raise SegloopError(
                f"case {case.case_id}: mask {self.liver_mask!r} has shape {liver.shape}, "
                f"the label {case.shape}"
            )
        class_id = min(classes)
        lesion = np.isin(case.label, list(classes))
        spacing = case.spacing_mm if self.edt_spacing_aware else None
        lesion_clicks = component_clicks(
            lesion,
            self.num_clicks,
            rng_for(seed, case.case_id, class_id, 0, "trials-lesion"),
            self.sigma_voxels,
            spacing,
            self.perturb_within_mask,
            self.center_tie_order,
        )
        background_clicks = random_mask_voxels(
            liver & (case.label == 0),
            self.num_clicks,
            rng_for(seed, case.case_id, class_id, 0, "trials-background"),
        )
        return paired_steps(lesion_clicks, background_clicks, class_id, self.num_clicks)
