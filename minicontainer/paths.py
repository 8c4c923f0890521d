"""Where minictr keeps its state, and safe resolution of paths inside a root.

Persistent state lives under ``MINICTR_ROOT`` (default ``/var/lib/minictr``);
locks and pid files under ``MINICTR_RUN`` (default ``/run/minictr``), which is
a tmpfs on most hosts and so is cleared by a reboot. Tests point both at
private directories.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable

from .errors import InvalidArgument

_MAX_SYMLINKS = 40  # the kernel's limit for one path walk


def state_root() -> str:
    return os.environ.get("MINICTR_ROOT", "/var/lib/minictr")


def run_root() -> str:
    return os.environ.get("MINICTR_RUN", "/run/minictr")


def containers_dir() -> str:
    return os.path.join(state_root(), "containers")


def resolve_in_root(root: str, path: str) -> str:
    """Return the host path of container path ``path`` under ``root``.

    Symlinks are followed as the container would see them: an absolute link
    restarts at ``root`` and ``..`` never climbs above it, so a rootfs whose
    ``/data`` links to ``/etc`` or ``../../..`` resolves to a path inside
    ``root``. Components that do not exist are kept as they are. The result
    is valid as long as nothing changes the tree between this call and its
    use, which holds while the container's processes have not started.
    """
    if not posixpath.isabs(path):
        raise InvalidArgument(f"container path {path!r} must be absolute")
    root = os.path.realpath(root)

    def read_link(resolved: list[str], name: str) -> str | None:
        candidate = os.path.join(root, *resolved, name)
        return os.readlink(candidate) if os.path.islink(candidate) else None

    return os.path.join(root, *walk_symlinks(path, read_link))


def walk_symlinks(
    path: str, read_link: Callable[[list[str], str], str | None]
) -> list[str]:
    """Return the components of ``path`` once its symbolic links are followed.

    ``read_link(resolved, name)`` returns the target of ``name`` in the
    directory that the components in ``resolved`` lead to, or None if it is
    no link. An absolute target restarts at the root and ``..`` never climbs
    above it, as inside a container.
    """
    remaining = [part for part in path.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while remaining:
        part = remaining.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        target = read_link(resolved, part)
        if target is None:
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise InvalidArgument(f"too many symbolic links resolving {path!r}")
        if target.startswith("/"):
            resolved = []
        remaining = [p for p in target.split("/") if p not in ("", ".")] + remaining
    return resolved
