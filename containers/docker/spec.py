"""What a ``docker:`` model spec says: ``docker:[OPTIONS+]IMAGE`` (see segloop.containers.docker.backend)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from segloop.core.records import SegloopError

NOBODY = "65534:65534"


SESSION_MODES = ("per-step", "case", "submission")


@dataclass(frozen=True)
class DockerOptions:
    """What the ``OPTIONS+`` prefix of a docker: spec chose (None: take it from Limits)."""

    session_mode: str | None = None
    gc_preset: str | None = None
    user: str | None = None  # "image" = the image's own USER


def parse_target(target: str) -> tuple[DockerOptions, str]:
    """Split ``[OPTIONS+]IMAGE`` (image references never contain '+')."""
    if "+" not in target:
        return DockerOptions(), target
    prefix, _, image = target.partition("+")
    options = DockerOptions()
    for token in filter(None, (t.strip() for t in prefix.split(","))):
        if token in ("per-step", "session-case", "session-submission"):
            mode = token.removeprefix("session-")
            options = replace(options, session_mode=mode)
        elif token.startswith("gc-"):
            options = replace(options, gc_preset=token[3:])
        elif token.startswith("user="):
            options = replace(options, user=token[5:])
        else:
            raise SegloopError(
                f"docker model option '{token}': expected per-step, session-case, "
                "session-submission, gc-<preset> or user=UID:GID|image"
            )
    if not image:
        raise SegloopError(f"docker model '{target}': no image after '+'")
    return options, image


def default_user() -> str:
    """Non-root in the container: nobody when the harness is root, else the harness's uid."""
    uid = os.getuid()
    return NOBODY if uid == 0 else f"{uid}:{os.getgid()}"
