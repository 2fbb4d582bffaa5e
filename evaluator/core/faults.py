"""Faults of the harness, told apart from failures of the model.

A model's failure (its exit code, its output, its time) is scored: the step counts as an empty
prediction with its reason (:class:`segloop.core.records.FailureReason`). A fault of the
harness (the Docker engine unreachable, no space left where the harness writes, a lost worker)
says nothing about the model: scoring it would publish a number that is not the model's. Such a
fault raises :class:`HarnessFault`; the case in flight is not stored, the run stops with one
line and exit code :data:`EXIT_HARNESS_FAULT`, and running the same command again resumes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

#: sysexits.h EX_TEMPFAIL: "temporary failure, the user is invited to retry" (batch schedulers
#: and shell loops know it).
EXIT_HARNESS_FAULT = 75

#: errno values of a write that failed for want of storage, not for what was written.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

#: Below this much free space (or no free inode) a file system counts as full: a model that
#: failed while its writable folder sat on it may have failed for that reason alone.
FULL_BELOW_BYTES = 1 << 20


class HarnessFault(Exception):
    """The harness cannot run the case as the model deserves; never stored as the model's
    failure. Its message is one line naming what failed and where."""


def is_storage_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def storage_fault(error: OSError, where: Path | str, what: str) -> HarnessFault:
    """The fault for ``error`` raised while the harness wrote ``what`` under ``where``."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return HarnessFault(f"{where}: cannot write {what}: {reason}")


@contextlib.contextmanager
def harness_writes(where: Path | str, what: str) -> Iterator[None]:
    """Inside: a storage error (no space, quota, read-only, I/O error) is a HarnessFault."""
    try:
        yield
    except OSError as error:
        if is_storage_error(error):
            raise storage_fault(error, where, what) from error
        if error.errno is None and file_system_full(where):  # numpy's short write has no errno
            raise HarnessFault(
                f"{where}: cannot write {what}: no space left on its file system ({error})"
            ) from error
        raise


def file_system_full(folder: Path | str) -> bool:
    """Whether the file system of ``folder`` has (almost) no space or no inode left."""
    existing = next((p for p in (Path(folder), *Path(folder).parents) if p.exists()), None)
    try:
        info = os.statvfs(existing or folder)
    except OSError:
        return False
    no_inodes = info.f_files > 0 and info.f_favail == 0
    return info.f_bavail * info.f_frsize < FULL_BELOW_BYTES or no_inodes


def check_space_after_failure(folder: Path | str, what: str) -> None:
    """After a model failed while writing into ``folder``, which is not a space of its own:
    a full file system there is the harness's fault, not the model's (another submission or
    process may have filled it)."""
    if file_system_full(folder):
        raise HarnessFault(
            f"{folder}: no space left on the file system of the {what} (shared, not the "
            "model's own); the step is not scored"
        )
