"""Every bad input is one line naming the file and the problem, or works where it is valid
(issue 14): broken datasets, odd but valid case ids, TOML tasks, tampered run folders, --out,
limits, gc-evaluate clicks, and CSV cells a spreadsheet would run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from segloop.app import phantoms
from segloop.cli.main import main
from segloop.core import store
from segloop.core.records import spreadsheet_safe

MODEL = "python:baselines.trivial:empty"


@pytest.fixture(scope="module")
def pet_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pet")
    phantoms.write_phantom_dataset(folder, "pet", 2, seed=4, shape=(12, 16, 16))
    return folder


@pytest.fixture
def data(pet_data, tmp_path) -> Path:
    """A private copy of the dataset to break."""
    copy = tmp_path / "data"
    shutil.copytree(pet_data, copy)
    return copy


def run(data: Path, out: Path, *extra: str, task: str = "autopet", model: str = MODEL) -> int:
    return main(
        ["run", "--data", str(data), "--task", task, "--model", model, "--out", str(out),
         "--no-progress", *extra]
    )  # fmt: skip


def error_line(capsys) -> str:
    """The one line a refused command printed on stderr."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("segloop: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def rename_case(data: Path, old: str, new: str) -> None:
    for path in sorted(data.rglob(f"{old}*")):
        path.rename(path.with_name(path.name.replace(old, new, 1)))


# --------------------------------------------------------------------- datasets
def test_an_mhd_without_its_data_file_is_one_line_in_run(data, tmp_path, capsys):
    image = sitk.ReadImage(str(data / "imagesTs" / "pet_000_0000.nii.gz"))
    (data / "imagesTs" / "pet_000_0000.nii.gz").unlink()
    sitk.WriteImage(image, str(data / "imagesTs" / "pet_000_0000.mhd"))
    (data / "imagesTs" / "pet_000_0000.raw").unlink()
    assert run(data, tmp_path / "run") == 2
    line = error_line(capsys)
    assert line.startswith(f"segloop: error: {data / 'imagesTs' / 'pet_000_0000'}")
    assert "pet_000_0000.raw" in line


def test_an_image_without_voxels_is_refused(data, tmp_path, capsys):
    for name, dtype in (("imagesTs/pet_000_0000", np.float32), ("imagesTs/pet_000_0001",
                        np.float32), ("labelsTs/pet_000", np.uint8)):  # fmt: skip
        empty = nibabel.Nifti1Image(np.zeros((16, 16, 0), dtype), np.eye(4))
        nibabel.save(empty, str(data / f"{name}.nii.gz"))
    assert run(data, tmp_path / "run") == 2
    assert error_line(capsys) == (
        f"segloop: error: {data / 'imagesTs' / 'pet_000_0000.nii.gz'}: image has no voxel "
        "(header size [16, 16, 0])"
    )
    assert not list((tmp_path / "run").glob("cases/*.json"))


def test_a_case_id_starting_with_a_dot_is_a_case(data, tmp_path):
    rename_case(data, "pet_000", ".hidden")
    assert run(data, tmp_path / "run") == 0
    summary = store.read_json(tmp_path / "run" / "summary.json")
    assert [row["case_id"] for row in summary["cases"]] == [".hidden", "pet_001"]
    site = tmp_path / "site"
    assert main(["leaderboard", str(tmp_path / "run"), "--out", str(site), "--bootstrap", "0"]) == 0


def test_a_case_id_ending_in_timing_is_refused(data, tmp_path, capsys):
    rename_case(data, "pet_001", "pet_000.timing")
    assert run(data, tmp_path / "run") == 2
    line = error_line(capsys)
    assert "case id 'pet_000.timing' ends in '.timing'" in line
    assert "clash with case 'pet_000'" in line and str(data / "imagesTs") in line


def test_a_240_character_case_id_runs_and_is_stored(data, tmp_path):
    long_id = "c" * 240
    rename_case(data, "pet_001", long_id)
    assert run(data, tmp_path / "run") == 0
    assert (tmp_path / "run" / "cases" / f"{long_id}.json").is_file()
    assert (tmp_path / "run" / "cases" / f"{long_id}.timing.json").is_file()


# --------------------------------------------------------------------- TOML tasks
BASE = 'base = "autopet"\n'
TOML_CASES = {
    "empty metrics": (BASE + "metrics = []\n", "no metric"),
    "NaN in auc_x": (BASE + "auc_x = [0.0, nan, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n",
                     "auc_x must be a finite number, not nan"),
    "decreasing auc_steps": (BASE + "auc_steps = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n",
                             "auc_steps must increase"),
    "unsorted auc_steps": (BASE + "auc_steps = [0, 2, 1]\nauc_x = [0, 1, 2]\n",
                           "auc_steps must increase"),
    "unknown empty_mask_policy key": (BASE + "[empty_mask_policy]\nbogus = 2\n",
                                      "empty_mask_policy: unknown key(s) bogus"),
    "unknown top-level key": (BASE + "sed = 3\n", "unknown key(s) sed"),
    "unknown protocol key": (BASE + '[protocol]\nprotocol = "autopet"\nbogus_key = 3\n',
                             "has no parameter bogus_key"),
    "seed 1.5": (BASE + "seed = 1.5\n", "seed must be an integer, not 1.5"),
    "seed true": (BASE + "seed = true\n", "seed must be an integer, not True"),
    "num_steps 2.5": (BASE + "num_steps = 2.5\n", "num_steps must be an integer, not 2.5"),
    "boolean as text": (BASE + 'present_classes_only = "false"\n',
                        "present_classes_only must be true or false, not 'false'"),
    "limit as text": (BASE + '[limits]\ncpus = "2"\n', "limits.cpus must be a finite number"),
    "policy value as text": (BASE + '[empty_mask_policy]\nboth_empty_overlap = "1"\n',
                             "both_empty_overlap must be a number, not '1'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TOML_CASES))
def test_bad_toml_tasks_are_one_line(case, pet_data, tmp_path, capsys):
    content, expected = TOML_CASES[case]
    task = tmp_path / "task.toml"
    task.write_text(content)
    assert main(["check", "--data", str(pet_data), "--task", str(task), "--no-progress"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"segloop: error: {task}: ") and expected in line, line
    assert run(pet_data, tmp_path / "run", task=str(task)) == 2
    error_line(capsys)
    assert not (tmp_path / "run").exists()  # nothing written for a task that is not valid


# --------------------------------------------------------------------- tampered run folders
@pytest.fixture(scope="module")
def finished_run(pet_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert run(pet_data, out) == 0
    return out


def tamper(finished_run: Path, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    case = copy / "cases" / "pet_001.json"
    content = json.loads(case.read_text())
    if how == "run.json a list":
        (copy / "run.json").write_text("[1, 2]\n")
    elif how == "cases a file":
        shutil.rmtree(copy / "cases")
        (copy / "cases").write_text("x")
    elif how == "no steps":
        del content["steps"]
    elif how == "string metric":
        content["steps"][0]["metrics"]["dice"]["mean"] = "0.9"
    elif how == "claims another case":
        content["case_id"] = "pet_000"
        (copy / "cases" / "pet_000.json").unlink()
    if how in ("no steps", "string metric", "claims another case"):
        case.write_text(json.dumps(content))
    return copy


TAMPERED = {
    # how: (run's exit code, the line run prints or None, the leaderboard's line)
    "run.json a list": (2, "run.json: not a segloop run file", "run.json: not a segloop run file"),
    "cases a file": (2, "cases: not a folder", "the run has no finished case"),
    "no steps": (0, None, "pet_001.json: 'steps' is missing or not a list"),
    "string metric": (0, None, "pet_001.json step 0 metric dice: '0.9' is not a number"),
    "claims another case": (0, None, "pet_001.json: holds case 'pet_000', not 'pet_001'"),
}


@pytest.mark.parametrize("how", sorted(TAMPERED))
def test_tampered_run_folders_are_one_line_or_rerun(how, finished_run, pet_data, tmp_path, capsys):
    run_code, run_line, board_line = TAMPERED[how]
    copy = tamper(finished_run, tmp_path, how)
    assert main(["leaderboard", str(copy), "--out", str(tmp_path / "site")]) == 2
    assert board_line in error_line(capsys)
    assert run(pet_data, copy) == run_code
    if run_line:
        assert run_line in error_line(capsys)
        return
    assert "; the case runs again" in capsys.readouterr().err
    # the damaged case was run again: the folder now equals the untouched run
    for name in ("pet_000.json", "pet_001.json"):
        assert (copy / "cases" / name).read_bytes() == (finished_run / "cases" / name).read_bytes()


# --------------------------------------------------------------------- --out, limits
def test_out_at_a_file_or_an_uncreatable_path_is_one_line(pet_data, tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert run(pet_data, afile) == 2
    assert error_line(capsys) == f"segloop: error: --out {afile}: exists and is not a folder"
    assert run(pet_data, afile / "run") == 2
    assert error_line(capsys) == f"segloop: error: --out {afile / 'run'}: {afile} is not a folder"
    assert run(pet_data, Path("/proc/segloop/run")) == 2
    assert error_line(capsys) == (
        "segloop: error: /proc/segloop/run: cannot create the run folder (No such file or directory)"
    )


def test_unknown_or_blank_case_ids_are_one_line(pet_data, tmp_path, capsys):
    assert run(pet_data, tmp_path / "run", "--cases", "pet_000,nope") == 2
    assert error_line(capsys) == (
        f"segloop: error: --cases: 'nope' not a case of {pet_data} (it has 2: pet_000, pet_001)"
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert run(pet_data, tmp_path / "run", "--cases", " , ") == 2
    assert error_line(capsys) == "segloop: error: --cases ' , ': no case id"
    assert run(pet_data, tmp_path / "run", "--cases", "pet_001,,") == 0  # blanks dropped
    assert sorted(p.name for p in (tmp_path / "run" / "cases").glob("*[0-9].json")) == [
        "pet_001.json"
    ]


@pytest.mark.parametrize("cpus", ["1e-10", "0.001"])
def test_cpu_limits_the_engine_cannot_enforce_are_refused(cpus, pet_data, tmp_path, capsys):
    assert run(pet_data, tmp_path / "run", "--cpus", cpus, model="docker:segloop/trivial") == 2
    assert error_line(capsys) == (
        f"segloop: error: --cpus {cpus}: the Docker engine enforces 0.01 CPUs at least"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.docker
def test_more_cpus_than_the_engine_has_are_refused(docker_client, pet_data, tmp_path, capsys):  # noqa: F811
    engine_cpus = docker_client.info()["NCPU"]
    assert run(pet_data, tmp_path / "run", "--cpus", str(engine_cpus + 1),
               model="docker:segloop/trivial") == 2  # fmt: skip
    assert f"the Docker engine has {engine_cpus} CPUs" in error_line(capsys)


# --------------------------------------------------------------------- gc-evaluate
def gc_job(points) -> list:
    return [
        {"pk": "j1", "status": "Succeeded", "inputs": [
            {"interface": {"slug": "ct-image", "kind": "Image"},
             "image": {"name": "pet_000_0000.mha"}},
            {"interface": {"slug": "lesion-clicks", "kind": "Multiple points"},
             "value": {"type": "Multiple points", "points": points}}],
         "outputs": [{"interface": {"slug": "tumor-lesion-segmentation", "kind": "Image"},
                      "image": {"name": "x.mha"}}]}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ("5", "job j1: the clicks input 'lesion-clicks' has malformed points"),
        ('"abc"', "job j1: the clicks input 'lesion-clicks' has malformed points"),
        ("[" * 100_000 + "]" * 100_000, "not readable JSON (maximum recursion depth exceeded"),
    ],
    ids=["a number", "a string", "nested 100,000 deep"],
)
def test_gc_evaluate_bad_points_are_one_line(points, expected, tmp_path, capsys):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(gc_job("POINTS")).replace('"POINTS"', points))
    code = main(
        ["gc-evaluate", "--task", "autopet", "--predictions", str(predictions), "--input-dir",
         str(tmp_path), "--ground-truth", str(tmp_path), "--output", str(tmp_path / "m.json")]
    )  # fmt: skip
    assert code == 2
    line = error_line(capsys)
    assert line.startswith(f"segloop: error: {predictions}: ") and expected in line, line


# --------------------------------------------------------------------- CSV cells
@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_formula_starts_are_neutralised(text):
    assert spreadsheet_safe(text) == "'" + text
    assert spreadsheet_safe("team=1") == "team=1" and spreadsheet_safe(-1.5) == -1.5


def test_csv_tables_hold_no_formula(pet_data, tmp_path):
    name = '=HYPERLINK("http://evil.example","click")'
    assert run(pet_data, tmp_path / "run", "--name", name) == 0
    site = tmp_path / "site"
    assert main(["leaderboard", str(tmp_path / "run"), "--out", str(site), "--bootstrap", "0"]) == 0
    tables = [tmp_path / "run" / "summary.csv", *sorted((site / "data").glob("*.csv"))]
    submissions = 0
    for table in tables:
        with open(table, newline="") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell.startswith(("=", "+", "@", "\t", "\r")), (table, cell)
                    submissions += cell == "'" + name
    assert submissions > 0  # the name is there, as text
    rankings = json.loads((site / "data" / "rankings.json").read_text())
    assert rankings[0]["submission"] == name  # the JSON keeps it as it is


from tests.test_docker import docker_client  # noqa: E402, F401 - the session fixture
