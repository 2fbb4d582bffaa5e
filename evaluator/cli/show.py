"""``segloop show RUN CASE``: a picture of what the model did on one case."""

from __future__ import annotations

import argparse
from pathlib import Path

from segloop.core.records import SegloopError
from segloop.leaderboard import case_view, pictures


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    show = subparsers.add_parser(
        "show",
        help="draw a case of a run: slices, ground truth, prediction, clicks, metrics (PNG)",
        description=(
            "Draw CASE of run folder RUN. With --step K: axial, coronal and sagittal slices "
            "through step K's newest click (or its largest error) with the ground-truth contour "
            "(yellow), the step's prediction (blue; kept by `segloop run --save-predictions`), "
            "the clicks so far (green + positive, red x negative, numbered by step) and the "
            "step's metrics in the title. Without --step: one axial panel per step. Reads the "
            "run's dataset (run.json; --data if it moved)."
        ),
    )
    show.add_argument("run", type=Path, metavar="RUN", help="run folder")
    show.add_argument("case", metavar="CASE", help="case id")
    show.add_argument("--step", type=int, help="one step in detail (default: a strip of all)")
    show.add_argument(
        "--out", type=Path, help="PNG file (default RUN/pictures/<case>[_step_<k>].png)"
    )
    show.add_argument("--data", type=Path, help="the dataset folder, if it moved since the run")
    show.add_argument("--channel", type=int, help="image channel (default: PET if any, else 0)")
    show.add_argument(
        "--focus",
        choices=case_view.FOCUS_CHOICES,
        default="click",
        help="cut through the step's newest click (default) or the centre of its largest error",
    )
    show.set_defaults(handler=show_command)


def show_command(args: argparse.Namespace) -> int:
    steps = None if args.step is None else [args.step]
    view = case_view.load_case_view(args.run, args.case, args.data, args.channel, steps)
    if args.step is None:
        figure = case_view.strip_figure(view, focus=args.focus)
        default_name = f"{args.case}.png"
    else:
        figure = case_view.step_figure(view, args.step, focus=args.focus)
        default_name = f"{args.case}_step_{args.step:02d}.png"
    out = args.out or Path(args.run) / "pictures" / default_name
    if out.suffix.lower() != ".png":
        raise SegloopError(f"--out {out}: the picture is a PNG; name it *.png")
    pictures.save_png(figure, out)
    if not view.predictions:
        print(
            "segloop: note: the run kept no prediction of this case (run it with "
            "--save-predictions); the picture shows the ground truth and the clicks only"
        )
    print(f"picture: {out}")
    return 0
