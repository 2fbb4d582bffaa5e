"""Sub-commands of this package (registered by segloop.cli): ``tasks`` and ``clicks``.

``segloop tasks`` lists the task presets; ``segloop tasks NAME_OR_TOML`` prints one task's full
definition as JSON.

``segloop clicks --task T --data D --out O`` writes the precomputed clicks of a dataset as the
challenge's organizers published them to participants, in the challenge's own file format
(each challenge's ``click_format``, ``segloop.core.challenges``): autoPET IV and ToothFairy3 as Grand Challenge
"Multiple points" JSON (autoPET: voxel (x, y, z), names tumor / background; ToothFairy3: voxel
(z, y, x) = SimpleITK array order, names Left_IAC / Right_IAC), TriALS as point lists
``{"lesion": [[x, y, z], ...], "background": [...]}``. Per case and step k:

    O/<case>/<case>_step_<kk>.json     the clicks of steps 0..k (what the model gets at step k)
    O/<case>/<case>_clicks.json        all clicks of the case, same format (as published)
    O/<case>/<case>_interactions.json  all clicks with their steps, segloop JSON (axis order
                                       written in the file)
    O/clicks_format.json               task, seed, file kind, axis order, units and the source
                                       of the convention

Steps are zero-padded (two digits, more for >= 100 steps) so that text order is step order (the
original ToothFairy3 archives were ``0_clicks.json`` .. ``5_clicks.json``, which would sort
``10`` before ``2`` for autoPET's 11 steps). ``--format gc|lists|segloop``, ``--axis-order`` and
``--coordinates`` override the challenge's convention. Every case is computed (and checked as a
run would: classes the task does not define, an empty label where the task needs a target, a
missing extra mask) before anything is written, so a bad dataset leaves no partial output. Only
non-reactive tasks have clicks that exist without a model (autopet, toothfairy3, trials, a TOML
task on their protocols, R5 over them).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from segloop import runs
from segloop.core import dataset
from segloop.core.challenges import (
    CHALLENGES,
    ROBOT_USERS,
    SCORING_MODES,
    challenge_to_toml,
    get_challenge,
)
from segloop.core.formats import GENERIC_FORMAT, ClickFileFormat, encode_clicks, to_segloop_json
from segloop.core.records import SegloopError, parse_classes
from segloop.core.task import Task
from segloop.loop import check_label_classes
from segloop.protocols.tasks import get_task, is_reactive


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this package's sub-commands; each sets ``handler=function(args) -> int``."""
    tasks = subparsers.add_parser(
        "tasks",
        help="list the task presets, or show one task's definition",
        description="Without an argument: the task presets, one line each. With a preset name or "
        "a .toml file: that task's full definition (robot user, steps, metrics, AUC axis) as JSON, "
        "or with --toml as a TOML task file.",
    )
    tasks.add_argument("task", nargs="?", help="preset name or .toml task file")
    tasks.add_argument("--seed", type=int, help="protocol seed (default: the task's)")
    tasks.add_argument(
        "--scoring", choices=SCORING_MODES, help="show the task in this scoring mode"
    )
    tasks.add_argument(
        "--toml",
        action="store_true",
        help="print the task as a TOML task file (docs/tasks.md) that loads back as the same task",
    )
    tasks.set_defaults(handler=run_tasks)

    clicks = subparsers.add_parser(
        "clicks",
        help="write the precomputed clicks of a dataset in the challenge's format",
        description="Compute a non-reactive task's clicks for every case of a dataset (nnU-Net "
        "layout) and write, per case and step k, the clicks of steps 0..k in the challenge's own "
        "file format: autopet and toothfairy3 as Grand Challenge 'Multiple points' JSON (voxel "
        "indices; autopet x,y,z, toothfairy3 z,y,x), trials as {'lesion': [...], 'background': "
        "[...]} point lists (voxel x,y,z). See protocols/cli.py.",
    )
    clicks.add_argument(
        "--task", required=True, help="autopet, toothfairy3, trials or a .toml file"
    )
    clicks.add_argument("--data", required=True, type=Path, help="dataset folder")
    clicks.add_argument("--out", required=True, type=Path, help="output folder")
    clicks.add_argument("--seed", type=int, help="protocol seed (default: the task's)")
    clicks.add_argument(
        "--classes", help="the classes to prompt, e.g. 1:tumor (default: the task's; as `run`)"
    )
    clicks.add_argument(
        "--format",
        choices=("challenge", "gc", "lists", "segloop"),
        default="challenge",
        help="challenge: the task's challenge's own format (default); gc: Grand Challenge "
        "'Multiple points'; lists: {name: [points]}; segloop: segloop JSON",
    )
    clicks.add_argument(
        "--axis-order",
        help="order of a voxel point's numbers, e.g. xyz or zyx (default: the challenge's)",
    )
    clicks.add_argument(
        "--coordinates",
        choices=("voxel", "world"),
        help="voxel indices (default, as the challenges published them) or world mm (x, y, z)",
    )
    clicks.set_defaults(handler=run_clicks)


def run_tasks(args: argparse.Namespace) -> int:
    if args.task and args.toml:
        challenge = get_challenge(args.task).in_scoring_mode(args.scoring)
        if args.seed is not None:
            challenge = replace(challenge, seed=args.seed)
        get_task(args.task, seed=args.seed, scoring=args.scoring)  # its robot user builds
        print(challenge_to_toml(challenge), end="")
        return 0
    if args.toml:
        raise SegloopError(
            "--toml prints one task: give its name, e.g. segloop tasks autopet --toml"
        )
    if args.task:
        task = get_task(args.task, seed=args.seed, scoring=args.scoring)
        print(json.dumps({**task.to_json(), "limits": dict(task.limits)}, indent=2))
        return 0
    width = max(len(name) for name in CHALLENGES)
    for name, challenge in CHALLENGES.items():
        print(f"{name:<{width}}  {challenge.title}")
    print(
        "\nRobot users that can take any task's place (task TASK+USER, e.g. autopet+r4, or "
        "`segloop run --robot-users own,r1,r4`; docs/robot-users.md):"
    )
    width = max(len(name) for name in ROBOT_USERS)
    for name, (description, _) in ROBOT_USERS.items():
        print(f"  {name:<{width}}  {description}")
    print(
        "\nScoring: autopet, toothfairy3, trials and medsegfm score as the challenge's own "
        "script by default\n(--scoring challenge); --scoring segloop gives segloop's own "
        "definitions (docs/challenges.md)."
    )
    print(
        "\nA user-defined task: a .toml file (docs/tasks.md; `segloop tasks autopet --toml` "
        "prints a preset as one to start from)."
    )
    return 0


def protocol_name(user: object) -> str:
    """The challenge protocol under a robot user (R5 is unwrapped: it perturbs, the format stays)."""
    name = str(getattr(user, "name", ""))
    if name == "realistic":
        return protocol_name(user.base)  # type: ignore[attr-defined]
    return name


def click_file_format(task: Task) -> ClickFileFormat:
    """The task's click files: its challenge's, else those of the challenge whose protocol its
    robot user runs (a TOML R5 over ToothFairy3's clicks writes ToothFairy3's), else generic."""
    if task.click_format is not None:
        return task.click_format
    challenge = CHALLENGES.get(protocol_name(task.robot_user))
    if challenge is not None and challenge.click_format is not None:
        return challenge.click_format
    return GENERIC_FORMAT


def parse_axis_order(text: str) -> tuple[str, str, str]:
    """``"xyz"``, ``"x,y,z"`` or ``"z y x"`` -> ("x", "y", "z"); a permutation of x, y, z."""
    axes = tuple(a for a in text.replace(",", "").replace(" ", "").lower())
    if sorted(axes) != ["x", "y", "z"]:
        raise SegloopError(f"--axis-order {text!r}: give a permutation of x, y, z, e.g. xyz")
    return axes  # type: ignore[return-value]


def step_file_name(case_id: str, step: int, num_steps: int) -> str:
    """``<case>_step_<kk>.json``, zero-padded to at least two digits so text order is step order."""
    width = max(2, len(str(max(num_steps - 1, 0))))
    return f"{case_id}_step_{step:0{width}d}.json"


def run_clicks(args: argparse.Namespace) -> int:
    classes = parse_classes(args.classes)
    task = get_task(args.task, seed=args.seed, classes=classes)
    if is_reactive(task.robot_user):
        raise SegloopError(
            f"task {task.name}: its robot user reacts to the model's predictions, so its clicks "
            "cannot be computed in advance"
        )
    file_format: ClickFileFormat = click_file_format(task)
    if args.format in ("gc", "lists"):
        file_format = replace(file_format, kind=args.format)
    if args.axis_order:
        file_format = replace(file_format, axis_order=parse_axis_order(args.axis_order))
    if args.coordinates:
        file_format = replace(file_format, coordinates=args.coordinates)
    if file_format.coordinates == "world" and list(file_format.axis_order) != ["x", "y", "z"]:
        if args.axis_order:
            raise SegloopError(
                "--coordinates world writes physical (x, y, z) mm: drop --axis-order"
            )
        file_format = replace(file_format, axis_order=("x", "y", "z"))
    case_ids = dataset.list_case_ids(args.data)
    if not case_ids:
        raise SegloopError(f"{args.data}: no cases")

    # compute (and check) every case before writing anything
    computed = []
    for case_id in case_ids:
        case = runs.load_dataset_case(args.data, case_id)
        try:
            check_label_classes(case, task)
            steps = [
                tuple(task.robot_user.interactions(case, task.classes, step, None, task.seed))
                for step in range(task.num_steps)
            ]
        except SegloopError as error:
            raise SegloopError(f"{args.data}: {error}") from None
        present = set(np.unique(case.label).tolist())
        absent = [task.classes[c] for c in sorted(task.classes) if c not in present]
        if absent:
            print(
                f"segloop: note: case {case_id}: {', '.join(absent)} absent from the ground "
                "truth (no positive click for it)",
                file=sys.stderr,
            )
        computed.append((case, steps))

    def encode(interactions: list, case: object) -> dict:
        if args.format == "segloop":
            return to_segloop_json(interactions)
        return encode_clicks(interactions, task.classes, file_format, case.geometry)  # type: ignore[attr-defined]

    written = 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for case, steps in computed:
            folder = args.out / case.case_id
            folder.mkdir(parents=True, exist_ok=True)
            so_far: list = []
            for step, new in enumerate(steps):
                so_far.extend(new)
                path = folder / step_file_name(case.case_id, step, task.num_steps)
                path.write_text(json.dumps(encode(so_far, case), indent=1), encoding="utf-8")
                written += 1
            (folder / f"{case.case_id}_clicks.json").write_text(
                json.dumps(encode(so_far, case), indent=1), encoding="utf-8"
            )
            (folder / f"{case.case_id}_interactions.json").write_text(
                json.dumps(to_segloop_json(so_far), indent=1), encoding="utf-8"
            )
        manifest = {
            "format": "segloop-clicks",
            "version": 1,
            "task": task.name,
            "seed": task.seed,
            "num_steps": task.num_steps,
            "file_kind": "segloop" if args.format == "segloop" else file_format.kind,
            "point_format": None if args.format == "segloop" else file_format.to_json(),
            "files": {
                "<case>/<case>_step_<k>.json": "the clicks of steps 0..k",
                "<case>/<case>_clicks.json": "all clicks of the case",
                "<case>/<case>_interactions.json": "all clicks with their steps (segloop JSON)",
            },
            "robot_user": task.robot_user.to_json(),
        }
        (args.out / "clicks_format.json").write_text(
            json.dumps(manifest, indent=1), encoding="utf-8"
        )
    except OSError as error:
        raise SegloopError(f"{args.out}: cannot write the click files ({error})") from None
    order = ", ".join(file_format.axis_order)
    what = (
        "segloop JSON"
        if args.format == "segloop"
        else f"{file_format.kind} {file_format.coordinates} ({order})"
    )
    print(
        f"wrote {written} step files for {len(computed)} cases of task {task.name} to "
        f"{args.out} as {what}"
    )
    return 0
