"""Thin ctypes wrappers for the system calls that Python 3.11 lacks.

Python 3.11 has ``os.fork`` and ``os.execvpe`` but no ``unshare``, ``setns``,
``mount``, ``umount2`` or ``pivot_root``. This module calls them in libc and
turns a failing call into ``KernelError`` whose message names the call, its
path and its flags by name, so a failed mount reads
``mount overlay on /x (type overlay, flags MS_NOSUID|MS_NODEV) failed: ...``.
Nothing above this module calls libc directly.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import os

from .errors import KernelError

_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags, from <linux/sched.h>.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

CLONE_FLAG_NAMES = {
    CLONE_NEWNS: "CLONE_NEWNS",
    CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWUSER: "CLONE_NEWUSER",
    CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWNET: "CLONE_NEWNET",
    CLONE_NEWTIME: "CLONE_NEWTIME",
}

# Mount flags, from <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MOUNT_FLAG_NAMES = {
    MS_RDONLY: "MS_RDONLY",
    MS_NOSUID: "MS_NOSUID",
    MS_NODEV: "MS_NODEV",
    MS_NOEXEC: "MS_NOEXEC",
    MS_SYNCHRONOUS: "MS_SYNCHRONOUS",
    MS_REMOUNT: "MS_REMOUNT",
    MS_MANDLOCK: "MS_MANDLOCK",
    MS_DIRSYNC: "MS_DIRSYNC",
    MS_NOSYMFOLLOW: "MS_NOSYMFOLLOW",
    MS_NOATIME: "MS_NOATIME",
    MS_NODIRATIME: "MS_NODIRATIME",
    MS_BIND: "MS_BIND",
    MS_MOVE: "MS_MOVE",
    MS_REC: "MS_REC",
    MS_SILENT: "MS_SILENT",
    MS_UNBINDABLE: "MS_UNBINDABLE",
    MS_PRIVATE: "MS_PRIVATE",
    MS_SLAVE: "MS_SLAVE",
    MS_SHARED: "MS_SHARED",
    MS_RELATIME: "MS_RELATIME",
    MS_STRICTATIME: "MS_STRICTATIME",
}

# umount2 flags.
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# prctl options, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long


def _pivot_root_nr() -> int:
    machine = os.uname().machine
    if machine == "x86_64":
        return 155
    if machine in ("aarch64", "riscv64"):
        return 41
    raise KernelError(f"pivot_root: no syscall number known for {machine}")


def clone_flag_names(flags: int) -> str:
    """Return ``flags`` as ``CLONE_NEWNS|CLONE_NEWPID``, for messages."""
    return _flag_names(flags, CLONE_FLAG_NAMES)


def mount_flag_names(flags: int) -> str:
    """Return ``flags`` as ``MS_BIND|MS_REC``, for messages; 0 gives ``0``."""
    return _flag_names(flags, MOUNT_FLAG_NAMES)


def _flag_names(flags: int, table: dict[int, str]) -> str:
    names = [name for bit, name in table.items() if flags & bit]
    rest = flags & ~sum(table)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def _fail(call: str) -> KernelError:
    err = ctypes.get_errno()
    hint = _HINTS.get((call.split(" ", 1)[0], err), "")
    message = (
        f"{call} failed: {os.strerror(err)} ({errno_module.errorcode.get(err, err)})"
    )
    if hint:
        message += f"; {hint}"
    return KernelError(message, err)


# Errnos that mislead without context, with the likely cause.
_HINTS = {
    ("pivot_root", errno_module.EINVAL): (
        "the new root must be a mount point and no mount on the path may be shared"
    ),
    (
        "mount",
        errno_module.ENODEV,
    ): "the file system type is not available in this kernel",
    (
        "unshare",
        errno_module.EPERM,
    ): "creating namespaces requires root (CAP_SYS_ADMIN)",
    (
        "unshare",
        errno_module.EINVAL,
    ): "this kernel lacks one of the namespaces requested",
}


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces of the kinds in ``flags``."""
    if _libc.unshare(flags) != 0:
        raise _fail(f"unshare({clone_flag_names(flags)})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that ``fd`` (an open ``/proc/PID/ns/*`` file) refers to."""
    if _libc.setns(fd, nstype) != 0:
        raise _fail(f"setns({os.readlink(f'/proc/self/fd/{fd}')})")


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """Call mount(2); the error names source, target, type, flags and data."""
    rc = _libc.mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        flags,
        data.encode() if data is not None else None,
    )
    if rc != 0:
        detail = f"type {fstype or 'none'}, flags {mount_flag_names(flags)}"
        if data:
            detail += f", data {data!r}"
        raise _fail(f"mount {source or 'none'} on {target} ({detail})")


def umount2(target: str, flags: int = 0) -> None:
    """Unmount ``target``; ``MNT_DETACH`` makes it lazy."""
    if _libc.umount2(target.encode(), flags) != 0:
        raise _fail(f"umount2 {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """Make ``new_root`` the root mount and move the old root to ``put_old``."""
    rc = _libc.syscall(_pivot_root_nr(), new_root.encode(), put_old.encode())
    if rc != 0:
        raise _fail(f"pivot_root {new_root} {put_old}")


# The mount API of Linux 5.2 and later. Syscalls numbered from 424 on have
# the same number on every architecture.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def open_tree_clone(path: str) -> int:
    """Return a descriptor for a detached copy of the mount tree at ``path``."""
    fd = _libc.syscall(
        ctypes.c_long(_SYS_OPEN_TREE),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(path.encode()),
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
    )
    if fd < 0:
        raise _fail(f"open_tree {path} (OPEN_TREE_CLONE)")
    return fd


def set_idmap(tree_fd: int, userns_fd: int, path: str) -> None:
    """Give the detached mount ``tree_fd`` the id mapping of a user namespace.

    ``path`` is where the mount was cloned from, for the error message.
    """
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    rc = _libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(tree_fd),
        ctypes.c_char_p(b""),
        ctypes.c_uint(AT_EMPTY_PATH),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if rc != 0:
        raise _fail(f"mount_setattr {path} (MOUNT_ATTR_IDMAP)")


def attach_tree(tree_fd: int, target: str) -> None:
    """Attach the detached mount ``tree_fd`` on ``target`` with move_mount(2)."""
    rc = _libc.syscall(
        ctypes.c_long(_SYS_MOVE_MOUNT),
        ctypes.c_int(tree_fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(target.encode()),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    if rc != 0:
        raise _fail(f"move_mount on {target}")


def sethostname(name: str) -> None:
    """Set the hostname of the calling process's UTS namespace."""
    data = name.encode()
    if _libc.sethostname(data, len(data)) != 0:
        raise _fail(f"sethostname {name!r}")


def prctl(option: int, arg2: int = 0) -> None:
    """Call prctl(2) with one argument; for the options python-prctl lacks."""
    if _libc.prctl(option, arg2, 0, 0, 0) != 0:
        raise _fail(f"prctl({option}, {arg2})")


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def set_link_up(name: str) -> None:
    """Set IFF_UP on interface ``name`` with ioctl, without loading netlink code."""
    import fcntl
    import struct

    # A datagram socket made through libc: the socket module costs a few
    # milliseconds to import, and this runs on every container start.
    sock = _libc.socket(2, 2, 0)  # AF_INET, SOCK_DGRAM
    if sock < 0:
        raise _fail("socket(AF_INET, SOCK_DGRAM)")
    try:
        request = struct.pack("16sH", name.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        request = struct.pack("16sH", name.encode(), flags | IFF_UP)
        fcntl.ioctl(sock, SIOCSIFFLAGS, request)
    except OSError as exc:
        message = f"ioctl SIOCSIFFLAGS {name} up failed: {exc.strerror}"
        raise KernelError(message, exc.errno or 0) from exc
    finally:
        os.close(sock)
