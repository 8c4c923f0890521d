"""The build cache: which step, on which parent, produced which layer.

A step's cache key is the sha256 of its parent's identity and of what the
step does. The parent's identity is the digest of the layer chain (its
``diff_ids``) and of the image config built so far, so any earlier change
(a new layer, an ENV, a WORKDIR) changes every key after it. What a step
does is its expanded instruction: for RUN also the ARG values it sees, and
for COPY and ADD a digest of the names, types, modes and content of the
files copied, so touching a file without changing it keeps the cache.

Entries live in ``<state root>/build-cache/KEY.json`` and record the layer
blob the step made (if any) and when. A hit is used only while that blob is
still in the image store, since removing images may delete it.

A FROM line that names a root file system directory imports the directory
as one layer. That import is cached by a fingerprint of the tree's metadata
(names, types, modes, owners, sizes and modification times), so an
unchanged directory is not archived again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from typing import Any

from ..images.diff import LayerBlob
from ..state import read_json, write_json_atomic

log = logging.getLogger(__name__)


def digest_json(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parent_identity(diff_ids: list[str], config: dict[str, Any]) -> str:
    """Return the identity of a partial image: its layers and its config."""
    return digest_json({"diff_ids": diff_ids, "config": config})


def step_key(parent: str, step: dict[str, Any]) -> str:
    """Return the cache key of ``step`` applied on top of ``parent``."""
    return digest_json({"parent": parent, "step": step})


def layer_to_json(layer: LayerBlob | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    return {
        "digest": layer.digest,
        "diff_id": layer.diff_id,
        "size": layer.size,
        "media_type": layer.media_type,
    }


def layer_from_json(data: dict[str, Any] | None) -> LayerBlob | None:
    if data is None:
        return None
    return LayerBlob(data["digest"], data["diff_id"], data["size"], data["media_type"])


class BuildCache:
    """Cache entries under ``<state root>/build-cache/``."""

    def __init__(self, state_root: str) -> None:
        self.directory = os.path.join(state_root, "build-cache")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key.removeprefix("sha256:") + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = read_json(self._path(key))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("build cache entry %s is unreadable: ignoring it", key)
            return None
        return dict(entry)

    def put(self, key: str, layer: LayerBlob | None, created: str) -> None:
        entry = {"layer": layer_to_json(layer), "created": created}
        write_json_atomic(self._path(key), entry)

    def temp_dir(self) -> str:
        """Return a directory for the scratch trees of COPY and ADD steps."""
        path = os.path.join(self.directory, "tmp")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path


def tree_fingerprint(root: str) -> str:
    """Return a digest of the metadata of every entry under ``root``."""
    digest = hashlib.sha256()
    for directory, names, files in os.walk(root):
        names.sort()
        for name in sorted(names + files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
            digest.update(
                f"{os.path.relpath(path, root)}\0{info.st_mode:o}\0{info.st_uid}\0"
                f"{info.st_gid}\0{info.st_size}\0{info.st_mtime_ns}\0"
                f"{info.st_rdev}\0{link}\n".encode()
            )
    return "sha256:" + digest.hexdigest()
