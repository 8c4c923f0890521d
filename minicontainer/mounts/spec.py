"""Parse Docker's mount options into ``config.mounts`` entries.

Four spellings describe what appears at a path inside the container:

- ``-v HOST:CONTAINER[:OPTIONS]`` is a bind mount when HOST is a path, and
  ``-v NAME:CONTAINER`` a named volume. ``-v CONTAINER`` alone is an
  anonymous volume with a generated name.
- ``--mount type=bind|volume|tmpfs,source=...,target=...,...`` gives the same
  with explicit keys.
- ``--tmpfs CONTAINER[:size=64m,mode=1777,...]`` mounts a fresh tmpfs.
- ``--volumes-from CONTAINER[:ro|rw]`` copies another container's bind
  mounts and volumes; it is resolved when the container starts.

Every entry is a dict shaped like a ``Mounts`` item of ``docker inspect``
(Type, Name, Source, Destination, Mode, RW, Propagation) plus the options
minictr needs to apply it. Parsing touches nothing outside the process:
the only file system access is the check that a ``--mount type=bind``
source exists.
"""

from __future__ import annotations

import csv
import logging
import os
import posixpath
import re
import secrets
from typing import Any

from ..cgroups import limits
from ..errors import InvalidArgument

log = logging.getLogger(__name__)

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

# Paths the runtime mounts itself; a user mount there would hide them.
RESERVED_TARGETS = ("/", "/proc", "/sys", "/dev", "/dev/pts")
# Trees the kernel fills; a mount inside them could hide a masked file.
RESERVED_TREES = ("/proc", "/sys")

PROPAGATIONS = ("private", "rprivate", "slave", "rslave")
UNSUPPORTED_PROPAGATIONS = ("shared", "rshared")

# Flags that --tmpfs accepts, and the mount(2) option each one sets.
TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev")
# Options tmpfs itself understands, passed through as mount data.
TMPFS_DATA_KEYS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")
TMPFS_DEFAULT_FLAGS = ["noexec", "nosuid", "nodev"]


def validate_volume_name(name: str) -> None:
    """Raise InvalidArgument unless ``name`` can name a volume directory."""
    if "/" in name:
        raise InvalidArgument(
            f"invalid volume name {name!r}: a name cannot contain '/'; give an"
            " absolute host path for a bind mount"
        )
    if not VOLUME_NAME.match(name):
        raise InvalidArgument(
            f"invalid volume name {name!r}: a name is two or more characters,"
            " letters, digits, '_', '.' or '-', and starts with a letter or digit"
        )


def is_reserved_target(path: str) -> bool:
    """Return whether the normalized container path ``path`` is the runtime's own."""
    return path in RESERVED_TARGETS or any(
        path.startswith(tree + "/") for tree in RESERVED_TREES
    )


def normalize_target(target: str, value: str) -> str:
    """Return the container path ``target`` normalized, or raise InvalidArgument.

    ``value`` is the whole option as the user typed it, for the message.
    """
    if not target:
        raise InvalidArgument(f"invalid mount {value!r}: the container path is empty")
    if not target.startswith("/"):
        raise InvalidArgument(
            f"invalid mount {value!r}: the container path {target!r} must be absolute"
        )
    path = posixpath.normpath(target)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if is_reserved_target(path):
        raise InvalidArgument(
            f"invalid mount {value!r}: {path} is set up by the runtime and cannot be"
            " a mount target"
        )
    return path


def parse_volume(value: str) -> dict[str, Any]:
    """Parse one ``-v`` value: ``[SOURCE:]CONTAINER[:OPTION[,OPTION...]]``."""
    parts = value.split(":")
    if len(parts) > 3 or not value:
        raise InvalidArgument(
            f"invalid volume {value!r}: expected [HOST_PATH|NAME:]CONTAINER_PATH[:OPTIONS]"
        )
    if len(parts) == 1:
        source, target, options = "", parts[0], ""
    elif len(parts) == 2 and _is_option_list(parts[1]):
        source, target, options = "", parts[0], parts[1]
    elif len(parts) == 2:
        source, target, options = parts[0], parts[1], ""
    else:
        source, target, options = parts
    if len(parts) > 1 and not parts[0]:
        raise InvalidArgument(
            f"invalid volume {value!r}: the source before ':' is empty; give a host"
            " path or a volume name, or only the container path for an anonymous"
            " volume"
        )
    destination = normalize_target(target, value)
    read_only, propagation, nocopy = _parse_volume_options(options, value)

    if source.startswith(("/", ".")):
        if propagation is None:
            propagation = "rprivate"
        return bind_entry(
            os.path.abspath(source), destination, read_only, propagation, create=True
        )
    if propagation is not None:
        raise InvalidArgument(
            f"invalid volume {value!r}: propagation {propagation!r} applies to bind"
            " mounts only"
        )
    if source:
        validate_volume_name(source)
    return volume_entry(source, destination, read_only, nocopy)


VOLUME_OPTIONS = ("ro", "rw", "nocopy", "z", "Z") + PROPAGATIONS


def _is_option_list(text: str) -> bool:
    words = text.split(",")
    return all(word in VOLUME_OPTIONS + UNSUPPORTED_PROPAGATIONS for word in words)


def _parse_volume_options(options: str, value: str) -> tuple[bool, str | None, bool]:
    read_only = False
    propagation = None
    nocopy = False
    for option in filter(None, options.split(",")):
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option in PROPAGATIONS:
            propagation = option
        elif option in UNSUPPORTED_PROPAGATIONS:
            raise _shared_not_supported(value)
        elif option == "nocopy":
            nocopy = True
        elif option in ("z", "Z"):
            log.warning(
                "volume %s: SELinux relabeling (%s) is not supported", value, option
            )
        else:
            raise InvalidArgument(
                f"invalid volume {value!r}: unknown option {option!r}; use ro, rw,"
                " nocopy or one of " + ", ".join(PROPAGATIONS)
            )
    return read_only, propagation, nocopy


def _shared_not_supported(value: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid mount {value!r}: shared propagation is not supported, because"
        " mounts made in a container must never appear on the host; use rslave"
    )


def bind_entry(
    source: str,
    destination: str,
    read_only: bool = False,
    propagation: str = "rprivate",
    create: bool = False,
) -> dict[str, Any]:
    """Return the entry of a bind mount of host path ``source``.

    With ``create``, a missing source directory is made when the container
    starts, as ``docker run -v`` does.
    """
    return {
        "Type": "bind",
        "Source": source,
        "Destination": destination,
        "Mode": "ro" if read_only else "",
        "RW": not read_only,
        "Propagation": propagation,
        "CreateHostPath": create,
    }


def volume_entry(
    name: str, destination: str, read_only: bool = False, nocopy: bool = False
) -> dict[str, Any]:
    """Return the entry of a named volume; an empty ``name`` makes it anonymous.

    ``Source`` is filled in when the container starts and the volume exists.
    """
    anonymous = not name
    return {
        "Type": "volume",
        "Name": name or secrets.token_hex(32),
        "Source": "",
        "Destination": destination,
        "Driver": "local",
        "Mode": "ro" if read_only else "",
        "RW": not read_only,
        "Propagation": "",
        "NoCopy": nocopy,
        "Anonymous": anonymous,
    }


def tmpfs_entry(
    destination: str, options: list[str], read_only: bool = False
) -> dict[str, Any]:
    """Return the entry of a tmpfs mount with mount options ``options``."""
    return {
        "Type": "tmpfs",
        "Source": "",
        "Destination": destination,
        "Mode": "ro" if read_only else "",
        "RW": not read_only,
        "Propagation": "",
        "Options": options,
    }


def parse_tmpfs(value: str) -> dict[str, Any]:
    """Parse one ``--tmpfs`` value: ``CONTAINER[:OPTION[,OPTION...]]``."""
    target, _, option_text = value.partition(":")
    destination = normalize_target(target, value)
    flags: dict[str, str] = {}
    data: dict[str, str] = {}
    for option in filter(None, option_text.split(",")):
        key, sep, raw = option.partition("=")
        if not sep and key in TMPFS_FLAGS:
            flags[_flag_group(key)] = key
        elif sep and key in TMPFS_DATA_KEYS:
            data[key] = _tmpfs_value(key, raw, value)
        else:
            raise InvalidArgument(
                f"invalid tmpfs {value!r}: unknown option {option!r}; use"
                f" {', '.join(TMPFS_FLAGS)} or KEY=VALUE with KEY one of"
                f" {', '.join(TMPFS_DATA_KEYS)}"
            )
    return _tmpfs_from_parts(destination, flags, data)


def _flag_group(flag: str) -> str:
    if flag in ("ro", "rw"):
        return "rw"
    return flag.removeprefix("no")


def _tmpfs_from_parts(
    destination: str, flags: dict[str, str], data: dict[str, str]
) -> dict[str, Any]:
    options = []
    for default in TMPFS_DEFAULT_FLAGS:
        group = _flag_group(default)
        options.append(flags.pop(group, default))
    read_only = flags.pop("rw", "rw") == "ro"
    options += [f"{key}={raw}" for key, raw in data.items()]
    return tmpfs_entry(destination, options, read_only)


def _tmpfs_value(key: str, raw: str, value: str) -> str:
    if key == "size":
        return str(parse_size(raw, value))
    if key == "mode":
        return f"{parse_mode(raw, value):o}"
    if not raw.isdigit():
        raise InvalidArgument(
            f"invalid tmpfs {value!r}: {key} must be a whole number, got {raw!r}"
        )
    return raw


def parse_size(raw: str, value: str) -> int:
    """Return ``raw`` (``67108864``, ``64m``, ``1g``) in bytes.

    The units are those of ``--memory``, as in Docker. Zero is rejected,
    because tmpfs reads ``size=0`` as no limit at all.
    """
    size = limits.parse_size(raw, f"tmpfs {value!r}")
    if size <= 0:
        raise InvalidArgument(
            f"invalid size {raw!r} in {value!r}: give a positive number of bytes,"
            f" optionally with a unit {limits.SIZE_UNITS_TEXT}"
        )
    return size


def parse_mode(raw: str, value: str) -> int:
    """Return the octal permission string ``raw`` (``1777``) as an int."""
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(
            f"invalid mode {raw!r} in {value!r}: give octal permissions such as 1777"
        )
    return mode


def parse_mount(value: str) -> dict[str, Any]:
    """Parse one ``--mount`` value: comma-separated ``KEY=VALUE`` fields."""
    fields = _mount_fields(value)
    kind = fields.pop("type", "volume")
    source = fields.pop("source", "")
    target = fields.pop("target", "")
    read_only = _parse_bool(fields.pop("readonly", "false"), "readonly", value)
    destination = normalize_target(target, value)
    if kind == "bind":
        return _bind_from_fields(source, destination, read_only, fields, value)
    if kind == "volume":
        return _volume_from_fields(source, destination, read_only, fields, value)
    if kind == "tmpfs":
        return _tmpfs_from_fields(source, destination, read_only, fields, value)
    raise InvalidArgument(
        f"invalid mount {value!r}: unknown type {kind!r}; use bind, volume or tmpfs"
    )


_MOUNT_KEY_ALIASES = {
    "src": "source",
    "dst": "target",
    "destination": "target",
    "ro": "readonly",
}


def _mount_fields(value: str) -> dict[str, str]:
    # Docker reads --mount as one CSV record, so a field may be quoted to
    # contain a comma.
    try:
        record = next(csv.reader([value]), [])
    except csv.Error as exc:
        raise InvalidArgument(f"invalid mount {value!r}: {exc}") from exc
    fields: dict[str, str] = {}
    for item in record:
        key, sep, raw = item.partition("=")
        key = _MOUNT_KEY_ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep and key == "readonly":
            raw = "true"
        elif not sep:
            raise InvalidArgument(
                f"invalid mount {value!r}: field {item!r} must be KEY=VALUE"
            )
        if key in fields:
            raise InvalidArgument(f"invalid mount {value!r}: {key} is given twice")
        fields[key] = raw
    return fields


def _parse_bool(raw: str, key: str, value: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise InvalidArgument(
        f"invalid mount {value!r}: {key} must be true or false, got {raw!r}"
    )


def _reject_unknown(fields: dict[str, str], kind: str, value: str) -> None:
    fields.pop("consistency", None)  # a macOS file-sharing hint, meaningless here
    if fields:
        raise InvalidArgument(
            f"invalid mount {value!r}: unknown or unsupported field"
            f" {min(fields)!r} for type={kind}"
        )


def _bind_from_fields(
    source: str, destination: str, read_only: bool, fields: dict, value: str
) -> dict[str, Any]:
    propagation = fields.pop("bind-propagation", "rprivate")
    _reject_unknown(fields, "bind", value)
    if propagation in UNSUPPORTED_PROPAGATIONS:
        raise _shared_not_supported(value)
    if propagation not in PROPAGATIONS:
        raise InvalidArgument(
            f"invalid mount {value!r}: unknown bind-propagation {propagation!r};"
            " use one of " + ", ".join(PROPAGATIONS)
        )
    if not source.startswith("/"):
        raise InvalidArgument(
            f"invalid mount {value!r}: a bind source must be an absolute host path"
        )
    if not os.path.exists(source):
        raise InvalidArgument(
            f"invalid mount {value!r}: bind source path {source} does not exist;"
            " create it first (-v creates a missing directory, --mount does not)"
        )
    return bind_entry(source, destination, read_only, propagation, create=False)


def _volume_from_fields(
    source: str, destination: str, read_only: bool, fields: dict, value: str
) -> dict[str, Any]:
    nocopy = _parse_bool(fields.pop("volume-nocopy", "false"), "volume-nocopy", value)
    driver = fields.pop("volume-driver", "local")
    _reject_unknown(fields, "volume", value)
    if driver != "local":
        raise InvalidArgument(
            f"invalid mount {value!r}: volume driver {driver!r} is not supported;"
            " only local volumes exist"
        )
    if source.startswith("/"):
        raise InvalidArgument(
            f"invalid mount {value!r}: {source} is a host path, not a volume name;"
            " use type=bind to mount a host directory"
        )
    if source:
        validate_volume_name(source)
    return volume_entry(source, destination, read_only, nocopy)


def _tmpfs_from_fields(
    source: str, destination: str, read_only: bool, fields: dict, value: str
) -> dict[str, Any]:
    data = {}
    if "tmpfs-size" in fields:
        data["size"] = str(parse_size(fields.pop("tmpfs-size"), value))
    if "tmpfs-mode" in fields:
        data["mode"] = f"{parse_mode(fields.pop('tmpfs-mode'), value):o}"
    _reject_unknown(fields, "tmpfs", value)
    if source:
        raise InvalidArgument(f"invalid mount {value!r}: a tmpfs mount takes no source")
    flags = {"rw": "ro"} if read_only else {}
    return _tmpfs_from_parts(destination, flags, data)


def parse_volumes_from(value: str) -> dict[str, Any]:
    """Parse one ``--volumes-from`` value: ``CONTAINER[:ro|rw]``."""
    reference, sep, mode = value.partition(":")
    if not reference or (sep and mode not in ("ro", "rw")):
        raise InvalidArgument(
            f"invalid --volumes-from {value!r}: expected CONTAINER[:ro|rw]"
        )
    return {"Type": "volumes-from", "Container": reference, "Mode": mode}


def check_duplicates(entries: list[dict[str, Any]]) -> None:
    """Raise InvalidArgument when two entries mount on the same path."""
    seen: set[str] = set()
    for entry in entries:
        destination = entry.get("Destination")
        if destination is None:
            continue
        if destination in seen:
            raise InvalidArgument(
                f"duplicate mount point {destination}: give each container path once"
            )
        seen.add(destination)
