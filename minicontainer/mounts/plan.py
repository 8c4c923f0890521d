"""Turn ``config.mounts`` into host preparation and mount steps.

``prepare`` runs in the monitor on the host before any container process
exists: it creates missing host directories for ``-v`` and named volumes,
resolves ``--volumes-from``, and fills new volumes from the image. It undoes
its own work when it fails.

``volume_steps`` returns the mounts that PID 1 makes inside the container's
mount namespace before pivot_root. A bind mount (MS_BIND) makes an existing
directory tree visible at a second place; MS_REC takes the mounts below the
source along. The MS_RDONLY flag is ignored when a bind mount is created, so
a read-only bind needs a second call, a remount with
MS_BIND|MS_REMOUNT|MS_RDONLY, on the bind and on each submount it brought
along (mount(2), "Creating a bind mount").
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from .. import state
from .. import syscalls as sc
from ..config import ContainerConfig
from ..errors import InvalidArgument, KernelError
from ..paths import resolve_in_root
from ..steps import Mount, Step
from . import copyup, spec, volumes

log = logging.getLogger(__name__)

# statvfs f_flag bits (<sys/statvfs.h>) and the mount flag each one stands for.
# A remount sets the per-mount flags to exactly what it is given, so these
# must be passed again or the remount would clear them.
_STATVFS_TO_MOUNT = {
    os.ST_NOSUID: sc.MS_NOSUID,
    os.ST_NODEV: sc.MS_NODEV,
    os.ST_NOEXEC: sc.MS_NOEXEC,
    os.ST_NOATIME: sc.MS_NOATIME,
    os.ST_NODIRATIME: sc.MS_NODIRATIME,
    os.ST_RELATIME: sc.MS_RELATIME,
}

_PROPAGATION_FLAGS = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
}

_TMPFS_FLAGS = {"nosuid": sc.MS_NOSUID, "nodev": sc.MS_NODEV, "noexec": sc.MS_NOEXEC}
_TMPFS_FLAG_WORDS = ("exec", "noexec", "suid", "nosuid", "dev", "nodev")


# ---- on the host, before fork ---------------------------------------------


def prepare(config: ContainerConfig, container_dir: str) -> None:
    """Make every mount source exist and record the resolved ``config.mounts``.

    Creates missing ``-v`` host directories and named volumes, copies
    ``--volumes-from`` entries from the other container, and fills a new or
    empty volume with the image's content at its mount point. On failure,
    removes what it created and re-raises.
    """
    created_paths: list[str] = []
    created_volumes: list[str] = []
    try:
        config.mounts = _expand_volumes_from(config.mounts, config.id)
        _check_image_targets(config.mounts, container_dir, config.lower_dirs)
        with volumes.locked():
            for entry in config.mounts:
                if entry["Type"] == "bind":
                    _prepare_bind(entry, created_paths)
                elif entry["Type"] == "volume":
                    _prepare_volume(
                        entry, config.lower_dirs, created_volumes, config.security
                    )
        state.write_json_atomic(
            os.path.join(container_dir, "config.json"), config.to_dict()
        )
    except BaseException:
        _undo(created_paths, created_volumes, config.id)
        raise


def _expand_volumes_from(
    entries: list[dict[str, Any]], own_id: str
) -> list[dict[str, Any]]:
    """Replace each volumes-from entry with the other container's mounts.

    Mounts the user gave explicitly win over copied ones on the same path,
    and tmpfs mounts are not copied, because each container gets its own.
    """
    explicit = [entry for entry in entries if entry["Type"] != "volumes-from"]
    taken = {entry["Destination"] for entry in explicit}
    result = list(explicit)
    for entry in entries:
        if entry["Type"] != "volumes-from":
            continue
        other_id = state.find(entry["Container"])
        if other_id == own_id:
            raise InvalidArgument(
                f"--volumes-from {entry['Container']}: a container cannot take"
                " volumes from itself"
            )
        for mount in state.read_config(other_id).mounts:
            if mount["Type"] not in ("bind", "volume"):
                continue
            if mount["Destination"] in taken:
                continue
            copied = dict(mount, CreateHostPath=False)
            if entry["Mode"]:
                copied["Mode"] = "ro" if entry["Mode"] == "ro" else ""
                copied["RW"] = entry["Mode"] != "ro"
            taken.add(copied["Destination"])
            result.append(copied)
    return result


def _check_image_targets(
    entries: list[dict[str, Any]], container_dir: str, lower_dirs: list[str]
) -> None:
    """Reject a target that a symlink in the image leads onto a reserved path.

    This runs before anything is created, so a rejected mount leaves no host
    directory or volume behind. ``UserMount`` checks again in PID 1, where
    the merged root is real.
    """
    layers = [os.path.join(container_dir, "upper"), *lower_dirs]
    for entry in entries:
        target = entry.get("Destination")
        if not target:
            continue
        inside = copyup.resolve_in_layers(layers, target)
        if spec.is_reserved_target(inside):
            raise reserved_target_error(target, inside)


def reserved_target_error(target: str, inside: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid mount target {target}: a symbolic link leads it to {inside},"
        " which the runtime sets up itself; choose a path that is not a link"
        " to it"
    )


def _prepare_bind(entry: dict[str, Any], created_paths: list[str]) -> None:
    source = entry["Source"]
    if os.path.exists(source):
        return
    if not entry.get("CreateHostPath"):
        raise InvalidArgument(
            f"bind source path {source} does not exist: create it, or use -v,"
            " which creates a missing directory"
        )
    missing = source
    while not os.path.exists(os.path.dirname(missing)):
        missing = os.path.dirname(missing)
    log.debug("mkdir -p %s (missing bind source on the host)", source)
    try:
        os.makedirs(source, mode=0o755)
    except OSError as exc:
        raise KernelError(
            f"creating bind source directory {source} failed: {exc.strerror}",
            exc.errno or 0,
        ) from exc
    created_paths.append(missing)


def _prepare_volume(
    entry: dict[str, Any],
    lower_dirs: list[str],
    created_volumes: list[str],
    security: dict[str, Any] | None = None,
) -> None:
    name = entry["Name"]
    try:
        _, is_new = volumes.create(name, anonymous=bool(entry.get("Anonymous")))
    except OSError as exc:
        raise KernelError(
            f"creating volume {name} failed: {exc.strerror}: {exc.filename}",
            exc.errno or 0,
        ) from exc
    if is_new:
        log.debug("created volume %s", name)
        created_volumes.append(name)
    data = volumes.data_path(name)
    entry["Source"] = data
    if os.listdir(data):
        return
    userns = (security or {}).get("userns")
    try:
        filled = not entry.get("NoCopy") and copyup.fill_volume(
            lower_dirs, entry["Destination"], data
        )
        if userns:
            # A volume filled from the image keeps the image's owners, shifted
            # into the range; an empty one is given to the container's root.
            from ..security import userns as userns_module

            uid_map, gid_map = userns["uid_map"], userns["gid_map"]
            if filled:
                userns_module.shift_owners(data, uid_map, gid_map)
            else:
                root = (
                    userns_module.map_id(0, uid_map),
                    userns_module.map_id(0, gid_map),
                )
                os.chown(data, *root)
    except OSError as exc:
        copyup.empty_dir(data)
        raise KernelError(
            f"copying the image content at {entry['Destination']} into volume"
            f" {name} failed: {exc}",
            exc.errno or 0,
        ) from exc


def _undo(
    created_paths: list[str], created_volumes: list[str], container_id: str
) -> None:
    for path in reversed(created_paths):
        shutil.rmtree(path, ignore_errors=True)
    if not created_volumes:
        return
    with volumes.locked():
        for name in created_volumes:
            try:
                volumes.delete_unused(name, ignored_container=container_id)
            except OSError as exc:
                log.warning("could not remove new volume %s: %s", name, exc)


def remove_anonymous(config: ContainerConfig) -> None:
    """Delete the anonymous volumes of a removed container, as ``docker run --rm`` does.

    A volume that another container also mounts (through --volumes-from) is
    kept.
    """
    with volumes.locked():
        for entry in config.mounts:
            if entry.get("Type") == "volume" and entry.get("Anonymous"):
                volumes.delete_unused(entry["Name"], ignored_container=config.id)


# ---- inside the container's mount namespace, before pivot_root -------------


def volume_steps(
    config: ContainerConfig, container_dir: str, merged: str
) -> list[Step]:
    """Return the mount steps for ``config.mounts``, parents before children."""
    steps: list[Step] = []
    # Mount /a before /a/b, or the second mount would be hidden by the first.
    ordered = sorted(
        config.mounts, key=lambda entry: _depth(entry.get("Destination", ""))
    )
    from ..rootfs import container_root_owner

    owner = container_root_owner(config)
    for entry in ordered:
        if entry["Type"] == "tmpfs":
            steps.append(_tmpfs_step(entry, merged, owner))
        elif entry["Type"] in ("bind", "volume"):
            steps += _bind_steps(entry, merged)
        else:
            raise InvalidArgument(
                f"mount type {entry['Type']!r} for {entry.get('Destination')} was"
                " not resolved before the container started"
            )
    return steps


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def _bind_steps(entry: dict[str, Any], merged: str) -> list[Step]:
    source = entry["Source"]
    if not source:
        raise InvalidArgument(
            f"volume {entry.get('Name')} at {entry['Destination']} has no host"
            " directory: prepare() must run first"
        )
    make = "dir" if os.path.isdir(source) else "file"
    destination = entry["Destination"]
    steps: list[Step] = [
        UserMount(
            source, destination, None, sc.MS_BIND | sc.MS_REC, root=merged, make=make
        )
    ]
    propagation = entry.get("Propagation") or "rprivate"
    # NOTE: the runtime makes "/" rprivate right after unshare, so the bind
    # has no master on the host and slave propagation receives nothing until
    # the runtime makes "/" rslave instead.
    if propagation != "rprivate":
        flags = _PROPAGATION_FLAGS[propagation]
        steps.append(Mount(None, destination, None, flags, root=merged, make=None))
    if not entry.get("RW", True):
        steps.append(ReadOnlyRemount(destination, root=merged))
    return steps


def _tmpfs_step(
    entry: dict[str, Any], merged: str, owner: tuple[int, int] | None = None
) -> UserMount:
    flags = 0 if entry.get("RW", True) else sc.MS_RDONLY
    data = []
    for option in entry.get("Options", []):
        if option in _TMPFS_FLAG_WORDS:
            flags |= _TMPFS_FLAGS.get(option, 0)
        else:
            data.append(option)
    # Under --userns the tmpfs root belongs to the container's root, as it
    # would if the container had mounted it itself.
    if owner is not None:
        given = {option.split("=", 1)[0] for option in data}
        data += [
            f"{key}={value}"
            for key, value in (("uid", owner[0]), ("gid", owner[1]))
            if key not in given
        ]
    return UserMount(
        "tmpfs",
        entry["Destination"],
        "tmpfs",
        flags,
        ",".join(data) or None,
        root=merged,
    )


@dataclass
class UserMount(Mount):
    """A mount the user requested, rejected when its target is the runtime's own.

    The options were checked when they were parsed, but a symlink in the
    image (``/data -> /proc``, ``/a/b -> ../..``) can still lead a target
    onto /proc, /sys or /dev. The target is resolved again here, in PID 1
    just before the mount, because the container's root only exists from
    then on and an earlier mount in the list may have added symlinks.
    """

    def apply(self) -> None:
        if self.root:
            check_resolved_target(self.root, self.target)
        super().apply()


def check_resolved_target(root: str, target: str) -> None:
    """Raise InvalidArgument when ``target`` resolves onto a reserved path.

    ``root`` is the host path of the container's root and ``target`` a path
    inside it; symlinks are followed as the container would see them.
    """
    host_path = resolve_in_root(root, target)
    inside = "/" + os.path.relpath(host_path, os.path.realpath(root))
    inside = os.path.normpath(inside)
    if inside.startswith("//"):
        inside = "/" + inside.lstrip("/")
    if spec.is_reserved_target(inside):
        raise reserved_target_error(target, inside)


@dataclass
class ReadOnlyRemount(Step):
    """Remount a bind mount and every mount below it read-only.

    Each remount repeats the nosuid, nodev, noexec and atime flags that the
    mount already has (read with statvfs), because MS_REMOUNT replaces the
    per-mount flags with exactly the ones given.
    """

    target: str
    root: str

    def describe(self) -> str:
        return (
            f"remount {self.root.rstrip('/')}{self.target} and its submounts"
            " read-only (MS_BIND|MS_REMOUNT|MS_RDONLY)"
        )

    def apply(self) -> None:
        top = resolve_in_root(self.root, self.target)
        for mount_point in mounts_under(top):
            flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | kept_flags(mount_point)
            log.debug(
                "mount none on %s type none flags %s",
                mount_point,
                sc.mount_flag_names(flags),
            )
            sc.mount(None, mount_point, None, flags)


def kept_flags(mount_point: str) -> int:
    """Return the mount flags of ``mount_point`` that a remount must repeat."""
    try:
        flag_bits = os.statvfs(mount_point).f_flag
    except OSError as exc:
        raise KernelError(
            f"statvfs {mount_point} failed: {exc.strerror}", exc.errno or 0
        ) from exc
    flags = 0
    for bit, mount_flag in _STATVFS_TO_MOUNT.items():
        if flag_bits & bit:
            flags |= mount_flag
    return flags


_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def mounts_under(top: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Return the mount points of the newest mount on ``top`` and of its submounts.

    Submounts are found through the parent ids in mountinfo, not by path, so
    a mount hidden under the new one is left alone. /proc/self/mountinfo
    escapes space, tab, newline and backslash in paths as three octal digits.
    """
    with open(mountinfo, "rb") as f:
        lines = f.read().splitlines()
    entries = []
    for line in lines:
        fields = line.split(b" ")
        point = os.fsdecode(
            _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4])
        )
        entries.append((fields[0], fields[1], point))
    top_ids = [mount_id for mount_id, _, point in entries if point == top]
    if not top_ids:
        raise KernelError(f"no mount found on {top} in {mountinfo}")
    tree = {top_ids[-1]}
    found = [top]
    grew = True
    while grew:
        grew = False
        for mount_id, parent_id, point in entries:
            if parent_id in tree and mount_id not in tree:
                tree.add(mount_id)
                found.append(point)
                grew = True
    return found
