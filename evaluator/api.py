"""segloop from Python, for notebooks: run a model given as a function, get pandas tables,
look at a case.

    from segloop import api

    run = api.run(predict, data="data/pet", task="autopet", out="runs/mine")
    run.cases        # one row per case: AUC (raw, normalised) and Final of every metric
    run.steps        # one row per case and step: every metric, failure, model time
    run.summary      # one row per metric: mean AUC raw, AUC normalised, Final over the cases
    run.show("pet_000", step=3)   # the step's picture; shown inline by Jupyter

``predict(case, request) -> labels`` is the contract of ``python:`` models (README, "The model
contract"): the same function scores the same here, through ``segloop run``, or in a container.
A run folder is written as ``segloop run`` writes it (resumable, readable by ``segloop show``
and ``segloop leaderboard``); predictions are kept by default, so every case can be shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segloop import runs
from segloop.containers.local import InProcessBackend
from segloop.core import store
from segloop.core.records import SegloopError
from segloop.core.task import Limits
from segloop.leaderboard import case_view, pictures, tables

PredictFn = Callable[[Any, Any], np.ndarray]


@dataclass(frozen=True)
class Picture:
    """A PNG that Jupyter shows inline (``_repr_png_``); ``save(path)`` writes it."""

    png: bytes

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png)
        return path


@dataclass(frozen=True)
class Run:
    """A run folder, read as pandas tables."""

    folder: Path

    @property
    def steps(self) -> pd.DataFrame:
        return tables.step_table([store.read_run(self.folder)]).drop(columns=["task"])

    @property
    def cases(self) -> pd.DataFrame:
        return tables.case_table([store.read_run(self.folder)]).drop(columns=["task"])

    @property
    def summary(self) -> pd.DataFrame:
        """One row per metric: the mean over cases of its AUC raw, AUC normalised and Final
        (undefined values left out, as summary.json)."""
        data = runs.write_summary(self.folder)
        frame = pd.DataFrame.from_dict(data["mean"], orient="index")
        frame.index.name = "metric"
        return frame

    def show(self, case_id: str, step: int | None = None, data: str | Path | None = None):
        """The picture ``segloop show`` draws: one step's slices, or a strip of every step."""
        view = case_view.load_case_view(self.folder, case_id, Path(data) if data else None)
        figure = case_view.strip_figure(view) if step is None else case_view.step_figure(view, step)
        return Picture(pictures.png_bytes(figure))


def run(
    predict: PredictFn,
    data: str | Path,
    task: str | Path,
    out: str | Path,
    name: str | None = None,
    cases: Sequence[str] | None = None,
    seed: int | None = None,
    save_predictions: bool = True,
) -> Run:
    """Run ``predict`` (a function object) on every case of ``data`` through ``task`` (a preset
    name or a .toml file), in this process; the run folder ``out`` is created or resumed
    (finished cases are skipped). Returns the run, whose tables read ``out``."""
    if not callable(predict):
        raise SegloopError(f"api.run: predict must be a function, not {type(predict).__name__}")
    label = f"{getattr(predict, '__module__', '')}.{getattr(predict, '__qualname__', 'predict')}"
    spec = runs.RunSpec(
        Path(data),
        str(task),
        f"python-object:{label}",
        name or label,
        seed,
        Limits(),
        save_predictions=save_predictions,
    )
    spec.task()  # an unknown task fails before the run folder is touched
    backend = InProcessBackend(predict, name=spec.model_spec)
    for case_id in runs.pending_case_ids(spec, Path(out), cases):
        runs.run_and_store_case(spec, Path(out), case_id, backend=backend)
    runs.write_summary(Path(out))
    return Run(Path(out))


def open_run(folder: str | Path) -> Run:
    """A run folder written by ``segloop run`` or :func:`run`, as tables and pictures."""
    store.read_run(folder)  # refuse a folder that is not a run, with one line
    return Run(Path(folder))
