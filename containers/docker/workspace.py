"""Work folders shared with participant containers: private, capped, and removed safely.

Layout on the host (``$SEGLOOP_WORK_DIR``, else ``/var/lib/segloop`` for root or ``~/.cache/segloop``)::

    segloop-docker/                    0700, the harness's own (refused if anyone else owns it)
      <pid>.<start>.<run id>/          0700, one per back-end (its owner token: a later harness
                                       removes it once that process is gone)
        <what>-XXXX/                   inputs the harness writes: case files, requests (read-only
                                       in the container, readable only by the container's user)
        out/                           outputs the container writes: a size-capped tmpfs (when
                                       the harness is root and shares the engine's mount
                                       namespace), one sub-folder per step or session, owned
                                       by the container's user, 0700

Nothing under ``segloop-docker/`` is reachable by other local users: its mode is 0700. What a
container writes lands on the tmpfs, so it can neither fill the host disk nor outlive the
back-end (unmounting discards it at once, whatever it holds); without a tmpfs the outputs are
plain folders, capped only by what is read back (a one-time note says so).
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from segloop.core import untrusted
from segloop.core.owners import folder_owner, owner_alive
from segloop.core.records import SegloopError

WORK_DIR_ENV = "SEGLOOP_WORK_DIR"
TMPFS_ENV = "SEGLOOP_WORK_TMPFS"  # "0": never mount a tmpfs for outputs
OUTPUT_FOLDER = "out"
#: Files and folders a container may create in its output area (tmpfs inodes).
OUTPUT_MAX_INODES = 65536
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2
_notes_given: set[str] = set()


def note_once(text: str) -> None:
    """One line on stderr, once per process (a weaker defence than asked for, say, is in use)."""
    if text not in _notes_given:
        _notes_given.add(text)
        print(f"segloop: note: {text}", file=sys.stderr)


def private_dir(path: Path) -> Path:
    """Create ``path`` as a folder only we can enter (0700), or check an existing one is ours:
    a folder someone else made (to watch or swap what we write) is refused."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SegloopError(
            f"{path}: exists but is not a folder owned by this user; remove it or set "
            f"{WORK_DIR_ENV} to a private folder"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def default_work_base() -> Path:
    """Where work folders live unless ``$SEGLOOP_WORK_DIR`` says otherwise: a place no other
    local user can create first (a shared temp dir would let anyone plant ``segloop-docker``
    and refuse every run): ``/var/lib/segloop`` for root, else the user's cache folder."""
    if os.geteuid() == 0:
        return Path("/var/lib/segloop")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "segloop"


def work_root() -> Path:
    """The work folders' root (``$SEGLOOP_WORK_DIR`` or :func:`default_work_base`, then
    ``segloop-docker``); the Docker engine must see it at the same path."""
    base = Path(os.environ.get(WORK_DIR_ENV) or default_work_base())
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return private_dir(base / "segloop-docker")


def container_ids(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) the container runs as, when known ("uid:gid"); None for the image's own."""
    if not user:
        return None
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        return int(uid), int(gid or uid)
    return None


def share_with_container(path: Path, ids: tuple[int, int] | None, writable: bool) -> None:
    """Let the container's user (and, inside our 0700 folders, nobody else) use ``path``:
    owned by it, 0700 (writable) or read-only (0500/0400) when we are root and know its ids,
    else open modes (0777 or 0555/0444) that only the container can reach."""
    own = ids is not None and os.geteuid() == 0
    for root, dirs, files in os.walk(path):
        for name in files:
            target = os.path.join(root, name)
            if own:
                os.chown(target, *ids, follow_symlinks=False)
            os.chmod(target, 0o400 if own else 0o444)
        for name in dirs:
            target = os.path.join(root, name)
            if own:
                os.chown(target, *ids, follow_symlinks=False)
            os.chmod(target, 0o500 if own else 0o555)
    if own:
        os.chown(path, *ids)
    if writable:
        os.chmod(path, 0o700 if own else 0o777)
    else:
        os.chmod(path, 0o500 if own else 0o555)


# --------------------------------------------------------------------------------------------
# The output area: a size-capped tmpfs when we can mount one


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _engine_shares_mounts() -> bool:
    """Whether a tmpfs we mount is what the Docker engine sees: same mount namespace as the
    dockerd of /run/docker.pid (a rootless or remote engine would bind the empty folder)."""
    for pid_file in ("/run/docker.pid", "/var/run/docker.pid"):
        try:
            pid = int(Path(pid_file).read_text().strip())
            return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        except (OSError, ValueError):
            continue
    return False


def can_mount_tmpfs() -> bool:
    """Root, a local engine in our mount namespace, and not switched off by the environment."""
    return (
        os.environ.get(TMPFS_ENV, "1") != "0"
        and os.geteuid() == 0
        and sys.platform.startswith("linux")
        and _engine_shares_mounts()
    )


def mount_tmpfs(target: Path, size_mb: int, max_inodes: int = OUTPUT_MAX_INODES) -> None:
    """Mount a tmpfs of ``size_mb`` MiB and ``max_inodes`` files at ``target`` (0700, no
    devices, no setuid, no exec)."""
    options = f"size={int(size_mb)}m,nr_inodes={int(max_inodes)},mode=0700".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc().mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount tmpfs on {target}: {os.strerror(error)}")


def unmount(target: Path) -> bool:
    """Detach the mount at ``target`` (its tmpfs content is discarded); False if none."""
    return _libc().umount2(os.fsencode(target), _MNT_DETACH) == 0


def mounts_under(folder: Path) -> list[Path]:
    """Mount points at or below ``folder`` (from /proc/self/mountinfo), deepest first."""
    prefix = os.fspath(folder)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")  # \040 for spaces etc.
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


class OutputArea:
    """Where one back-end's containers write: ``<work dir>/out``, a tmpfs when possible."""

    def __init__(self, folder: Path, size_mb: int) -> None:
        self.folder = folder
        self.size_mb = size_mb
        self.capped = False
        os.mkdir(folder, 0o700)
        if can_mount_tmpfs():
            try:
                mount_tmpfs(folder, size_mb)
                self.capped = True
            except OSError as error:
                note_once(f"container outputs are not size-capped ({error})")
        else:
            note_once(
                "container outputs are plain folders, not a size-capped tmpfs (that needs root "
                "and a local Docker engine); each output file is still read with a size cap"
            )

    def new_folder(self, name: str, ids: tuple[int, int] | None) -> Path:
        """A fresh, empty folder the container may write (removing any earlier one)."""
        path = self.folder / untrusted.check_name(name)
        untrusted.remove_tree(path)
        os.mkdir(path, 0o700)
        share_with_container(path, ids, writable=True)
        return path

    def exhausted(self) -> bool:
        """Whether the container filled the cap (space or files): its output is then refused,
        as it may be cut short."""
        if not self.capped:
            return False
        info = os.statvfs(self.folder)
        return info.f_bavail * info.f_frsize < (1 << 20) or info.f_favail == 0

    def close(self) -> None:
        if self.capped and unmount(self.folder):
            self.capped = False
        untrusted.remove_tree(self.folder)


def remove_work_dir(folder: Path) -> None:
    """Unmount what is mounted below ``folder``, then remove it safely."""
    for point in mounts_under(folder):
        unmount(point)
    untrusted.remove_tree(folder)


def cleanup_dead_work_dirs(log: Callable[[str], None] | None = None) -> int:
    """Remove the work folders whose owning harness process is dead; returns how many."""
    root = work_root()
    removed = 0
    for folder in sorted(root.iterdir()):
        token = folder_owner(folder.name)
        if token is not None and not owner_alive(token):
            remove_work_dir(folder)
            removed += 1
            if log:
                log(f"removed leftover work folder {folder} (owner {token} is gone)")
    return removed
