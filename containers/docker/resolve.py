"""Which image a ``docker:`` spec names: a local image by tag, or an archive loaded by content."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import docker.errors

from segloop.containers.docker import archives
from segloop.containers.images import cache_dir
from segloop.core.records import SegloopError
from segloop.core.stamps import file_signature

ARCHIVE_SUFFIXES = archives.ARCHIVE_SUFFIXES


def _archive_cache_path() -> Path:
    return cache_dir() / "loaded-archives.json"


def resolve_image(client: Any, reference: str) -> str:
    """The image id of ``reference``: a local image, or an archive loaded once by content
    (:func:`segloop.containers.docker.archives.load_archive`: its tags are never applied), cached by path and
    :func:`segloop.core.stamps.file_signature` (a rewritten archive is loaded again). Never pulls."""

    if reference.endswith(ARCHIVE_SUFFIXES) or Path(reference).is_file():
        path = Path(reference).resolve()
        if not path.is_file():
            raise SegloopError(f"docker model: image archive {path} does not exist")
        key = ":".join([str(path), *map(str, file_signature(path.stat()).values())])
        cache_path = _archive_cache_path()
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        image_id = cache.get(key)
        if image_id:
            try:
                return client.images.get(image_id).id
            except docker.errors.ImageNotFound:
                pass
        image_id = archives.load_archive(client, path)  # by content: no tag moves
        cache[key] = image_id
        cache_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = cache_path.with_suffix(f".{os.getpid()}.partial")
        # 0600: the archive paths of every submission are the organizer's business only
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(json.dumps(cache, indent=1))
        os.replace(partial, cache_path)
        return image_id
    try:
        return client.images.get(reference).id
    except docker.errors.ImageNotFound:
        raise SegloopError(
            f"docker image '{reference}' is not in the engine and segloop never pulls: "
            "`docker load -i FILE`, pass the archive (docker:FILE.tar.gz), or build it "
            "(`segloop images build` for segloop's own images)"
        ) from None
    except docker.errors.APIError as error:
        raise SegloopError(f"docker image '{reference}': {error.explanation or error}") from None
