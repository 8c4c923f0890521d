"""Named volumes: directories under minictr's state root that outlive containers.

A volume is a plain directory, ``<state root>/volumes/NAME/_data``, that a
container gets as a bind mount. Its metadata (creation time, labels, whether
it is anonymous) sits next to it in ``volume.json``. A container that names
a missing volume creates it. ``volume rm`` deletes it, but only while no
container's config (running or stopped) mounts it.

Changes hold the ``volumes`` lock, so a volume cannot be removed between the
moment a starting container checks it and the moment it is created.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from .. import paths, state
from ..errors import Conflict, NotFound
from .spec import validate_volume_name

DATA_DIR = "_data"
METADATA_FILE = "volume.json"


def volumes_dir() -> str:
    return os.path.join(paths.state_root(), "volumes")


def volume_dir(name: str) -> str:
    return os.path.join(volumes_dir(), name)


def data_path(name: str) -> str:
    """Return the host directory that containers see at the mount point."""
    return os.path.join(volume_dir(name), DATA_DIR)


def locked():
    """Hold the lock that serializes volume creation, removal and use checks."""
    return state.locked("volumes")


def create(
    name: str, labels: dict[str, str] | None = None, anonymous: bool = False
) -> tuple[dict[str, Any], bool]:
    """Create volume ``name`` unless it exists; return its metadata and whether it is new.

    The caller must hold ``locked()``. The directory appears under its final name
    only once complete, so a crash leaves at most a ``.tmp`` directory.
    """
    validate_volume_name(name)
    if os.path.isdir(volume_dir(name)):
        return inspect(name), False
    os.makedirs(volumes_dir(), mode=0o700, exist_ok=True)
    tmp = os.path.join(volumes_dir(), f".{name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o700)
    try:
        os.mkdir(os.path.join(tmp, DATA_DIR), 0o755)
        metadata = {
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "Driver": "local",
            "Labels": dict(labels or {}),
            "Name": name,
            "Options": {},
            "Scope": "local",
            "Anonymous": anonymous,
        }
        state.write_json_atomic(os.path.join(tmp, METADATA_FILE), metadata)
        os.rename(tmp, volume_dir(name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return inspect(name), True


def inspect(name: str) -> dict[str, Any]:
    """Return the metadata of volume ``name`` with its Mountpoint; NotFound if none."""
    validate_volume_name(name)
    try:
        metadata = state.read_json(os.path.join(volume_dir(name), METADATA_FILE))
    except FileNotFoundError:
        raise NotFound(
            f"no such volume: {name} (list volumes with 'minictr volume ls')"
        ) from None
    metadata["Mountpoint"] = data_path(name)
    return metadata


def list_volumes() -> list[dict[str, Any]]:
    """Return the metadata of every volume, sorted by name."""
    try:
        names = sorted(os.listdir(volumes_dir()))
    except FileNotFoundError:
        return []
    result = []
    for name in names:
        if name.startswith("."):
            continue
        try:
            result.append(inspect(name))
        except (NotFound, ValueError, OSError):
            continue  # a directory that is not a volume, or one being removed
    return result


def users(name: str) -> list[str]:
    """Return the ids of the containers whose config mounts volume ``name``."""
    found = []
    for container_id in state.list_ids():
        try:
            config = state.read_config(container_id)
        except (OSError, ValueError):
            continue
        for entry in config.mounts:
            if entry.get("Type") == "volume" and entry.get("Name") == name:
                found.append(container_id)
                break
    return found


def remove(name: str, force: bool = False) -> None:
    """Delete volume ``name`` and its data; Conflict while a container uses it.

    ``force`` only turns a missing volume into success, as ``docker volume rm
    -f`` does: a volume in use is never removed.
    """
    with locked():
        if not os.path.isdir(volume_dir(name)):
            if force:
                return
            inspect(name)  # raises NotFound with the usual message
        in_use = users(name)
        if in_use:
            ids = ", ".join(cid[:12] for cid in in_use)
            raise Conflict(
                f"volume {name} is in use by container {ids}: remove the container"
                " first"
            )
        _delete(name)


def _delete(name: str) -> None:
    # Rename first, so a half-deleted volume is never seen under its name.
    doomed = os.path.join(volumes_dir(), f".{name}.removing.{os.getpid()}")
    os.rename(volume_dir(name), doomed)
    shutil.rmtree(doomed)


def delete_unused(name: str, ignored_container: str = "") -> bool:
    """Delete volume ``name`` unless a container other than ``ignored_container`` uses it.

    Returns whether it was deleted. The caller must hold ``locked()``.
    """
    in_use = [cid for cid in users(name) if cid != ignored_container]
    if in_use or not os.path.isdir(volume_dir(name)):
        return False
    _delete(name)
    return True


def prune(all_volumes: bool = False) -> list[str]:
    """Delete unused anonymous volumes (every unused one with ``all_volumes``).

    Returns the names deleted.
    """
    deleted = []
    with locked():
        for metadata in list_volumes():
            if not (all_volumes or metadata.get("Anonymous")):
                continue
            if delete_unused(metadata["Name"]):
                deleted.append(metadata["Name"])
    return deleted
