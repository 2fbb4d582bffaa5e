"""The replay user: recorded interactions played back step by step from segloop JSON, run
folders, Grand Challenge per-step click files and CSV; errors naming the file and the row; the
content hash in the task's configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segloop.app import phantoms
from segloop.core import store
from segloop.core.formats import to_gc_points, to_point_lists, to_segloop_json
from segloop.core.records import Case, Geometry, Interaction, SegloopError
from segloop.loop import case_result_of, run_case
from segloop.protocols.recordings import load_recording
from segloop.protocols.replay import ReplayUser
from segloop.protocols.tasks import get_task, is_reactive, robot_user_from_json

SHAPE = (6, 8, 10)  # non-cubic: an axis-order mistake lands outside
CLASSES = {1: "tumor"}


def case(case_id: str = "c1") -> Case:
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 2:5, 3:7] = 1
    return Case(case_id, (label.astype(np.float32),), label, Geometry((3.0, 2.0, 2.0)))


STEPS = {  # the session of one case: step -> its new interactions
    1: (
        Interaction("click", 1, True, 1, ((2, 3, 4),)),
        Interaction("click", 1, False, 1, ((0, 0, 9),)),
    ),
    2: (Interaction("click", 1, True, 2, ((3, 4, 6),)),),
    3: (
        Interaction("click", 1, False, 3, ((5, 7, 0),)),
        Interaction("click", 1, True, 3, ((2, 2, 3),)),
    ),
}
FLAT = [i for step in STEPS.values() for i in step]


def replayed(user: ReplayUser, steps: int = 5, c: Case | None = None) -> dict[int, tuple]:
    c = case() if c is None else c
    return {s: user.interactions(c, CLASSES, s, None, 0) for s in range(steps)}


EXPECTED = {0: (), 1: STEPS[1], 2: STEPS[2], 3: STEPS[3], 4: ()}


def write_csv(
    path: Path, rows: list[list], header: str = "case,annotator,step,class,z,y,x,positive"
):
    lines = [header] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def csv_rows(annotator: str, interactions=FLAT, case_id="c1", class_ref=1) -> list[list]:
    return [
        [case_id, annotator, i.step, class_ref, *i.coords[0], int(i.positive)] for i in interactions
    ]


def test_csv_replays_step_by_step_and_chooses_the_annotator(tmp_path):
    path = tmp_path / "study.csv"
    other = [Interaction("click", 1, True, 1, ((3, 3, 3),))]
    write_csv(path, csv_rows("ann") + csv_rows("bob", other))
    with pytest.raises(SegloopError, match=r"2 annotators \(ann, bob\); choose one"):
        ReplayUser(str(path))
    with pytest.raises(SegloopError, match="no annotator 'eve'"):
        ReplayUser(str(path), annotator="eve")
    assert replayed(ReplayUser(str(path), annotator="ann")) == EXPECTED
    assert replayed(ReplayUser(str(path), annotator="bob"))[1] == tuple(other)
    # class names work too, and the annotator column is optional
    single = tmp_path / "single.csv"
    rows = [r[:1] + r[2:] for r in csv_rows("", class_ref="tumor")]
    write_csv(single, rows, header="case,step,class,z,y,x,positive")
    assert replayed(ReplayUser(str(single))) == EXPECTED


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["c1", "a", "one", 1, 2, 3, 4, 1], "line 3: step 'one' is not an integer"),
        (["c1", "a", 1, 1, 2, 3, 4, "maybe"], "line 3: positive 'maybe' is not 1/0"),
        (["c1", "a", 1, 1, 2, 3, -4, 1], "line 3: x -4 is below 0"),
        (["c1", "a", 1, 1, 2.5, 3, 4, 1], "line 3: z '2.5' is not an integer"),
        (["c1", "a", -1, 1, 2, 3, 4, 1], "line 3: step -1 is below 0"),
        (["c1", "a", 1, 1, 2, 3], "line 3: expected 8 fields"),
    ],
)
def test_csv_bad_values_name_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    write_csv(path, [csv_rows("a")[0], row])
    with pytest.raises(SegloopError, match=f"{path.name} {message}"):
        ReplayUser(str(path))


def test_errors_when_replayed_name_file_row_and_case(tmp_path):
    path = tmp_path / "study.csv"
    write_csv(
        path,
        csv_rows("a") + [["c1", "a", 4, 1, 6, 0, 0, 1], ["c2", "a", 1, "liver", 0, 0, 0, 1]],
    )
    user = ReplayUser(str(path))
    with pytest.raises(SegloopError, match=r"line 7: click at \(z, y, x\) = \(6, 0, 0\) lies "):
        user.interactions(case(), CLASSES, 1, None, 0)  # checked for the whole case at once
    with pytest.raises(SegloopError, match="line 8: class 'liver' is not a class of the task"):
        user.interactions(case("c2"), CLASSES, 1, None, 0)
    with pytest.raises(SegloopError, match=r"no recorded interactions for case 'c3' .*c1, c2"):
        user.interactions(case("c3"), CLASSES, 0, None, 0)
    with pytest.raises(SegloopError, match="missing column"):
        write_csv(path, [["c1", 1]], header="case,step")
        ReplayUser(str(path))
    with pytest.raises(SegloopError, match="class 2 is not a class"):
        write_csv(path, csv_rows("a", class_ref=2))
        user = ReplayUser(str(path))
        user.interactions(case(), CLASSES, 0, None, 0)
    with pytest.raises(SegloopError, match="no such file"):
        ReplayUser(str(tmp_path / "nothing.csv"))


def test_segloop_json_shapes(tmp_path):
    plain = tmp_path / "c1.json"  # a plain list: the file name is the case
    plain.write_text(json.dumps([i.to_json() for i in FLAT]))
    assert replayed(ReplayUser(str(plain))) == EXPECTED
    # segloop-interactions written in x, y, z order (as `segloop clicks` may write them)
    permuted = tmp_path / "c1_interactions.json"
    permuted.write_text(json.dumps(to_segloop_json(FLAT, ("x", "y", "z"))))
    assert replayed(ReplayUser(str(permuted))) == EXPECTED
    by_case = tmp_path / "cases.json"
    by_case.write_text(json.dumps({"c1": [i.to_json() for i in FLAT], "c2": []}))
    user = ReplayUser(str(by_case))
    assert replayed(user) == EXPECTED and replayed(user, c=case("c2")) == {s: () for s in range(5)}
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "c1.json").write_text(plain.read_text())
    (folder / "c2.json").write_text("[]")
    assert ReplayUser(str(folder)).format == "segloop"
    assert replayed(ReplayUser(str(folder))) == EXPECTED
    bad = tmp_path / "bad.json"
    item = FLAT[0].to_json()
    for broken, message in (
        ({**item, "coords": [[1.5, 2, 3]]}, "interaction 1: coords"),
        ({**item, "positive": "yes"}, "interaction 1: positive 'yes'"),
        ({**item, "kind": "lasso"}, "interaction 1: kind 'lasso'"),
        ({k: v for k, v in item.items() if k != "step"}, "interaction 1: missing step"),
    ):
        bad.write_text(json.dumps([item, broken]))
        with pytest.raises(SegloopError, match=f"bad.json {message}"):
            ReplayUser(str(bad))
    (folder / "c3.json").write_text(json.dumps({"c1": []}))
    with pytest.raises(SegloopError, match="case 'c1' is recorded twice"):
        ReplayUser(str(folder))


class EchoModel:
    """Predicts the label of the clicked voxels only (enough for a loop)."""

    name = "echo"

    def open_case(self, case_input):
        return self

    def predict(self, request):
        out = np.zeros(SHAPE, np.uint8)
        for i in request.interactions:
            if i.positive:
                out[i.coords[0]] = i.class_id
        return out

    def close(self):
        pass


def test_a_run_folder_replays_its_own_interactions(tmp_path):
    """A run of any robot user is a recording: its replay gives the same steps, hence the same
    scores, on the same model."""
    pet = [phantoms.pet_phantom(i, shape=(16, 24, 24)) for i in (0, 1)]
    task = get_task("r5")
    run_dir = tmp_path / "run"
    store.write_json_atomic(run_dir / store.RUN_FILE, {"config_hash": "x"})
    originals = {}
    for c in pet:
        outcome = run_case(c, task, _PetEcho())
        result = case_result_of(outcome, task, "s", "x").to_json()
        store.write_json_atomic(store.case_result_path(run_dir, c.case_id), result)
        store.write_json_atomic(store.case_timing_path(run_dir, c.case_id), {"volatile": 1})
        originals[c.case_id] = result
    user = ReplayUser(str(run_dir))
    assert user.format == "run"
    again = type(task)(**{**task.__dict__, "robot_user": user})
    for c in pet:
        result = case_result_of(run_case(c, again, _PetEcho()), again, "s", "x").to_json()
        assert result["steps"] == originals[c.case_id]["steps"]
    # volatile timing files are not part of the recording
    before = user.sha256
    store.write_json_atomic(store.case_timing_path(run_dir, pet[0].case_id), {"volatile": 2})
    assert ReplayUser(str(run_dir)).sha256 == before


class _PetEcho(EchoModel):
    def predict(self, request):
        out = None
        for i in request.interactions:
            if out is None:
                out = np.zeros(self.shape, np.uint8)
            if i.positive:
                out[i.coords[0]] = i.class_id
        return np.zeros(self.shape, np.uint8) if out is None else out

    def open_case(self, case_input):
        self.shape = case_input.shape
        return self


def write_step_files(folder: Path, steps, encode, name_of) -> None:
    """Cumulative per-step click files: file k holds the clicks of steps 0..k (k = 0..11, so
    that text order, 10 before 2, would break the cumulative check)."""
    folder.mkdir(parents=True)
    so_far: list[Interaction] = []
    for step in range(12):
        so_far.extend(steps.get(step, ()))
        (folder / name_of(step)).write_text(json.dumps(encode(so_far)))


def test_grand_challenge_step_files_autopet_and_toothfairy3(tmp_path):
    autopet = tmp_path / "autopet"
    write_step_files(
        autopet / "c1",
        STEPS,
        lambda clicks: to_gc_points(clicks, CLASSES),  # voxel (x, y, z), tumor / background
        lambda k: f"c1_step_{k:02d}.json",
    )
    (autopet / "c1" / "c1_clicks.json").write_text("{}")  # other files are ignored
    user = ReplayUser(str(autopet))
    assert user.format == "gc"
    got = replayed(user)
    # "Multiple points" files group points by name: within a step, tumor points come first
    assert got == {s: tuple(sorted(v, key=lambda i: not i.positive)) for s, v in EXPECTED.items()}
    tooth = tmp_path / "tooth"
    write_step_files(
        tooth / "c1",
        STEPS,
        lambda clicks: to_gc_points(clicks, CLASSES, axis_order=("z", "y", "x")),
        lambda k: f"{k}_clicks.json",  # ToothFairy3's names
    )
    assert replayed(ReplayUser(str(tooth), challenge="toothfairy3")) == got
    # the wrong axis order is caught at the first point outside this non-cubic image
    with pytest.raises(SegloopError, match=r"/1_clicks.json: point 1 \(background\).*outside"):
        replayed(ReplayUser(str(tooth)))  # autopet's (x, y, z)
    # point lists (TriALS), per-step (not cumulative) files
    trials = tmp_path / "trials" / "c1"
    trials.mkdir(parents=True)
    for step, clicks in STEPS.items():
        data = to_point_lists(clicks, {1: "lesion"})
        (trials / f"c1_step_{step}.json").write_text(json.dumps(data))
    user = ReplayUser(str(tmp_path / "trials"), challenge="trials", cumulative=False)
    assert [len(user.interactions(case(), {1: "lesion"}, s, None, 0)) for s in range(5)] == [
        0,
        2,
        1,
        2,
        0,
    ]
    with pytest.raises(SegloopError, match="do not extend those of the previous step file"):
        user = ReplayUser(str(tmp_path / "trials"), challenge="trials")
        user.interactions(case(), {1: "lesion"}, 1, None, 0)


def test_to_json_records_the_content_hash_and_round_trips(tmp_path):
    path = tmp_path / "study.csv"
    write_csv(path, csv_rows("a"))
    user = ReplayUser(str(path))
    spec = user.to_json()
    assert spec["protocol"] == "replay" and spec["format"] == "csv" and len(spec["sha256"]) == 64
    assert robot_user_from_json(spec) == user
    assert replayed(robot_user_from_json(spec)) == replayed(user)  # deterministic
    # another recording, another configuration; a pinned hash refuses the changed file
    write_csv(path, csv_rows("a")[:-1])
    changed = ReplayUser(str(path))
    assert changed.sha256 != user.sha256 and changed.to_json() != spec
    with pytest.raises(SegloopError, match="the recording changed"):
        robot_user_from_json(spec)
    toml = tmp_path / "replay.toml"
    toml.write_text(
        f'base = "r1"\n[protocol]\nname = "replay"\npath = "{path.as_posix()}"\n',
        encoding="utf-8",
    )
    task = get_task(toml)
    assert isinstance(task.robot_user, ReplayUser) and task.num_steps == 11
    assert task.to_json()["robot_user"]["sha256"] == changed.sha256
    assert not is_reactive(task.robot_user) and not task.send_previous_prediction


def test_recording_is_read_once_per_version_and_checks_format(tmp_path):
    path = tmp_path / "study.csv"
    write_csv(path, csv_rows("a"))
    assert load_recording(path) is load_recording(path)  # tasks are rebuilt per case
    with pytest.raises(SegloopError, match="format must be one of"):
        load_recording(path, format="xml")
    with pytest.raises(SegloopError, match="annotator applies to CSV"):
        plain = tmp_path / "c1.json"
        plain.write_text("[]")
        ReplayUser(str(plain), annotator="a")
    with pytest.raises(SegloopError, match="axis_order"):
        ReplayUser(str(path), axis_order=("x", "y", "y"))
