"""Grand Challenge evaluation and Codabench scoring, on a fake platform layout built from a real
phantom run: the platform modes must reproduce the run's own numbers step for step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from segloop import runs
from segloop.cli.commands import execute_run
from segloop.cli.main import main
from segloop.containers.docker.gc import multiple_points
from segloop.containers.registry import open_backend
from segloop.core import dataset, images
from segloop.core.challenges import CHALLENGES
from segloop.core.results import SUMMARY_KINDS as KINDS
from segloop.core.task import Limits
from segloop.leaderboard import codabench, gc_evaluate
from segloop.loop import run_case
from segloop.protocols.tasks import get_task
from tests.test_leaderboard_helpers import SMALL_PET, read_json

ROOT = Path(__file__).resolve().parents[1]
NUM_CASES = 3


class RecordingBackend:
    """A back-end that keeps every step's request and prediction (what a platform would get)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.steps: dict[str, list[tuple[tuple, np.ndarray]]] = {}

    def open_case(self, case_input):
        session = self.backend.open_case(case_input)
        record = self.steps.setdefault(case_input.case_id, [])

        class Session:
            def predict(self, request):
                prediction = session.predict(request)
                record.append((request.interactions, np.array(prediction)))
                return prediction

            def close(self):
                session.close()

        return Session()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A region-growing autoPET run on phantoms (and an empty-model run), plus every step's
    clicks and prediction, recorded by running the same deterministic loop again."""
    from segloop.app import phantoms

    root = tmp_path_factory.mktemp("platforms")
    data = root / "data"
    phantoms.write_phantom_dataset(data, "pet", NUM_CASES, seed=2, shape=SMALL_PET)
    model = "python:segloop.baselines.region_growing:predict"
    execute_run(data, "autopet", model, root / "run", "rg", show_progress=False)
    execute_run(
        data,
        "autopet",
        "python:segloop.baselines.trivial:empty",
        root / "empty",
        "empty",
        show_progress=False,
    )
    task = get_task("autopet")
    backend = RecordingBackend(open_backend(model, Limits(), task.send_previous_prediction))
    case_ids = dataset.list_case_ids(data)
    for case_id in case_ids:
        run_case(runs.load_dataset_case(data, case_id), task, backend)
    return {
        "data": data,
        "run": root / "run",
        "empty": root / "empty",
        "steps": backend.steps,
        "case_ids": sorted(case_ids),
    }


def case_result(run_dir: Path, case_id: str) -> dict:
    return read_json(run_dir / "cases" / f"{case_id}.json")


def label_path(data: Path, case_id: str) -> Path:
    return data / "labelsTs" / f"{case_id}.nii.gz"


def assert_same_metrics(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, figures in expected.items():
        assert actual[name]["mean"] == pytest.approx(figures["mean"], abs=1e-9), name
        for cls, value in figures["per_class"].items():
            assert actual[name]["per_class"][cls] == pytest.approx(value, abs=1e-9), name


# ------------------------------------------------------------------------ Grand Challenge


def socket(slug: str, relative_path: str, kind: str) -> dict:
    return {"pk": 1, "slug": slug, "title": slug, "kind": kind, "relative_path": relative_path}


def build_gc_layout(recorded, folder: Path, drop: tuple[str, int], fail: tuple[str, int]) -> None:
    """/input/predictions.json + /input/<pk>/output/images/... and the ground-truth folder,
    with GC's own slugs (``ct-image``, ``pet-image``: matched through their relative paths)."""
    interface = CHALLENGES["autopet"].gc
    jobs = []
    for case_id in recorded["case_ids"]:
        _, geometry = images.read_image(label_path(recorded["data"], case_id))
        for step, (interactions, prediction) in enumerate(recorded["steps"][case_id]):
            if (case_id, step) == drop:
                continue
            pk = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case_id}/{step}"))
            failed = (case_id, step) == fail
            output_name = f"{uuid.uuid5(uuid.NAMESPACE_DNS, pk)}.mha"
            if not failed:
                images.write_image(
                    folder / "input" / pk / "output/images/tumor-lesion-segmentation" / output_name,
                    prediction,
                    geometry,
                )
            jobs.append(
                {
                    "pk": pk,
                    "url": f"https://grand-challenge.org/algorithms/x/jobs/{pk}/",
                    "status": "Failed" if failed else "Succeeded",
                    "error_message": "CUDA out of memory <oops>" if failed else "",
                    "inputs": [
                        {
                            "pk": 10,
                            "file": None,
                            "image": {"pk": f"ct-{case_id}", "name": f"{case_id}_0000.mha"},
                            "value": None,
                            "interface": socket("ct-image", "images/ct", "Image"),
                        },
                        {
                            "pk": 11,
                            "file": None,
                            "image": {"pk": f"pet-{case_id}", "name": f"{case_id}_0001.mha"},
                            "value": None,
                            "interface": socket("pet-image", "images/pet", "Image"),
                        },
                        {
                            "pk": 12,
                            "file": None,
                            "image": None,
                            "value": multiple_points(interactions, interface),
                            "interface": socket(
                                "lesion-clicks", "lesion-clicks.json", "Multiple points"
                            ),
                        },
                    ],
                    "outputs": []
                    if failed
                    else [
                        {
                            "pk": 13,
                            "file": None,
                            "image": {"pk": "x", "name": output_name},
                            "value": None,
                            "interface": socket(
                                "tumor-lesion-segmentation",
                                "images/tumor-lesion-segmentation",
                                "Segmentation",
                            ),
                        }
                    ],
                }
            )
        gt_dir = folder / "ground_truth"
        gt_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(label_path(recorded["data"], case_id), gt_dir / f"{case_id}.nii.gz")
    order = np.random.default_rng(0).permutation(len(jobs))  # GC lists jobs in any order
    (folder / "input").mkdir(parents=True, exist_ok=True)
    (folder / "input" / "predictions.json").write_text(
        json.dumps([jobs[i] for i in order], indent=1)
    )


def gc_args(folder: Path) -> list[str]:
    return [
        "gc-evaluate",
        "--task",
        "autopet",
        "--input-dir",
        str(folder / "input"),
        "--ground-truth",
        str(folder / "ground_truth"),
        "--output",
        str(folder / "output" / "metrics.json"),
    ]


def test_gc_evaluate_reproduces_the_run(recorded, tmp_path, capsys):
    broken = recorded["case_ids"][1]
    drop, fail = (broken, 3), (broken, 10)
    build_gc_layout(recorded, tmp_path, drop, fail)
    assert main(gc_args(tmp_path)) == 0
    assert "3 cases, 2 failed steps" in capsys.readouterr().out
    metrics = read_json(tmp_path / "output" / "metrics.json")
    assert set(metrics["case"]) == set(recorded["case_ids"])
    for case_id in recorded["case_ids"]:
        ours, run = metrics["case"][case_id], case_result(recorded["run"], case_id)
        empty = case_result(recorded["empty"], case_id)
        assert len(ours["steps"]) == 11
        for step, (mine, theirs) in enumerate(zip(ours["steps"], run["steps"], strict=True)):
            assert mine["step"] == step
            if (case_id, step) in (drop, fail):
                # scored as an empty prediction: the empty baseline's numbers at that step
                assert_same_metrics(mine["metrics"], empty["steps"][step]["metrics"])
                continue
            assert mine["failure"] is None
            assert_same_metrics(mine["metrics"], theirs["metrics"])
            clicks = recorded["steps"][case_id][step][0]
            assert mine["num_clicks"] == len(clicks)
        if case_id != broken:
            for metric, figures in run["summary"].items():
                for kind, value in figures.items():
                    assert ours["summary"][metric][kind] == pytest.approx(value, abs=1e-9)
    failures = {s["step"]: s["failure"] for s in metrics["case"][broken]["steps"] if s["failure"]}
    assert failures[3]["reason"] == "missing_job"
    assert failures[10]["reason"] == "job_failed"
    assert "CUDA out of memory" in failures[10]["log_tail"]
    aggregates = metrics["aggregates"]
    assert aggregates["num_cases"] == 3 and aggregates["failed_steps"] == 2
    dice_auc = [metrics["case"][c]["summary"]["dice"]["auc_normalised"] for c in metrics["case"]]
    assert aggregates["dice_auc_normalised"]["mean"] == pytest.approx(np.mean(dice_auc))
    assert set(aggregates) >= {f"{m}_{k}" for m in ("dice", "fpv_f32", "fnv_f32") for k in KINDS}


def test_gc_evaluate_complete_layout_matches_the_run_summary(recorded, tmp_path):
    build_gc_layout(recorded, tmp_path, drop=("none", -1), fail=("none", -1))
    assert main(gc_args(tmp_path)) == 0
    aggregates = read_json(tmp_path / "output" / "metrics.json")["aggregates"]
    mean = read_json(recorded["run"] / "summary.json")["mean"]
    for metric, figures in mean.items():
        for kind, value in figures.items():
            assert aggregates[f"{metric}_{kind}"]["mean"] == pytest.approx(value, abs=1e-9)
    assert aggregates["failed_steps"] == 0
    curve = read_json(recorded["run"] / "summary.json")["mean_curve"]["dice"]
    assert aggregates["mean_curve"]["dice"] == pytest.approx(curve)


def test_step_comes_from_the_click_count_not_names():
    points = [{"point": [1, 2, 3], "name": "tumor"}] * 10 + [
        {"point": [0, 0, 0], "name": "background"}
    ] * 10
    assert gc_evaluate.step_of_points(points) == 10
    assert gc_evaluate.step_of_points(points[:2] + points[10:12]) == 2
    assert gc_evaluate.step_of_points([]) == 0
    assert gc_evaluate.step_of_points([{"point": [0, 0, 0], "name": "background"}] * 3) == 3
    assert gc_evaluate.case_id_from_image_name("pet_000_0001.nii.gz") == "pet_000"
    assert gc_evaluate.case_id_from_image_name("abc.mha") == "abc"


def test_gc_evaluate_refuses_two_jobs_of_one_step(recorded, tmp_path, capsys):
    build_gc_layout(recorded, tmp_path, drop=("none", -1), fail=("none", -1))
    path = tmp_path / "input" / "predictions.json"
    jobs = json.loads(path.read_text())
    twin = json.loads(json.dumps(jobs[0]))
    twin["pk"] = "twin"
    path.write_text(json.dumps(jobs + [twin]))
    assert main(gc_args(tmp_path)) == 2
    assert "cannot tell their steps apart" in capsys.readouterr().err


# ------------------------------------------------------------------------ Codabench


def build_codabench_input(recorded, folder: Path, drop: tuple[str, int] | None = None) -> Path:
    input_dir = folder / "input"
    (input_dir / "ref").mkdir(parents=True)
    (input_dir / "ref" / "segloop.json").write_text(json.dumps({"task": "autopet"}))
    for case_id in recorded["case_ids"]:
        shutil.copy(label_path(recorded["data"], case_id), input_dir / "ref" / f"{case_id}.nii.gz")
        _, geometry = images.read_image(label_path(recorded["data"], case_id))
        for step, (_, prediction) in enumerate(recorded["steps"][case_id]):
            if (case_id, step) != drop:
                name = f"{case_id}_step{step}.nii.gz"
                images.write_image(input_dir / "res" / "predictions" / name, prediction, geometry)
    (input_dir / "res" / "README.txt").write_text("not a prediction")
    return input_dir


def test_codabench_scores_equal_the_run_summary(recorded, tmp_path):
    input_dir = build_codabench_input(recorded, tmp_path)
    output = tmp_path / "output"
    assert main(["codabench-score", str(input_dir), str(output)]) == 0
    scores = read_json(output / "scores.json")
    mean = read_json(recorded["run"] / "summary.json")["mean"]
    columns = {f"{m}_{k}" for m in mean for k in KINDS}
    assert set(scores) == columns | {"failed_steps", "num_cases"}
    for metric, figures in mean.items():
        for kind, value in figures.items():
            assert scores[f"{metric}_{kind}"] == pytest.approx(value, abs=1e-9), (metric, kind)
    assert scores["failed_steps"] == 0 and scores["num_cases"] == NUM_CASES
    html = (output / "detailed_results.html").read_text()
    assert all(case_id in html for case_id in recorded["case_ids"])
    assert "README.txt" in html  # listed as ignored


def test_codabench_missing_prediction_scores_empty(recorded, tmp_path):
    case_id = recorded["case_ids"][0]
    input_dir = build_codabench_input(recorded, tmp_path, drop=(case_id, 10))
    output = tmp_path / "output"
    assert main(["codabench-score", str(input_dir), str(output), "--task", "autopet"]) == 0
    assert read_json(output / "scores.json")["failed_steps"] == 1
    result = codabench.score_submission(input_dir, codabench_spec())
    step = result["case"][case_id]["steps"][10]
    assert step["failure"]["reason"] == "missing_prediction"
    empty = case_result(recorded["empty"], case_id)
    assert_same_metrics(step["metrics"], empty["steps"][10]["metrics"])
    # step 10 is read as the number 10 (not text-sorted next to step 1): step 9 is intact
    ok = case_result(recorded["run"], case_id)["steps"][9]["metrics"]
    assert_same_metrics(result["case"][case_id]["steps"][9]["metrics"], ok)


def codabench_spec():
    from segloop.leaderboard.stepscore import scoring_spec

    return scoring_spec("autopet")


def test_codabench_unknown_case_is_an_error(recorded, tmp_path, capsys):
    input_dir = build_codabench_input(recorded, tmp_path)
    shutil.copy(
        next((input_dir / "res" / "predictions").glob("*_step0.nii.gz")),
        input_dir / "res" / "stranger_step0.nii.gz",
    )
    assert main(["codabench-score", str(input_dir), str(tmp_path / "out")]) == 2
    assert "stranger" in capsys.readouterr().err


def test_codabench_bundle_runs_its_own_scoring_program(recorded, tmp_path):
    yaml = pytest.importorskip("yaml")
    bundle = tmp_path / "bundle"
    assert main(["codabench-bundle", "--task", "autopet", "--out", str(bundle)]) == 0
    competition = yaml.safe_load((bundle / "competition.yaml").read_text())
    assert competition["version"] == 2
    keys = [c["key"] for c in competition["leaderboards"][0]["columns"]]
    assert keys[0] == "dice_auc_normalised"
    sorting = {c["key"]: c["sorting"] for c in competition["leaderboards"][0]["columns"]}
    assert sorting["dice_final"] == "desc" and sorting["fpv_f32_final"] == "asc"
    metadata = yaml.safe_load((bundle / "scoring_program" / "metadata.yaml").read_text())
    assert "score.py" in metadata["command"]
    assert read_json(bundle / "reference_data" / "segloop.json") == {"task": "autopet"}

    # the bundle's scoring program, run as Codabench would, writes every leaderboard column
    input_dir = build_codabench_input(recorded, tmp_path / "platform")
    output = tmp_path / "platform" / "output"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(bundle / "scoring_program" / "score.py"), str(input_dir), str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert set(keys) <= set(read_json(output / "scores.json"))


def test_scoring_image_pins_satisfy_pyproject():
    """The scoring image's pinned wheels (and segloop/base's Debian numpy and scipy) satisfy
    every runtime dependency of pyproject.toml; its tag is segloop's version."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from segloop.containers import images

    pins = {}
    for line in (ROOT / images.SCORING_REQUIREMENTS).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = pinned.strip()
    pins |= {"numpy": "1.24.2", "scipy": "1.10.1"}  # Debian bookworm's, in segloop/base
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in {images.SCORING_REQUIREMENTS}"
        assert requirement.specifier.contains(pins[name]), (text, pins[name])
    assert images.SCORING_IMAGE == f"segloop/scoring:{version('segloop')}"
    assert codabench.SCORING_IMAGE == images.SCORING_IMAGE


@pytest.fixture(scope="module")
def scoring_image():
    """segloop/scoring built (``segloop images build --with-scoring``; quick when unchanged)."""
    try:
        import docker as docker_sdk

        client = docker_sdk.from_env()
        client.ping()
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"no Docker engine reachable: {type(error).__name__}: {error}")
    from segloop.containers.images import build_images

    build_images(only=["scoring"], log=lambda message: None)
    return client


@pytest.mark.docker
@pytest.mark.slow
def test_codabench_bundle_scores_in_its_scoring_image(recorded, tmp_path, scoring_image):
    """The image competition.yaml names runs the bundle's scoring program as Codabench does
    (metadata.yaml's command, /app/program, /app/input, /app/output), without network, and
    writes the scores segloop gives on the host."""
    bundle = tmp_path / "bundle"
    assert main(["codabench-bundle", "--task", "autopet", "--out", str(bundle)]) == 0
    image = codabench.SCORING_IMAGE
    assert f"docker_image: {json.dumps(image)}" in (bundle / "competition.yaml").read_text()
    metadata = (bundle / "scoring_program" / "metadata.yaml").read_text()
    command = metadata.removeprefix("command:").strip()
    input_dir = build_codabench_input(recorded, tmp_path / "platform")
    host = tmp_path / "host"
    assert main(["codabench-score", str(input_dir), str(host)]) == 0
    output = tmp_path / "platform" / "output"
    output.mkdir()
    container = scoring_image.containers.run(
        image,
        ["sh", "-c", command],
        network_mode="none",
        user=f"{os.getuid()}:{os.getgid()}",
        volumes={
            str(bundle / "scoring_program"): {"bind": "/app/program", "mode": "ro"},
            str(input_dir): {"bind": "/app/input", "mode": "ro"},
            str(output): {"bind": "/app/output", "mode": "rw"},
        },
        detach=True,
    )
    try:
        status = container.wait(timeout=300)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, logs
    assert read_json(output / "scores.json") == read_json(host / "scores.json")
    assert read_json(output / "scores.json")["num_cases"] == NUM_CASES
    html = (output / "detailed_results.html").read_text()
    assert all(case_id in html for case_id in recorded["case_ids"])


def test_gc_evaluate_reads_socket_keys_of_newer_grand_challenge(recorded, tmp_path):
    build_gc_layout(recorded, tmp_path, drop=("none", -1), fail=("none", -1))
    assert main(gc_args(tmp_path)) == 0
    with_interface = read_json(tmp_path / "output" / "metrics.json")
    path = tmp_path / "input" / "predictions.json"
    path.write_text(path.read_text().replace('"interface":', '"socket":'))
    assert main(gc_args(tmp_path)) == 0
    assert read_json(tmp_path / "output" / "metrics.json") == with_interface


def test_invalid_predictions_score_empty_with_their_reason(recorded, tmp_path):
    input_dir = build_codabench_input(recorded, tmp_path)
    first, second = recorded["case_ids"][:2]
    _, geometry = images.read_image(label_path(recorded["data"], first))
    shape = recorded["steps"][first][0][1].shape
    res = input_dir / "res" / "predictions"
    images.write_image(res / f"{first}_step4.nii.gz", np.full(shape, 7, np.uint8), geometry)
    images.write_image(res / f"{second}_step5.nii.gz", np.zeros((4, 4, 4), np.uint8), geometry)
    result = codabench.score_submission(input_dir, codabench_spec())
    bad_label = result["case"][first]["steps"][4]["failure"]
    bad_shape = result["case"][second]["steps"][5]["failure"]
    assert bad_label["reason"] == "invalid_output" and "[7]" in bad_label["detail"]
    assert bad_shape["reason"] == "invalid_output" and "shape" in bad_shape["detail"]
    assert result["aggregates"]["failed_steps"] == 2
    empty = case_result(recorded["empty"], first)
    assert_same_metrics(result["case"][first]["steps"][4]["metrics"], empty["steps"][4]["metrics"])


def test_gc_case_without_any_job_counts_as_missing(recorded, tmp_path):
    build_gc_layout(recorded, tmp_path, drop=("none", -1), fail=("none", -1))
    lost = recorded["case_ids"][2]
    path = tmp_path / "input" / "predictions.json"
    jobs = json.loads(path.read_text())
    kept = [j for j in jobs if not j["inputs"][0]["image"]["name"].startswith(lost)]
    assert len(kept) == len(jobs) - 11
    path.write_text(json.dumps(kept))
    assert main(gc_args(tmp_path)) == 0
    metrics = read_json(tmp_path / "output" / "metrics.json")
    assert metrics["aggregates"]["missing_cases"] == [lost]
    assert metrics["case"][lost]["failed_steps"] == 11
    assert {s["failure"]["reason"] for s in metrics["case"][lost]["steps"]} == {"missing_job"}
    assert metrics["aggregates"]["num_cases"] == NUM_CASES
