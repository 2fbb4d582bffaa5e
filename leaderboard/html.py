"""The static leaderboard site: jinja2 templates (autoescape on), inline CSS, JS and SVG.

The site works offline from the file system: no CDN, no fetch, one folder of HTML pages and a
``data/`` folder with every table as CSV and JSON. Every value that comes from a run (team
names, case ids, failure messages, log tails) goes through jinja2's autoescaping, and the page's
Content-Security-Policy only allows the one inline script whose hash it names, so even an
unescaped ``<script>`` could not run.

Pages: ``index.html`` (tasks, consensus across tasks, downloads), ``task-<slug>.html`` (the
sortable leaderboard, interaction curves, rank stability), ``sub-<task>--<submission>.html``
(per-case results and failures of one submission), ``case-...html`` (a case's steps and
pictures, when its predictions were kept).

The tables' cells are formatted in :mod:`segloop.leaderboard.html_cells`, the tables built in
:mod:`segloop.leaderboard.html_tables`, the SVG charts drawn in
:mod:`segloop.leaderboard.html_charts`; this module renders the pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from segloop.core import store
from segloop.core.challenges import ScoreTerm
from segloop.core.records import SegloopError
from segloop.core.results import SUMMARY_KINDS
from segloop.leaderboard import case_view, pictures
from segloop.leaderboard.board import Leaderboard, build_leaderboard, write_tables
from segloop.leaderboard.html_cells import (
    Column,
    Table,
    auc_meaning,
    case_page,
    column_label,
    direction_hint,
    fixed_number,
    format_number,
    metric_label,
    number_cell,
    submission_page,
    task_page,
    text_cell,
)
from segloop.leaderboard.html_charts import (
    class_charts,
    line_chart,
    metric_range,
    submission_chart,
    task_charts,
)
from segloop.leaderboard.html_tables import (
    case_table,
    class_frame,
    class_table,
    consensus_table,
    leaderboard_table,
    robustness_view,
    task_index_table,
    user_shift_view,
)
from segloop.leaderboard.ranking import DEFAULT_BOOTSTRAP_SAMPLES, TaskRanking
from segloop.leaderboard.tables import write_table
from segloop.leaderboard.usershift import UserShiftRow
from segloop.leaderboard.usershift import write_table as write_user_shift

TEMPLATES = Path(__file__).resolve().parent / "templates"


def stability_view(ranking: TaskRanking) -> dict[str, Any] | None:
    boot = ranking.bootstrap
    if boot is None:
        return None
    order = np.lexsort((np.array(ranking.submissions), ranking.aggregate.rank))
    rows = []
    for i in order:
        rows.append(
            {
                "submission": ranking.submissions[i],
                "rank": format_number(ranking.aggregate.rank[i]),
                "wins": fixed_number(100 * boot.winner_frequency[i], 1),
                "mean_rank": format_number(boot.mean_rank[i], 2),
                "interval": f"{format_number(boot.rank_low[i])}–{format_number(boot.rank_high[i])}",
                "frequency": [
                    {
                        "text": format_number(100 * f, 0) if f > 0 else "",
                        "sort": repr(float(f)),
                        "alpha": f"{0.08 + 0.85 * f:.3f}" if f > 0 else "0",
                    }
                    for f in boot.rank_frequency[i]
                ],
            }
        )
    return {
        "n_samples": boot.n_samples,
        "seed": boot.seed,
        "tau_mean": format_number(boot.tau_mean, 3),
        "tau_median": format_number(boot.tau_median, 3),
        "tau_undefined": int(np.isnan(boot.tau).sum()),
        "ranks": list(range(1, len(ranking.submissions) + 1)),
        "rows": rows,
    }


def failures_of(board: Leaderboard, task: str, submission: str) -> list[dict[str, Any]]:
    record = board.record(task, submission)
    found = []
    for case_id, result in record.cases.items():
        for step in result.steps:
            failure = step.failure
            if failure:
                found.append(
                    {
                        "case_id": case_id,
                        "step": step.step,
                        "reason": failure.reason.value,
                        "detail": failure.detail,
                        "log_tail": failure.log_tail,
                    }
                )
    return found


def case_step_table(view: case_view.CaseView) -> Table:
    """Every step of a case: its new interactions, each metric per class (with units), and
    why it failed."""
    result = view.result
    keys = [str(k) for k in result.classes]
    multi = len(keys) > 1
    columns = [Column("Step"), Column("New interactions (voxel z, y, x)", numeric=False)]
    for metric in result.metrics:
        columns.append(Column(column_label(metric), title=direction_hint(metric)))
        if multi:
            columns += [Column(f"{result.classes[int(k)]}: {column_label(metric)}") for k in keys]
    columns.append(Column("Failure", numeric=False))
    rows = []
    for step in result.steps:
        given = ", ".join(
            f"{'+' if i.positive else '−'}{i.kind} {i.class_id} at {list(i.coords[0])}"
            for i in step.new_interactions or ()
        )
        cells = [number_cell(step.step), text_cell(given or "none")]
        for metric in result.metrics:
            value = step.metrics[metric]
            cells.append(number_cell(value.mean, 4))
            if multi:
                cells += [number_cell(value.per_class.get(k), 4) for k in keys]
        failure = step.failure
        reason = f"{failure.reason.value}: {failure.detail}" if failure else ""
        cells.append(text_cell(reason, cls="warn" if failure else ""))
        rows.append(tuple(cells))
    return Table(tuple(columns), tuple(rows), "steps", f"Steps of {result.case_id}")


def case_pictures(run_dir: Path, case_id: str) -> dict[str, Any]:
    """The pictures of a case page, as data URIs (the page's policy allows no other image):
    the strip over all steps, the step after which the first metric fell most (if it fell),
    and the last step."""
    view = case_view.load_case_view(run_dir, case_id)
    last = case_view.step_numbers(view)[-1]
    worst = case_view.worst_step(view)
    steps = []
    if worst is not None and worst != last:
        steps.append(
            (worst, f"Step {worst}: where {metric_label(view.result.metrics[0])} fell most")
        )
    steps.append((last, f"Step {last}: the last step"))
    return {
        "channel": view.channel_name,
        "step_table": case_step_table(view),
        "strip": pictures.png_data_uri(case_view.strip_figure(view)),
        "steps": [
            {"heading": heading, "src": pictures.png_data_uri(case_view.step_figure(view, step))}
            for step, heading in steps
        ],
    }


def write_case_pages(
    board: Leaderboard, task: str, submission: str, out_dir: Path, render: Any
) -> tuple[dict[str, str], str]:
    """A page per case whose predictions the run kept; returns (case id -> page, a note for the
    submission page: why there are no case pages, "" when there are)."""
    record = board.record(task, submission)
    kept = [c for c in record.cases if store.saved_prediction_steps(record.run_dir, c)]
    if not kept:
        return {}, "The run kept no predictions (segloop run --save-predictions), so no case pages."
    links = {}
    for case_id in kept:
        try:
            content = case_pictures(record.run_dir, case_id)
        except SegloopError as error:  # e.g. the dataset moved: the rest of the site still works
            return links, f"No case pages: {error}"
        page = case_page(task, submission, case_id)
        write_page(
            out_dir / page,
            render(
                "case.html",
                title=f"{case_id}: {submission} on {task}",
                case_id=case_id,
                task=task,
                task_href=task_page(task),
                submission=submission,
                submission_href=submission_page(task, submission),
                **content,
            ),
        )
        links[case_id] = page
    return links, ""


def write_page(path: Path, html: str) -> None:
    """Write a page as UTF-8; text that cannot be (a lone surrogate from an undecodable file
    name) is written as an escape rather than failing the whole site."""
    path.write_text(html, encoding="utf-8", errors="backslashreplace")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _assets() -> dict[str, Any]:
    css = (TEMPLATES / "style.css").read_text()
    script = (TEMPLATES / "sort.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    return {"css": Markup(css), "script": Markup(script), "csp": policy}


def term_rows(terms: Iterable[ScoreTerm]) -> list[dict[str, str]]:
    return [
        {
            "label": metric_label(t.metric, t.kind),
            "column": t.column,
            "weight": format_number(t.weight),
            "direction": direction_hint(t.metric),
        }
        for t in terms
    ]


@dataclass(frozen=True)
class SiteOptions:
    """What the reader sees beyond the numbers: the site's title, the dataset's name, and
    whether local paths (dataset and run folders, paths in model specs) are shown. Paths are
    hidden by default: a published leaderboard must not show the organizer's file system."""

    title: str = "segloop leaderboard"
    dataset_name: str = ""
    show_paths: bool = False
    case_pages: bool = True  # a page per case of runs that kept predictions (seconds each)


DEFAULT_SITE_OPTIONS = SiteOptions()


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/'\"]+/)*([^\s/'\"]+)")


def hide_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last component (``…/model.py``)."""
    return ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)


def dataset_label(record: Any, options: SiteOptions) -> str:
    """The dataset as the pages name it: the given name, else the folder's own name (its full
    path with ``show_paths``)."""
    folder = str(record.run.get("dataset", ""))
    if options.show_paths:
        return f"{options.dataset_name} ({folder})" if options.dataset_name else folder
    return options.dataset_name or Path(folder).name


def datasets_label(datasets: str, options: SiteOptions) -> str:
    """A task's datasets (``;``-separated folders of its runs) as its page names them: the given
    name, else each folder's own name; full paths only with ``show_paths``."""
    folders = [f for f in datasets.split(";") if f]
    shown = ", ".join(folders if options.show_paths else [Path(f).name for f in folders])
    if options.dataset_name:
        return f"{options.dataset_name} ({shown})" if options.show_paths else options.dataset_name
    return shown


def missing_cases(board: Leaderboard, task: str, submission: str) -> list[str]:
    """The task's cases (those any submission has) that this submission has no result for."""
    cases = board.cases[board.cases["task"] == task]
    everyone = set(cases["case_id"])
    own = set(cases[cases["submission"] == submission]["case_id"])
    return sorted(everyone - own)


def render_site(
    board: Leaderboard,
    out_dir: Path,
    data_dir_name: str = "data",
    options: SiteOptions = DEFAULT_SITE_OPTIONS,
    user_shift: Sequence[UserShiftRow] = (),
) -> Path:
    """Write every page of ``board`` into ``out_dir``; return the index page."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    common = {
        **_assets(),
        "tasks_nav": [(t, task_page(t)) for t in board.rankings],
        "site_title": options.title,
    }
    data_files = sorted(p.name for p in (out_dir / data_dir_name).glob("*") if p.is_file())
    index = out_dir / "index.html"
    write_page(
        index,
        env.get_template("index.html").render(
            **common,
            title=options.title,
            dataset_name=options.dataset_name,
            tasks_table=task_index_table(board),
            consensus=consensus_table(board) if board.rankings else None,
            robustness=robustness_view(board),
            user_shift=user_shift_view(user_shift),
            submissions=[
                (task, [(s, submission_page(task, s)) for s in ranking.table()["submission"]])
                for task, ranking in board.rankings.items()
            ],
            data_dir=data_dir_name,
            data_files=data_files,
            runs=[str(r.run_dir) for r in board.records] if options.show_paths else [],
        ),
    )
    for task, ranking in board.rankings.items():
        info = board.tasks.set_index("task").loc[task]
        write_page(
            out_dir / task_page(task),
            env.get_template("task.html").render(
                **common,
                title=f"{task}: {options.title}",
                task=task,
                dataset_name=options.dataset_name,
                meanings=[
                    {"label": metric_label(m), "meaning": auc_meaning(m)}
                    for m in board.tasks.set_index("task").loc[task, "metrics"].split(",")
                    if m
                ],
                description=info["description"],
                num_steps=format_number(info["num_steps"]),
                auc_steps=info["auc_steps"],
                dataset={
                    "label": datasets_label(info["datasets"], options),
                    "num_cases": format_number(info["num_cases"]),
                    "fingerprint": info["dataset_fingerprint"][:12],
                    "scoring_modes": info["scoring_modes"],
                    "mixed": info["mixed"] if options.show_paths else hide_paths(info["mixed"]),
                },
                terms=term_rows(ranking.terms),
                table=leaderboard_table(board, task),
                charts=task_charts(board, task),
                classes_table=class_table(board, task),
                class_charts=class_charts(board, task),
                stability=stability_view(ranking),
            ),
        )
        for submission in ranking.submissions:
            record = board.record(task, submission)
            case_links, case_note = (
                write_case_pages(
                    board,
                    task,
                    submission,
                    out_dir,
                    lambda name, **values: env.get_template(name).render(**common, **values),
                )
                if options.case_pages
                else ({}, "Case pages were not written (segloop leaderboard --no-case-pages).")
            )
            ranked = ranking.table().set_index("submission").loc[submission]
            model = str(record.run.get("model", ""))
            write_page(
                out_dir / submission_page(task, submission),
                env.get_template("submission.html").render(
                    **common,
                    title=f"{submission} on {task}",
                    task=task,
                    task_href=task_page(task),
                    submission=submission,
                    rank=format_number(ranked["rank"]),
                    score=format_number(ranked["score"], 3),
                    run={
                        "model": model if options.show_paths else hide_paths(model),
                        "dataset": dataset_label(record, options),
                        "folder": str(record.run_dir) if options.show_paths else "",
                        "config_hash": str(record.run.get("config_hash", "")),
                        "version": str(record.run.get("segloop_version", "")),
                    },
                    missing=missing_cases(board, task, submission),
                    cases=case_table(board, task, submission, case_links),
                    case_note=case_note,
                    chart=submission_chart(board, task, submission),
                    failures=failures_of(board, task, submission),
                ),
            )
    return index


def write_site(
    run_paths: Iterable[Path],
    out_dir: Path,
    score_overrides: Mapping[str | None, Sequence[ScoreTerm]] | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    options: SiteOptions = DEFAULT_SITE_OPTIONS,
    allow_mixed: bool = False,
    user_shift: Sequence[UserShiftRow] = (),
) -> Path:
    """Read the runs, rank them, write ``out_dir/data/*`` tables and the pages; return index.
    ``user_shift``: rows of a user-shift table (``segloop user-shift``) to show and publish."""
    board = build_leaderboard(run_paths, score_overrides, n_bootstrap, seed, allow_mixed)
    write_tables(board, Path(out_dir) / "data")
    write_table(class_frame(board), Path(out_dir) / "data", "classes")
    if user_shift:
        data = Path(out_dir) / "data"
        write_user_shift(user_shift, data / "user-shift.csv", data / "user-shift.json")
    return render_site(board, Path(out_dir), options=options, user_shift=user_shift)


def render_detailed_results(result: Mapping[str, Any], scores: Mapping[str, Any]) -> str:
    """Codabench's ``detailed_results.html`` for one submission: the scores, the mean curve of
    every metric, per-case summaries and failures; self-contained like the site."""
    metric_names = list(result["metrics"])
    curve = result["aggregates"]["mean_curve"]
    charts = [
        line_chart(
            f"{metric_label(m)} vs step (mean over cases)",
            "step (interactions given)",
            f"{column_label(m)}, {direction_hint(m)}",
            [("this submission", [(float(s), v) for s, v in enumerate(curve[m])])],
            metric_range(m),
        )
        for m in metric_names
    ]
    columns = [Column("Case", numeric=False)]
    columns += [Column(column_label(m, k)) for m in metric_names for k in SUMMARY_KINDS]
    columns.append(Column("Failed steps"))
    rows = []
    failures = []
    for case_id, case in sorted(result["case"].items()):
        cells = [text_cell(case_id, cls="name")]
        cells += [
            number_cell(case["summary"][m].get(k), 4) for m in metric_names for k in SUMMARY_KINDS
        ]
        cells.append(number_cell(case["failed_steps"], cls="warn" if case["failed_steps"] else ""))
        rows.append(tuple(cells))
        for step in case["steps"]:
            if step.get("failure"):
                failures.append(
                    {
                        "case_id": case_id,
                        "step": step["step"],
                        "reason": str(step["failure"].get("reason", "")),
                        "detail": str(step["failure"].get("detail", "")),
                        "log_tail": str(step["failure"].get("log_tail", "")),
                    }
                )
    score_rows = [(key, format_number(value, 4)) for key, value in scores.items()]
    return (
        environment()
        .get_template("detailed.html")
        .render(
            **_assets(),
            tasks_nav=[],
            site_title="segloop results",
            title=f"segloop results: {result['task']}",
            task=str(result["task"]),
            scores=score_rows,
            charts=charts,
            cases=Table(tuple(columns), tuple(rows), "cases", "Cases"),
            failures=failures,
            ignored=[str(name) for name in result.get("ignored_files", [])],
        )
    )
