"""An example Grand Challenge ``predictions.json`` from a run, so ``gc-evaluate`` can be tried
end to end before a challenge exists (``segloop gc-predictions RUN --out DIR``).

From a run that kept its predictions (``segloop run --save-predictions``) of a task with a
Grand Challenge interface (autoPET, ToothFairy3), writes what the platform would give the
evaluation container, one algorithm job per case and step:

    DIR/input/predictions.json                 the jobs: image inputs, the step's clicks as
                                               "Multiple points", the output image
    DIR/input/<pk>/output/images/<slug>/<uuid>.mha   each job's output (the kept prediction)
    DIR/ground_truth/<case>.nii.gz             the run's ground truth

``segloop gc-evaluate --task T --input-dir DIR/input --ground-truth DIR/ground_truth --output
DIR/metrics.json`` then gives the run's own numbers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from segloop.containers.docker.gc import multiple_points
from segloop.core import dataset, images, store
from segloop.core.challenges import CHALLENGES, GcInterface
from segloop.core.records import SegloopError
from segloop.leaderboard.case_view import dataset_of
from segloop.leaderboard.pictures import interactions_of

JOB_NAMESPACE = uuid.UUID("5e6100b0-6c00-4e00-8a00-000000000017")


def socket(slug: str, relative_path: str, kind: str) -> dict[str, Any]:
    return {"slug": slug, "title": slug, "kind": kind, "relative_path": relative_path}


def job_json(
    pk: str, case_id: str, points: dict[str, Any], output_name: str, interface: GcInterface
) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {
            "image": {"pk": f"{slug}-{case_id}", "name": f"{case_id}_{index:04d}.mha"},
            "value": None,
            "file": None,
            "interface": socket(slug, f"images/{slug}", "Image"),
        }
        for index, slug in enumerate(interface.image_slugs)
    ]
    inputs.append(
        {
            "image": None,
            "value": points,
            "file": None,
            "interface": socket(
                interface.clicks_slug, f"{interface.clicks_slug}.json", "Multiple points"
            ),
        }
    )
    output = {
        "image": {"pk": pk, "name": output_name},
        "value": None,
        "file": None,
        "interface": socket(
            interface.output_slug, f"images/{interface.output_slug}", "Segmentation"
        ),
    }
    return {"pk": pk, "status": "Succeeded", "inputs": inputs, "outputs": [output]}


def write_gc_predictions(run_dir: Path, out_dir: Path, data: Path | None = None) -> dict[str, Any]:
    """Write the example (module docstring); returns {"task", "jobs", "cases", "input_dir",
    "ground_truth"}. Refuses a run that kept no predictions or whose task has no Grand
    Challenge interface, with one line."""
    record = store.read_run(run_dir)
    task = str(record.run["task"]["name"])
    challenge = CHALLENGES.get(task)
    if challenge is None or challenge.gc is None:
        with_gc = ", ".join(n for n, c in CHALLENGES.items() if c.gc is not None)
        raise SegloopError(
            f"{run_dir}: task {task!r} has no Grand Challenge interface (tasks with one: {with_gc})"
        )
    interface = challenge.gc
    data_dir = dataset_of(run_dir, data)
    input_dir, truth_dir = Path(out_dir) / "input", Path(out_dir) / "ground_truth"
    jobs = []
    for case_id, result in record.cases.items():
        kept = store.saved_prediction_steps(run_dir, case_id)
        if kept != [s.step for s in result.steps]:
            raise SegloopError(
                f"{run_dir}: case {case_id} kept no predictions of every step; run it with "
                "--save-predictions (in a new run folder)"
            )
        label, geometry = images.read_image(dataset.case_files(data_dir, case_id).label)
        images.write_image(truth_dir / f"{case_id}.nii.gz", label, geometry)
        for step in kept:
            pk = str(uuid.uuid5(JOB_NAMESPACE, f"{task}/{case_id}/{step}"))
            output_name = f"{uuid.uuid5(JOB_NAMESPACE, pk)}.mha"
            prediction, _ = images.read_image(store.prediction_path(run_dir, case_id, step))
            folder = input_dir / pk / "output" / "images" / interface.output_slug
            images.write_image(folder / output_name, prediction, geometry)
            points = multiple_points(interactions_of(result, step), interface)
            jobs.append(job_json(pk, case_id, points, output_name, interface))
    input_dir.mkdir(parents=True, exist_ok=True)
    (input_dir / "predictions.json").write_text(json.dumps(jobs, indent=1) + "\n")
    return {
        "task": task,
        "jobs": len(jobs),
        "cases": len(record.cases),
        "input_dir": input_dir,
        "ground_truth": truth_dir,
    }
