"""Sub-commands of this package (registered by segloop.cli):

    segloop leaderboard RUN... --out SITE      tables, rankings and a static HTML site
    segloop gc-evaluate                        Grand Challenge evaluation container mode
    segloop codabench-score INPUT OUTPUT       Codabench scoring program
    segloop codabench-bundle --task T --out D  an example Codabench competition bundle
    segloop gc-predictions RUN --out D         an example GC predictions.json from a run

Heavy imports (pandas, jinja2, SimpleITK) happen inside the handlers, so ``segloop --help``
stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from segloop.core.challenges import SCORING_MODES
from segloop.core.records import parse_classes
from segloop.leaderboard import codabench, gc_evaluate, gc_predictions, html, usershift
from segloop.leaderboard.scoring import parse_score_overrides
from segloop.leaderboard.stepscore import scoring_spec

DEFAULT_BOOTSTRAP = 1000


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register this package's sub-commands; each sets ``handler=function(args) -> int``."""
    board = subparsers.add_parser(
        "leaderboard",
        help="rank run folders and write tables and a static HTML leaderboard",
        description=(
            "Read run folders (or folders holding run folders), rank the submissions of every "
            "task (aggregate-then-rank, rank-then-aggregate, bootstrap stability, consensus "
            "across tasks) and write SITE/index.html with one page per task and submission, and "
            "SITE/data/*.csv|json. The site works offline from the file system."
        ),
        epilog=(
            "Score terms: metric:kind[:weight], kind = auc (normalised), auc_raw or final. "
            "Defaults per task: autopet dice/fpv/fnv, toothfairy3 dice/hd95, trials dice/assd/hd, "
            "medsegfm dice/nsd@2, each AUC and Final with weight 1."
        ),
    )
    board.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders")
    board.add_argument("--out", required=True, type=Path, help="site folder (created)")
    board.add_argument(
        "--score",
        action="append",
        default=[],
        metavar="[TASK=]TERMS",
        help="score terms for all tasks, or TASK=... for one (repeatable), "
        "e.g. dice:auc:1,nsd@2:final:1",
    )
    board.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap resamples for rank stability (default {DEFAULT_BOOTSTRAP}; 0 = none)",
    )
    board.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    board.add_argument(
        "--allow-mixed",
        action="store_true",
        help="rank runs of one task made on different datasets or in different scoring modes "
        "anyway (refused by default); their pages say so",
    )
    board.add_argument(
        "--user-shift",
        type=Path,
        metavar="FILE",
        help="a user-shift.json of `segloop user-shift` to show as the 'user shift' section",
    )
    board.add_argument("--title", default=html.SiteOptions.title, help="the site's title")
    board.add_argument("--dataset-name", default="", help="the dataset's name on every page")
    board.add_argument(
        "--show-paths",
        action="store_true",
        help="show local paths (dataset and run folders, paths in model specs); hidden by default",
    )
    board.add_argument(
        "--no-case-pages",
        action="store_true",
        help="no page per case, even for runs that kept predictions (they take ~1 s per case)",
    )
    board.set_defaults(handler=leaderboard_command)

    gc = subparsers.add_parser(
        "gc-evaluate",
        help="Grand Challenge evaluation container: score predictions.json, write metrics.json",
        description=(
            "Read predictions.json (one algorithm job per case and step), group each case's "
            "jobs into steps by their click count, score every output against the ground truth "
            "with the task preset and write metrics.json (per case and aggregates). Missing or "
            "failed jobs score as empty predictions. Defaults are Grand Challenge's paths."
        ),
    )
    gc.add_argument("--task", required=True, help="task preset (see `segloop tasks`)")
    gc.add_argument("--predictions", type=Path, help="default INPUT_DIR/predictions.json")
    gc.add_argument(
        "--input-dir",
        type=Path,
        default=gc_evaluate.DEFAULT_INPUT_DIR,
        help=f"default {gc_evaluate.DEFAULT_INPUT_DIR}",
    )
    gc.add_argument(
        "--ground-truth",
        type=Path,
        default=gc_evaluate.DEFAULT_GROUND_TRUTH,
        help=f"ground-truth folder (default {gc_evaluate.DEFAULT_GROUND_TRUTH})",
    )
    gc.add_argument(
        "--output",
        type=Path,
        default=gc_evaluate.DEFAULT_OUTPUT,
        help=f"default {gc_evaluate.DEFAULT_OUTPUT}",
    )
    gc.add_argument(
        "--image-slug",
        help="image input naming the case, slug or relative path (default: preset, auto)",
    )
    gc.add_argument("--clicks-slug", help="clicks input (default: task preset or auto)")
    gc.add_argument("--output-slug", help="image output to score (default: task preset or auto)")
    add_metric_options(gc)
    gc.set_defaults(handler=gc_evaluate_command)

    score = subparsers.add_parser(
        "codabench-score",
        help="Codabench scoring program: INPUT/ref + INPUT/res -> OUTPUT/scores.json",
        description=(
            "Score INPUT/res/<case>_step<k>.nii.gz against INPUT/ref/<case>.nii.gz with a task "
            "preset; write OUTPUT/scores.json (keys = leaderboard columns <metric>_<kind>) and "
            "OUTPUT/detailed_results.html."
        ),
    )
    score.add_argument("input", type=Path, metavar="INPUT", help="folder with ref/ and res/")
    score.add_argument("output", type=Path, metavar="OUTPUT", help="folder for scores.json")
    score.add_argument("--task", help="task preset (default: INPUT/ref/segloop.json)")
    add_metric_options(score)
    score.set_defaults(handler=codabench_score_command)

    example = subparsers.add_parser(
        "gc-predictions",
        help="write an example Grand Challenge predictions.json from a run, for gc-evaluate",
        description=(
            "From RUN (run with --save-predictions, task autopet or toothfairy3) write what "
            "Grand Challenge gives an evaluation container: OUT/input/predictions.json (one "
            "algorithm job per case and step, its clicks as 'Multiple points'), each job's "
            "output image, and OUT/ground_truth/. `segloop gc-evaluate` on it gives the run's "
            "numbers."
        ),
    )
    example.add_argument("run", type=Path, metavar="RUN", help="run folder")
    example.add_argument("--out", required=True, type=Path, help="folder (created)")
    example.add_argument("--data", type=Path, help="the run's dataset, if it moved")
    example.set_defaults(handler=gc_predictions_command)

    bundle = subparsers.add_parser(
        "codabench-bundle",
        help="write an example Codabench competition bundle for a task",
        description=(
            "Write competition.yaml, a scoring program that calls segloop, pages and a "
            "reference_data/ skeleton into OUT."
        ),
    )
    bundle.add_argument("--task", required=True, help="task preset")
    bundle.add_argument("--out", required=True, type=Path, help="bundle folder (created)")
    add_metric_options(bundle)
    bundle.set_defaults(handler=codabench_bundle_command)


def add_scoring_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scoring",
        choices=SCORING_MODES,
        help="score as the challenge's own script does ('challenge', the presets' default) "
        "or by segloop's definitions ('segloop'); docs/challenges.md",
    )


def add_metric_options(parser: argparse.ArgumentParser) -> None:
    add_scoring_option(parser)
    parser.add_argument("--metrics", help="comma-separated metrics (default: the task's)")
    parser.add_argument("--classes", help="label values and names, e.g. 1:tumor (default: task's)")


def _spec(args: argparse.Namespace, task: str):
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    return scoring_spec(task, names, parse_classes(args.classes), args.scoring)


def write_site(
    run_dirs: Iterable[Path],
    out_dir: Path,
    score: Sequence[str] = (),
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    allow_mixed: bool = False,
    user_shift: Sequence[usershift.UserShiftRow] = (),
    options: html.SiteOptions = html.DEFAULT_SITE_OPTIONS,
) -> Path:
    """The Python twin of ``segloop leaderboard``; returns SITE/index.html."""
    overrides: Mapping = parse_score_overrides(score)
    return html.write_site(
        list(run_dirs),
        Path(out_dir),
        overrides,
        n_bootstrap,
        seed,
        options=options,
        allow_mixed=allow_mixed,
        user_shift=user_shift,
    )


def leaderboard_command(args: argparse.Namespace) -> int:
    options = html.SiteOptions(
        args.title, args.dataset_name, args.show_paths, case_pages=not args.no_case_pages
    )
    user_shift = usershift.read_table(args.user_shift) if args.user_shift else ()
    index = write_site(
        args.runs,
        args.out,
        args.score,
        args.bootstrap,
        args.seed,
        options=options,
        allow_mixed=args.allow_mixed,
        user_shift=user_shift,
    )
    print(f"leaderboard: {index}")
    print(f"tables: {index.parent / 'data'}")
    return 0


def gc_evaluate_command(args: argparse.Namespace) -> int:
    spec = _spec(args, args.task)
    preset = gc_evaluate.preset_sockets(spec.name)
    sockets = gc_evaluate.Sockets(
        image=args.image_slug, clicks=args.clicks_slug, output=args.output_slug, hints=preset.hints
    )
    predictions = args.predictions or args.input_dir / "predictions.json"
    payload = gc_evaluate.evaluate(predictions, args.input_dir, args.ground_truth, spec, sockets)
    gc_evaluate.write_metrics(payload, args.output)
    aggregates = payload["aggregates"]
    print(
        f"{len(payload['case'])} cases, {aggregates['failed_steps']} failed steps; "
        f"metrics: {args.output}"
    )
    return 0


def codabench_score_command(args: argparse.Namespace) -> int:
    task = codabench.task_from_reference(args.input, args.task)
    result = codabench.score_submission(args.input, _spec(args, task))
    scores_path, html_path = codabench.write_scores(result, args.output)
    print(f"{len(result['case'])} cases scored: {scores_path}, {html_path}")
    return 0


def codabench_bundle_command(args: argparse.Namespace) -> int:
    written = codabench.write_bundle(_spec(args, args.task), args.out)
    print(f"wrote {len(written)} files to {args.out}; zip its content to upload it to Codabench")
    return 0


def gc_predictions_command(args: argparse.Namespace) -> int:
    written = gc_predictions.write_gc_predictions(args.run, args.out, args.data)
    print(
        f"{written['jobs']} jobs of {written['cases']} cases: {written['input_dir']}/predictions.json"
    )
    print(
        f"try: segloop gc-evaluate --task {written['task']} --input-dir {written['input_dir']} "
        f"--ground-truth {written['ground_truth']} --output {Path(args.out) / 'metrics.json'}"
    )
    return 0
