"""The evaluator's sub-commands: run, check, demo, phantoms, score."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segloop import runs
from segloop.app import phantoms
from segloop.cli import leaderboard as leaderboard_cli
from segloop.containers.registry import check_limits, model_files, model_identity
from segloop.core import dataset, images, store
from segloop.core.challenges import CHALLENGES
from segloop.core.metrics import registry, scoring
from segloop.core.records import SegloopError, parse_classes
from segloop.core.task import Limits
from segloop.core.timing import TimeBudget
from segloop.protocols.tasks import get_task

DEFAULT_METRICS = "dice,nsd@2,hd95,fpv,fnv"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a model through a task's interaction loop on a dataset",
        description=(
            "Run every case of DATASET (nnU-Net layout: imagesTs/<case>_0000.nii.gz, "
            "labelsTs/<case>.nii.gz, optional masksTs/<name>/<case>.nii.gz) through TASK with "
            "MODEL and store one JSON per case in OUT. Running the same command again resumes: "
            "finished cases are skipped."
        ),
    )
    run.add_argument("--data", required=True, type=Path, help="dataset folder")
    run.add_argument(
        "--task", required=True, help="task name (see `segloop tasks`) or a .toml file"
    )
    run.add_argument(
        "--model",
        required=True,
        help='python:package.module:function | cmd:"program {input} {output}" | docker:IMAGE',
    )
    run.add_argument("--out", required=True, type=Path, help="run folder (created or resumed)")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start the run folder again: remove its results first (default: resume)",
    )
    run.add_argument("--name", help="submission name shown on leaderboards (default: from --model)")
    run.add_argument(
        "--seed", type=int, help="robot-user seed (default: the task's, 0 for the presets)"
    )
    run.add_argument("--cases", help="comma-separated case ids (default: all)")
    run.add_argument(
        "--classes",
        help="the classes to prompt and score, e.g. 1:liver,2:tumor (default: the task's)",
    )
    run.add_argument(
        "--robot-users",
        help="run under each of these robot users, one run folder per user in OUT/<user>/ "
        "(`own` = the task's own user; others: see `segloop tasks`), e.g. own,r1,r4,r5",
    )
    run.add_argument(
        "--save-predictions",
        action="store_true",
        help="keep each step's prediction as OUT/cases/<case>/step_<k>.nii.gz (the case's "
        "geometry) for `segloop show` and the leaderboard's case pages",
    )
    leaderboard_cli.add_scoring_option(run)
    add_limit_arguments(run)
    parallel = run.add_argument_group("parallel runs")
    parallel.add_argument("--jobs", type=int, default=1, help="cases in parallel (default 1)")
    parallel.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster")
    parallel.add_argument("--scheduler", help="run on the Dask scheduler at this address")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=run_command)

    check = subparsers.add_parser(
        "check",
        help="check a dataset against a task before running any model",
        description=(
            "Read every case of DATASET as `segloop run` would (files, grids, labels, extra "
            "masks), check its labels against TASK and compute the robot user's first "
            "interactions. Prints one line per problem case; exit code 2 if there is any."
        ),
    )
    check.add_argument("--data", required=True, type=Path, help="dataset folder")
    check.add_argument("--task", required=True, help="task name or a .toml file")
    check.add_argument(
        "--seed", type=int, help="robot-user seed (default: the task's, 0 for the presets)"
    )
    check.add_argument("--cases", help="comma-separated case ids (default: all)")
    check.add_argument("--classes", help="as for `segloop run`")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(handler=check_command)

    demo = subparsers.add_parser(
        "demo",
        help="generate phantoms, run the baselines through the loop, write a leaderboard",
        description=(
            "The whole pipeline on built-in data: phantoms for each challenge task (PET for "
            "autoPET and MedSegFM, a jaw for ToothFairy3, an abdomen for TriALS), the "
            "region-growing baseline and the empty reference through each task's loop, "
            "summaries and a leaderboard. Running it again resumes."
        ),
    )
    demo.add_argument("--out", type=Path, default=Path("segloop-demo"), help="output folder")
    demo.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--tasks",
        default="autopet,medsegfm,toothfairy3,trials",
        help="comma-separated tasks (default: all four challenge tasks)",
    )
    demo.set_defaults(handler=demo_command)

    phantom = subparsers.add_parser(
        "phantoms",
        help="write a deterministic phantom dataset (pet, jaw, abdomen)",
        description="Write synthetic cases in the nnU-Net layout for demos and tests.",
    )
    phantom.add_argument("kind", choices=sorted(phantoms.PHANTOM_KINDS))
    phantom.add_argument("--out", required=True, type=Path)
    phantom.add_argument("--cases", type=int, default=4)
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--shape", help="z,y,x voxels (default: the kind's own)")
    phantom.set_defaults(handler=phantoms_command)

    score = subparsers.add_parser(
        "score",
        help="score one prediction against a ground truth, print JSON",
        description="Per-class, spacing-aware metrics of PRED against GT (NIfTI, MHA or NRRD).",
    )
    score.add_argument("pred", type=Path)
    score.add_argument("gt", type=Path)
    score.add_argument("--metrics", default=DEFAULT_METRICS, help=f"default {DEFAULT_METRICS}")
    score.add_argument("--classes", help="comma-separated label values (default: all present)")
    score.set_defaults(handler=score_command)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    limits = parser.add_argument_group(
        "limits (cmd: and docker: models; default: the task's [limits], else the value shown)"
    )
    for option, kind, default, text in (
        ("--step-time-limit", float, defaults.step_time_limit_s, "seconds per step"),
        ("--case-time-limit", float, defaults.case_time_limit_s, "seconds per case"),
        ("--memory-mb", int, defaults.memory_mb, "docker memory (= memory+swap)"),
        ("--cpus", float, defaults.cpus, "docker CPU limit"),
        ("--pids", int, defaults.pids, "docker pids limit"),
        ("--shm-mb", int, defaults.shm_mb, "docker /dev/shm size"),
        ("--tmp-mb", int, defaults.tmp_mb, "docker /tmp size (the image itself is read-only)"),
        ("--output-mb", int, defaults.output_mb, "docker output space per back-end"),
        ("--nofile", int, defaults.nofile, "docker open files per process"),
    ):
        limits.add_argument(option, type=kind, help=f"{text} ({default:g})")
    limits.add_argument("--gpus", default="", help="docker GPU indices, e.g. 0,1 (default none)")
    limits.add_argument(
        "--session-mode",
        choices=("per-step", "case", "submission"),
        default="per-step",
        help="docker: one container per step, per case, or per submission",
    )


def limits_from(args: argparse.Namespace, task_limits: Mapping[str, float]) -> Limits:
    """The run's limits: the defaults, then the task's ``[limits]``, then the options given."""
    given = {
        "step_time_limit_s": ("--step-time-limit", args.step_time_limit),
        "case_time_limit_s": ("--case-time-limit", args.case_time_limit),
        "memory_mb": ("--memory-mb", args.memory_mb),
        "cpus": ("--cpus", args.cpus),
        "pids": ("--pids", args.pids),
        "shm_mb": ("--shm-mb", args.shm_mb),
        "tmp_mb": ("--tmp-mb", args.tmp_mb),
        "output_mb": ("--output-mb", args.output_mb),
        "nofile": ("--nofile", args.nofile),
    }
    for option, value in (*given.values(), ("--jobs", getattr(args, "jobs", 1))):
        if value is not None and not value > 0:
            raise SegloopError(f"{option} {value}: must be > 0")
    try:
        gpus = tuple(int(g) for g in args.gpus.split(",") if g.strip()) if args.gpus else ()
    except ValueError:
        raise SegloopError(f"--gpus {args.gpus}: expected device indices like 0,1") from None
    chosen = {**task_limits, **{k: v for k, (_, v) in given.items() if v is not None}}
    return replace(Limits(), **chosen, gpus=gpus, session_mode=args.session_mode)


def execute_run(
    data: Path,
    task_ref: str,
    model_spec: str,
    out: Path,
    submission: str | None = None,
    seed: int | None = None,
    case_ids: list[str] | None = None,
    limits=None,
    show_progress: bool = True,
    jobs: int = 1,
    use_dask: bool = False,
    scheduler: str | None = None,
    classes: dict[int, str] | None = None,
    scoring: str | None = None,
    overwrite: bool = False,
    save_predictions: bool = False,
) -> dict:
    """Run (or resume) and summarise; the Python twin of ``segloop run``.

    The model spec and the task are checked (and the model fingerprinted) before the run
    folder is touched; the folder is locked for the whole run (store.run_lock)."""
    spec = runs.RunSpec(
        Path(data),
        task_ref,
        model_spec,
        submission or model_spec,
        seed,
        Limits(),
        tuple(sorted(classes.items())) if classes else None,
        scoring=scoring,
        save_predictions=save_predictions,
    )
    task = spec.task()  # fail early on an unknown task, before touching the run folder
    limits = limits if limits is not None else replace(Limits(), **task.limits)
    check_limits(model_spec, limits)
    check_out_folder(Path(out))
    spec = replace(
        spec,
        limits=limits,
        model_identity=model_identity(model_spec),
        model_files=tuple(model_files(model_spec).items()),
    )
    with store.run_lock(Path(out), notify=_note):
        if overwrite:
            removed = store.clear_run(Path(out))
            _note(f"--overwrite: removed {removed} finished case(s) of {out}")
        pending = runs.pending_case_ids(spec, Path(out), case_ids, notify=_note)
        return _run_pending(
            spec, task, Path(out), pending, show_progress, jobs, use_dask, scheduler
        )


def _note(line: str) -> None:
    print(f"segloop: note: {line}", file=sys.stderr)


def check_out_folder(out: Path) -> None:
    """Refuse an --out that cannot be a run folder, in one line: an existing file, or a
    place this user cannot create or write."""
    if out.exists() and not out.is_dir():
        raise SegloopError(f"--out {out}: exists and is not a folder")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SegloopError(f"--out {out}: {existing} is not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise SegloopError(f"--out {out}: {existing} is not writable")


def _run_pending(spec, task, out: Path, pending, show_progress, jobs, use_dask, scheduler) -> dict:
    with tqdm(
        total=len(pending),
        desc=f"{spec.submission} on {task.name}",
        unit="case",
        disable=not show_progress,
        file=sys.stderr,
    ) as bar:
        runs.execute(
            spec, Path(out), pending, jobs, use_dask, scheduler, progress=lambda _: bar.update()
        )
    summary = runs.write_summary(Path(out))
    # the cases run now, not the whole folder: a resumed run reports its own time
    return {**summary, "time_budget": runs.time_budget_of(Path(out), pending).to_json()}


def robot_user_runs(task_ref: str, out: Path, users_text: str) -> list[tuple[str, Path]]:
    """(task reference, run folder) per robot user of ``--robot-users``: ``own`` is the task
    itself, any other name ``<task>+<user>``; every name is checked before anything runs."""
    users = [u.strip() for u in users_text.split(",") if u.strip()]
    if not users or len(set(users)) != len(users):
        raise SegloopError(f"--robot-users: give distinct robot user names, not {users_text!r}")
    pairs = [(task_ref if u == "own" else f"{task_ref}+{u}", out / u) for u in users]
    for task_variant, _ in pairs:
        get_task(task_variant)
    return pairs


def parse_case_ids(text: str | None) -> list[str] | None:
    """``--cases a,b`` -> ["a", "b"] (blank items dropped); None (all cases) when not given."""
    if not text:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise SegloopError(f"--cases {text!r}: no case id")
    return ids


def run_command(args: argparse.Namespace) -> int:
    if args.robot_users:
        for task_ref, out in robot_user_runs(args.task, args.out, args.robot_users):
            print(f"robot user {out.name}: task {task_ref}, run folder {out}")
            run_command(
                argparse.Namespace(
                    **{**vars(args), "task": task_ref, "out": out, "robot_users": None}
                )
            )
        return 0
    summary = execute_run(
        args.data,
        args.task,
        args.model,
        args.out,
        args.name,
        args.seed,
        parse_case_ids(args.cases),
        limits_from(args, get_task(args.task, seed=args.seed).limits),
        not args.no_progress,
        args.jobs,
        args.dask,
        args.scheduler,
        parse_classes(args.classes),
        args.scoring,
        args.overwrite,
        args.save_predictions,
    )
    print(format_summary(summary))
    print(f"run folder: {args.out}")
    budget = TimeBudget(**summary["time_budget"])
    if budget.cases:
        print(budget.line())
    for reason, entry in summary["failures"].items():
        example = entry["example"]
        last_line = example.get("log_last_line") or ""
        log = f"; the model's log ends: {last_line}" if last_line else ""
        print(
            f"segloop: warning: {entry['steps']} step(s) failed with {reason}, e.g. case "
            f"{example['case_id']} step {example['step']}: {example['detail']}{log} "
            f"(every failure: {Path(args.out) / 'cases'}/<case>.json, or the leaderboard)",
            file=sys.stderr,
        )
    return 0


def check_command(args: argparse.Namespace) -> int:
    classes = parse_classes(args.classes)
    spec = runs.RunSpec(
        Path(args.data),
        args.task,
        "none",
        "check",
        args.seed,
        Limits(),
        tuple(sorted(classes.items())) if classes else None,
    )
    case_ids = parse_case_ids(args.cases) or dataset.list_case_ids(args.data)
    with tqdm(
        total=len(case_ids), desc="checking", unit="case", disable=args.no_progress, file=sys.stderr
    ) as bar:
        problems = runs.check_dataset(spec, case_ids, progress=lambda _: bar.update())
    for message in problems.values():
        print(f"segloop: problem: {message}", file=sys.stderr)
    print(f"{len(case_ids) - len(problems)} of {len(case_ids)} cases ready for task {args.task}")
    return 2 if problems else 0


def format_summary(summary: dict) -> str:
    """A plain-text table: AUC (raw, normalised) and Final per metric, and the mean curve."""
    scoring = summary.get("scoring") or {}
    mode = scoring.get("mode", "segloop")
    reproduces = f": {scoring['reproduces']}" if scoring.get("reproduces") else ""
    width = max([8, *(len(name) for name in summary["mean"])])
    lines = [
        f"{summary['submission']} on {summary['task']}: {summary['num_cases']} cases, "
        f"{summary['failed_steps']} failed steps",
        f"  scored in {mode} mode{reproduces}",
        f"  {'metric':<{width}} {'AUC raw':>10} {'AUC norm':>10} {'Final':>10}",
    ]
    for name, figures in summary["mean"].items():
        cells = [_cell(figures.get(k)) for k in ("auc_raw", "auc_normalised", "final")]
        lines.append(f"  {name:<{width}} " + " ".join(f"{c:>10}" for c in cells))
    for name, curve in summary["mean_curve"].items():
        lines.append(f"  {name} by step: " + " ".join(_cell(v, 3) for v in curve))
    left_out = []
    for name, kinds in summary.get("undefined", {}).items():
        counts = sorted(set(kinds.values()))
        if len(counts) == 1 and len(kinds) == 3:  # the same cases for AUC and Final
            left_out.append(f"{name} ({counts[0]} of {summary['num_cases']} cases)")
        else:
            left_out += [f"{name} {kind} ({count})" for kind, count in kinds.items()]
    if left_out:
        lines.append(
            "  undefined values, left out of the means (task rule "
            f"{scoring.get('undefined_values', 'skip')!r}): " + ", ".join(left_out)
        )
    return "\n".join(lines)


def _cell(value: float | None, digits: int = 4) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


# The challenges the demo runs, each on the phantoms its definition names.
DEMO_TASKS = tuple((name, c.phantom) for name, c in CHALLENGES.items() if c.phantom)
DEMO_MODELS = (
    ("region-growing", "python:segloop.baselines.region_growing:predict"),
    ("empty", "python:segloop.baselines.trivial:empty"),
)
# Robot users the demo also puts in autoPET's place, for the leaderboard's robustness section.
DEMO_ROBOT_USERS = ("r1", "r4", "r5", "sp-random-clicks")


def demo_command(args: argparse.Namespace) -> int:
    out: Path = args.out
    wanted = [name.strip() for name in args.tasks.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {task for task, _ in DEMO_TASKS})
    if unknown or not wanted:
        raise SegloopError(
            f"--tasks {args.tasks}: unknown {unknown}; choose from {[t for t, _ in DEMO_TASKS]}"
        )
    tasks = [(task, kind) for task, kind in DEMO_TASKS if task in wanted]
    run_dirs = []
    for task, kind in tasks:
        data = out / "data" / kind
        if not (data / "imagesTs").is_dir():
            phantoms.write_phantom_dataset(data, kind, args.cases, seed=args.seed)
        ready = _demo_cases(data, task, args.seed)
        variants = [f"{task}+{user}" for user in DEMO_ROBOT_USERS] if task == "autopet" else []
        for task_ref in (task, *variants):
            for submission, model in DEMO_MODELS:
                run_dir = out / "runs" / task_ref / submission
                summary = execute_run(
                    data, task_ref, model, run_dir, submission, args.seed, ready,
                    save_predictions=task_ref == task,
                )  # fmt: skip
                print(format_summary(summary))
                run_dirs.append(run_dir)

    index = leaderboard_cli.write_site(run_dirs, out / "leaderboard")
    print(f"leaderboard: {index}")
    print(f"runs: {out / 'runs'}")
    return 0


def _demo_cases(data: Path, task: str, seed: int) -> list[str]:
    """The phantom cases the task can run; e.g. MedSegFM skips the lesion-free PET cases
    that autoPET keeps as negative cases."""
    spec = runs.RunSpec(data, task, "none", "demo", seed, Limits())
    problems = runs.check_dataset(spec)
    for case_id, message in problems.items():
        print(f"demo: {task} skips {case_id}: {message}")
    return [case_id for case_id in dataset.list_case_ids(data) if case_id not in problems]


def phantoms_command(args: argparse.Namespace) -> int:
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else None
    if shape is not None and len(shape) != 3:
        raise SegloopError(f"--shape {args.shape}: expected three numbers z,y,x")
    case_ids = phantoms.write_phantom_dataset(args.out, args.kind, args.cases, args.seed, shape)
    print(f"wrote {len(case_ids)} {args.kind} cases to {args.out}")
    return 0


def score_command(args: argparse.Namespace) -> int:
    gt_image, gt_geometry = images.read_image(args.gt)
    gt = images.read_label(args.gt)
    pred_image, pred_geometry = images.read_image(args.pred)
    images.check_same_grid(
        args.pred, pred_image.shape, pred_geometry, args.gt, gt_image.shape, gt_geometry
    )
    pred = images.read_label(args.pred)
    if args.classes:
        classes = [int(c) for c in args.classes.split(",")]
    else:
        classes = sorted({int(v) for v in np.union1d(np.unique(gt), np.unique(pred))} - {0})
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for name in names:
        registry.parse_metric_name(name)
    scores = scoring.score_classes(pred, gt, classes, gt_geometry.spacing_mm, names)
    print(
        json.dumps(
            store.json_safe({"pred": str(args.pred), "gt": str(args.gt), "metrics": scores}),
            indent=1,
        )
    )
    return 0
