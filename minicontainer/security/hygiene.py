"""Descriptor and /proc hygiene: no path back to the host from inside.

Two runc escapes show what goes wrong. In 2024 a descriptor for a host
directory leaked into the container's setup, and ``-w /proc/self/fd/N``
made the container start with its working directory on the host. In 2019 a
process in the container opened ``/proc/PID/exe`` of a runc process that
was joining it and overwrote the runc binary on the host. minictr's PID 1
closes every descriptor above 2 before exec, ``check_workdir`` rejects a
working directory that is not under the container's root, and a joining
process marks itself non-dumpable, which makes the kernel deny access to
its /proc files to anyone without CAP_SYS_PTRACE in the host's user
namespace.
"""

from __future__ import annotations

import logging
import os

from ..errors import MinictrError
from . import kernel

log = logging.getLogger(__name__)


def check_workdir() -> None:
    """Raise unless the working directory is reachable from the root.

    After pivot_root, getcwd(2) of a directory outside the new root
    returns a path starting with "(unreachable)", which glibc turns into
    ENOENT. A reachable path is then compared by inode, so a directory that
    merely has the same name inside the container does not pass.
    """
    try:
        cwd = os.getcwd()
    except OSError as exc:
        raise MinictrError(
            "the working directory is outside the container's root (a leaked"
            " descriptor, such as -w /proc/self/fd/N?); choose a path inside"
            " the container"
        ) from exc
    here = os.stat(".")
    try:
        named = os.stat(cwd)
    except OSError:
        named = None
    if (
        not cwd.startswith("/")
        or named is None
        or ((here.st_dev, here.st_ino) != (named.st_dev, named.st_ino))
    ):
        raise MinictrError(
            f"the working directory {cwd!r} is outside the container's root;"
            " choose a path inside the container"
        )


def harden_joining_process() -> None:
    """Set PR_SET_DUMPABLE to 0, so the container cannot open our /proc files.

    /proc/PID/exe, /proc/PID/fd/*, /proc/PID/cwd and /proc/PID/root of a
    non-dumpable process are open only to a caller holding CAP_SYS_PTRACE in
    the user namespace that owns the process's memory: the host's. Without
    this, a container process could open /proc/PID/exe of the joining
    Python interpreter once it has dropped to the container's capabilities,
    and write to the host's interpreter after it exits. The flag is copied
    to children by fork and reset by exec, after which /proc/PID/exe is the
    container's own program.
    """
    log.debug("prctl PR_SET_DUMPABLE 0 (hide this process's /proc files)")
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0, what="prctl(PR_SET_DUMPABLE, 0)")
