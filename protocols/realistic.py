"""The realistic robot user R5 (thesis §5.2, eq. 28) as a wrapper over any click protocol.

Eq. 28 builds R5 on R1's clicks (eq. 17, ``segloop.protocols.thesis.R1User``): that is the default
base. Any other click protocol can be wrapped instead, e.g. autoPET's Algorithm 1 (TOML:
``[protocol.base] name = "autopet"``). Over a reactive base such as R1, the base reacts to
R5's own loop (the predictions that followed R5's clicks), as eq. 28's clicks(R1, I)[i] does.

For each click i of the wrapped protocol two numbers p_i1, p_i2 ~ U[0, 1] are drawn:

- p_i2 < p_system: the click is replaced by s~, a voxel drawn uniformly from the "unannotated
  high-uptake" region: image > P95(image) and outside the label (every class);
- p_i1 < p_perturb: the click (the original or s~) moves by z~ ~ U{-a..a}^3 voxels, clipped to
  the image.

The four cases of eq. 28 follow. Published optimum (user studies): p_perturb = p_system =
13.4 %, a = 35. The click keeps its class and sign (a positive click may thus land outside the
ground truth: that is the point, it models annotator disagreement). Boxes, scribbles and
polygons pass through unchanged. Each click's draws come from ``rng_for(seed, case, class,
step, "r5/<index of the click in its step>")``, so the wrapper is deterministic.
The high-uptake region is taken from ``image_channel`` (default: the PET channel as autoPET:
1 with two channels, else 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segloop.core.records import Case, Interaction, SegloopError
from segloop.core.task import RobotUser
from segloop.protocols.autopet import pet_channel_of
from segloop.protocols.base import Coord, rng_for
from segloop.protocols.thesis import R1User


def r5_click(
    point: Coord,
    region_flat: np.ndarray,
    shape: Sequence[int],
    rng: np.random.Generator,
    p_perturb: float,
    p_system: float,
    amplitude_voxels: int,
) -> tuple[Coord, bool, bool]:
    """Eq. 28 for one click: (new point, perturbed?, systematic?). ``region_flat``: flat indices of s~."""
    p1, p2 = rng.random(2)
    systematic = bool(p2 < p_system) and region_flat.size > 0
    perturbed = bool(p1 < p_perturb)
    if systematic:
        pick = int(region_flat[int(rng.integers(region_flat.size))])
        point = tuple(int(v) for v in np.unravel_index(pick, tuple(shape)))  # type: ignore[assignment]
    if perturbed:
        offset = rng.integers(-amplitude_voxels, amplitude_voxels + 1, len(point))
        moved = np.clip(np.asarray(point) + offset, 0, np.asarray(shape) - 1)
        point = tuple(int(v) for v in moved)  # type: ignore[assignment]
    return point, perturbed, systematic


def high_uptake_outside_label(
    image: np.ndarray, label: np.ndarray, percentile: float
) -> np.ndarray:
    """Flat indices of voxels with image > P_percentile(image) and label == 0 (the support of s~)."""
    threshold = np.percentile(image, percentile)
    return np.flatnonzero(((image > threshold) & (label == 0)).ravel())


@dataclass(frozen=True)
class RealisticUser:
    """R5 over ``base`` (default: R1, as eq. 28 defines it; published p_perturb = p_system =
    13.4 %, a = 35 voxels)."""

    base: Any = field(default_factory=R1User)
    p_perturb: float = 0.134
    p_system: float = 0.134
    amplitude_voxels: int = 35
    uptake_percentile: float = 95.0
    image_channel: int | None = None
    name: str = "realistic"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("p_perturb", "p_system"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise SegloopError(f"realistic: {key} must lie in [0, 1]")
        if self.amplitude_voxels < 0:
            raise SegloopError("realistic: amplitude_voxels must be >= 0")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": "realistic",
            "base": self.base.to_json(),
            "p_perturb": self.p_perturb,
            "p_system": self.p_system,
            "amplitude_voxels": self.amplitude_voxels,
            "uptake_percentile": self.uptake_percentile,
            "image_channel": self.image_channel,
        }

    def _region(self, case: Case) -> np.ndarray:
        hit = self._cache.get(case.case_id)
        if hit is not None and hit[0] is case.label:
            return hit[1]
        image = pet_channel_of(case, self.image_channel)
        region = high_uptake_outside_label(image, case.label, self.uptake_percentile)
        self._cache.clear()
        self._cache[case.case_id] = (case.label, region)
        return region

    def interactions(
        self,
        case: Case,
        classes: Mapping[int, str],
        step: int,
        previous_prediction: np.ndarray | None,
        seed: int,
    ) -> tuple[Interaction, ...]:
        base: RobotUser = self.base
        original = base.interactions(case, classes, step, previous_prediction, seed)
        out = []
        for index, interaction in enumerate(original):
            if interaction.kind != "click":
                out.append(interaction)
                continue
            rng = rng_for(seed, case.case_id, interaction.class_id, step, f"r5/{index}")
            point, _, _ = r5_click(
                interaction.coords[0],
                self._region(case),
                case.shape,
                rng,
                self.p_perturb,
                self.p_system,
                self.amplitude_voxels,
            )
            out.append(
                Interaction("click", interaction.class_id, interaction.positive, step, (point,))
            )
        return tuple(out)
