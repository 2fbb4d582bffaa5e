"""segloop's native model contract: the files a model reads and writes at each step.

Per step the harness makes a fresh input folder (the model must treat it as read-only) and a
fresh, empty output folder:

    input/case.json                 {"format": "segloop-case", "version": 1, "case_id",
                                     "axis_order": ["z", "y", "x"], "shape", "spacing_mm",
                                     "origin_mm", "direction", "classes": {"1": "tumor"},
                                     "channels": ["image_0000.npy", ...]}
    input/image_0000.npy ...        float32 arrays of `shape`, one per channel
    input/request.json              {"format": "segloop-request", "version": 1, "case_id", "step",
                                     "axis_order": ["z", "y", "x"],
                                     "interactions": [{"kind", "class_id", "positive", "step",
                                                       "coords": [[z, y, x], ...]}, ...],
                                     "previous_prediction": "previous_prediction.npy" | null}
    input/previous_prediction.npy   the model's own last output, when the task sends it
    output/prediction.npy           written by the model: integer labels of `shape`,
                                    values in {0} and the task's class ids

The interactions are all those given so far (steps 0..step). Coordinates are array indices in
``axis_order``. The harness never writes the ground truth anywhere a model can read it.
The command gets the folders as ``SEGLOOP_INPUT`` and ``SEGLOOP_OUTPUT`` (and, for ``cmd:``
back-ends, substituted for ``{input}`` and ``{output}`` in its command line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segloop.core import untrusted, untrusted_images
from segloop.core.faults import harness_writes
from segloop.core.records import AXIS_ORDER, CaseInput, FailureReason, StepRequest
from segloop.core.untrusted import RefusedFile

CASE_FILE = "case.json"
REQUEST_FILE = "request.json"
PREVIOUS_PREDICTION_FILE = "previous_prediction.npy"
PREDICTION_FILE = "prediction.npy"
CONTRACT_VERSION = 1


class ModelStepError(Exception):
    """A model step failed, for one of the :class:`FailureReason` reasons."""

    def __init__(self, reason: FailureReason | str, detail: str = "", log_tail: str = "") -> None:
        reason = FailureReason(reason)
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.log_tail = log_tail


def case_json(case_input: CaseInput) -> dict:
    return {
        "format": "segloop-case",
        "version": CONTRACT_VERSION,
        "case_id": case_input.case_id,
        "axis_order": list(AXIS_ORDER),
        "shape": list(case_input.shape),
        **case_input.geometry.to_json(),
        "classes": {str(k): v for k, v in case_input.classes.items()},
        "channels": [f"image_{i:04d}.npy" for i in range(len(case_input.channels))],
    }


def request_json(request: StepRequest, send_previous_prediction: bool) -> dict:
    has_previous = send_previous_prediction and request.previous_prediction is not None
    return {
        "format": "segloop-request",
        "version": CONTRACT_VERSION,
        "case_id": request.case_id,
        "step": request.step,
        "axis_order": list(AXIS_ORDER),
        "interactions": [i.to_json() for i in request.interactions],
        "previous_prediction": PREVIOUS_PREDICTION_FILE if has_previous else None,
    }


def write_case_files(folder: Path, case_input: CaseInput) -> None:
    """Write case.json and the channel arrays once per case; steps hard-link them. No space
    here is the harness's fault (:class:`HarnessFault`), never the model's."""
    with harness_writes(folder, "the model's case input"):
        folder.mkdir(parents=True, exist_ok=True)
        for name, channel in zip(
            case_json(case_input)["channels"], case_input.channels, strict=True
        ):
            np.save(folder / name, np.ascontiguousarray(channel, dtype=np.float32))
        _write_json(folder / CASE_FILE, case_json(case_input))


def prepare_step_input(
    case_folder: Path, step_folder: Path, request: StepRequest, send_previous_prediction: bool
) -> Path:
    """Make ``step_folder/input``: the case files hard-linked, the request, the previous
    prediction; files 0444, the folder 0555 (the model's output folder is made elsewhere).

    Hard links cost no copy; the input is mounted read-only for containers, so a model cannot
    change the shared files through them.
    """
    with harness_writes(step_folder, "the model's step input"):
        return _prepare_step_input(case_folder, step_folder, request, send_previous_prediction)


def _prepare_step_input(
    case_folder: Path, step_folder: Path, request: StepRequest, send_previous_prediction: bool
) -> Path:
    input_dir = step_folder / "input"
    input_dir.mkdir(parents=True)
    for source in sorted(case_folder.iterdir()):
        try:
            os.link(source, input_dir / source.name)
        except OSError:  # another file system: fall back to a copy
            (input_dir / source.name).write_bytes(source.read_bytes())
    payload = request_json(request, send_previous_prediction)
    if payload["previous_prediction"]:
        np.save(input_dir / PREVIOUS_PREDICTION_FILE, request.previous_prediction)
    _write_json(input_dir / REQUEST_FILE, payload)
    for path in input_dir.iterdir():
        path.chmod(0o444)
    input_dir.chmod(0o555)
    return input_dir


def read_prediction(
    output: Path | int,
    shape: tuple[int, ...],
    class_ids: set[int] | frozenset[int],
    where: str = "",
) -> np.ndarray:
    """Load and validate ``prediction.npy`` from the model's output folder (a path the harness
    made, or a descriptor of it); raise ModelStepError(invalid_output).

    The file is untrusted bytes (:mod:`segloop.core.untrusted`): opened under the folder's
    descriptor without following links, a regular file no larger than ``shape`` as int64 plus
    a header, a plain numeric .npy (no pickle) of ``shape``; then the labels are checked
    (integral, finite, within the classes).
    """
    folder_fd = untrusted.open_dir(None, output) if not isinstance(output, int) else output
    try:
        array = untrusted_images.read_npy(folder_fd, PREDICTION_FILE, shape, where)
    except RefusedFile as error:
        detail = str(error)
        if "no such file" in detail:
            detail = f"no {PREDICTION_FILE} written"
        raise ModelStepError(FailureReason.INVALID_OUTPUT, detail) from None
    finally:
        if not isinstance(output, int):
            os.close(folder_fd)
    return validate_prediction(array, shape, class_ids)


def validate_prediction(
    array: object, shape: tuple[int, ...], class_ids: set[int] | frozenset[int]
) -> np.ndarray:
    """Return ``array`` as uint8/uint16 labels, or raise ModelStepError(invalid_output)."""
    if not isinstance(array, np.ndarray):
        raise ModelStepError(
            FailureReason.INVALID_OUTPUT, f"prediction is a {type(array).__name__}, not an array"
        )
    if tuple(array.shape) != tuple(shape):
        raise ModelStepError(
            FailureReason.INVALID_OUTPUT,
            f"prediction shape {tuple(array.shape)} != image shape {tuple(shape)}",
        )
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ModelStepError(
                FailureReason.INVALID_OUTPUT, "prediction holds NaN or infinite values"
            )
        if not np.array_equal(array, np.round(array)):
            raise ModelStepError(
                FailureReason.INVALID_OUTPUT, "prediction holds non-integer values"
            )
    elif array.dtype.kind not in "iu":
        raise ModelStepError(
            FailureReason.INVALID_OUTPUT, f"prediction has dtype {array.dtype}, not integer"
        )
    allowed = {0, *class_ids}
    present = np.unique(array)
    unexpected = [v for v in present.tolist() if v not in allowed]
    if unexpected:
        raise ModelStepError(
            FailureReason.INVALID_OUTPUT,
            f"prediction labels {unexpected[:5]} not in the task's classes {sorted(allowed)}",
        )
    dtype = np.uint8 if max(allowed) < 256 else np.uint16
    return array.astype(dtype)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=1))
