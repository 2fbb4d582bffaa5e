"""Participant image archives, loaded by content: a submission cannot move anyone's tags.

``docker load`` applies whatever tags an archive carries: an archive from team A tagged
``victim-team:1`` (or ``segloop/base:latest``) would re-point that tag to team A's image. So an
archive is streamed to the engine with its tags stripped (``RepoTags`` in manifest.json, the
legacy ``repositories`` file, the OCI name annotations in index.json), and the image is then
referred to by the id its manifest names; it is tagged ``segloop-archive:<id prefix>``, a name
that only ever points to that content, so the image is not dangling (pruned) while in use.
An archive must hold exactly one image.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors

from segloop.core.records import SegloopError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ARCHIVE_REPOSITORY = "segloop-archive"
_MAX_METADATA_BYTES = 1 << 20
_MAX_HEADER_BYTES = 64 << 10
_MAX_HEADER_TOTAL_BYTES = 16 << 20
_MAX_MEMBERS = 100_000
_OCI_NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class _CappedTarInfo(tarfile.TarInfo):
    """A tar header parser that refuses pax and GNU long-name headers over a size cap (the
    stdlib reads them whole: a 1.5 GiB pax header would be 1.5 GiB of our memory)."""

    def _proc_pax(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > _MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"a {self.size}-byte pax header")
        return super()._proc_pax(archive)

    def _proc_gnulong(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > _MAX_HEADER_BYTES:
            raise tarfile.HeaderError(f"a {self.size}-byte long-name header")
        return super()._proc_gnulong(archive)


def _member_name(member: tarfile.TarInfo, path: Path) -> str:
    """The member's name as the engine will see it (normalised), refused if it could mean
    anything else: absolute, going up, or a link or special file leading out of the archive."""
    raw = member.name
    name = posixpath.normpath(raw)
    if raw.startswith("/") or name == ".." or name.startswith("../"):
        raise SegloopError(f"{path}: archive member {raw[:80]!r} leaves the archive")
    if member.issym() or member.islnk():
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise SegloopError(f"{path}: archive link {raw[:80]!r} points out of the archive")
    elif not (member.isfile() or member.isdir()):
        raise SegloopError(f"{path}: archive member {raw[:80]!r} is a device or FIFO")
    return name


def _json_payload(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> Any:
    if member.size > _MAX_METADATA_BYTES:
        raise SegloopError(f"{path}: {member.name} is {member.size} bytes (not an image archive?)")
    handle = archive.extractfile(member)
    try:
        return json.loads(handle.read() if handle else b"")
    except (ValueError, RecursionError) as error:
        raise SegloopError(f"{path}: {member.name} is not JSON ({error})") from None


def _untagged_manifest(manifest: Any, path: Path) -> tuple[bytes, str]:
    """(manifest.json without tags, the image id) of a one-image archive."""
    if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
        count = len(manifest) if isinstance(manifest, list) else "no"
        raise SegloopError(f"{path}: the archive holds {count} images; submit exactly one")
    config = str(manifest[0].get("Config", ""))
    digest = config.rsplit("/", 1)[-1].removesuffix(".json")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise SegloopError(f"{path}: manifest.json names no image config ({config[:80]!r})")
    stripped = [{**manifest[0], "RepoTags": None}]
    return json.dumps(stripped).encode(), f"sha256:{digest}"


def _untagged_index(index: Any) -> bytes:
    """index.json (OCI layout) without the annotations that name (tag) the image."""
    if isinstance(index, dict):
        for entry in index.get("manifests", []) or []:
            annotations = entry.get("annotations") if isinstance(entry, dict) else None
            if isinstance(annotations, dict):
                for key in _OCI_NAME_KEYS:
                    annotations.pop(key, None)
    return json.dumps(index).encode()


def _stream_mode(path: Path) -> str:
    """How to open the archive, from its first bytes: plain tar or gzip only (xz or bzip2 can
    make the decompressor hold gigabytes: a 1.5 GiB dictionary in a 200 KB file)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[:2] == b"\x1f\x8b":
        return "r|gz"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "r|"
    raise SegloopError(f"{path}: not a tar or tar.gz archive (`docker save`, optionally gzipped)")


def _members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The archive's members in one streaming pass, each checked and its name normalised as
    the engine will (so it reads what we read): refused are names used twice (a second
    manifest.json as ``x/../manifest.json``), names or links leaving the archive, names that
    pass through a symlink member (``d -> .`` then ``d/manifest.json``), devices and FIFOs,
    more than ``_MAX_MEMBERS`` members and more than ``_MAX_HEADER_TOTAL_BYTES`` of extended
    headers. Nothing is kept per member but its name (tarfile's own list is emptied)."""
    seen: set[str] = set()
    links: set[str] = set()
    header_bytes = 0
    with tarfile.open(path, mode=_stream_mode(path), tarinfo=_CappedTarInfo) as archive:
        for count, member in enumerate(archive, start=1):
            archive.members.clear()  # streaming: no use for the members already passed
            if count > _MAX_MEMBERS:
                raise SegloopError(f"{path}: more than {_MAX_MEMBERS} archive members")
            header_bytes += sum(len(k) + len(v) for k, v in member.pax_headers.items())
            if header_bytes > _MAX_HEADER_TOTAL_BYTES:
                raise SegloopError(f"{path}: more than {_MAX_HEADER_TOTAL_BYTES} header bytes")
            name = _member_name(member, path)
            if name == ".":
                continue
            if name in seen:
                raise SegloopError(f"{path}: archive member {name!r} appears twice")
            parts = name.split("/")
            if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
                raise SegloopError(f"{path}: archive member {name!r} passes through a symlink")
            if member.issym():
                if any(other.startswith(name + "/") for other in seen):
                    raise SegloopError(f"{path}: archive symlink {name!r} replaces a folder")
                links.add(name)
            seen.add(name)
            member.name = name
            yield archive, member


def _rewrite(path: Path, sink: Any, result: dict[str, str]) -> None:
    """Copy the archive at ``path`` into ``sink`` (a tar stream) in one streaming pass of
    checked members (:func:`_members`), tags stripped from the one manifest.json, the
    ``repositories`` file dropped, OCI name annotations removed; the image id goes to
    ``result["id"]``."""
    with tarfile.open(fileobj=sink, mode="w|") as out:
        for archive, member in _members(path):
            name = member.name
            if name == "repositories":
                continue
            if name in ("manifest.json", "index.json"):
                document = _json_payload(archive, member, path)
                if name == "manifest.json":
                    payload, result["id"] = _untagged_manifest(document, path)
                else:
                    payload = _untagged_index(document)
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(payload), member.mtime, member.mode
                out.addfile(info, io.BytesIO(payload))
            elif member.isfile():
                out.addfile(member, archive.extractfile(member))
            else:
                out.addfile(member)
            out.members.clear()
    if "id" not in result:
        raise SegloopError(f"{path}: no manifest.json (not a `docker save` archive)")


def _chunks(reader: Any):
    while chunk := reader.read(1 << 20):
        yield chunk


def _all_tags(client: Any) -> dict[str, str]:
    """Every tag in the engine and the image it names."""
    return {
        tag: image["Id"]
        for image in client.api.images()
        for tag in image.get("RepoTags") or ()
        if tag != "<none>:<none>"  # an untagged image, as some engine versions list it
    }


def _restore_tags(client: Any, before: Mapping[str, str], loaded_ids: set[str]) -> list[str]:
    """Put back every tag that now names a loaded image but did not before (a backstop: the
    rewrite strips tags, so none should move; tags other harnesses move meanwhile are not
    ours to judge and are left alone); returns the tags that had moved."""
    moved = []
    for tag, image_id in _all_tags(client).items():
        if image_id not in loaded_ids or before.get(tag) == image_id:
            continue
        moved.append(tag)
        repository, _, name = tag.rpartition(":")
        if tag in before:
            client.api.tag(before[tag], repository, name, force=True)
        else:
            client.api.remove_image(tag, noprune=True)
    return moved


def load_archive(client: Any, path: Path) -> str:
    """Load the one image of the archive at ``path`` without its tags; return its image id.

    The rewritten archive is streamed to the engine through a pipe (never a second copy on
    disk); the id is the one the archive's manifest names, checked against the engine.
    """

    every_tag_before = _all_tags(client)
    read_fd, write_fd = os.pipe()
    result: dict[str, str] = {}
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with open(write_fd, "wb") as sink:
                _rewrite(path, sink, result)
        except BaseException as error:  # noqa: BLE001 - reported by the loading thread
            failure.append(error)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    reader = open(read_fd, "rb")  # noqa: SIM115 - closed below, whatever happens
    try:
        loaded = client.images.load(_chunks(reader))
    except docker.errors.DockerException as error:
        reader.close()
        writer.join()
        if failure:
            raise _as_segloop_error(failure[0], path) from None
        explanation = getattr(error, "explanation", None) or str(error)
        raise SegloopError(f"{path}: not a loadable image archive: {explanation}") from None
    finally:
        reader.close()  # a writer still blocked on the pipe gets EPIPE and ends
        writer.join()
    moved = _restore_tags(client, every_tag_before, {i.id for i in loaded} | {result.get("id")})
    if moved:
        raise SegloopError(f"{path}: loading it moved the tags {sorted(moved)[:5]} (put back)")
    if failure:
        raise _as_segloop_error(failure[0], path) from None
    image_id = result["id"]
    if [image.id for image in loaded] != [image_id]:
        names = [image.id[:19] for image in loaded]
        raise SegloopError(f"{path}: the engine loaded {names}, the manifest names {image_id[:19]}")
    image = loaded[0]
    image.tag(ARCHIVE_REPOSITORY, image_id.removeprefix("sha256:")[:20])
    return image.id


def _as_segloop_error(error: BaseException, path: Path) -> BaseException:
    if isinstance(error, SegloopError):
        return error
    if isinstance(error, (tarfile.TarError, OSError, EOFError)):
        return SegloopError(f"{path}: not a readable image archive ({error})")
    return error
