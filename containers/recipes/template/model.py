"""Worked example of a segloop participant model: a ball around every click.

predict(case, request) gets
  case.case_id, case.channels (tuple of float32 arrays, (z, y, x)), case.shape,
  case.geometry.spacing_mm ((z, y, x) mm), case.classes ({label value: name})
  request.step, request.interactions (all so far: .kind "click"/"box"/..., .class_id,
  .positive, .step, .coords ((z, y, x), ...)), request.previous_prediction (or None)
and returns an integer label map of case.shape with values 0 and case.classes' keys.

Load weights at import time (module level): in session mode this file is imported once per
case (or per submission), in per-step mode once per step.
"""

import numpy as np
from segloop_sdk import serve

RADIUS_MM = 6.0


def ball(shape, centre_zyx, spacing_mm, radius_mm):
    """Boolean mask of the voxels within radius_mm of centre_zyx (spacing-aware)."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    distance_sq = sum(
        ((g - c) * s) ** 2 for g, c, s in zip(grid, centre_zyx, spacing_mm, strict=True)
    )
    return distance_sq <= radius_mm**2


def predict(case, request):
    labels = np.zeros(case.shape, dtype=np.uint8)
    spacing = case.geometry.spacing_mm
    clicks = [i for i in request.interactions if i.kind == "click"]
    for click in clicks:
        if click.positive:
            labels[ball(case.shape, click.coords[0], spacing, RADIUS_MM)] = click.class_id
    for click in clicks:
        if not click.positive:
            labels[ball(case.shape, click.coords[0], spacing, RADIUS_MM / 2)] = 0
    return labels


if __name__ == "__main__":
    serve(predict)
