"""Codabench mode: a scoring program (``segloop codabench-score``) and an example bundle.

Codabench runs the scoring program as ``<program> INPUT OUTPUT`` with ``INPUT/ref`` (the
organizer's reference data) and ``INPUT/res`` (the participant's unzipped submission), and
reads ``OUTPUT/scores.json`` (keys = leaderboard columns) and ``OUTPUT/detailed_results.html``.

Layout (our decision, documented in the bundle's evaluation page):

    ref/<case>.nii.gz              ground-truth label map per case (.nii.gz, .nii, .mha, .nrrd;
                                   also accepted under ref/labelsTs/)
    ref/segloop.json               {"task": "autopet"}: the task preset that scores it
    res/<case>_step<k>.nii.gz      the participant's prediction of <case> at step k, k = 0, 1,
                                   ... (the step number is parsed as a number: _step10 follows
                                   _step9; files may sit in sub-folders of res/)

A missing, unreadable or mis-shaped prediction scores as an empty prediction for that step and
is listed in the detailed results; a prediction for a case that is not in ref/, or two files
for one (case, step), stop the scoring with a message.

scores.json: the mean over cases of ``<metric>_<kind>`` for every metric of the task and kind
in auc_raw, auc_normalised, final (the leaderboard's column names), plus ``failed_steps`` and
``num_cases``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segloop.containers.images import SCORING_IMAGE
from segloop.core import store, untrusted
from segloop.core.challenges import CHALLENGES, Challenge, challenge_to_toml
from segloop.core.metrics.registry import higher_is_better
from segloop.core.records import FailureReason, SegloopError, StepFailure
from segloop.core.results import SUMMARY_KINDS, column_name
from segloop.core.untrusted import RefusedFile, UntrustedPath
from segloop.leaderboard.html import render_detailed_results
from segloop.leaderboard.scoring import scoring_for
from segloop.leaderboard.stepscore import StepInput, aggregate_cases, score_case
from segloop.protocols.tasks import is_reactive, robot_user_from_json

# Detached headers are matched too, so that they are refused with a reason (not ignored).
PREDICTION_NAME = re.compile(
    r"^(?P<case>.+)_step(?P<step>\d+)(?P<ext>\.nii\.gz|\.nii|\.mha|\.nrrd|\.mhd|\.hdr|\.nhdr)$",
    re.IGNORECASE,
)
REFERENCE_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".nrrd")
TASK_FILE = "segloop.json"
TASK_TOML = "task.toml"  # a TOML task's file name inside the bundle's scoring program


def task_from_reference(input_dir: Path, task: str | None) -> str:
    """``--task``, else ``ref/segloop.json``'s "task": a preset name, or a ``.toml`` file name
    in ``ref/`` (a bundle of a TOML task ships it there)."""
    if task:
        return task
    path = Path(input_dir) / "ref" / TASK_FILE
    if not path.is_file():
        raise SegloopError(f'{path}: no such file; give --task or write {{"task": ...}} there')
    data = store.read_json(path)
    if not isinstance(data.get("task"), str):
        raise SegloopError(f'{path}: expected {{"task": "<task name>"}}')
    name = data["task"]
    if name.endswith(".toml"):
        if Path(name).name != name:
            raise SegloopError(f"{path}: the task file must be a plain file name in ref/")
        return str(Path(input_dir) / "ref" / name)
    return name


def reference_cases(ref_dir: Path) -> dict[str, Path]:
    """Case id -> ground-truth file in ``ref/`` (or ``ref/labelsTs/``)."""
    ref_dir = Path(ref_dir)
    if not ref_dir.is_dir():
        raise SegloopError(f"{ref_dir}: no reference folder")
    cases: dict[str, Path] = {}
    for folder in (ref_dir, ref_dir / "labelsTs"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            lower = path.name.lower()
            ext = next((e for e in REFERENCE_EXTENSIONS if lower.endswith(e)), None)
            if ext is None or not path.is_file():
                continue
            case_id = path.name[: -len(ext)]
            if case_id in cases:
                raise SegloopError(f"{path}: case {case_id} also in {cases[case_id]}")
            cases[case_id] = path
    if not cases:
        raise SegloopError(f"{ref_dir}: no ground-truth image (<case>{{.nii.gz,.mha,...}})")
    return cases


def submission_files(
    res_dir: Path, case_ids: Sequence[str]
) -> tuple[dict[tuple[str, int], UntrustedPath], list[str]]:
    """(case, step) -> prediction file, and the files that are not predictions (links and
    special files among them, with why: the submission is walked without following links)."""
    res_dir = Path(res_dir)
    if not res_dir.is_dir():
        raise SegloopError(f"{res_dir}: no submission folder")
    known = set(case_ids)
    found: dict[tuple[str, int], UntrustedPath] = {}
    try:
        files, skipped = untrusted.walk_files(res_dir)
    except RefusedFile as error:
        raise SegloopError(f"{res_dir}: {error}") from None
    ignored = [f"{name} ({why})" for name, why in skipped]
    for path in files:
        match = PREDICTION_NAME.match(path.name)
        if match is None:
            ignored.append(str(path))
            continue
        key = (match["case"], int(match["step"]))
        if key[0] not in known:
            raise SegloopError(
                f"{res_dir / str(path)}: case {key[0]!r} is not in the reference data "
                f"(name predictions <case>_step<k>.nii.gz)"
            )
        if key in found:
            raise SegloopError(
                f"{res_dir / str(path)}: a second prediction for {key[0]} step {key[1]} "
                f"({found[key]})"
            )
        found[key] = path
    return found, sorted(ignored)


def score_submission(input_dir: Path, spec: Challenge) -> dict[str, Any]:
    """Score ``INPUT/res`` against ``INPUT/ref``: per case results and aggregates."""
    input_dir = Path(input_dir)
    references = reference_cases(input_dir / "ref")
    files, ignored = submission_files(input_dir / "res", list(references))
    num_steps = spec.num_steps
    if num_steps is None:
        num_steps = max((step for _, step in files), default=0) + 1
    beyond = sorted({k for k in files if k[1] >= num_steps})
    if beyond:
        case_id, step = beyond[0]
        raise SegloopError(
            f"{files[beyond[0]]}: step {step} of {case_id}, but the task has {num_steps} steps "
            f"(0..{num_steps - 1})"
        )
    cases = {}
    for case_id, gt_path in references.items():
        steps = [
            StepInput(files[(case_id, s)], None, {"file": files[(case_id, s)].name})
            if (case_id, s) in files
            else StepInput(
                None,
                StepFailure(
                    FailureReason.MISSING_PREDICTION, f"no {case_id}_step{s}.* in res/", ""
                ),
                {"file": None},
            )
            for s in range(num_steps)
        ]
        cases[case_id] = score_case(case_id, steps, gt_path, spec)
    return {
        "task": spec.name,
        "metrics": list(spec.metrics),
        "case": {case_id: result.to_json() for case_id, result in cases.items()},
        "aggregates": aggregate_cases(cases, spec.metrics),
        "ignored_files": ignored,
    }


def scores_json(result: Mapping[str, Any]) -> dict[str, Any]:
    """The leaderboard columns: mean over cases of every ``<metric>_<kind>``, failures, cases."""
    aggregates = result["aggregates"]
    scores: dict[str, Any] = {
        column_name(m, k): aggregates[column_name(m, k)]["mean"]
        for m in result["metrics"]
        for k in SUMMARY_KINDS
    }
    scores["failed_steps"] = aggregates["failed_steps"]
    scores["num_cases"] = aggregates["num_cases"]
    return scores


def write_scores(result: Mapping[str, Any], output_dir: Path) -> tuple[Path, Path]:
    """``OUTPUT/scores.json`` and ``OUTPUT/detailed_results.html``."""

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scores_path = output_dir / "scores.json"
    store.write_json_atomic(scores_path, scores_json(result))
    html_path = output_dir / "detailed_results.html"
    html_path.write_text(
        render_detailed_results(result, scores_json(result)),
        encoding="utf-8",
        errors="backslashreplace",
    )
    return scores_path, html_path


# ---------------------------------------------------------------- the example bundle


def _q(text: str) -> str:
    """A YAML scalar: a JSON string is a valid double-quoted YAML scalar."""
    return json.dumps(text)


def leaderboard_columns(task: str, metric_names: Sequence[str]) -> list[dict[str, Any]]:
    """Leaderboard columns, the task's score terms first (the first is the primary one)."""
    pairs = [(t.metric, t.kind) for t in scoring_for(task, list(metric_names))]
    pairs += [(m, k) for m in metric_names for k in SUMMARY_KINDS if (m, k) not in pairs]
    columns = [
        {
            "title": f"{metric} {kind.replace('_', ' ')}",
            "key": column_name(metric, kind),
            "index": index,
            "sorting": "desc" if higher_is_better(metric) else "asc",
        }
        for index, (metric, kind) in enumerate(pairs)
    ]
    columns.append(
        {"title": "failed steps", "key": "failed_steps", "index": len(pairs), "sorting": "asc"}
    )
    return columns


def competition_yaml(spec: Challenge) -> str:
    lines = [
        "# Codabench competition bundle written by `segloop codabench-bundle`.",
        "# Upload the zipped folder at https://www.codabench.org (Benchmarks > Upload).",
        "version: 2",
        f"title: {_q(f'segloop interactive segmentation: {spec.name}')}",
        f"description: {_q(f'Interactive segmentation scored by segloop with the {spec.name} task preset.')}",
        "registration_auto_approve: true",
        f"docker_image: {_q(SCORING_IMAGE)}",
        "enable_detailed_results: true",
        "terms: pages/terms.md",
        "pages:",
        "  - title: Overview",
        "    file: pages/overview.md",
        "  - title: Evaluation",
        "    file: pages/evaluation.md",
        "tasks:",
        "  - index: 0",
        f"    name: {_q(spec.name)}",
        f"    description: {_q(f'Predictions <case>_step<k> scored by segloop ({spec.name})')}",
        "    is_public: false",
        "    reference_data: reference_data",
        "    scoring_program: scoring_program",
        "phases:",
        "  - index: 0",
        "    name: Development",
        '    description: "Submit a zip of <case>_step<k>.nii.gz predictions."',
        "    start: 1-1-2026",
        "    max_submissions_per_day: 5",
        "    max_submissions: 100",
        "    execution_time_limit: 3600",
        "    tasks:",
        "      - 0",
        "leaderboards:",
        "  - index: 0",
        "    title: Results",
        "    key: Results",
        "    columns:",
    ]
    for column in leaderboard_columns(spec.name, spec.metrics):
        lines += [
            f"      - title: {_q(column['title'])}",
            f"        key: {_q(column['key'])}",
            f"        index: {column['index']}",
            f"        sorting: {column['sorting']}",
        ]
    return "\n".join(lines) + "\n"


SCORE_PY = '''#!/usr/bin/env python3
"""Codabench scoring program: segloop scores the submission.

Codabench runs: python3 /app/program/score.py /app/input /app/output
The docker image must have segloop installed: segloop/scoring, built by
`segloop images build --with-scoring` from segloop's source.
"""

import os
import shutil
import subprocess
import sys

TASK = {task}
HERE = os.path.dirname(os.path.abspath(__file__))
if TASK.endswith(".toml"):  # the organizer's own task, shipped in this folder
    TASK = os.path.join(HERE, TASK)

command = ["segloop"] if shutil.which("segloop") else [sys.executable, "-m", "segloop"]
sys.exit(subprocess.call(command + ["codabench-score", sys.argv[1], sys.argv[2], "--task", TASK]))
'''


def evaluation_page(spec: Challenge, num_steps: int) -> str:
    columns = "\n".join(
        f"| `{c['key']}` | {'higher' if c['sorting'] == 'desc' else 'lower'} is better |"
        for c in leaderboard_columns(spec.name, spec.metrics)
    )
    return f"""# Evaluation

Submit a zip file of predictions, one label image per case and step:

    <case>_step<k>.nii.gz     k = 0 .. {num_steps - 1} (also .nii, .mha, .nrrd; sub-folders allowed)

The step number is read as a number (`_step10` comes after `_step9`). Each file is an integer
label map on the case image's grid (same shape, spacing, origin and direction). A missing or
unusable file is scored as an empty prediction for that step and listed in the detailed results;
no earlier step's file is ever reused.

Per case and step, segloop computes {", ".join(spec.metrics)} (per class, in mm / ml, mean over
classes); per case each metric's step curve becomes its AUC (trapezoid; raw on the task's x-axis
and normalised to [0, 1]) and its Final value (last step). The leaderboard shows the mean over
cases:

| column | |
| --- | --- |
{columns}
"""


def check_scorable_from_uploads(spec: Challenge) -> None:
    """Refuse a task whose robot user reacts to the model's predictions: its clicks depend on
    predictions the organizer never sees, so uploaded prediction files cannot be scored (the
    participant's clicks would be their own)."""
    user = robot_user_from_json(spec.protocol, f"task {spec.name!r}")
    if is_reactive(user) or spec.send_previous_prediction:
        raise SegloopError(
            f"task {spec.name!r}: its robot user ({spec.protocol.get('name')}) reacts to the "
            "model's predictions, so Codabench cannot score uploaded predictions; run it with "
            "`segloop run` (or as Grand Challenge algorithm containers)"
        )


def write_bundle(spec: Challenge, out_dir: Path) -> list[Path]:
    """An example Codabench bundle for ``spec``'s task; returns the files written. A task read
    from a TOML file travels with the bundle (``scoring_program/task.toml``, written by
    :func:`challenge_to_toml`): Codabench's scoring image knows only the presets."""
    check_scorable_from_uploads(spec)
    out_dir = Path(out_dir)
    num_steps = spec.num_steps or 1
    own_task = bool(spec.source) or spec.name not in CHALLENGES
    task_ref = TASK_TOML if own_task else spec.name
    files = {
        "competition.yaml": competition_yaml(spec),
        "scoring_program/metadata.yaml": "command: python3 /app/program/score.py /app/input /app/output\n",
        "scoring_program/score.py": SCORE_PY.format(task=json.dumps(task_ref)),
        f"reference_data/{TASK_FILE}": json.dumps({"task": task_ref}, indent=1) + "\n",
        "reference_data/README.md": (
            "Put one ground-truth label map per case here: <case>.nii.gz (or .nii, .mha, .nrrd).\n"
        ),
        "pages/overview.md": (
            f"# {spec.name}\n\nInteractive segmentation: a deterministic robot user gives the "
            f"interactions, your model predicts after each of {num_steps} steps, segloop scores "
            "every step. Run your model locally with `segloop run --task "
            f"{spec.name}` to get exactly the organizer's numbers.\n"
        ),
        "pages/evaluation.md": evaluation_page(spec, num_steps),
        "pages/terms.md": "# Terms\n\nTo be written by the organizers.\n",
        "README.md": (
            "Example Codabench bundle written by `segloop codabench-bundle`.\n\n"
            f"The scoring program needs a docker image with segloop installed, named {SCORING_IMAGE}\n"
            "in competition.yaml: build it from segloop's source with\n"
            "`segloop images build --with-scoring`, then `docker push` it under a name Codabench\n"
            "can pull (and put that name in competition.yaml's docker_image).\n"
            "Add the ground truth to reference_data/, zip the folder's content and upload it.\n"
            "Test locally: segloop codabench-score INPUT OUTPUT with INPUT/ref = reference_data,\n"
            "INPUT/res = an unzipped submission.\n"
        ),
    }
    if own_task:  # next to the program, and in ref/ for `codabench-score` without --task
        files[f"scoring_program/{TASK_TOML}"] = challenge_to_toml(spec)
        files[f"reference_data/{TASK_TOML}"] = challenge_to_toml(spec)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    (out_dir / "scoring_program" / "score.py").chmod(0o755)
    return written
