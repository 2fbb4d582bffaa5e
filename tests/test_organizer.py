"""The organizer's path (issue 17, item 4): docs/tasks.md run as written, presets printed as
TOML that load back as the same task, Codabench bundles that carry a TOML task and refuse
reactive ones, an example Grand Challenge predictions.json that gc-evaluate scores as the run
did, and channel counts checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core import store
from segloop.core.challenges import CHALLENGES, challenge_to_toml
from segloop.protocols.tasks import get_task
from tests.test_leaderboard_helpers import SMALL_PET

DOC = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"
ROOT = DOC.parents[1]
MODEL = "python:segloop.baselines.region_growing:predict"


def results_config(task_json: dict) -> dict:
    """What defines a run's results, but the scoring mode's label: a TOML task that sets its
    own metrics is in mode "custom" and scores the same way."""
    config = json.loads(json.dumps(task_json))
    config["scoring"].pop("mode")
    config["scoring"].pop("reproduces")
    return config


@pytest.mark.parametrize("scoring", [None, "segloop"])
@pytest.mark.parametrize("name", sorted(CHALLENGES))
def test_a_preset_printed_as_toml_loads_back_as_the_same_task(name, scoring, tmp_path, capsys):
    args = ["tasks", name, "--toml"] + (["--scoring", scoring] if scoring else [])
    preset = CHALLENGES[name]
    if scoring and scoring not in preset.scoring_modes and scoring != preset.scoring_mode:
        assert main(args) == 2  # a preset without that mode says so
        return
    assert main(args) == 0
    path = tmp_path / f"{name}.toml"
    path.write_text(capsys.readouterr().out)
    assert "[protocol]" in path.read_text() and "[classes]" in path.read_text()
    assert results_config(get_task(path).to_json()) == results_config(
        get_task(name, scoring=scoring).to_json()
    )
    assert get_task(path).limits == get_task(name).limits


def test_toml_writer_keeps_nested_protocols_and_limits(tmp_path):
    toml = tmp_path / "nested.toml"
    toml.write_text(
        'base = "toothfairy3"\nchannels = ["CBCT"]\n[limits]\nmemory_mb = 1024\n'
        '[protocol]\nname = "realistic"\np_system = 0.5\n[protocol.base]\nname = "toothfairy3"\n'
    )
    task = get_task(toml)
    again = tmp_path / "again.toml"
    from segloop.core.challenges import get_challenge

    again.write_text(challenge_to_toml(get_challenge(toml)))
    assert "[protocol.base]" in again.read_text()
    assert results_config(get_task(again).to_json()) == results_config(task.to_json())
    assert get_task(again).limits == {"memory_mb": 1024} and get_task(again).channels == ("CBCT",)


def test_the_tasks_doc_runs_as_written_and_its_bundle_scores_with_the_toml_task(tmp_path):
    text = DOC.read_text()
    (tmp_path / "lesions.toml").write_text(re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M)[0])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    summary = json.loads((tmp_path / "runs" / "rg" / "summary.json").read_text())
    assert summary["task"] == "liver-lesions" and summary["num_cases"] == 2
    assert "Dataset: abdomen phantoms" in (tmp_path / "site" / "index.html").read_text()
    bundle = tmp_path / "bundle"
    assert (bundle / "scoring_program" / "task.toml").read_text() == (
        bundle / "reference_data" / "task.toml"
    ).read_text()
    assert json.loads((bundle / "reference_data" / "segloop.json").read_text()) == {
        "task": "task.toml"
    }
    # Codabench's run of the bundle's program: ref = the reference data + ground truth, res = the
    # run's kept predictions; it scores with the TOML task and gives the run's numbers
    platform = tmp_path / "platform"
    shutil.copytree(bundle / "reference_data", platform / "input" / "ref")
    for label in (tmp_path / "data" / "labelsTs").iterdir():
        shutil.copy(label, platform / "input" / "ref" / label.name)
    res = platform / "input" / "res"
    res.mkdir()
    for case_id in ("abdomen_000", "abdomen_001"):
        for step in store.saved_prediction_steps(tmp_path / "runs" / "rg", case_id):
            shutil.copy(
                store.prediction_path(tmp_path / "runs" / "rg", case_id, step),
                res / f"{case_id}_step{step}.nii.gz",
            )
    done = subprocess.run(
        [sys.executable, str(bundle / "scoring_program" / "score.py")]
        + [str(platform / "input"), str(platform / "output")],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    scores = json.loads((platform / "output" / "scores.json").read_text())
    for metric in ("dice", "hd95"):
        for kind in ("auc_normalised", "final"):
            assert scores[f"{metric}_{kind}"] == pytest.approx(summary["mean"][metric][kind])
    # codabench-score finds the task in ref/ by itself
    assert main(["codabench-score", str(platform / "input"), str(tmp_path / "again")]) == 0


@pytest.mark.parametrize("task", ["medsegfm", "generic"])
def test_codabench_bundle_refuses_a_reactive_task_in_one_line(task, tmp_path, capsys):
    assert main(["codabench-bundle", "--task", task, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "reacts to the model's predictions" in err and "\n" not in err
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def kept_pet(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gcpred")
    data = root / "data"
    phantoms.write_phantom_dataset(data, "pet", 2, seed=4, shape=SMALL_PET)
    run = root / "run"
    args = ["run", "--data", str(data), "--task", "autopet", "--model", MODEL]
    assert main([*args, "--out", str(run), "--save-predictions", "--no-progress"]) == 0
    return data, run


def test_gc_predictions_let_gc_evaluate_reproduce_the_run(kept_pet, tmp_path):
    _, run = kept_pet
    out = tmp_path / "gc"
    assert main(["gc-predictions", str(run), "--out", str(out)]) == 0
    jobs = json.loads((out / "input" / "predictions.json").read_text())
    assert len(jobs) == 2 * 11
    metrics = out / "metrics.json"
    args = ["gc-evaluate", "--task", "autopet", "--input-dir", str(out / "input")]
    assert main([*args, "--ground-truth", str(out / "ground_truth"), "--output", str(metrics)]) == 0
    aggregates = json.loads(metrics.read_text())["aggregates"]
    summary = json.loads((run / "summary.json").read_text())
    assert aggregates["num_cases"] == 2 and aggregates["failed_steps"] == 0
    for metric, kinds in summary["mean"].items():
        for kind, value in kinds.items():
            assert aggregates[f"{metric}_{kind}"]["mean"] == pytest.approx(value, abs=1e-9)


def test_gc_predictions_refuse_runs_they_cannot_serve(kept_pet, tmp_path, capsys):
    data, run = kept_pet
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("pet_00?"))
    assert main(["gc-predictions", str(bare), "--out", str(tmp_path / "x")]) == 2
    assert "--save-predictions" in capsys.readouterr().err
    trials = tmp_path / "trials"
    phantoms.write_phantom_dataset(tmp_path / "abdomen", "abdomen", 1, seed=0, shape=(24, 48, 48))
    args = ["run", "--data", str(tmp_path / "abdomen"), "--task", "trials", "--model", MODEL]
    assert main([*args, "--out", str(trials), "--save-predictions", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["gc-predictions", str(trials), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Grand Challenge interface" in err and "autopet" in err and "\n" not in err


def test_check_and_run_refuse_a_dataset_with_the_wrong_channel_count(tmp_path, capsys):
    data = tmp_path / "abdomen"  # CT only; autoPET needs CT and PET
    phantoms.write_phantom_dataset(data, "abdomen", 2, seed=0, shape=(24, 48, 48))
    assert main(["check", "--data", str(data), "--task", "autopet", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("has 1 image channel(s)") == 2 and "needs 2 (_0000 CT, _0001 PET)" in err
    args = ["run", "--data", str(data), "--task", "autopet", "--model", MODEL]
    assert main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segloop: error: case abdomen_000: has 1 image channel(s)")
    assert "\n" not in err
    assert main(["check", "--data", str(data), "--task", "trials", "--no-progress"]) == 0
