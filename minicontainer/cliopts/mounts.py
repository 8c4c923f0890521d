"""Options of ``run`` and ``create`` that add volumes and mounts."""

from __future__ import annotations

from typing import Any

import click

OPTIONS = [
    click.option(
        "-v",
        "--volume",
        "volumes",
        multiple=True,
        metavar="[HOST_PATH|NAME:]PATH[:OPTS]",
        help=(
            "Bind-mount HOST_PATH (created as a directory if missing) or mount"
            " volume NAME (created on first use) at PATH; PATH alone makes an"
            " anonymous volume. OPTS: ro, rw, nocopy, private, rprivate, slave,"
            " rslave."
        ),
    ),
    click.option(
        "--mount",
        "mount_specs",
        multiple=True,
        metavar="type=bind|volume|tmpfs,...",
        help=(
            "Mount with explicit fields: type, source, target, readonly,"
            " bind-propagation, volume-nocopy, tmpfs-size (bytes, or with a unit b,"
            " k, m, g, t or p, for example 64m),"
            " tmpfs-mode (octal). A missing bind source is an error."
        ),
    ),
    click.option(
        "--tmpfs",
        "tmpfs_specs",
        multiple=True,
        metavar="PATH[:OPTS]",
        help=(
            "Mount a tmpfs at PATH. OPTS: size (bytes, or with a unit b, k, m, g,"
            " t or p, for example size=64m), mode=1777, uid, gid,"
            " nr_inodes, ro, exec, suid, dev (default noexec,nosuid,nodev)."
        ),
    ),
    click.option(
        "--volumes-from",
        multiple=True,
        metavar="CONTAINER[:ro|rw]",
        help="Mount the volumes and bind mounts of another container.",
    ),
]


def to_config(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Pop the mount options from ``kwargs``; return validated ``config.mounts``."""
    volumes = kwargs.pop("volumes", ())
    mount_specs = kwargs.pop("mount_specs", ())
    tmpfs_specs = kwargs.pop("tmpfs_specs", ())
    volumes_from = kwargs.pop("volumes_from", ())
    if not (volumes or mount_specs or tmpfs_specs or volumes_from):
        return []

    from ..mounts import spec

    entries = [spec.parse_volume(value) for value in volumes]
    entries += [spec.parse_mount(value) for value in mount_specs]
    entries += [spec.parse_tmpfs(value) for value in tmpfs_specs]
    entries += [spec.parse_volumes_from(value) for value in volumes_from]
    spec.check_duplicates(entries)
    return entries
