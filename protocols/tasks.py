"""From a challenge (``segloop.core.challenges``) to a runnable task: its robot user built.

The robot users are registered by protocol name in :data:`PROTOCOLS`; a challenge names its
robot user as data (``protocol = {"name": "sakinis", "initial": "box"}``, a TOML task's
``[protocol]`` table) and :func:`robot_user_from_json` builds it, wrappers' inner protocols
included (``[protocol] name = "realistic"`` with ``[protocol.base] name = "autopet"``;
``name = "sequence"`` with ``[protocol.initial]`` and ``[protocol.then]``).

R2 is a protocol (``name = "r2"``) but no preset: it needs the model's uncertainty map, which
the contract does not carry yet. Recorded sessions are replayed with ``name = "replay"`` and
``path = "..."`` (``segloop.protocols.replay``): a preset has no recording to play.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from segloop.core.challenges import Challenge, get_challenge, with_classes
from segloop.core.records import SegloopError
from segloop.core.task import RobotUser, Task
from segloop.protocols.autopet import AutoPETUser
from segloop.protocols.generic import (
    BoxUser,
    EligibilityClickUser,
    PolygonUser,
    ScribbleUser,
    SequenceUser,
    TogetherUser,
)
from segloop.protocols.realistic import RealisticUser
from segloop.protocols.replay import ReplayUser
from segloop.protocols.sakinis import SakinisUser
from segloop.protocols.thesis import R1User, R2User, R3User, R4User
from segloop.protocols.toothfairy import ToothFairyUser
from segloop.protocols.trials import TriALSUser

#: Protocol name -> robot user class (docs/architecture.md: "add a robot user").
PROTOCOLS: dict[str, type] = {
    "sakinis": SakinisUser,
    "autopet": AutoPETUser,
    "trials": TriALSUser,
    "toothfairy3": ToothFairyUser,
    "realistic": RealisticUser,
    "clicks": EligibilityClickUser,
    "box": BoxUser,
    "scribble": ScribbleUser,
    "polygon": PolygonUser,
    "sequence": SequenceUser,
    "together": TogetherUser,
    "r1": R1User,
    "r2": R2User,
    "r3": R3User,
    "r4": R4User,
    "replay": ReplayUser,
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
    cls = PROTOCOLS[name]
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
    if name == "together":
        users = spec.get("users")
        if not isinstance(users, list) or not all(isinstance(u, Mapping) for u in users):
            raise SegloopError(f"{where}: together needs 'users', a list of protocol tables")
        spec["users"] = [
            robot_user_from_json(u, f"{where}.users[{i}]") for i, u in enumerate(users)
        ]
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
    if name == "together":
        return any(is_reactive(u) for u in user.users)  # type: ignore[attr-defined]
    if name == "sakinis":
        return True
    return bool(getattr(user, "reactive", False))


def build_task(
    challenge: Challenge, seed: int | None = None, classes: Mapping[int, str] | None = None
) -> Task:
    """A runnable task: the challenge's robot user built, whether the model gets its previous
    prediction decided (as the challenge says, else as the robot user reacts), its seed and
    classes replaced when given."""
    challenge = with_classes(challenge, classes)
    where = f"{challenge.source}: [protocol]" if challenge.source else f"task {challenge.name!r}"
    user = robot_user_from_json(challenge.protocol, where)
    send = challenge.send_previous_prediction
    values = {f.name: getattr(challenge, f.name) for f in fields(Challenge)}
    values["send_previous_prediction"] = is_reactive(user) if send is None else send
    values["seed"] = challenge.seed if seed is None else int(seed)
    return Task(**values, robot_user=user)


def get_task(
    name_or_toml_path: str | Path,
    seed: int | None = None,
    classes: Mapping[int, str] | None = None,
    scoring: str | None = None,
) -> Task:
    """The task of a preset name or a ``.toml`` path (:func:`build_task`); ``seed`` None keeps
    the task's own (a preset's 0, a TOML task's ``seed``); ``scoring`` a scoring mode of the
    task ("challenge", "segloop"; None: the task's default)."""
    challenge = get_challenge(name_or_toml_path).in_scoring_mode(scoring)
    return build_task(challenge, seed, classes)
