"""ctypes wrappers for the security calls that Python and python-prctl lack.

``capset`` sets the three per-thread capability sets in one call,
``prctl`` takes up to four arguments here (the ambient set and the bounding
set need two or three), and ``load_seccomp_filter`` hands a classic BPF
program to the kernel. A failing call raises ``KernelError`` naming the call
and its arguments, like ``minicontainer.syscalls`` does for mounts.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import os

from ..errors import KernelError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long

# prctl options, from <linux/prctl.h>.
PR_SET_SECCOMP = 22
PR_SET_KEEPCAPS = 8
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

# capset(2) with version 3 takes two 32-bit words per set, for capabilities
# 0 to 63.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "riscv64": 91}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _Rlimit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_uint64), ("hard", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _fail(call: str) -> KernelError:
    err = ctypes.get_errno()
    name = errno_module.errorcode.get(err, str(err))
    return KernelError(f"{call} failed: {os.strerror(err)} ({name})", err)


def prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "") -> int:
    """Call prctl(2) and return its result; ``what`` names the call in errors."""
    result = _libc.prctl(option, arg2, arg3, 0, 0)
    if result < 0:
        raise _fail(what or f"prctl({option}, {arg2}, {arg3})")
    return result


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets from 64-bit masks."""
    number = _SYS_CAPSET.get(os.uname().machine)
    if number is None:
        raise KernelError(f"capset: no syscall number known for {os.uname().machine}")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for word in (0, 1):
        shift = 32 * word
        data[word].effective = (effective >> shift) & 0xFFFFFFFF
        data[word].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[word].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.syscall(number, ctypes.byref(header), data) != 0:
        raise _fail(
            f"capset(effective={effective:#x}, permitted={permitted:#x},"
            f" inheritable={inheritable:#x})"
        )


def load_seccomp_filter(program: bytes) -> None:
    """Install ``program`` (packed ``struct sock_filter`` entries) as a filter.

    The kernel accepts it only when no_new_privs is set or the caller has
    CAP_SYS_ADMIN, so that a filter cannot fool a setuid program.
    """
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0):
        raise _fail(f"prctl(PR_SET_SECCOMP, {len(program) // 8} BPF instructions)")


def setrlimit(resource: int, soft: int, hard: int, what: str) -> None:
    """Call setrlimit(2); ctypes spares importing the ``resource`` extension."""
    limit = _Rlimit(soft, hard)
    if _libc.setrlimit(resource, ctypes.byref(limit)) != 0:
        raise _fail(what)


def getrlimit(resource: int) -> tuple[int, int]:
    """Return the (soft, hard) limit of ``resource`` for this process."""
    limit = _Rlimit()
    if _libc.getrlimit(resource, ctypes.byref(limit)) != 0:
        raise _fail(f"getrlimit({resource})")
    return limit.soft, limit.hard
