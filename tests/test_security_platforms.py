"""Hostile submissions to the platform scorers (``codabench-score``, ``gc-evaluate``).

A submission's files sit next to the ground truth; every attack here points at it: NRRD and
MetaImage headers naming the reference as their data file (with the skip that lands on its
voxels), symlinks and hard links to it, and a ``relative_path`` leading out of ``/input``. Each
must score exactly as an empty submission does, with every step refused and its reason.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from segloop.cli.main import main
from segloop.core import images
from tests.test_leaderboard_helpers import read_json
from tests.test_platforms import build_gc_layout, gc_args, label_path, recorded  # noqa: F401

ATTACKS = ("nrrd-data-file", "mha-data-file", "symlink", "hardlink", "mhd-detached")


def attack_file(folder: Path, stem: str, gt: Path, attack: str) -> tuple[Path, str]:
    """Write, in ``folder``, a 'prediction' named ``stem`` + extension whose voxels would be
    the ground truth ``gt`` (an uncompressed .nii) if the scorer followed it; (file, reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    label, _ = images.read_image(gt)
    z, y, x = label.shape
    relative = os.path.relpath(gt, folder)
    if attack == "nrrd-data-file":
        path = folder / f"{stem}.nrrd"
        path.write_text(
            f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {x} {y} {z}\nencoding: raw\n"
            f"data file: {relative}\nbyte skip: 352\n\n"
        )
        return path, "data in another file is refused"
    if attack == "mha-data-file":
        path = folder / f"{stem}.mha"
        path.write_text(
            f"ObjectType = Image\nNDims = 3\nDimSize = {x} {y} {z}\nElementType = MET_UCHAR\n"
            f"HeaderSize = 352\nElementDataFile = {relative}\n"
        )
        return path, "data in another file is refused"
    if attack == "symlink":
        path = folder / f"{stem}.nii"
        path.symlink_to(relative)
        return path, "symlink"
    if attack == "hardlink":
        path = folder / f"{stem}.nii"
        path.hardlink_to(gt)
        return path, "hard links"
    path = folder / f"{stem}.mhd"
    path.write_text(
        f"ObjectType = Image\nNDims = 3\nDimSize = {x} {y} {z}\nElementType = MET_UCHAR\n"
        f"HeaderSize = 352\nElementDataFile = {relative}\n"
    )
    return path, "detached header"


def uncompressed_reference(recorded, folder: Path) -> dict[str, Path]:  # noqa: F811
    """The ground truth as uncompressed .nii files (what a header offset can point into)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case_id in recorded["case_ids"]:
        label, geometry = images.read_image(label_path(recorded["data"], case_id))
        paths[case_id] = folder / f"{case_id}.nii"
        images.write_image(paths[case_id], label.astype(np.uint8), geometry)
    return paths


def codabench_scores(input_dir: Path, output: Path) -> dict:
    assert main(["codabench-score", str(input_dir), str(output), "--task", "autopet"]) == 0
    return read_json(output / "scores.json")


@pytest.mark.parametrize("attack", ATTACKS)
def test_codabench_submission_cannot_score_the_reference(recorded, tmp_path, attack):  # noqa: F811
    """Every step of every case is a file that points at the reference: the scores equal an
    empty submission's (and a copy of the reference would have scored Dice 1)."""
    empty_dir, attack_dir = tmp_path / "empty", tmp_path / "attack"
    for input_dir in (empty_dir, attack_dir):
        references = uncompressed_reference(recorded, input_dir / "ref")
        (input_dir / "res").mkdir()
    reasons = {}
    for case_id, gt in references.items():
        for step in range(11):
            path, reason = attack_file(attack_dir / "res", f"{case_id}_step{step}", gt, attack)
            reasons[(case_id, step)] = reason
    empty = codabench_scores(empty_dir, tmp_path / "out-empty")
    attacked = codabench_scores(attack_dir, tmp_path / "out-attack")
    for column in empty:
        if column != "failed_steps":
            assert attacked[column] == pytest.approx(empty[column], abs=1e-12), column
    assert attacked["failed_steps"] == empty["failed_steps"] == 11 * len(references)
    from segloop.leaderboard import codabench
    from segloop.leaderboard.stepscore import scoring_spec

    result = codabench.score_submission(attack_dir, scoring_spec("autopet"))
    for case_id, case in result["case"].items():
        for step in case["steps"]:
            failure = step["failure"]
            if attack == "symlink":  # never opened: listed as ignored, the step is missing
                assert failure["reason"] == "missing_prediction"
            else:
                assert failure["reason"] == "invalid_output"
                assert reasons[(case_id, step["step"])] in failure["detail"], failure
    if attack == "symlink":
        assert all("symlink" in name for name in result["ignored_files"])


def test_gc_evaluate_outputs_cannot_reach_the_ground_truth(recorded, tmp_path):  # noqa: F811
    """Each job's output replaced by a file pointing at the ground truth (a different attack
    per step), one job's relative_path leading out of /input to a perfect copy: the metrics
    equal those of a layout where every output is missing."""
    build_gc_layout(recorded, tmp_path, drop=("none", -1), fail=("none", -1))
    references = uncompressed_reference(recorded, tmp_path / "ground_truth")
    for path in (tmp_path / "ground_truth").glob("*.nii.gz"):
        path.unlink()  # keep the uncompressed copies only
    predictions_path = tmp_path / "input" / "predictions.json"
    jobs = json.loads(predictions_path.read_text())
    outside = tmp_path / "outside.mha"
    case_of_job = {}
    for index, job in enumerate(sorted(jobs, key=lambda j: j["pk"])):
        case_id = job["inputs"][0]["image"]["name"].rsplit("_", 1)[0]
        case_of_job[job["pk"]] = case_id
        folder = tmp_path / "input" / job["pk"] / "output" / "images" / "tumor-lesion-segmentation"
        shutil.rmtree(folder)
        if index == 0:
            label, geometry = images.read_image(references[case_id])
            images.write_image(outside, label, geometry)
            job["outputs"][0]["interface"]["relative_path"] = "../../../outside.mha"
            continue
        attack_file(folder, "output", references[case_id], ATTACKS[index % len(ATTACKS)])
    predictions_path.write_text(json.dumps(jobs))
    assert main(gc_args(tmp_path)) == 0
    attacked = read_json(tmp_path / "output" / "metrics.json")

    for job in jobs:  # the honest reference point: nothing was written at all
        folder = tmp_path / "input" / job["pk"] / "output"
        shutil.rmtree(folder)
        folder.mkdir()
    (tmp_path / "output" / "metrics.json").unlink()
    assert main(gc_args(tmp_path)) == 0
    nothing = read_json(tmp_path / "output" / "metrics.json")
    for column, stats in nothing["aggregates"].items():
        if isinstance(stats, dict) and "mean" in stats:
            assert attacked["aggregates"][column]["mean"] == pytest.approx(stats["mean"], abs=1e-12)
    failures = [s["failure"] for c in attacked["case"].values() for s in c["steps"]]
    assert all(f is not None for f in failures)
    details = " ".join(f["detail"] for f in failures)
    assert "not a path inside the job's output" in details
    for reason in ("data in another file is refused", "symlink", "hard links", "detached header"):
        assert reason in details
