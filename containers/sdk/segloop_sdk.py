"""segloop participant SDK: serve a ``predict(case, request)`` function under segloop's contract.

One file, numpy only (Python >= 3.9): copy it into your image next to your model, then

    from segloop_sdk import serve

    def predict(case, request):          # the same signature as segloop's python: back-end
        ...                              # case.channels, case.geometry.spacing_mm, case.classes,
        return labels                    # request.step, request.interactions, ...

    if __name__ == "__main__":
        serve(predict)

or, without writing a main: ``python3 -m segloop_sdk --predict mypackage.model:predict``
(inside the segloop source tree: ``python -m segloop.containers.sdk.segloop_sdk --predict ...``).

``serve`` speaks both modes of the native contract (docs/containers.md):

* per-step: the case and this step's request are in the input folder, the label map goes to
  ``<output>/prediction.npy``, then the process exits (exit code 0, or 1 when predict raised).
  Folders: ``--input/--output``, else ``SEGLOOP_INPUT/SEGLOOP_OUTPUT``, else ``/input``, ``/output``.
* session: the process stays up and answers every request that appears under
  ``<session>/requests/<name>/`` (``request.json`` + ``ready``) with
  ``<session>/responses/<name>/prediction.npy`` + ``done`` (or ``error.txt`` + ``done``), until
  ``<session>/requests/stop`` appears. The case files are in ``<session>/cases/<case_id>/``.
  Chosen by ``--session DIR``, ``SEGLOOP_SESSION`` or an existing ``/session/requests``.

The model is imported once per process, so in session mode it is loaded once per case (or once
per submission), not once per step.

When segloop itself is importable, ``case`` and ``request`` are segloop's own records
(``segloop.core.records.CaseInput`` / ``StepRequest``); otherwise look-alike frozen dataclasses with
the same fields. Arrays are indexed (z, y, x); ``spacing_mm`` and click coordinates too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SDK_VERSION = "1"
CASE_FILE = "case.json"
REQUEST_FILE = "request.json"
PREDICTION_FILE = "prediction.npy"
READY_MARKER = "ready"
DONE_MARKER = "done"
ERROR_FILE = "error.txt"
STOP_MARKER = "stop"
# Poll interval of the session loop; a request costs at most this much latency.
POLL_INTERVAL_S = 0.002
MAX_POLL_INTERVAL_S = 0.02

try:  # inside segloop's own tree (python:/cmd: back-ends): the real records
    from segloop.core.records import CaseInput, Geometry, Interaction, StepRequest
except ImportError:  # inside a participant image: look-alikes with the same fields

    @dataclass(frozen=True)
    class Geometry:  # type: ignore[no-redef]
        """spacing_mm in array order (z, y, x); origin_mm/direction in SimpleITK (x, y, z)."""

        spacing_mm: tuple[float, float, float]
        origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
        direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

        @classmethod
        def from_json(cls, data: dict) -> Geometry:
            return cls(
                spacing_mm=tuple(float(v) for v in data["spacing_mm"]),
                origin_mm=tuple(float(v) for v in data["origin_mm"]),
                direction=tuple(float(v) for v in data["direction"]),
            )

    @dataclass(frozen=True)
    class Interaction:  # type: ignore[no-redef]
        """kind: click | box | scribble | polygon; coords: voxel indices (z, y, x)."""

        kind: str
        class_id: int
        positive: bool
        step: int
        coords: tuple[tuple[int, int, int], ...]

        @classmethod
        def from_json(cls, data: dict) -> Interaction:
            return cls(
                kind=data["kind"],
                class_id=int(data["class_id"]),
                positive=bool(data["positive"]),
                step=int(data["step"]),
                coords=tuple(tuple(int(v) for v in c) for c in data["coords"]),
            )

    @dataclass(frozen=True, eq=False)
    class CaseInput:  # type: ignore[no-redef]
        """The images of a case (float32, (z, y, x)), their geometry and the task's classes."""

        case_id: str
        channels: tuple[np.ndarray, ...]
        geometry: Geometry
        classes: dict  # label value -> class name, background (0) excluded

        @property
        def shape(self) -> tuple[int, int, int]:
            return tuple(self.channels[0].shape)  # type: ignore[return-value]

    @dataclass(frozen=True, eq=False)
    class StepRequest:  # type: ignore[no-redef]
        """All interactions so far (steps 0..step) and, when the task sends it, the last output."""

        case_id: str
        step: int
        interactions: tuple[Interaction, ...]
        previous_prediction: np.ndarray | None


PredictFn = Callable[[Any, Any], np.ndarray]


class ContractError(Exception):
    """The harness's files do not follow the contract (a harness/SDK version mismatch)."""


def _read_json(path: Path, expected_format: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if data.get("format") != expected_format:
        raise ContractError(f"{path}: format {data.get('format')!r}, expected {expected_format!r}")
    if data.get("axis_order", ["z", "y", "x"]) != ["z", "y", "x"]:
        raise ContractError(f"{path}: axis_order {data.get('axis_order')}, expected z, y, x")
    return data


def load_case(case_dir: Path) -> CaseInput:
    """Read ``case.json`` and the channel arrays of a case folder."""
    case_dir = Path(case_dir)
    data = _read_json(case_dir / CASE_FILE, "segloop-case")
    channels = tuple(
        np.load(case_dir / name, allow_pickle=False).astype(np.float32, copy=False)
        for name in data["channels"]
    )
    return CaseInput(
        case_id=str(data["case_id"]),
        channels=channels,
        geometry=Geometry.from_json(data),
        classes={int(k): str(v) for k, v in data["classes"].items()},
    )


def load_request(request_dir: Path) -> StepRequest:
    """Read ``request.json`` (and the previous prediction it names) from a folder."""
    request_dir = Path(request_dir)
    data = _read_json(request_dir / REQUEST_FILE, "segloop-request")
    previous = None
    if data.get("previous_prediction"):
        previous = np.load(request_dir / data["previous_prediction"], allow_pickle=False)
    return StepRequest(
        case_id=str(data["case_id"]),
        step=int(data["step"]),
        interactions=tuple(Interaction.from_json(i) for i in data["interactions"]),
        previous_prediction=previous,
    )


def save_prediction(labels: Any, output_dir: Path, shape: tuple[int, ...]) -> Path:
    """Write ``labels`` as ``output_dir/prediction.npy`` (integer dtype, via a rename)."""
    array = np.asarray(labels)
    if array.shape != tuple(shape):
        raise ValueError(
            f"predict returned shape {array.shape}, the image has shape {tuple(shape)}"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / PREDICTION_FILE
    partial = output_dir / (PREDICTION_FILE + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(partial, final)
    return final


def run_step(predict_fn: PredictFn, input_dir: Path, output_dir: Path) -> None:
    """Per-step mode: one request from ``input_dir``, one prediction into ``output_dir``."""
    case = load_case(Path(input_dir))
    request = load_request(Path(input_dir))
    save_prediction(predict_fn(case, request), Path(output_dir), case.shape)


def serve_session(
    predict_fn: PredictFn, session_dir: Path, poll_interval_s: float = POLL_INTERVAL_S
) -> None:
    """Session mode: answer requests in name order until ``requests/stop`` appears."""
    session_dir = Path(session_dir)
    requests_dir = session_dir / "requests"
    responses_dir = session_dir / "responses"
    answered: set = set()
    cached_case: CaseInput | None = None
    cached_case_dir: Path | None = None
    interval = poll_interval_s
    while True:
        if (requests_dir / STOP_MARKER).exists():
            return
        pending = sorted(
            entry.name
            for entry in os.scandir(requests_dir)
            if entry.is_dir() and entry.name not in answered
        )
        handled_any = False
        for name in pending:
            request_dir = requests_dir / name
            if not (request_dir / READY_MARKER).exists():
                continue
            response_dir = responses_dir / name
            answered.add(name)
            handled_any = True
            if (response_dir / DONE_MARKER).exists():
                continue  # answered by an earlier container of this session
            response_dir.mkdir(parents=True, exist_ok=True)
            try:
                with open(request_dir / REQUEST_FILE, encoding="utf-8") as handle:
                    case_dir = session_dir / json.load(handle)["case_dir"]
                if cached_case_dir != case_dir:
                    cached_case, cached_case_dir = None, None  # free the last case first
                    cached_case, cached_case_dir = load_case(case_dir), case_dir
                request = load_request(request_dir)
                save_prediction(predict_fn(cached_case, request), response_dir, cached_case.shape)
            except Exception:  # noqa: BLE001 - report every model error to the harness
                text = traceback.format_exc()
                sys.stderr.write(text)
                (response_dir / ERROR_FILE).write_text(text[-20000:], encoding="utf-8")
            (response_dir / DONE_MARKER).touch()
            sys.stdout.flush()
            sys.stderr.flush()
        if handled_any:
            interval = poll_interval_s
        else:
            time.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_INTERVAL_S)


def _parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="segloop_sdk",
        description="Serve predict(case, request) under segloop's native contract.",
    )
    parser.add_argument("--predict", help="package.module:function to serve (for -m use)")
    parser.add_argument("--input", type=Path, help="per-step input folder (default $SEGLOOP_INPUT)")
    parser.add_argument("--output", type=Path, help="per-step output folder ($SEGLOOP_OUTPUT)")
    parser.add_argument("--session", type=Path, help="session folder ($SEGLOOP_SESSION)")
    return parser.parse_args(argv)


def detect_mode(args: argparse.Namespace) -> tuple[str, Path, Path]:
    """("session", session_dir, _) or ("per-step", input_dir, output_dir), from args/env/folders."""
    env = os.environ
    if args.session is not None:
        return "session", args.session, args.session
    if args.input is not None or args.output is not None:
        return (
            "per-step",
            args.input or Path(env.get("SEGLOOP_INPUT", "/input")),
            (args.output or Path(env.get("SEGLOOP_OUTPUT", "/output"))),
        )
    if env.get("SEGLOOP_SESSION"):
        session = Path(env["SEGLOOP_SESSION"])
        return "session", session, session
    if env.get("SEGLOOP_INPUT") or env.get("SEGLOOP_OUTPUT"):
        return (
            "per-step",
            Path(env.get("SEGLOOP_INPUT", "/input")),
            Path(env.get("SEGLOOP_OUTPUT", "/output")),
        )
    if Path("/session/requests").is_dir():
        return "session", Path("/session"), Path("/session")
    return "per-step", Path("/input"), Path("/output")


def serve(predict_fn: PredictFn, argv=None) -> None:
    """Run ``predict_fn`` in whichever mode the harness started this process in.

    Per-step: returns after writing the prediction; if ``predict_fn`` raises, prints the
    traceback and exits with code 1 (the harness records the step as failed with the log tail).
    Session: returns when the harness asks the session to stop.
    """
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    mode, first, second = detect_mode(args)
    if mode == "session":
        serve_session(predict_fn, first)
        return
    try:
        run_step(predict_fn, first, second)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.flush()
        raise SystemExit(1) from None


def load_callable(target: str) -> PredictFn:
    """Import ``package.module:function``."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"segloop_sdk: --predict {target!r}: expected package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise SystemExit(f"segloop_sdk: {module_name} has no function {attribute}")
    return function


def main(argv=None) -> None:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if not args.predict:
        raise SystemExit("segloop_sdk: --predict package.module:function is required")
    serve(load_callable(args.predict), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
