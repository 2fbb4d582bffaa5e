"""Grand Challenge evaluation mode: ``segloop gc-evaluate`` inside an evaluation container.

What Grand Challenge gives an evaluation container (SPEC "Platform contracts"; the layout of
GC's own evaluation examples, e.g. DIAGNijmegen's challenge packs):

    /input/predictions.json                 a list of algorithm jobs:
        {"pk": "<job uuid>", "status": "Succeeded",
         "inputs":  [{"interface": {"slug": "pet", "relative_path": "images/pet", ...},
                      "image": {"pk": "...", "name": "case_000_0001.mha"}, "value": null},
                     {"interface": {"slug": "lesion-clicks", "kind": "Multiple points", ...},
                      "value": {"type": "Multiple points", "points": [{"point": [x, y, z],
                                                                       "name": "tumor"}, ...]}}],
         "outputs": [{"interface": {"slug": "tumor-lesion-segmentation",
                                    "relative_path": "images/tumor-lesion-segmentation"},
                      "image": {"name": "....mha"}}]}
        (newer GC versions name the "interface" key "socket"; both are read)
    /input/<job pk>/output/<relative path>/  the job's output files (one image per folder)
    /opt/ml/input/data/ground_truth/         the organizer's ground truth
    /output/metrics.json                     what we write

The interactive challenges ran one job per step. The jobs of one case share its image; which
step a job is comes from its *click count*: step = the largest number of points sharing one
name (autoPET: k tumor + k background clicks at step k; ToothFairy3: k per canal). Never from
file names (sorting "_10" before "_2" as text was a defect of the originals). A step with no
job, a failed job or an unusable output is scored as an empty prediction and recorded; a ground-truth case
that no job names is scored with every step missing.

The case id is the image's name without extension and without an nnU-Net channel suffix
(``case_000_0001.mha`` -> ``case_000``); the ground truth is ``<ground truth>/<case id>.<ext>``
(or ``<image name stem>.<ext>``), ext one of .mha, .nii.gz, .nii, .nrrd, optionally under
``labelsTs/``.

metrics.json: ``{"case": {<case id>: {"steps": [...], "summary": {<metric>: {"auc_raw",
"auc_normalised", "final"}}, "failed_steps"}}, "aggregates": {"<metric>_<kind>": {"mean",
"std", "median", "min", "max", "count"}, "num_cases", "failed_steps", "missing_cases",
"mean_curve"}}``; the
aggregate keys are the leaderboard's column names (GC leaderboard paths such as
``aggregates.dice_auc_normalised.mean``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segloop.core import store, untrusted_images
from segloop.core.challenges import CHALLENGES, Challenge
from segloop.core.records import FailureReason, SegloopError, StepFailure
from segloop.core.untrusted import RefusedFile, UntrustedPath
from segloop.leaderboard.stepscore import StepInput, aggregate_cases, score_case

FORMAT = "segloop-gc-metrics"
GT_EXTENSIONS = (".mha", ".nii.gz", ".nii", ".nrrd")
# Self-contained images are read; detached headers are found too, to be refused with a reason.
OUTPUT_EXTENSIONS = untrusted_images.IMAGE_EXTENSIONS + untrusted_images.DETACHED_EXTENSIONS
CHANNEL_SUFFIX = re.compile(r"_\d{4}$")
DEFAULT_INPUT_DIR = Path("/input")
DEFAULT_GROUND_TRUTH = Path("/opt/ml/input/data/ground_truth")
DEFAULT_OUTPUT = Path("/output/metrics.json")


@dataclass(frozen=True)
class Sockets:
    """Which job inputs/outputs to read. A name matches a socket's slug or its relative path
    (``pet`` matches ``images/pet``). Given names must match; ``hints`` (the task preset's) are
    tried next; else the first image / "Multiple points" value by slug."""

    image: str | None = None  # the image input that names the case
    clicks: str | None = None  # the "Multiple points" input
    output: str | None = None  # the image output to score
    hints: tuple[str | None, str | None, str | None] = (None, None, None)


def preset_sockets(task: str) -> Sockets:
    """Hints from the challenge's algorithm container interface, if it has one."""
    challenge = CHALLENGES.get(task)
    if challenge is None or challenge.gc is None:
        return Sockets()
    gc = challenge.gc
    return Sockets(hints=(gc.image_slugs[0], gc.clicks_slug, gc.output_slug))


def socket_of(value: Mapping[str, Any]) -> Mapping[str, Any]:
    socket = value.get("interface") or value.get("socket")
    if not isinstance(socket, Mapping):
        raise SegloopError("predictions.json: a job value has no 'interface' (or 'socket')")
    return socket


def slug_of(value: Mapping[str, Any]) -> str:
    return str(socket_of(value).get("slug", ""))


def _values(job: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    values = job.get(key)
    if not isinstance(values, list):
        raise SegloopError(f"{where}: job {job.get('pk')!r} has no list of {key!r}")
    return values


def _matches(value: Mapping[str, Any], name: str) -> bool:
    socket = socket_of(value)
    relative = str(socket.get("relative_path", ""))
    return name in (str(socket.get("slug", "")), relative, relative.rsplit("/", 1)[-1]) or (
        relative == f"{name}.json"
    )


def _pick(
    values: Sequence[Mapping[str, Any]],
    name: str | None,
    hint: str | None,
    test,
    what: str,
    where: str,
) -> Mapping[str, Any]:
    if name is not None:
        for value in values:
            if _matches(value, name):
                return value
        slugs = ", ".join(sorted(slug_of(v) for v in values))
        raise SegloopError(f"{where}: no {what} named {name!r} (the job has {slugs})")
    if hint is not None:
        for value in values:
            if _matches(value, hint) and test(value):
                return value
    candidates = sorted((v for v in values if test(v)), key=slug_of)
    if not candidates:
        raise SegloopError(f"{where}: no {what} found; name it with an option")
    return candidates[0]


def _is_image(value: Mapping[str, Any]) -> bool:
    return isinstance(value.get("image"), Mapping)


def _is_points(value: Mapping[str, Any]) -> bool:
    socket = socket_of(value)
    payload = value.get("value")
    return "point" in str(socket.get("kind", "")).lower() or (
        isinstance(payload, Mapping) and "points" in payload
    )


def case_id_from_image_name(name: str) -> str:
    """``case_000_0001.nii.gz`` -> ``case_000`` (extension and channel suffix removed)."""
    return CHANNEL_SUFFIX.sub("", _strip_extension(name))


def step_of_points(points: Sequence[Mapping[str, Any]]) -> int:
    """The step of a job from its clicks: the largest number of points sharing one name."""
    counts: dict[str, int] = {}
    for point in points:
        name = str(point.get("name", ""))
        counts[name] = counts.get(name, 0) + 1
    return max(counts.values(), default=0)


def clicks_of(value: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    payload = value.get("value")
    if payload is None:
        raise SegloopError(
            f"{where}: the clicks input {slug_of(value)!r} has no value in predictions.json "
            f"(stored as a file: {value.get('file')!r}); store the socket's JSON in the database"
        )
    if isinstance(payload, Mapping):
        points = payload.get("points", [])
    elif isinstance(payload, list):
        points = payload
    else:
        raise SegloopError(f"{where}: the clicks input {slug_of(value)!r} is not Multiple points")
    if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
        raise SegloopError(f"{where}: the clicks input {slug_of(value)!r} has malformed points")
    return list(points)


def output_file(input_dir: Path, job_pk: str, value: Mapping[str, Any]) -> UntrustedPath | None:
    """``/input/<pk>/output/<relative path>``: the file, or the one image inside the folder.

    The pk and the relative path come from predictions.json, the files from the participant's
    container: the path stays inside ``input_dir`` (no '..', no absolute path) and is walked
    without following links. RefusedFile when it escapes, is a link or is ambiguous."""
    relative = str(socket_of(value).get("relative_path", ""))
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if relative.startswith("/") or ".." in parts or not parts:
        raise RefusedFile(
            f"relative_path {relative!r} of job {job_pk}: not a path inside the job's output"
        )
    location = UntrustedPath.below(input_dir, [str(job_pk), "output", *parts], "predictions.json: ")
    try:
        kind = location.kind()
    except RefusedFile:
        return None  # a folder on the way is missing
    if kind == "file":
        return location
    if kind == "dir":
        images = [e.name for e in location.list_dir() if e.name.lower().endswith(OUTPUT_EXTENSIONS)]
        if len(images) == 1:
            return location.child(images[0])
        if len(images) > 1:
            raise RefusedFile(
                f"{location}: {len(images)} images ({', '.join(images[:5])}), expected one"
            )
        return None
    if kind is None:
        return None
    raise RefusedFile(f"{location}: a {kind}, not an image file or folder")


@dataclass(frozen=True)
class Job:
    pk: str
    case_id: str
    image_name: str
    step: int
    num_clicks: int
    step_input: StepInput


def read_predictions(path: Path) -> list[Mapping[str, Any]]:
    try:
        jobs = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SegloopError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as error:
        raise SegloopError(f"{path}: not readable JSON ({str(error)[:200]})") from None
    if not isinstance(jobs, list) or not all(isinstance(j, Mapping) for j in jobs):
        raise SegloopError(f"{path}: expected a list of jobs")
    return jobs


def parse_job(job: Mapping[str, Any], sockets: Sockets, input_dir: Path, where: str) -> Job:
    pk = str(job.get("pk", ""))
    if not pk:
        raise SegloopError(f"{where}: a job has no 'pk'")
    here = f"{where}: job {pk}"
    inputs = _values(job, "inputs", where)
    image = _pick(inputs, sockets.image, sockets.hints[0], _is_image, "image input", here)
    clicks_value = _pick(inputs, sockets.clicks, sockets.hints[1], _is_points, "clicks input", here)
    clicks = clicks_of(clicks_value, here)
    image_name = str(image["image"].get("name", ""))
    extra = {"job_pk": pk, "num_clicks": len(clicks)}
    status = str(job.get("status", "Succeeded"))
    if status != "Succeeded":
        failure = StepFailure(
            FailureReason.JOB_FAILED,
            f"Grand Challenge job {pk} status {status!r}",
            str(job.get("error_message") or ""),
        )
        step_input = StepInput(None, failure, extra)
    else:
        outputs = _values(job, "outputs", where)
        output = _pick(outputs, sockets.output, sockets.hints[2], _is_image, "image output", here)
        try:
            path = output_file(input_dir, pk, output)
        except RefusedFile as error:
            step_input = StepInput(
                None,
                StepFailure(FailureReason.INVALID_OUTPUT, str(error), ""),
                extra,
            )
        else:
            failure = (
                None
                if path is not None
                else StepFailure(
                    FailureReason.MISSING_OUTPUT,
                    f"no output file under {input_dir}/{pk}/output/"
                    f"{socket_of(output).get('relative_path', '')}",
                    "",
                )
            )
            step_input = StepInput(path, failure, extra)
    return Job(
        pk,
        case_id_from_image_name(image_name),
        image_name,
        step_of_points(clicks),
        len(clicks),
        step_input,
    )


def group_steps(jobs: Sequence[Job], num_steps: int | None) -> dict[str, list[StepInput]]:
    """Per case, the step inputs in step order 0..n-1 (n = the task's steps, else the largest
    step found + 1); a step with no job is recorded as missing."""
    by_case: dict[str, dict[int, Job]] = {}
    for job in jobs:
        steps = by_case.setdefault(job.case_id, {})
        if job.step in steps:
            raise SegloopError(
                f"case {job.case_id}: jobs {steps[job.step].pk} and {job.pk} both have "
                f"{job.num_clicks} clicks (step {job.step}); cannot tell their steps apart"
            )
        if num_steps is not None and job.step >= num_steps:
            raise SegloopError(
                f"case {job.case_id}: job {job.pk} has {job.num_clicks} clicks, i.e. step "
                f"{job.step}, but the task has {num_steps} steps (0..{num_steps - 1})"
            )
        steps[job.step] = job
    grouped = {}
    for case_id in sorted(by_case):
        steps = by_case[case_id]
        count = num_steps if num_steps is not None else max(steps) + 1
        grouped[case_id] = [
            steps[s].step_input
            if s in steps
            else StepInput(
                None,
                StepFailure(FailureReason.MISSING_JOB, f"no job with step {s}'s clicks", ""),
                {"job_pk": None, "num_clicks": None},
            )
            for s in range(count)
        ]
    return grouped


def find_ground_truth(folder: Path, names: Sequence[str]) -> Path:
    folder = Path(folder)
    for name in names:
        for sub in (folder, folder / "labelsTs"):
            for ext in GT_EXTENSIONS:
                candidate = sub / f"{name}{ext}"
                if candidate.is_file():
                    return candidate
    raise SegloopError(
        f"{folder}: no ground truth for {' or '.join(dict.fromkeys(names))} "
        f"(looked for <name>{{{','.join(GT_EXTENSIONS)}}}, also under labelsTs/)"
    )


def evaluate(
    predictions_path: Path,
    input_dir: Path,
    ground_truth_dir: Path,
    spec: Challenge,
    sockets: Sockets = Sockets(),
) -> dict[str, Any]:
    """Score every job of predictions.json; return the metrics.json payload.

    A ground-truth case that no job names (the platform lost or skipped it) is scored with
    every step missing, so a submission cannot gain by missing hard cases; such cases are
    listed in ``aggregates.missing_cases``."""
    jobs_json = read_predictions(predictions_path)
    if not jobs_json:
        raise SegloopError(f"{predictions_path}: no job")
    jobs = [parse_job(job, sockets, input_dir, str(predictions_path)) for job in jobs_json]
    image_stems: dict[str, str] = {}
    for job in jobs:
        image_stems.setdefault(job.case_id, _strip_extension(job.image_name))
    grouped = group_steps(jobs, spec.num_steps)
    unused = {
        case_id: path
        for case_id, path in ground_truth_cases(ground_truth_dir).items()
        if case_id not in grouped and case_id not in image_stems.values()
    }
    if unused and spec.num_steps is None:
        raise SegloopError(
            f"{ground_truth_dir}: no job for {', '.join(sorted(unused))}; "
            "give a task with a number of steps to score them as missing"
        )
    cases = {}
    for case_id, steps in grouped.items():
        gt_path = find_ground_truth(ground_truth_dir, [case_id, image_stems[case_id]])
        cases[case_id] = score_case(case_id, steps, gt_path, spec)
    for case_id, gt_path in sorted(unused.items()):
        steps = [
            StepInput(
                None,
                StepFailure(FailureReason.MISSING_JOB, "no job for this case", ""),
                {"job_pk": None, "num_clicks": None},
            )
            for _ in range(spec.num_steps or 0)
        ]
        cases[case_id] = score_case(case_id, steps, gt_path, spec)
    aggregates = aggregate_cases(dict(sorted(cases.items())), spec.metrics)
    aggregates["missing_cases"] = sorted(unused)
    return {
        "format": FORMAT,
        "version": 1,
        "task": spec.name,
        "metrics": list(spec.metrics),
        "case": {case_id: result.to_json() for case_id, result in sorted(cases.items())},
        "aggregates": aggregates,
    }


def _strip_extension(name: str) -> str:
    lower = name.lower()
    for ext in sorted(OUTPUT_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def ground_truth_cases(folder: Path) -> dict[str, Path]:
    """Case id -> ground-truth file: every image in the folder (and its labelsTs/)."""
    found: dict[str, Path] = {}
    for sub in (Path(folder), Path(folder) / "labelsTs"):
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            if path.is_file() and path.name.lower().endswith(GT_EXTENSIONS):
                found.setdefault(_strip_extension(path.name), path)
    return found


def write_metrics(payload: Mapping[str, Any], output: Path) -> None:
    store.write_json_atomic(Path(output), payload)
