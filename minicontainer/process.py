"""The container's process: its user, environment, descriptors and exec.

Everything here runs inside the container after pivot_root, so
``/etc/passwd`` and ``/etc/group`` are the container's own files. Names are
looked up by parsing those files, never through the host's NSS, which would
load the host's libraries and consult the host's databases.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from .errors import CommandNotExecutable, CommandNotFound, InvalidArgument


@dataclass
class Identity:
    uid: int
    gid: int
    additional_gids: list[int]
    home: str


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as db:
            lines = db.read().splitlines()
    except FileNotFoundError:
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def parse_user_spec(spec: str) -> tuple[str, str | None]:
    """Split ``user[:group]``; reject empty parts."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise InvalidArgument(f"invalid --user {spec!r}: expected name|uid[:group|gid]")
    return user, (group if sep else None)


def resolve_identity(spec: str, etc: str = "/etc") -> Identity:
    """Resolve ``-u`` as Docker does, from the files under ``etc``.

    A numeric uid needs no passwd entry; its group defaults to the entry's
    group, or 0. Supplementary groups come from the group file's member lists.
    """
    passwd = _read_db(os.path.join(etc, "passwd"))
    groups = _read_db(os.path.join(etc, "group"))
    user, group = parse_user_spec(spec or "0")

    entry = None
    if user.isdigit():
        uid = int(user)
        entry = next((e for e in passwd if len(e) >= 7 and e[2] == user), None)
    else:
        entry = next((e for e in passwd if len(e) >= 7 and e[0] == user), None)
        if entry is None:
            raise InvalidArgument(
                f"unable to find user {user}: no matching entries in the container's"
                " /etc/passwd"
            )
        uid = int(entry[2])
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry else "/"
    username = entry[0] if entry else None

    if group is not None:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
            if match is None:
                raise InvalidArgument(
                    f"unable to find group {group}: no matching entries in the"
                    " container's /etc/group"
                )
            gid = int(match[2])

    additional = []
    if username is not None and group is None:
        for g in groups:
            if len(g) >= 4 and username in g[3].split(",") and int(g[2]) != gid:
                additional.append(int(g[2]))
    return Identity(uid, gid, additional, home or "/")


def build_env(env: list[str], home: str, hostname: str, terminal: bool) -> list[str]:
    """Return the environment with Docker's defaults under the user's values."""
    from .config import DEFAULT_PATH

    merged: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if terminal:
        merged["TERM"] = "xterm"
    for item in env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in merged.items()]


def switch_user(identity: Identity) -> None:
    """Drop to the container user's ids; supplementary groups first."""
    os.setgroups(identity.additional_gids)
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)


def close_other_fds(keep: list[int]) -> None:
    """Close every descriptor above 2 except ``keep``.

    A descriptor inherited from minictr could point at a host directory, and
    ``/proc/self/fd/N`` would then lead out of the container.
    """
    keep_set = sorted(set(k for k in keep if k > 2))
    low = 3
    for fd in keep_set + [None]:
        high = fd if fd is not None else os.sysconf("SC_OPEN_MAX")
        os.closerange(low, high)
        low = (fd or 0) + 1


def exec_command(args: list[str], env: list[str]) -> None:
    """Replace this process with ``args``; raise 126/127-class errors on failure."""
    environ = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    try:
        os.execvpe(args[0], args, environ)
    except FileNotFoundError as exc:
        if "/" in args[0]:
            raise CommandNotFound(
                f"exec {args[0]!r}: no such file or directory"
            ) from exc
        raise CommandNotFound(
            f"exec {args[0]!r}: executable file not found in $PATH"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise CommandNotFound(f"exec {args[0]!r}: not a directory") from exc
        raise CommandNotExecutable(f"exec {args[0]!r}: {exc.strerror}") from exc
