"""User namespaces: the container's root is an unprivileged user on the host.

A user namespace maps a range of user and group ids inside it onto a range
outside, through /proc/PID/uid_map and gid_map (one line "inside outside
count"). With ``--userns private`` container uid 0 is host uid 100000, say,
so a process that escapes the container's other namespaces still has no
more rights on the host than an ordinary user. Capabilities held inside a
user namespace apply only to the objects that namespace owns.

minictr builds the root file system as host root and enters the new user
namespace last, in PID 1, just before it drops capabilities. Its mount,
network, IPC and UTS namespaces stay owned by the host's user namespace.
So the container's root cannot mount, configure interfaces or set the
hostname even with ``--cap-add``, which is stricter than Docker. Only a
process in the parent namespace holding CAP_SETUID may write a map with
more than one line or foreign ids, so PID 1 forks a helper that stays
outside and writes PID 1's maps once PID 1 has unshared
(user_namespaces(7)).

Files keep their host owners, so the image's root-owned files would show
up as ``nobody`` inside. Until id-mapped mounts are used, minictr makes a
copy of each lower directory with ids shifted into the container's range,
once per directory and map, under ``<state root>/userns/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat

from ..errors import InvalidArgument, KernelError

log = logging.getLogger(__name__)

SUBID_USERS = ("minictr", "root")


def parse(mode: str | None, mapping: str | None) -> dict:
    """Return ``{"uid_map": [[0, host, count]], "gid_map": [...]}`` for the options."""
    if mode not in (None, "", "private", "host"):
        raise InvalidArgument(
            f"invalid --userns {mode!r}: use 'private' (a range from /etc/subuid)"
            " or 'host'"
        )
    if mode == "host" and mapping:
        raise InvalidArgument("--userns host and --userns-map contradict each other")
    if mapping:
        host, count = _parse_mapping(mapping)
        return {"uid_map": [[0, host, count]], "gid_map": [[0, host, count]]}
    uid_range = subordinate_range("/etc/subuid")
    gid_range = subordinate_range("/etc/subgid")
    return {"uid_map": [[0, *uid_range]], "gid_map": [[0, *gid_range]]}


def _parse_mapping(mapping: str) -> tuple[int, int]:
    host_text, sep, count_text = mapping.partition(":")
    if not sep or not host_text.isdigit() or not count_text.isdigit():
        raise InvalidArgument(
            f"invalid --userns-map {mapping!r}: expected HOSTID:COUNT, such as"
            " 100000:65536"
        )
    host, count = int(host_text), int(count_text)
    if host == 0:
        raise InvalidArgument(
            f"invalid --userns-map {mapping!r}: mapping the container's root to"
            " host uid 0 isolates nothing; choose an unused range such as 100000"
        )
    if count < 1 or host + count > 2**32 - 1:
        raise InvalidArgument(
            f"invalid --userns-map {mapping!r}: COUNT must be at least 1 and the"
            " range must end below 4294967295"
        )
    return host, count


def subordinate_range(path: str) -> tuple[int, int]:
    """Return (first, count) of the range for minictr or root in ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for user in SUBID_USERS:
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] == user and parts[1].isdigit():
                return int(parts[1]), int(parts[2])
    raise InvalidArgument(
        f"--userns private needs a range for user minictr or root in {path};"
        f" add a line such as 'root:100000:65536' to /etc/subuid and"
        " /etc/subgid, or pass --userns-map 100000:65536"
    )


def map_id(value: int, id_map: list[list[int]]) -> int:
    """Return the host id of container id ``value``, or the overflow id 65534."""
    for inside, outside, count in id_map:
        if inside <= value < inside + count:
            return outside + value - inside
    return 65534


# ---- on the host, before fork ----------------------------------------------


def prepare_rootfs(config, container_dir: str) -> None:
    """Give the container's files ids inside its range; point lowers at copies.

    Replaces ``config.lower_dirs`` for this run with shifted copies and
    gives the upper directory and the generated /etc files to the
    container's root.
    """
    userns = config.security.get("userns")
    if not userns:
        return
    from .. import paths

    uid_map, gid_map = userns["uid_map"], userns["gid_map"]
    config.lower_dirs = [
        shifted_copy(lower, uid_map, gid_map, paths.state_root())
        for lower in config.lower_dirs
    ]
    root_uid, root_gid = map_id(0, uid_map), map_id(0, gid_map)
    for name in ("upper", "hostname", "hosts", "resolv.conf"):
        path = os.path.join(container_dir, name)
        if os.path.lexists(path):
            os.lchown(path, root_uid, root_gid)


def shifted_copy(lower: str, uid_map, gid_map, state_root: str) -> str:
    """Return a copy of ``lower`` whose owners are shifted by the maps; cached.

    NOTE: the cache key is the directory's path, its top-level mtime and the
    maps, so a change deep inside a ROOTFS directory is not seen until the
    cache directory is removed. Image layers never change.
    """
    top = os.stat(lower)
    key = hashlib.sha256(
        f"{os.path.realpath(lower)}|{top.st_mtime_ns}|{uid_map}|{gid_map}".encode()
    ).hexdigest()[:24]
    target = os.path.join(state_root, "userns", key)
    if os.path.isdir(target):
        return target
    temporary = f"{target}.{os.getpid()}.tmp"
    log.debug("copy %s to %s with ids shifted into the user namespace", lower, target)
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    shutil.copytree(lower, temporary, symlinks=True)
    _shift_tree(lower, temporary, uid_map, gid_map)
    os.rename(temporary, target)
    return target


def _shift_tree(source: str, copy: str, uid_map, gid_map) -> None:
    """Give each path under ``copy`` the mapped owner of its twin in ``source``.

    copytree keeps modes but not owners, so owners are read from the source.
    """
    # Each directory is handled once, when the walk reaches it; symbolic
    # links to directories are listed in dirnames but never walked into.
    # chown clears setuid and setgid bits, so the mode is set again after it.
    for directory, dirnames, filenames in os.walk(source):
        links = [d for d in dirnames if os.path.islink(os.path.join(directory, d))]
        relative = os.path.relpath(directory, source)
        for name in [*links, *filenames, None]:
            inner = relative if name is None else os.path.join(relative, name)
            info = os.lstat(os.path.join(source, inner))
            path = os.path.normpath(os.path.join(copy, inner))
            os.lchown(path, map_id(info.st_uid, uid_map), map_id(info.st_gid, gid_map))
            if not stat.S_ISLNK(info.st_mode):
                os.chmod(path, stat.S_IMODE(info.st_mode))


# ---- in PID 1, before exec -------------------------------------------------


def enter(userns: dict) -> None:
    """Move this process into a new user namespace as its root.

    A helper child stays in the parent namespace and writes the maps. This
    process then takes uid and gid 0 inside, the first ids of the host range.
    """
    from .. import syscalls as sc

    go_r, go_w = os.pipe()
    error_r, error_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(go_w)
        os.close(error_r)
        _write_maps_when_told(go_r, error_w, os.getppid(), userns)
    os.close(go_r)
    os.close(error_w)
    try:
        sc.unshare(sc.CLONE_NEWUSER)
    finally:
        os.close(go_w)  # the helper's read returns once the pipe is closed
    _, status = os.waitpid(helper, 0)
    message = os.read(error_r, 4096).decode(errors="replace")
    os.close(error_r)
    if status != 0 or message:
        raise KernelError(f"writing the user namespace maps failed: {message}")
    log.debug(
        "user namespace entered: uid_map %s gid_map %s",
        userns["uid_map"],
        userns["gid_map"],
    )
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _write_maps_when_told(go_r: int, error_w: int, pid: int, userns: dict) -> None:
    try:
        os.read(go_r, 1)
        for name in ("uid_map", "gid_map"):
            text = "".join(f"{a} {b} {c}\n" for a, b, c in userns[name])
            log.debug("write %r to /proc/%d/%s", text.strip(), pid, name)
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        os.write(error_w, str(exc).encode())
        os._exit(1)
