"""Robot users: who gives which interaction at which step.

- ``base``: seeded generators (``rng_for``) and eligibility-mask primitives (components, crop EDT,
  centre / boundary / random points);
- ``sakinis``: the reactive Sakinis user of the CVPR25 MedSegFM challenge (boxes, then clicks);
- ``autopet``, ``toothfairy``, ``trials``: the 2025 challenges' precomputed clicks (Alg. 1-3);
- ``thesis``: the thesis's robot users R1-R4 (§5.2, eqs. 17-20);
- ``realistic``: the R5 user (thesis §5.2, eq. 28) wrapping any click protocol (default: R1);
- ``replay``: recorded sessions (run folders, segloop JSON, challenge click files, CSV) played
  back step by step;
- ``generic``: eligibility-mask clicks, boxes, scribbles and polygons (thesis §8.2.3.2);
- ``tasks``: the task presets, TOML tasks and the protocol registry;
- ``formats``: the challenges' click files (GC "Multiple points", point lists; voxel indices in
  each challenge's axis order, ``CHALLENGE_FORMATS``), CVPR25 npz, segloop JSON;
- ``cli``: ``segloop tasks`` and ``segloop clicks``.
"""
