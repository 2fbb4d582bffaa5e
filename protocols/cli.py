"""Sub-commands of this package (registered by evaluator.cli): ``tasks`` and ``clicks``.

``segloop tasks`` lists the task presets; ``segloop tasks NAME_OR_TOML`` prints one task's full
definition as JSON.

``segloop clicks --task T --data D --out O`` writes the precomputed clicks of a dataset as an
organizer publishes them to participants: for each case and step k, the interactions of steps
0..k in the challenge's own format, ``O/<case>/<case>_step_<kk>.json`` (two-digit steps, so text
order is step order), Grand Challenge "Multiple points" JSON by default, and the whole list
with steps as segloop JSON in ``O/<case>/<case>_interactions.json``. Only non-reactive tasks
have clicks that can be computed without a model (autopet, toothfairy3, trials, or a TOML task
using their protocols).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluator.records import SegloopError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this package's sub-commands; each sets ``handler=function(args) -> int``."""
    tasks = subparsers.add_parser(
        "tasks",
        help="list the task presets, or show one task's definition",
        description="Without an argument: the task presets, one line each. With a preset name or "
        "a .toml file: that task's full definition (robot user, steps, metrics, AUC axis) as JSON.",
    )
    tasks.add_argument("task", nargs="?", help="preset name or .toml task file")
    tasks.add_argument("--seed", type=int, default=0, help="protocol seed (default 0)")
    tasks.set_defaults(handler=run_tasks)

    clicks = subparsers.add_parser(
        "clicks",
        help="write the precomputed clicks of a dataset in the challenge's format",
        description="Compute a non-reactive task's clicks for every case of a dataset (nnU-Net "
        "layout) and write, per case and step k, the interactions of steps 0..k.",
    )
    clicks.add_argument(
        "--task", required=True, help="autopet, toothfairy3, trials or a .toml file"
    )
    clicks.add_argument("--data", required=True, type=Path, help="dataset folder")
    clicks.add_argument("--out", required=True, type=Path, help="output folder")
    clicks.add_argument("--seed", type=int, default=0, help="protocol seed (default 0)")
    clicks.add_argument(
        "--format",
        choices=("gc", "segloop"),
        default="gc",
        help="gc: Grand Challenge 'Multiple points' JSON (default); segloop: segloop JSON",
    )
    clicks.add_argument(
        "--coordinates",
        choices=("voxel", "world"),
        default="voxel",
        help="gc points as voxel indices (x, y, z), as autoPET IV published them, or world mm",
    )
    clicks.set_defaults(handler=run_clicks)


def run_tasks(args: argparse.Namespace) -> int:
    from protocols.tasks import TASKS, get_task

    if args.task:
        print(json.dumps(get_task(args.task, seed=args.seed).to_json(), indent=2))
        return 0
    width = max(len(name) for name in TASKS)
    for name, preset in TASKS.items():
        print(f"{name:<{width}}  {preset.description}")
    print(
        "\nA user-defined task: a .toml file (see `segloop tasks FILE.toml` and protocols/tasks.py)."
    )
    return 0


def run_clicks(args: argparse.Namespace) -> int:
    from evaluator import runs
    from protocols.formats import to_gc_points, to_segloop_json
    from protocols.tasks import get_task, is_reactive

    task = get_task(args.task, seed=args.seed)
    if is_reactive(task.robot_user):
        raise SegloopError(
            f"task {task.name}: its robot user reacts to the model's predictions, so its clicks "
            "cannot be computed in advance"
        )
    case_ids = runs.io.list_case_ids(args.data)
    if not case_ids:
        raise SegloopError(f"{args.data}: no cases")
    written = 0
    for case_id in case_ids:
        case = runs.load_dataset_case(args.data, case_id)
        folder = args.out / case_id
        folder.mkdir(parents=True, exist_ok=True)
        so_far = []
        for step in range(task.num_steps):
            so_far.extend(task.robot_user.interactions(case, task.classes, step, None, task.seed))
            path = folder / f"{case_id}_step_{step:02d}.json"
            if args.format == "gc":
                data = to_gc_points(so_far, task.classes, args.coordinates, case.geometry)
            else:
                data = to_segloop_json(so_far)
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")
            written += 1
        (folder / f"{case_id}_interactions.json").write_text(
            json.dumps(to_segloop_json(so_far), indent=1), encoding="utf-8"
        )
    print(
        f"wrote {written} click files for {len(case_ids)} cases of task {task.name} to {args.out}"
    )
    return 0
