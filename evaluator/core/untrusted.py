"""Files someone else wrote: read as bytes through descriptors, never through their paths.

A participant's container (or a submission) controls everything inside the folders it may
write: it can swap a file for a symlink to a host file, a FIFO or a 1 TiB sparse file between
any two system calls of ours, nest folders thousands deep, or rename them while we work. So:

* every name is opened relative to a directory descriptor we already hold, with ``O_NOFOLLOW``
  (a symlink fails with ELOOP) and ``O_NONBLOCK`` (a FIFO cannot block the open);
* what was opened is checked on the open descriptor (``fstat``: a regular file, its size under
  the cap) and read from that descriptor, never more than the cap: a file that grows after the
  check still yields at most ``max_bytes`` + 1 bytes, and is refused;
* paths from untrusted text (``relative_path`` in predictions.json) are walked component by
  component under a root descriptor, refusing ``..``, absolute paths and links;
* removal is descriptor-based and iterative: no ``chmod``/``unlink`` by path, no recursion a
  deep tree could exhaust, never leaving the tree it was given (see :func:`remove_tree`).

Every refusal raises :class:`RefusedFile` with a one-line reason naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
#: Directory descriptors :func:`remove_tree` holds at once; deeper folders are moved up to the
#: top of the tree first, so any depth is removed with bounded descriptors and no recursion.
REMOVE_MAX_DEPTH = 32
#: Entries :func:`list_dir` returns at most; a folder with more is refused.
MAX_DIR_ENTRIES = 10_000
_READ_CHUNK_BYTES = 1 << 22


class RefusedFile(Exception):
    """A file from an untrusted source was refused; the message names it and says why."""


@dataclass(frozen=True)
class Entry:
    """A directory entry as found (never followed): ``kind`` is file, dir, link or other."""

    name: str
    kind: str


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def check_name(name: str, where: str = "") -> str:
    """``name`` if it is one plain path component (no '/', no NUL, not '', '.' or '..')."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise RefusedFile(f"{where}{name!r}: not a plain file name")
    return name


def open_dir(parent_fd: int | None, name: str | os.PathLike, where: str = "") -> int:
    """A descriptor of the folder ``name`` under ``parent_fd`` (a plain component, not followed
    if it is a link); with ``parent_fd`` None, ``name`` is a path the harness made itself."""
    target = os.fspath(name) if parent_fd is None else check_name(os.fspath(name), where)
    try:
        return os.open(target, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        reason = _describe(error, "folder")
        if error.errno == errno.ENOTDIR:  # O_DIRECTORY on a link says ENOTDIR: say which
            try:
                mode = os.stat(target, dir_fd=parent_fd, follow_symlinks=False).st_mode
                reason = _describe(OSError(errno.ELOOP, ""), "") if stat.S_ISLNK(mode) else reason
            except OSError:
                pass
        raise RefusedFile(f"{where}{os.fspath(name)}: {reason}") from None


def open_relative_dir(root_fd: int, relative: str | Sequence[str], where: str = "") -> int:
    """Walk ``relative`` (a '/'-separated string or components) down from ``root_fd``, one
    component at a time, never following a link and never going up; a descriptor of the end."""
    if isinstance(relative, str):
        if relative.startswith("/"):
            raise RefusedFile(f"{where}{relative!r}: an absolute path, expected a relative one")
        parts = [p for p in relative.split("/") if p not in ("", ".")]
    else:
        parts = list(relative)
    current = os.dup(root_fd)
    try:
        for part in parts:
            following = open_dir(current, part, where)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def open_file(
    dir_fd: int, name: str, max_bytes: int, where: str = "", single_link: bool = False
) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``name`` under ``dir_fd``, at most ``max_bytes``.

    Refused: missing, a symlink, a FIFO/device/socket/folder, larger than ``max_bytes``, or
    (``single_link``) a file with other hard links, which could be someone else's file (e.g.
    a reference file linked into a submission unpacked next to it).
    """
    check_name(name, where)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise RefusedFile(f"{where}{name}: {_describe(error, 'file')}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{where}{name}: a {_kind_text(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise RefusedFile(
                f"{where}{name}: {info.st_size} bytes, more than the {max_bytes} allowed"
            )
        if single_link and info.st_nlink > 1:
            raise RefusedFile(f"{where}{name}: has {info.st_nlink} hard links (refused)")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_file(
    dir_fd: int, name: str, max_bytes: int, where: str = "", single_link: bool = False
) -> bytes:
    """The bytes of the regular file ``name`` under ``dir_fd``, at most ``max_bytes`` of them
    (a file that grows after the size check is refused, having read ``max_bytes`` + 1)."""
    fd, _ = open_file(dir_fd, name, max_bytes, where, single_link)
    try:
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(_READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > max_bytes:
        raise RefusedFile(f"{where}{name}: grew past the {max_bytes} bytes allowed while read")
    return b"".join(chunks)


def read_text_tail(dir_fd: int, name: str, max_chars: int, where: str = "") -> str:
    """The last ``max_chars`` characters (about) of a text file, decoded leniently; the file
    may be any size, only its tail is read."""
    fd, size = open_file(dir_fd, name, 1 << 62, where)
    try:
        want = 4 * max_chars
        data = os.pread(fd, want, max(0, size - want))
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")[-max_chars:]


def exists(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists under ``dir_fd`` (as anything, links not followed)."""
    try:
        os.stat(check_name(name), dir_fd=dir_fd, follow_symlinks=False)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False


def list_dir(dir_fd: int, where: str = "", max_entries: int = MAX_DIR_ENTRIES) -> list[Entry]:
    """The entries of the folder ``dir_fd``, sorted by name, links reported as links."""
    entries = []
    with os.scandir(dir_fd) as iterator:
        for item in iterator:
            if len(entries) >= max_entries:
                raise RefusedFile(f"{where}: more than {max_entries} entries")
            try:
                mode = item.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # removed meanwhile
            entries.append(Entry(item.name, _kind(mode)))
    return sorted(entries, key=lambda e: e.name)


def _kind_text(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


def _describe(error: OSError, what: str) -> str:
    if error.errno == errno.ELOOP:
        return "a symlink (links are never followed)"
    if error.errno == errno.ENOENT:
        return f"no such {what}"
    if error.errno == errno.ENOTDIR:
        return "not a folder" if what == "folder" else "a path component is not a folder"
    if error.errno == errno.ENXIO:
        return "a socket or device, not a regular file"
    return error.strerror or str(error)


@dataclass(frozen=True)
class UntrustedPath:
    """A file someone else placed below a folder we were given: ``root`` (trusted, e.g. the
    platform's input folder) and the components below it. Opened only by walking those
    components under a descriptor of ``root``, never following a link, never going up."""

    root: Path
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.parts[-1]

    def __str__(self) -> str:
        return "/".join(self.parts)

    @classmethod
    def below(cls, root: Path, relative: str | Sequence[str], where: str = "") -> UntrustedPath:
        """``relative`` ('/'-separated text from an untrusted source, or components) below
        ``root``; refused when absolute, empty, or holding '..' or odd components."""
        if isinstance(relative, str):
            if relative.startswith("/"):
                raise RefusedFile(f"{where}{relative!r}: an absolute path, expected a relative one")
            parts = tuple(p for p in relative.split("/") if p not in ("", "."))
        else:
            parts = tuple(relative)
        if not parts:
            raise RefusedFile(f"{where}{relative!r}: an empty path")
        for part in parts:
            check_name(part, where)
        return cls(Path(root), parts)

    def child(self, name: str) -> UntrustedPath:
        return UntrustedPath(self.root, (*self.parts, check_name(name)))

    def kind(self) -> str | None:
        """file, dir, link or other, as found (not followed); None when missing."""
        parent = self.open_parent()
        try:
            mode = os.stat(self.name, dir_fd=parent, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(parent)
        return _kind(mode)

    def open_parent(self) -> int:
        """A descriptor of the folder holding this file (walked without following links)."""
        root_fd = open_dir(None, self.root)
        try:
            return open_relative_dir(root_fd, self.parts[:-1], f"{self.root}/")
        finally:
            os.close(root_fd)

    def read_bytes(self, max_bytes: int) -> bytes:
        """At most ``max_bytes`` of the file; one with other hard links is refused (below a
        submission folder, a link could reach the reference data)."""
        parent = self.open_parent()
        try:
            return read_file(
                parent,
                self.name,
                max_bytes,
                f"{'/'.join(self.parts[:-1])}/" if len(self.parts) > 1 else "",
                single_link=True,
            )
        finally:
            os.close(parent)

    def list_dir(self) -> list[Entry]:
        parent = self.open_parent()
        try:
            folder = open_dir(parent, self.name, str(self))
        finally:
            os.close(parent)
        try:
            return list_dir(folder, str(self))
        finally:
            os.close(folder)


def walk_files(
    root: Path, max_depth: int = 16, max_files: int = MAX_DIR_ENTRIES
) -> tuple[list[UntrustedPath], list[tuple[str, str]]]:
    """Every regular file below ``root`` and the entries skipped with why (links, special
    files, folders too deep). Iterative; one descriptor open at a time besides the root's (a
    folder is reopened from the root by its path when its turn comes), so a submission of many
    folders cannot exhaust the open-files limit."""
    files: list[UntrustedPath] = []
    skipped: list[tuple[str, str]] = []
    root_fd = open_dir(None, root)
    pending: list[tuple[str, ...]] = [()]
    try:
        while pending:
            parts = pending.pop()
            folder_fd = open_relative_dir(root_fd, parts, f"{root}/")
            try:
                entries = list_dir(folder_fd, "/".join(parts) or str(root), max_files)
            finally:
                os.close(folder_fd)
            for entry in entries:
                relative = (*parts, entry.name)
                if entry.kind == "file":
                    files.append(UntrustedPath(Path(root), relative))
                    if len(files) > max_files:
                        raise RefusedFile(f"{root}: more than {max_files} files")
                elif entry.kind == "dir" and len(relative) < max_depth:
                    pending.append(relative)
                    if len(pending) > max_files:
                        raise RefusedFile(f"{root}: more than {max_files} folders")
                else:
                    why = {"link": "a symlink (links are never followed)", "dir": "too deep"}
                    skipped.append(("/".join(relative), why.get(entry.kind, "not a regular file")))
    except OSError as error:
        raise RefusedFile(f"{root}: {error.strerror or error}") from None
    finally:
        os.close(root_fd)
    return sorted(files, key=lambda f: f.parts), sorted(skipped)


# --------------------------------------------------------------------------------------------
# Removal


def _open_for_removal(parent_fd: int, name: str) -> int | None:
    """A descriptor of the sub-folder ``name`` (made readable first if it is ours and locked),
    or None when it is not a folder any more."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        pass
    except OSError:
        return None
    # A folder the container made unreadable (chmod 0): when we own it, chmod it through an
    # O_PATH descriptor of that very inode (chmod by path could be redirected by a swap).
    try:
        handle = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            return None
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None
    finally:
        os.close(handle)


def _unlink_entry(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except PermissionError:
        try:  # a folder without write permission (non-root harness): fix it through its fd
            os.fchmod(dir_fd, 0o700)
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass
    except (FileNotFoundError, IsADirectoryError):
        pass
    except OSError:
        pass


def _rmdir_entry(dir_fd: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except PermissionError:
        try:
            os.fchmod(dir_fd, 0o700)
            os.rmdir(name, dir_fd=dir_fd)
        except OSError:
            pass
    except OSError:
        pass


class _Budget:
    """How many more entries a removal may visit (None: no limit); a writer that keeps adding
    entries while we remove them would otherwise keep us busy for ever."""

    def __init__(self, entries: int | None) -> None:
        self.left = entries

    def spend(self) -> None:
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                raise RefusedFile("the folder kept growing while it was removed")


def _empty_below(top_fd: int, start_fd: int, deferred: list[str], budget: _Budget) -> None:
    """Remove everything inside ``start_fd``, iteratively, holding at most
    ``REMOVE_MAX_DEPTH`` descriptors: a folder deeper than that is renamed to the top of the
    tree (``top_fd``) and its name appended to ``deferred``, to be emptied from there. Every
    descriptor is opened below one we hold, so neither depth nor renames by someone else can
    exhaust us or lead us out of the tree."""
    frames: list[tuple[int, os.ScandirIterator, str]] = [(start_fd, os.scandir(start_fd), "")]
    try:
        while frames:
            folder_fd, iterator, _ = frames[-1]
            entry = next(iterator, None)
            budget.spend()
            if entry is None:
                iterator.close()
                _, _, name = frames.pop()
                if frames:  # a sub-folder is empty: close it, remove it from its parent
                    os.close(folder_fd)
                    _rmdir_entry(frames[-1][0], name)
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                _unlink_entry(folder_fd, entry.name)
            elif len(frames) >= REMOVE_MAX_DEPTH:
                moved = f".segloop-deep-{uuid.uuid4().hex}"
                try:
                    os.rename(entry.name, moved, src_dir_fd=folder_fd, dst_dir_fd=top_fd)
                    deferred.append(moved)
                except OSError:
                    pass
            else:
                child = _open_for_removal(folder_fd, entry.name)
                if child is None:
                    _unlink_entry(folder_fd, entry.name)
                else:
                    frames.append((child, os.scandir(child), entry.name))
    finally:
        for folder_fd, iterator, _ in frames:
            iterator.close()
            if folder_fd != start_fd:
                os.close(folder_fd)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove the folder ``path`` (made by the harness) and everything in it, whatever a
    container put there: links are unlinked, never followed; nothing outside ``path`` is read,
    changed or removed; a tree of any depth is removed without recursion. Missing: no-op.

    ``path`` itself may be a symlink (then only the link is removed)."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    parent_fd = os.open(path.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        if not stat.S_ISDIR(info.st_mode):
            _unlink_entry(parent_fd, path.name)
            return
        remove_tree_at(parent_fd, path.name)
    finally:
        os.close(parent_fd)


def remove_tree_at(parent_fd: int, name: str, max_entries: int | None = None) -> None:
    """:func:`remove_tree` of the entry ``name`` under ``parent_fd``; with ``max_entries``,
    RefusedFile once more entries than that were visited (what is left stays)."""
    folder_fd = _open_for_removal(parent_fd, check_name(name))
    if folder_fd is None:
        _unlink_entry(parent_fd, name)
        return
    try:
        empty_folder(folder_fd, max_entries)
    finally:
        os.close(folder_fd)
    _rmdir_entry(parent_fd, name)


def empty_folder(folder_fd: int, max_entries: int | None = None) -> None:
    """Remove everything inside the folder ``folder_fd`` (the folder itself stays); see
    :func:`remove_tree_at` for ``max_entries``."""
    deferred: list[str] = []
    budget = _Budget(max_entries)
    _empty_below(folder_fd, folder_fd, deferred, budget)
    while deferred:
        name = deferred.pop()
        child = _open_for_removal(folder_fd, name)
        if child is None:
            _unlink_entry(folder_fd, name)
            continue
        try:
            _empty_below(folder_fd, child, deferred, budget)
        finally:
            os.close(child)
        _rmdir_entry(folder_fd, name)
