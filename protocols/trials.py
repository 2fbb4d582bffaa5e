"""TriALS: Algorithm 3 (thesis §7.3.2.3).

Lesion clicks exactly as autoPET's (``protocols.autopet.component_clicks``); background clicks
drawn uniformly without replacement from the liver minus the lesions. The liver mask is case
metadata: ``case.extra_masks["liver"]`` (TotalSegmentator's in the challenge). Step 0 has no
click; step k reveals the k-th lesion and the k-th background click.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from evaluator.records import Case, Interaction, SegloopError
from protocols.autopet import PrecomputedClicks, component_clicks, paired_steps
from protocols.base import random_mask_voxels, rng_for


@dataclass(frozen=True)
class TriALSUser(PrecomputedClicks):
    """Algorithm 3: 10 lesion clicks (centres, then boundaries) + 10 uniform liver clicks."""

    num_clicks: int = 10
    sigma_voxels: float = 0.0
    liver_mask: str = "liver"
    edt_spacing_aware: bool = False
    perturb_within_mask: bool = True
    name: str = "trials"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
        )
        background_clicks = random_mask_voxels(
            liver & (case.label == 0),
            self.num_clicks,
            rng_for(seed, case.case_id, class_id, 0, "trials-background"),
        )
        return paired_steps(lesion_clicks, background_clicks, class_id, self.num_clicks)
