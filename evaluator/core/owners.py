"""Which process owns a folder: a token that outlives pid reuse, and private temporary folders.

A harness killed by ``kill -9`` cannot clean up; the next one on the host removes what a dead
owner left. A folder name carries its owner as ``<pid>.<start ticks>``, so a reused pid is not
taken for the old owner.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

from segloop.core import untrusted


def process_start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


def owner_token(pid: int | None = None) -> str:
    """``host:pid:start`` of this process: unique even when pids are reused."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{process_start_ticks(pid) or 0}"


def owner_alive(token: str) -> bool:
    """False only when ``token``'s process is known dead (same host, pid gone or reused)."""
    parts = token.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not a token of ours: leave it alone
    host, pid_text, start = parts
    if host != socket.gethostname():
        return True  # another machine's harness on a shared engine: not ours to judge
    return process_start_ticks(int(pid_text)) == start


def folder_owner(name: str) -> str | None:
    """The owner token of a folder named ``<pid>.<start>.<anything>``, or None."""
    pid_text, _, rest = name.partition(".")
    start = rest.partition(".")[0]
    if not pid_text.isdigit() or not start:
        return None
    return f"{socket.gethostname()}:{pid_text}:{start}"


def private_temp_dir(prefix: str) -> Path:
    """A new folder only this user can enter (0700), named after its owning process, in the
    temp dir: :func:`remove_dead_temp_dirs` removes it if the process dies before it does."""
    _, pid_text, start = owner_token().rsplit(":", 2)
    name = f"{prefix}-{pid_text}.{start}.{uuid.uuid4().hex[:12]}"
    path = Path(tempfile.gettempdir()) / name
    os.mkdir(path, 0o700)
    return path


def remove_dead_temp_dirs(prefix: str) -> int:
    """Remove the :func:`private_temp_dir` folders of ``prefix`` whose owner is dead."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}-*"):
        token = folder_owner(path.name.removeprefix(f"{prefix}-"))
        if token is not None and not owner_alive(token) and path.is_dir():
            untrusted.remove_tree(path)
            removed += 1
    return removed
