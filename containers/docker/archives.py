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
import tarfile
import threading
from pathlib import Path
from typing import Any

import docker.errors

from segloop.core.records import SegloopError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ARCHIVE_REPOSITORY = "segloop-archive"
_MAX_METADATA_BYTES = 1 << 20
_OCI_NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def _json_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> Any:
    if member.size > _MAX_METADATA_BYTES:
        raise SegloopError(f"{path}: {member.name} is {member.size} bytes (not an image archive?)")
    handle = archive.extractfile(member)
    try:
        return json.loads(handle.read() if handle else b"")
    except ValueError as error:
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


def _rewrite(path: Path, sink: Any, result: dict[str, str]) -> None:
    """Copy the archive at ``path`` into ``sink`` (a tar stream) with the tags stripped; the
    image id goes to ``result["id"]``. Members are streamed, never held whole in memory."""
    with tarfile.open(path, mode="r:*") as archive, tarfile.open(fileobj=sink, mode="w|") as out:
        members = archive.getmembers()
        manifest = next(
            (m for m in members if m.name in ("manifest.json", "./manifest.json")), None
        )
        if manifest is None:
            raise SegloopError(f"{path}: no manifest.json (not a `docker save` archive)")
        data, result["id"] = _untagged_manifest(_json_member(archive, manifest, path), path)
        for member in members:
            name = member.name.removeprefix("./")
            if name == "repositories":
                continue
            if member is manifest or name == "index.json":
                payload = (
                    data
                    if member is manifest
                    else _untagged_index(_json_member(archive, member, path))
                )
                info = tarfile.TarInfo(member.name)
                info.size, info.mtime, info.mode = len(payload), member.mtime, member.mode
                out.addfile(info, io.BytesIO(payload))
            elif member.isfile():
                out.addfile(member, archive.extractfile(member))
            else:
                out.addfile(member)


def _chunks(reader: Any):
    while chunk := reader.read(1 << 20):
        yield chunk


def load_archive(client: Any, path: Path) -> str:
    """Load the one image of the archive at ``path`` without its tags; return its image id.

    The rewritten archive is streamed to the engine through a pipe (never a second copy on
    disk); the id is the one the archive's manifest names, checked against the engine.
    """

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
    stream = _chunks(reader)
    try:
        client.images.load(stream)
    except docker.errors.APIError as error:
        reader.close()
        writer.join()
        if failure:
            raise _as_segloop_error(failure[0], path) from None
        raise SegloopError(f"{path}: not a loadable image archive: {error.explanation}") from None
    finally:
        reader.close()  # a writer still blocked on the pipe gets EPIPE and ends
        writer.join()
    if failure:
        raise _as_segloop_error(failure[0], path) from None
    image_id = result["id"]
    try:
        image = client.images.get(image_id)
    except docker.errors.ImageNotFound:
        raise SegloopError(f"{path}: the engine did not load image {image_id[:19]}") from None
    image.tag(ARCHIVE_REPOSITORY, image_id.removeprefix("sha256:")[:20])
    return image.id


def _as_segloop_error(error: BaseException, path: Path) -> BaseException:
    if isinstance(error, SegloopError):
        return error
    if isinstance(error, (tarfile.TarError, OSError, EOFError)):
        return SegloopError(f"{path}: not a readable image archive ({error})")
    return error
