"""Grand Challenge algorithm containers, unchanged, inside segloop's loop.

A GC algorithm container runs once per job: it reads ``/input`` and writes ``/output``. The
interactive challenges (autoPET IV, ToothFairy3) ran one job per step, the clicks so far in a
"Multiple points" JSON socket. This adapter gives such a container exactly that, per step:

    /input/images/<image slug>/<uuid>.mha     one per channel (uncompressed MetaImage with the
                                              case's geometry; the uuid is fixed per case)
    /input/<clicks slug>.json                 "Multiple points": the clicks of steps 0..k
    /input/inputs.json                        the sockets, as GC lists them for the job
    /output/                                  empty; the container writes
    /output/images/<output slug>/<any>.mha    one label image of the input's size and geometry

Use it as ``docker:gc-autopet+IMAGE`` or ``docker:gc-toothfairy3+IMAGE`` (segloop.containers.docker.backend).
The sandbox, limits, failure reasons and cleanup are the Docker back-end's.

Slugs and point conventions, read from the challenges' public code (2025):

| preset      | images (channel order) | clicks socket   | output slug                | names                | point order |
| ----------- | ---------------------- | --------------- | -------------------------- | -------------------- | ----------- |
| autopet     | ct, pet                | lesion-clicks   | tumor-lesion-segmentation  | tumor / background   | x, y, z     |
| toothfairy3 | cbct                   | iac-clicks (*)  | iac-segmentation           | Left_IAC / Right_IAC | z, y, x     |

autoPET IV (lab-midas/autoPETCTIV, Task1/interactive-baseline/process.py): ``/input/images/ct/``,
``/input/images/pet/``, ``/input/lesion-clicks.json``, output
``/output/images/tumor-lesion-segmentation/<uuid>.mha``; points are voxel indices (x, y, z)
(its click script indexes nibabel arrays). ToothFairy3 (AImageLab-zip/ToothFairy,
ToothFairy3/Interactive-Segmentation): ``/input/images/cbct/``, output
``/output/images/iac-segmentation/``; its click script takes ``np.argwhere`` of
``sitk.GetArrayFromImage`` and writes ``[i0, i1, i2]``, i.e. voxel indices in array order
(z, y, x) even though it names them x, y, z. (*) The clicks socket's slug is not in the public
code: the template opens ``/input/iac_clicks_<name>.json`` or else the single ``/input/*.json``
whose name contains "clicks", which ``iac-clicks.json`` is. Positive clicks only (no background
name): a background click is refused for ToothFairy3.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from segloop.core import untrusted, untrusted_images
from segloop.core.challenges import CHALLENGES, GcInterface
from segloop.core.contract import ModelStepError, validate_prediction
from segloop.core.formats import BACKGROUND_NAME, to_gc_points
from segloop.core.records import CaseInput, FailureReason, Interaction, SegloopError, StepRequest
from segloop.core.untrusted import RefusedFile

INPUTS_JSON = "inputs.json"
# Self-contained label images only (segloop.core.untrusted_images); detached headers are refused.
IMAGE_SUFFIXES = untrusted_images.IMAGE_EXTENSIONS + untrusted_images.DETACHED_EXTENSIONS
UUID_NAMESPACE = uuid.UUID("5e6100b0-6c00-4e00-8a00-000000000001")
GEOMETRY_TOLERANCE_MM = 1e-3


def gc_interface(preset: str) -> GcInterface:
    """The algorithm container interface of a challenge preset (``docker:gc-<preset>+IMAGE``)."""
    with_gc = {name: c.gc for name, c in CHALLENGES.items() if c.gc is not None}
    if preset not in with_gc:
        raise SegloopError(
            f"Grand Challenge preset '{preset}': expected one of {', '.join(sorted(with_gc))}"
        )
    return with_gc[preset]


def multiple_points(interactions: Iterable[Interaction], interface: GcInterface) -> dict[str, Any]:
    """The clicks as a GC "Multiple points" object in the challenge's point order and names,
    written as the challenge's own simulate_clicks.py did (``segloop.core.formats.to_gc_points``:
    grouped by name, classes in ascending id, then background, each group in step order)."""

    interactions = tuple(interactions)
    for interaction in interactions:
        if interaction.kind != "click":
            raise SegloopError(
                f"{interface.description}: Grand Challenge 'Multiple points' holds clicks only, "
                f"not a {interaction.kind}"
            )
        if interaction.positive and interaction.class_id not in interface.point_names:
            raise SegloopError(
                f"{interface.description}: no point name for class {interaction.class_id}"
            )
        if not interaction.positive and interface.background_name is None:
            raise SegloopError(f"{interface.description}: the challenge has no background clicks")
    return to_gc_points(
        interactions,
        interface.point_names,
        background_name=interface.background_name or BACKGROUND_NAME,
        axis_order=tuple(interface.point_order),
    )


def image_uuid(case_id: str, slug: str) -> str:
    """A fixed uuid per (case, socket): same file names every step and every run."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"{case_id}/{slug}"))


def _sitk_image(array: np.ndarray, case_input: CaseInput):
    image = sitk.GetImageFromArray(array)
    geometry = case_input.geometry
    image.SetSpacing(tuple(float(v) for v in geometry.spacing_mm[::-1]))
    image.SetOrigin(tuple(float(v) for v in geometry.origin_mm))
    image.SetDirection(tuple(float(v) for v in geometry.direction))
    return image


def write_case_images(folder: Path, case_input: CaseInput, interface: GcInterface) -> list[Path]:
    """``images/<slug>/<uuid>.mha`` for every channel, written once per case."""

    if len(case_input.channels) != len(interface.image_slugs):
        raise SegloopError(
            f"{interface.description}: the container expects {len(interface.image_slugs)} images "
            f"({', '.join(interface.image_slugs)}), case {case_input.case_id} has "
            f"{len(case_input.channels)} channels"
        )
    paths = []
    for slug, channel in zip(interface.image_slugs, case_input.channels, strict=True):
        path = folder / "images" / slug / f"{image_uuid(case_input.case_id, slug)}.mha"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = _sitk_image(np.asarray(channel, dtype=np.float32), case_input)
        sitk.WriteImage(image, str(path), useCompression=False)
        paths.append(path)
    return paths


def inputs_json(case_input: CaseInput, interface: GcInterface, points: Mapping[str, Any]) -> list:
    """``/input/inputs.json``: the job's socket values, as Grand Challenge lists them."""
    items: list[dict[str, Any]] = []
    for slug in interface.image_slugs:
        name = f"{image_uuid(case_input.case_id, slug)}.mha"
        items.append(
            {
                "interface": {
                    "slug": slug,
                    "kind": "Image",
                    "super_kind": "Image",
                    "relative_path": f"images/{slug}",
                },
                "image": {"name": name, "pk": image_uuid(case_input.case_id, slug)},
                "value": None,
                "file": None,
            }
        )
    items.append(
        {
            "interface": {
                "slug": interface.clicks_slug,
                "kind": "Multiple points",
                "super_kind": "Value",
                "relative_path": f"{interface.clicks_slug}.json",
            },
            "value": dict(points),
            "image": None,
            "file": None,
        }
    )
    return items


def prepare_gc_step(
    case_folder: Path,
    step_folder: Path,
    case_input: CaseInput,
    request: StepRequest,
    interface: GcInterface,
) -> Path:
    """``step_folder/input``: the images hard-linked from ``case_folder``, the clicks and
    inputs.json (the container's output folder is made in the back-end's output area)."""
    input_dir = step_folder / "input"
    step_folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(case_folder, input_dir, copy_function=_link_or_copy)
    points = multiple_points(request.interactions, interface)
    (input_dir / f"{interface.clicks_slug}.json").write_text(json.dumps(points, indent=1))
    (input_dir / INPUTS_JSON).write_text(
        json.dumps(inputs_json(case_input, interface, points), indent=1)
    )
    return input_dir


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def read_gc_output(output_dir: Path, case_input: CaseInput, interface: GcInterface) -> np.ndarray:
    """The label map in ``/output/images/<slug>/``: exactly one self-contained image file
    (:mod:`segloop.core.untrusted_images`: read through descriptors, links never followed, header
    checked against the case's shape before any data), on the input's size, spacing, origin
    and direction, labels as a native prediction's. Raises ModelStepError(invalid_output)."""
    relative = f"images/{interface.output_slug}"
    root_fd = untrusted.open_dir(None, output_dir)
    try:
        try:
            folder_fd = untrusted.open_relative_dir(root_fd, relative, "output ")
        except RefusedFile as error:
            raise ModelStepError(FailureReason.INVALID_OUTPUT, str(error)) from None
        try:
            entries = untrusted.list_dir(folder_fd, f"output {relative}/")
            images = [e for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES)]
            if len(images) != 1:
                raise ModelStepError(
                    FailureReason.INVALID_OUTPUT,
                    f"expected one image in {relative}/, found {len(images)}: "
                    f"{[e.name for e in images][:5]}",
                )
            array, geometry = untrusted_images.read_image(
                folder_fd, images[0].name, case_input.shape, f"{relative}/"
            )
        except RefusedFile as error:
            raise ModelStepError(FailureReason.INVALID_OUTPUT, str(error)) from None
        finally:
            os.close(folder_fd)
    finally:
        os.close(root_fd)
    expected = case_input.geometry
    for what, got, want in (
        ("spacing (z, y, x)", geometry.spacing_mm, expected.spacing_mm),
        ("origin", geometry.origin_mm, expected.origin_mm),
        ("direction", geometry.direction, expected.direction),
    ):
        if not np.allclose(got, want, atol=GEOMETRY_TOLERANCE_MM):
            raise ModelStepError(
                FailureReason.INVALID_OUTPUT,
                f"output {what} {tuple(round(float(v), 4) for v in got)} != input "
                f"{tuple(round(float(v), 4) for v in want)}",
            )
    return validate_prediction(array, case_input.shape, set(case_input.classes))


class GcStepSession:
    """One case through a GC algorithm container: one job (container run) per step."""

    def __init__(self, backend: Any, case_input: CaseInput, interface: GcInterface) -> None:
        self.backend = backend
        self.case_input = case_input
        self.interface = interface
        self.case_deadline = time.monotonic() + backend.limits.case_time_limit_s
        self.work_dir = backend.new_work_dir(f"gc-{case_input.case_id}")
        self.case_folder = self.work_dir / "case"
        write_case_images(self.case_folder, case_input, interface)

    def predict(self, request: StepRequest) -> np.ndarray:
        return self.backend.guarded_step(lambda: self._predict(request))

    def _predict(self, request: StepRequest) -> np.ndarray:
        time_limit_s, timeout_reason = self.backend.step_budget(self.case_deadline)
        step_folder = self.work_dir / f"step_{request.step:03d}"
        untrusted.remove_tree(step_folder)
        input_dir = prepare_gc_step(
            self.case_folder, step_folder, self.case_input, request, self.interface
        )
        self.backend.share_inputs(input_dir)
        output_dir = self.backend.new_output_dir(f"gc-{self.case_input.case_id}-{request.step}")
        try:
            tail = self.backend.run_to_end(
                {
                    str(input_dir): {"bind": "/input", "mode": "ro"},
                    str(output_dir): {"bind": "/output", "mode": "rw"},
                },
                {},
                time_limit_s,
                timeout_reason,
                self.case_input.case_id,
            )
            try:
                self.backend.check_outputs()
                return read_gc_output(output_dir, self.case_input, self.interface)
            except ModelStepError as error:
                raise ModelStepError(error.reason, error.detail, error.log_tail or tail) from None
        finally:
            untrusted.remove_tree(step_folder)
            untrusted.remove_tree(output_dir)

    def close(self) -> None:
        untrusted.remove_tree(self.work_dir)
