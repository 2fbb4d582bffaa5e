"""Named task presets (SPEC protocol table) and user-defined tasks from TOML.

Presets: ``autopet``, ``toothfairy3``, ``trials``, ``medsegfm`` (the four 2025 challenges as
they ran), ``generic`` (Sakinis clicks from an empty start, no box) and ``r1`` .. ``r5`` (the
thesis's robot users, §5.2, eqs. 17-20 and 28, on autoPET's lesion task: 11 steps, one lesion
and one background click per step from step 1). ``get_task(name or path.toml)`` returns a fresh
``segloop.core.task.Task`` each call. R2 is a protocol (``[protocol] name = "r2"``) but no preset:
it needs the model's uncertainty map, which the contract does not carry yet, so it would stop
at the first case. Recorded sessions are replayed with ``[protocol] name = "replay"`` and
``path = "..."`` in a TOML task (``segloop.protocols.replay``): a preset has no recording to play.

A user-defined task (TOML)::

    name = "my-liver-task"
    description = "Liver, 1 box then 5 corrective clicks"
    base = "medsegfm"            # optional: start from a preset, override what follows
    num_steps = 6
    metrics = ["dice", "nsd@2"]
    auc_steps = [1, 2, 3, 4, 5]  # default: every step
    auc_x = [0, 1, 2, 3, 4]      # default: 0, 1, ... (one per AUC step)
    nsd_zero_below_dice = 0.2    # optional
    nsd_zero_scope = "case"      # "case" (CVPR25: the case's mean Dice) or "class"
    present_classes_only = true  # score only the classes in the ground truth (CVPR25)
    send_previous_prediction = true  # default: true for a reactive protocol (or a base that
                                     # sends it), else false
    seed = 0

    [classes]
    1 = "liver"

    [protocol]                   # any protocol by name (see PROTOCOLS) and its parameters
    name = "sakinis"
    initial = "box"

    [empty_mask_policy]          # optional, segloop.core.records.EmptyMaskPolicy fields
    one_empty_distance_mm = 100.0

    [limits]                     # optional defaults for runs of this task (run options win)
    step_time_limit_s = 90       # also case_time_limit_s, memory_mb, cpus, pids, shm_mb
    memory_mb = 16000

Wrappers take their inner protocols as sub-tables: ``[protocol] name = "realistic"`` with
``[protocol.base] name = "autopet"``; ``name = "sequence"`` with ``[protocol.initial]`` and
``[protocol.then]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import tomllib

from segloop.core.records import EmptyMaskPolicy, SegloopError
from segloop.core.task import RobotUser, Task
from segloop.protocols.autopet import AutoPETUser
from segloop.protocols.realistic import RealisticUser
from segloop.protocols.sakinis import SakinisUser
from segloop.protocols.toothfairy import ToothFairyUser
from segloop.protocols.trials import TriALSUser

# protocol name -> "module:Class"; wrappers get their inner protocols built recursively
PROTOCOLS: dict[str, str] = {
    "sakinis": "segloop.protocols.sakinis:SakinisUser",
    "autopet": "segloop.protocols.autopet:AutoPETUser",
    "trials": "segloop.protocols.trials:TriALSUser",
    "toothfairy3": "segloop.protocols.toothfairy:ToothFairyUser",
    "realistic": "segloop.protocols.realistic:RealisticUser",
    "clicks": "segloop.protocols.generic:EligibilityClickUser",
    "box": "segloop.protocols.generic:BoxUser",
    "scribble": "segloop.protocols.generic:ScribbleUser",
    "polygon": "segloop.protocols.generic:PolygonUser",
    "sequence": "segloop.protocols.generic:SequenceUser",
    "r1": "segloop.protocols.thesis:R1User",
    "r2": "segloop.protocols.thesis:R2User",
    "r3": "segloop.protocols.thesis:R3User",
    "r4": "segloop.protocols.thesis:R4User",
    "replay": "segloop.protocols.replay:ReplayUser",
}
NESTED = ("base", "initial", "then")  # parameters that are themselves protocols


def robot_user_from_json(spec: Mapping[str, Any], where: str = "protocol") -> RobotUser:
    """Build a robot user from ``{"protocol"|"name": NAME, **parameters}`` (inverse of to_json)."""
    spec = dict(spec)
    name = spec.pop("protocol", None) or spec.pop("name", None)
    if name is None:
        raise SegloopError(f"{where}: a protocol needs a name (one of {', '.join(PROTOCOLS)})")
    spec.pop("name", None)
    if name not in PROTOCOLS:
        raise SegloopError(
            f"{where}: unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}"
        )
    module_name, class_name = PROTOCOLS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    allowed = {f.name for f in fields(cls) if f.init and f.name != "name"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SegloopError(
            f"{where}: protocol {name!r} has no parameter {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(allowed)) or 'none'}"
        )
    for key in NESTED:
        if key in spec and isinstance(spec[key], Mapping):
            spec[key] = robot_user_from_json(spec[key], f"{where}.{key}")
    try:
        return cls(**spec)
    except (TypeError, ValueError, SegloopError) as error:
        raise SegloopError(f"{where}: {error}") from None


def is_reactive(user: RobotUser) -> bool:
    """Whether the user's interactions depend on the model's previous prediction."""
    name = getattr(user, "name", "")
    if name == "realistic":
        return is_reactive(user.base)  # type: ignore[attr-defined]
    if name == "sequence":
        return is_reactive(user.then)  # type: ignore[attr-defined]
    if name == "sakinis":
        return True
    return bool(getattr(user, "reactive", False))


def _steps(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


def _x(count: int) -> tuple[float, ...]:
    return tuple(float(v) for v in range(count))


def autopet_task(seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:

    return Task(
        name="autopet",
        description="autoPET IV: 10 lesion + 10 high-uptake background clicks (Alg. 1), 0..10",
        robot_user=AutoPETUser(),
        num_steps=11,
        classes=dict(classes or {1: "tumor"}),
        metrics=("dice", "fpv", "fnv"),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        seed=seed,
    )


def toothfairy3_task(seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:

    return Task(
        name="toothfairy3",
        description="ToothFairy3 IAC: 5 slice-wise centre clicks per canal (Alg. 2), 0..5",
        robot_user=ToothFairyUser(),
        num_steps=6,
        classes=dict(classes or {1: "Left_IAC", 2: "Right_IAC"}),
        metrics=("dice", "hd95"),
        auc_steps=_steps(0, 5),
        auc_x=_x(6),
        requires_foreground=True,
        seed=seed,
    )


def trials_task(seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:

    return Task(
        name="trials",
        description="TriALS: 10 lesion + 10 uniform liver background clicks (Alg. 3), 0..10",
        robot_user=TriALSUser(),
        num_steps=11,
        classes=dict(classes or {1: "lesion"}),
        metrics=("dice", "assd", "hd"),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        seed=seed,
    )


def medsegfm_task(seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:

    return Task(
        name="medsegfm",
        description="CVPR25 MedSegFM: a box per class, then 5 reactive Sakinis clicks; AUC on clicks",
        robot_user=SakinisUser(initial="box"),
        num_steps=6,
        classes=dict(classes or {1: "foreground"}),
        metrics=("dice", "nsd@2"),
        auc_steps=_steps(1, 5),
        auc_x=_x(5),
        nsd_zero_below_dice=0.2,
        present_classes_only=True,
        send_previous_prediction=True,
        requires_foreground=True,
        seed=seed,
    )


def generic_task(seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:

    return Task(
        name="generic",
        description="Generic reactive: one Sakinis click per class and step from an empty start, 0..5",
        robot_user=SakinisUser(initial="click"),
        num_steps=6,
        classes=dict(classes or {1: "foreground"}),
        metrics=("dice", "nsd@2", "hd95"),
        auc_steps=_steps(0, 5),
        auc_x=_x(6),
        send_previous_prediction=True,
        seed=seed,
    )


def thesis_task(name: str, seed: int = 0, classes: Mapping[int, str] | None = None) -> Task:
    """R1, R3, R4 or R5 of the thesis (§5.2) on the autoPET lesion task: steps 0..10, one lesion and one
    background click per step from step 1, Dice/FPV/FNV, AUC over 0..10 as autoPET's. The model
    gets the clicks only (as SW-FastEdit in the thesis's study); the robot user reacts to its
    predictions."""

    user = RealisticUser() if name == "r5" else robot_user_from_json({"name": name})
    return Task(
        name=name,
        description=THESIS_USERS[name],
        robot_user=user,
        num_steps=11,
        classes=dict(classes or {1: "tumor"}),
        metrics=("dice", "fpv", "fnv"),
        auc_steps=_steps(0, 10),
        auc_x=_x(11),
        seed=seed,
    )


THESIS_USERS = {
    "r1": "Thesis R1 (eq. 17): centre of the largest label, then error, component; 11 steps",
    "r3": "Thesis R3 (eq. 19): uniform in the label, then EDT-weighted in the error; 11 steps",
    "r4": "Thesis R4 (eq. 20): uniform in the label, then uniform in the error; 11 steps",
    "r5": "Thesis R5 (eq. 28): R1 with 13.4 % perturbed (a = 35) and 13.4 % off-label clicks",
}


@dataclass(frozen=True)
class TaskPreset:
    name: str
    description: str
    build: Callable[..., Task]


TASKS: dict[str, TaskPreset] = {
    "autopet": TaskPreset(
        "autopet", "autoPET IV: 10 lesion + 10 PET background clicks, 11 steps", autopet_task
    ),
    "toothfairy3": TaskPreset(
        "toothfairy3",
        "ToothFairy3: 5 clicks per inferior alveolar canal, 6 steps",
        toothfairy3_task,
    ),
    "trials": TaskPreset(
        "trials", "TriALS: 10 lesion + 10 liver background clicks, 11 steps", trials_task
    ),
    "medsegfm": TaskPreset(
        "medsegfm", "CVPR25 MedSegFM: box + 5 reactive Sakinis clicks per class", medsegfm_task
    ),
    "generic": TaskPreset(
        "generic", "Reactive Sakinis clicks from an empty start, 6 steps", generic_task
    ),
    **{
        name: TaskPreset(name, description, partial(thesis_task, name))
        for name, description in THESIS_USERS.items()
    },
}


INTEGER_LIMITS = ("memory_mb", "pids", "shm_mb", "tmp_mb", "output_mb", "nofile")


def _table(data: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SegloopError(f"{path}: [{key}] must be a table")
    return value


def load_task_toml(
    path: str | Path, seed: int | None = None, classes: Mapping[int, str] | None = None
) -> Task:
    """A user-defined task from a TOML file (format in this module's docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegloopError(f"{path}: task file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SegloopError(f"{path}: not a readable TOML task file ({error})") from None
    known = {
        "name",
        "description",
        "base",
        "num_steps",
        "metrics",
        "auc_steps",
        "auc_x",
        "nsd_zero_below_dice",
        "nsd_zero_scope",
        "present_classes_only",
        "send_previous_prediction",
        "seed",
        "classes",
        "protocol",
        "empty_mask_policy",
        "limits",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise SegloopError(f"{path}: unknown key(s) {', '.join(unknown)}")
    try:
        if "base" in data:
            if data["base"] not in TASKS:
                raise SegloopError(
                    f"{path}: base {data['base']!r} is not a preset ({', '.join(TASKS)})"
                )
            task = TASKS[data["base"]].build(seed=0)
            values: dict[str, Any] = {f.name: getattr(task, f.name) for f in fields(Task)}
        else:
            for required in ("num_steps", "metrics", "protocol"):
                if required not in data:
                    raise SegloopError(f"{path}: missing {required!r} (or give a base preset)")
            values = {"classes": {1: "foreground"}, "empty_mask_policy": EmptyMaskPolicy()}
        values["name"] = str(data.get("name", values.get("name", path.stem)))
        values["description"] = str(
            data.get("description", values.get("description", f"user task {path.name}"))
        )
        if "protocol" in data:
            values["robot_user"] = robot_user_from_json(_table(data, "protocol", path), str(path))
        if "num_steps" in data:
            values["num_steps"] = int(data["num_steps"])
            if "auc_steps" not in data and "base" in data:
                values.pop("auc_steps", None)
                values.pop("auc_x", None)
        if "metrics" in data:
            values["metrics"] = tuple(str(m) for m in data["metrics"])
        if "classes" in data:
            values["classes"] = {int(k): str(v) for k, v in _table(data, "classes", path).items()}
        if "empty_mask_policy" in data:
            values["empty_mask_policy"] = EmptyMaskPolicy.from_json(
                _table(data, "empty_mask_policy", path)
            )
        if "limits" in data:
            values["limits"] = {
                key: (int(value) if key in INTEGER_LIMITS else float(value))
                for key, value in _table(data, "limits", path).items()
            }
        for key, cast in (
            ("nsd_zero_below_dice", float),
            ("nsd_zero_scope", str),
            ("present_classes_only", bool),
            ("send_previous_prediction", bool),
        ):
            if key in data:
                values[key] = cast(data[key])
        values.setdefault("nsd_zero_below_dice", None)
        if "send_previous_prediction" not in data:
            # A user that reacts to predictions needs the model to see its own last output; a
            # base preset's False (autoPET's precomputed clicks) must not survive a reactive
            # [protocol]. A base that sends it keeps sending (MedSegFM sends prev_pred always).
            derived = is_reactive(values["robot_user"])
            values["send_previous_prediction"] = derived or bool(
                values.get("send_previous_prediction", False)
            )
        if "auc_steps" in data:
            values["auc_steps"] = tuple(int(s) for s in data["auc_steps"])
        values.setdefault("auc_steps", tuple(range(values["num_steps"])))
        if "auc_x" in data:
            values["auc_x"] = tuple(float(x) for x in data["auc_x"])
        values.setdefault("auc_x", _x(len(values["auc_steps"])))
        values["seed"] = int(data.get("seed", values.get("seed", 0)) if seed is None else seed)
        if classes is not None:
            values["classes"] = dict(classes)
        if not values["classes"]:
            raise SegloopError(f"{path}: [classes] is empty")
        return Task(**values)
    except SegloopError:
        raise
    except (TypeError, ValueError, KeyError) as error:
        raise SegloopError(f"{path}: invalid task ({error})") from None


def get_task(
    name_or_toml_path: str | Path, seed: int = 0, classes: Mapping[int, str] | None = None
) -> Task:
    """A preset by name, or a user task from a ``.toml`` path; ``classes`` overrides the classes."""
    ref = str(name_or_toml_path)
    if ref in TASKS:
        return TASKS[ref].build(seed=seed, classes=classes)
    if ref.endswith(".toml") or Path(ref).is_file():
        return load_task_toml(ref, seed=seed, classes=classes)
    raise SegloopError(
        f"unknown task {ref!r}: use one of {', '.join(TASKS)} or a path to a .toml task file"
    )
