"""What the model did on one case of a run: its kept predictions, clicks and metrics as pictures.

Reads a run folder (``run.json``, ``cases/<case>.json`` and the predictions that
``segloop run --save-predictions`` kept under ``cases/<case>/``) and the run's dataset, and draws
with :mod:`segloop.leaderboard.pictures`. Shared by ``segloop show``, the leaderboard's case
pages and :mod:`segloop.api`, so all three show the same picture of a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from segloop.core import images, store
from segloop.core.challenges import CHALLENGES
from segloop.core.metrics.registry import higher_is_better
from segloop.core.records import Interaction, SegloopError
from segloop.core.results import CaseResult
from segloop.leaderboard import pictures
from segloop.runs import load_dataset_case

# The channel a reader looks at first, where a task names its channels: the one the robot user
# reads its targets from (autoPET's lesions are found on PET, not CT).
PREFERRED_CHANNELS = ("PET",)
# Where a picture cuts the volume: through the step's newest click, or its largest error.
FOCUS_CHOICES = ("click", "error")


@dataclass(frozen=True, eq=False)
class CaseView:
    """One case of a run, ready to draw: one image channel, the ground truth, the case result
    and the kept predictions (step -> label map; empty when the run kept none)."""

    case_id: str
    channel_name: str
    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, float, float]
    result: CaseResult
    predictions: dict[int, np.ndarray]

    @property
    def interactions(self) -> list[Interaction]:
        return pictures.interactions_of(self.result)

    def metrics_text(self, step: int) -> str:
        record = next((s for s in self.result.steps if s.step == step), None)
        if record is None:
            return ""
        values = {name: value.to_json() for name, value in record.metrics.items()}
        text = pictures.format_metrics(values, list(self.result.metrics))
        return f"{text} · FAILED: {record.failure.reason.value}" if record.failure else text


def picture_channel(task_name: str, num_channels: int, channel: int | None = None) -> int:
    """The channel to draw: ``channel`` if given (checked), else the preset's preferred one
    (:data:`PREFERRED_CHANNELS`), else the first."""
    if channel is not None:
        if not 0 <= channel < num_channels:
            raise SegloopError(f"--channel {channel}: the case has channels 0..{num_channels - 1}")
        return channel
    names = CHALLENGES[task_name].channels if task_name in CHALLENGES else None
    for preferred in PREFERRED_CHANNELS:
        if names and preferred in names and names.index(preferred) < num_channels:
            return names.index(preferred)
    return 0


def channel_name(task_name: str, index: int) -> str:
    names = CHALLENGES[task_name].channels if task_name in CHALLENGES else None
    return names[index] if names and index < len(names) else f"channel {index}"


def dataset_of(run_dir: Path, data: Path | None = None) -> Path:
    """The run's dataset folder (as stored in run.json), or ``data`` when it moved."""
    if data is not None:
        return Path(data)
    run = store.read_json(Path(run_dir) / store.RUN_FILE)
    folder = Path(str(run.get("dataset", "")))
    if not (folder / "imagesTs").is_dir():
        raise SegloopError(
            f"{Path(run_dir) / store.RUN_FILE}: its dataset {folder} is not there any more; "
            "pass --data with the dataset's new folder"
        )
    return folder


def load_case_view(
    run_dir: Path,
    case_id: str,
    data: Path | None = None,
    channel: int | None = None,
    steps: Sequence[int] | None = None,
) -> CaseView:
    """Read one case of a run: its result, the dataset's image and label, its kept predictions
    (of ``steps`` only, if given). A case the run has not finished is refused with one line."""
    run_dir = Path(run_dir)
    path = store.case_result_path(run_dir, case_id)
    if not path.exists():
        known = sorted(p.stem for p in (run_dir / store.CASES_DIR).glob("*.json"))
        known = [k for k in known if not k.endswith(".timing")]
        raise SegloopError(
            f"{run_dir}: no finished case {case_id!r} (cases: {', '.join(known[:10]) or 'none'})"
        )
    result = CaseResult.from_json(store.read_json(path), str(path))
    case = load_dataset_case(dataset_of(run_dir, data), case_id)
    index = picture_channel(result.task, len(case.channels), channel)
    wanted = store.saved_prediction_steps(run_dir, case_id)
    if steps is not None:
        wanted = [s for s in wanted if s in set(steps)]
    predictions = {
        step: images.read_label(
            store.prediction_path(run_dir, case_id, step), case.geometry, None, case.shape
        )
        for step in wanted
    }
    return CaseView(
        case_id,
        channel_name(result.task, index),
        case.channels[index],
        case.label,
        case.spacing_mm,
        result,
        predictions,
    )


def step_numbers(view: CaseView) -> list[int]:
    return [s.step for s in view.result.steps]


def check_step(view: CaseView, step: int) -> None:
    steps = step_numbers(view)
    if step not in steps:
        raise SegloopError(f"case {view.case_id}: no step {step} (steps {steps[0]}..{steps[-1]})")


def step_figure(view: CaseView, step: int, width_px: int = 1200, focus: str = "click") -> Figure:
    """Orthogonal slices through the step's newest click (``focus="error"``: the centre of its
    largest error), the ground truth contour, the kept prediction (if any) and the clicks so
    far; metrics in the title."""
    check_step(view, step)
    if focus not in FOCUS_CHOICES:
        raise SegloopError(f"focus {focus!r}: expected one of {', '.join(FOCUS_CHOICES)}")
    return pictures.case_step_figure(
        view.image,
        view.label,
        view.predictions.get(step),
        view.interactions,
        view.spacing_mm,
        step,
        view.metrics_text(step),
        case_id=f"{view.case_id} ({view.channel_name})",
        prefer="error" if focus == "error" else "click",
        width_px=width_px,
    )


def strip_figure(view: CaseView, metric: str | None = None, focus: str = "click") -> Figure:
    """One axial panel per step, each captioned with the step's ``metric`` (default: the
    task's first)."""
    steps = step_numbers(view)
    name = metric or view.result.metrics[0]
    by_step = {s.step: s for s in view.result.steps}
    captions = [
        pictures.format_metrics({name: by_step[s].metrics[name].to_json()}, [name])
        + (" (failed)" if by_step[s].failure else "")
        for s in steps
    ]
    return pictures.case_strip_figure(
        view.image,
        view.label,
        [view.predictions.get(s) for s in steps],
        view.interactions,
        view.spacing_mm,
        captions,
        steps=steps,
        case_id=f"{view.case_id} ({view.channel_name})",
        prefer="error" if focus == "error" else "click",
    )


def worst_step(view: CaseView) -> int | None:
    """The step after which the task's first metric fell most (the step a reader wants to see
    when a click made things worse); None when it never fell."""
    name = view.result.metrics[0]
    better_high = higher_is_better(name)
    values = [(s.step, s.metrics[name].mean) for s in view.result.steps]
    drops = []
    for (_, before), (step, after) in zip(values, values[1:], strict=False):
        if before is None or after is None:
            continue
        drop = (before - after) if better_high else (after - before)
        if drop > 0:
            drops.append((drop, -step))
    return -max(drops)[1] if drops else None
