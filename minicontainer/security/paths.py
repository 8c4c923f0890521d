"""Masked and read-only paths: the parts of /proc and /sys a container must not use.

/proc and /sys mounted inside a container still show host-wide kernel
state. Some files leak it (``/proc/kcore`` is the host's memory,
``/proc/keys`` the keyrings, ``/proc/timer_list`` other processes'
timers); others change it (``/proc/sysrq-trigger`` can reboot the host,
``/proc/sys`` holds the sysctls that are not namespaced). A masked file gets
``/dev/null`` bind-mounted over it and a masked directory an empty
read-only tmpfs; a read-only path is bind-mounted onto itself and remounted
read-only. These run after pivot_root, on container paths, and only when
the container is not privileged.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .. import syscalls as sc
from ..steps import Mount, Step

MASKED = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READ_ONLY = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# statvfs f_flag bits share their values with the MS_ mount flags.
_KEPT_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


@dataclass
class MaskPath(Step):
    """Hide ``path`` if it exists: /dev/null over a file, empty tmpfs over a dir."""

    path: str

    def describe(self) -> str:
        return f"mask {self.path} (if it exists)"

    def apply(self) -> None:
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            Mount("tmpfs", self.path, "tmpfs", sc.MS_RDONLY, "size=0,mode=555").run()
        else:
            Mount("/dev/null", self.path, None, sc.MS_BIND).run()


@dataclass
class ReadOnlyPath(Step):
    """Bind ``path`` onto itself and remount it read-only, keeping its flags.

    A bind remount changes only the flags named in the call, so nosuid,
    nodev and noexec of the underlying /proc mount are named again; inside a
    user namespace the kernel rejects a remount that would drop them.
    """

    path: str

    def describe(self) -> str:
        return f"make {self.path} read-only (if it exists)"

    def apply(self) -> None:
        if not os.path.lexists(self.path):
            return
        Mount(self.path, self.path, None, sc.MS_BIND | sc.MS_REC).run()
        kept = os.statvfs(self.path).f_flag & _KEPT_FLAGS
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | kept
        Mount(None, self.path, None, flags).run()


def steps(privileged: bool) -> list[Step]:
    """Return the masking and read-only steps, none for a privileged container."""
    if privileged:
        return []
    plan: list[Step] = [MaskPath(path) for path in MASKED]
    plan += [ReadOnlyPath(path) for path in READ_ONLY]
    return plan
