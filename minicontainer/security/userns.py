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
up as ``nobody`` inside. An id-mapped mount (Linux 5.12 and later) fixes
that without touching the files: it is a view of a directory in which each
owner on disk is translated through the map of a user namespace, so host
uid 0 appears as the first id of the container's range. Overlayfs accepts
such views as lower layers (Linux 5.19 and later). Where the file system of
a layer cannot be id-mapped, minictr falls back to a copy of the layer with
ids shifted into the container's range, made once per directory and map,
under ``<state root>/userns/``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat

from ..errors import InvalidArgument, KernelError
from ..rootfs import LOWER_LINKS
from ..steps import AttachMount, Step

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


# Set to "off" to make --userns copy layers even where id-mapped mounts work,
# to compare the two methods or to work around a kernel bug.
IDMAP_ENV = "MINICTR_IDMAP"

# The errors of open_tree and mount_setattr that mean "this kernel or file
# system cannot do it", as opposed to a failure worth reporting.
_IDMAP_UNSUPPORTED = (
    errno.ENOSYS,
    errno.EINVAL,
    errno.EPERM,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
)


def prepare_rootfs(config, container_dir: str) -> list[Step]:
    """Give the container's files ids inside its range; return the layer steps.

    Each lower directory is shown through an id-mapped mount where its file
    system allows it, and through a shifted copy otherwise. The returned
    steps attach the id-mapped mounts in the container's mount namespace
    and must run before the overlay mount. ``config.lower_dirs`` is changed
    for this run, and ``config.security["userns"]["layers"]`` records the
    method used for each lower directory.
    """
    userns = config.security.get("userns")
    if not userns:
        return []
    from .. import paths

    uid_map, gid_map = userns["uid_map"], userns["gid_map"]
    steps: list[Step] = []
    lowers: list[str] = []
    methods: list[str] = []
    mapping_fd = None
    if os.environ.get(IDMAP_ENV, "").lower() not in ("off", "0", "no"):
        mapping_fd = _mapping_namespace(uid_map, gid_map)
    try:
        for index, lower in enumerate(config.lower_dirs):
            tree_fd = None if mapping_fd is None else _idmapped_tree(lower, mapping_fd)
            if tree_fd is None:
                lowers.append(shifted_copy(lower, uid_map, gid_map, paths.state_root()))
                methods.append("shifted copy")
                continue
            # The mount point doubles as the layer's short name in the
            # overlay's options (rootfs.link_lower_dirs).
            target = os.path.join(container_dir, LOWER_LINKS, str(index))
            if os.path.islink(target):
                os.unlink(target)
            os.makedirs(target, mode=0o700, exist_ok=True)
            steps.append(
                AttachMount(tree_fd, lower, target, "id-mapped by the user namespace")
            )
            lowers.append(target)
            methods.append("id-mapped mount")
    except BaseException:
        close_steps(steps)
        raise
    finally:
        if mapping_fd is not None:
            os.close(mapping_fd)
    config.lower_dirs = lowers
    userns["layers"] = methods
    root_uid, root_gid = map_id(0, uid_map), map_id(0, gid_map)
    for name in ("upper", "hostname", "hosts", "resolv.conf"):
        path = os.path.join(container_dir, name)
        if os.path.lexists(path):
            os.lchown(path, root_uid, root_gid)
    return steps


def close_steps(steps: list[Step]) -> None:
    """Close the detached mounts held by ``steps``, in the process that made them."""
    for step in steps:
        if isinstance(step, AttachMount):
            try:
                os.close(step.tree_fd)
            except OSError:
                pass


def _idmapped_tree(lower: str, mapping_fd: int) -> int | None:
    """Return a detached, id-mapped mount of ``lower``, or None if unsupported."""
    from .. import syscalls as sc

    try:
        tree_fd = sc.open_tree_clone(lower)
    except KernelError as exc:
        if exc.errno in _IDMAP_UNSUPPORTED:
            log.debug("no id-mapped mount for %s: %s", lower, exc)
            return None
        raise
    try:
        sc.set_idmap(tree_fd, mapping_fd, lower)
    except KernelError as exc:
        os.close(tree_fd)
        if exc.errno in _IDMAP_UNSUPPORTED:
            log.debug("no id-mapped mount for %s: %s", lower, exc)
            return None
        raise
    log.debug("id-mapped mount of %s made (open_tree, mount_setattr)", lower)
    return tree_fd


def _mapping_namespace(uid_map, gid_map) -> int | None:
    """Return a descriptor of a new user namespace with the container's maps.

    An id-mapped mount takes its map from a user namespace. A short-lived
    child creates one, the maps are written from here, and the open
    descriptor keeps the namespace alive after the child exits. Returns
    None where user namespaces cannot be created.
    """
    from .. import syscalls as sc

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(done_w)
        try:
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            log.debug("no user namespace for the id-mapped mounts: unshare failed")
            return None
        for name, id_map in (("uid_map", uid_map), ("gid_map", gid_map)):
            # The kernel takes a map from one write(2) only.
            text = "".join(f"{a} {b} {c}\n" for a, b, c in id_map)
            fd = os.open(f"/proc/{child}/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(child, 0)


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
    try:
        shutil.copytree(lower, temporary, symlinks=True, copy_function=_copy_entry)
        _shift_tree(lower, temporary, uid_map, gid_map)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise KernelError(
            f"copying {lower} with shifted owners for --userns failed: {_first(exc)};"
            " check free space under the state root"
        ) from exc
    os.rename(temporary, target)
    return target


def _copy_entry(source: str, destination: str) -> str:
    """Copy one non-directory entry, device nodes and FIFOs included.

    Image layers hold overlayfs whiteouts, character devices 0/0, which
    copy2 cannot copy because it opens and reads the file.
    """
    info = os.lstat(source)
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        os.mknod(destination, info.st_mode, info.st_rdev)
    elif stat.S_ISFIFO(info.st_mode):
        os.mkfifo(destination, stat.S_IMODE(info.st_mode))
    elif stat.S_ISSOCK(info.st_mode):
        return destination  # a socket file has no content to show
    else:
        return shutil.copy2(source, destination, follow_symlinks=False)
    shutil.copystat(source, destination, follow_symlinks=False)
    return destination


def _first(exc: BaseException) -> str:
    """Return one line for ``exc``; shutil.Error carries a list of failures."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        source, _, reason = exc.args[0][0]
        return f"{source}: {reason}"
    return str(exc)


def shift_owners(path: str, uid_map, gid_map) -> None:
    """Map the owner of ``path`` and of everything under it into the range, in place."""
    _shift_tree(path, path, uid_map, gid_map)


def _shift_tree(source: str, copy: str, uid_map, gid_map) -> None:
    """Give each path under ``copy`` the mapped owner of its twin in ``source``.

    copytree keeps modes but not owners, so owners are read from the source.
    """
    # Each directory is handled once, when the walk reaches it; symbolic
    # links to directories are listed in dirnames but never walked into.
    # chown clears setuid and setgid bits, so the mode is set again after it.
    # In place, a file with several hard links is shifted once only.
    in_place = source == copy
    shifted: set[tuple[int, int]] = set()
    for directory, dirnames, filenames in os.walk(source):
        links = [d for d in dirnames if os.path.islink(os.path.join(directory, d))]
        relative = os.path.relpath(directory, source)
        for name in [*links, *filenames, None]:
            inner = relative if name is None else os.path.join(relative, name)
            info = os.lstat(os.path.join(source, inner))
            if stat.S_ISSOCK(info.st_mode) and not in_place:
                continue  # not copied
            if in_place and info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in shifted:
                    continue
                shifted.add((info.st_dev, info.st_ino))
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
