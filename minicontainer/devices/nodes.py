"""Device nodes given with ``--device HOST[:CONTAINER][:PERMISSIONS]``.

A device node is a file whose inode stores a type (character or block) and
a major and a minor number, which name the driver and the unit; opening it
reaches the driver, not the file system. The container gets its own node
with the host node's numbers, made with mknod(2) in its /dev, rather than a
bind mount of the host's: the host's /dev stays out of the container, and the
device rules decide what an open of those numbers may do.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ..errors import InvalidArgument
from .rules import validate_access


def parse_device(spec: str) -> tuple[str, str, str]:
    """Split a ``--device`` value into host path, container path and permissions.

    As in Docker, ``HOST:rw`` gives permissions when the second field is a
    valid permission string, and the container path defaults to the host path.
    """
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgument(
            f"invalid --device {spec!r}: expected HOST_PATH[:CONTAINER_PATH][:rwm]"
        )
    host = parts[0]
    container = host
    permissions = "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm"):
            permissions = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, permissions = parts[1], parts[2]
    validate_access(permissions, f"--device {spec!r}")
    for path in (host, container):
        if not os.path.isabs(path):
            raise InvalidArgument(
                f"invalid --device {spec!r}: {path!r} must be an absolute path"
            )
    return host, os.path.normpath(container), permissions


def stat_node(host_path: str, container_path: str, permissions: str) -> dict[str, Any]:
    """Describe the host node at ``host_path`` as an entry of ``config.devices``.

    Symbolic links are followed, so ``/dev/disk/by-id/...`` works. Raises
    InvalidArgument when the path is missing or not a device node.
    """
    try:
        info = os.stat(host_path)
    except OSError as exc:
        raise InvalidArgument(
            f"device {host_path!r} not found on the host: {exc.strerror}"
        ) from exc
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"{host_path!r} is not a character or block device node")
    return {
        "host_path": host_path,
        "path": container_path,
        "type": kind,
        "major": os.major(info.st_rdev),
        "minor": os.minor(info.st_rdev),
        "mode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "permissions": permissions,
    }


def nodes_for_spec(spec: str) -> list[dict[str, Any]]:
    """Resolve one ``--device`` value; a directory gives every node below it."""
    host, container, permissions = parse_device(spec)
    if not os.path.isdir(host):
        return [stat_node(host, container, permissions)]
    found = []
    for top, _dirs, files in os.walk(host):
        for name in sorted(files):
            path = os.path.join(top, name)
            mode = os.stat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                inside = os.path.join(container, os.path.relpath(path, host))
                found.append(stat_node(path, inside, permissions))
    if not found:
        raise InvalidArgument(f"--device {spec!r}: no device node under {host!r}")
    return found


# Paths under the host's /dev that a privileged container does not copy:
# its own devpts, shm and mqueue are mounted there instead.
_PRIVILEGED_SKIP = ("pts", "shm", "mqueue")


def host_nodes(dev: str = "/dev") -> list[dict[str, Any]]:
    """Return every device node under the host's ``dev``, for ``--privileged``."""
    found = []
    for top, dirs, files in os.walk(dev):
        if top == dev:
            dirs[:] = [d for d in dirs if d not in _PRIVILEGED_SKIP]
        for name in sorted(files):
            path = os.path.join(top, name)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                inside = "/dev/" + os.path.relpath(path, dev)
                found.append(stat_node(path, inside, "rwm"))
    return found
