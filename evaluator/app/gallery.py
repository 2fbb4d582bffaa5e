"""Pictures of every robot-user preset's interactions on one case (docs/robot-users.md).

``python -m segloop.app.gallery --out docs/images/robot-users`` runs each preset of
:data:`segloop.core.challenges.ROBOT_USERS` in the autoPET task's place, with the region-growing
baseline, for a few steps on one PET phantom, and draws the interactions so far (numbered by
step, positive green, negative red) over the ground-truth contour, through the newest one. The
pictures are deterministic: the same files on every machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from segloop.app import phantoms
from segloop.baselines.region_growing import predict
from segloop.containers.local import InProcessBackend
from segloop.core.challenges import ROBOT_USERS
from segloop.leaderboard.pictures import case_step_figure, save_png
from segloop.loop import run_case
from segloop.protocols.tasks import get_task

GALLERY_STEPS = 3  # step 0 and two reactive steps: enough to see how a user reacts


def draw_gallery(
    out_dir: Path, users: Sequence[str] = tuple(ROBOT_USERS), case_index: int = 2
) -> list[Path]:
    """One PNG per robot user in ``out_dir`` (``<user>.png``); returns their paths."""
    case = phantoms.pet_phantom(case_index, shape=(48, 80, 80))
    written = []
    for user in users:
        task = get_task(f"autopet+{user}")
        steps = tuple(range(GALLERY_STEPS))
        task = replace(
            task, num_steps=GALLERY_STEPS, auc_steps=steps, auc_x=tuple(map(float, steps))
        )
        outcome = run_case(case, task, InProcessBackend(predict))
        interactions = [i for step in outcome.steps for i in step.new_interactions]
        figure = case_step_figure(
            case.channels[-1],  # PET, where the lesions show
            case.label,
            None,
            interactions,
            case.spacing_mm,
            GALLERY_STEPS - 1,
            f"robot user {user}",
            case_id=case.case_id,
            width_px=900,
        )
        written.append(save_png(figure, Path(out_dir) / f"{user}.png"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in draw_gallery(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
