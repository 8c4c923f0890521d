"""cgroup v1: one hierarchy per controller, each with its own directory tree.

On a v1 (or hybrid) host a container's cgroup is a directory of the same
name in every hierarchy: /sys/fs/cgroup/memory/minictr/ID,
/sys/fs/cgroup/pids/minictr/ID, and so on. A process joins each hierarchy
separately, by writing its pid to ``cgroup.procs`` in each directory.

The limits used here (Documentation/admin-guide/cgroup-v1/):
``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes`` (memory plus swap;
present only with swap accounting), ``memory.soft_limit_in_bytes``,
``cpu.cfs_period_us``/``cpu.cfs_quota_us``, ``cpu.shares``,
``cpuset.cpus``/``cpuset.mems``, ``pids.max``, ``blkio.weight`` (present only
with the BFQ I/O scheduler) and ``blkio.throttle.{read,write}_bps_device``.
A new cpuset cgroup starts with no CPUs and no memory nodes, and the kernel
rejects a process that joins it then, so each new level copies its parent's.
"""

from __future__ import annotations

import os
from typing import Any

from . import fs
from .fs import Setting


def settings(resources: dict[str, Any]) -> list[Setting]:
    """Plan the cgroup v1 files to write for ``config.resources``, in order."""
    planned: list[Setting] = []
    memory = resources.get("memory", {})
    # memory.limit_in_bytes goes first: the kernel keeps memsw >= memory.
    if "limit" in memory:
        planned.append(Setting("memory.limit_in_bytes", str(memory["limit"])))
    if "swap" in memory:
        planned.append(Setting("memory.memsw.limit_in_bytes", str(memory["swap"])))
    elif "limit" in memory:
        # Docker's default without --memory-swap: as much swap as memory. The
        # file is missing without swap accounting, which is fine here.
        doubled = str(2 * memory["limit"])
        planned.append(Setting("memory.memsw.limit_in_bytes", doubled, required=False))
    if "reservation" in memory:
        planned.append(
            Setting("memory.soft_limit_in_bytes", str(memory["reservation"]))
        )

    cpu = resources.get("cpu", {})
    if "quota" in cpu:
        planned.append(Setting("cpu.cfs_period_us", str(cpu["period"])))
        planned.append(Setting("cpu.cfs_quota_us", str(cpu["quota"])))
    if "shares" in cpu:
        planned.append(Setting("cpu.shares", str(cpu["shares"])))
    if "cpus" in cpu:
        planned.append(Setting("cpuset.cpus", cpu["cpus"]))
    if "mems" in cpu:
        planned.append(Setting("cpuset.mems", cpu["mems"]))

    pids = resources.get("pids", {})
    if "limit" in pids:
        planned.append(Setting("pids.max", str(pids["limit"])))

    block_io = resources.get("blockIO", {})
    if "weight" in block_io:
        planned.append(Setting("blkio.weight", str(block_io["weight"])))
    for key, name in (
        ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
        ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
    ):
        for device in block_io.get(key, []):
            line = f"{device['major']}:{device['minor']} {device['rate']}"
            planned.append(Setting(name, line))
    return planned


def make_dirs(mount_point: str, relative: str, is_cpuset: bool) -> list[str]:
    """Create ``mount_point/relative`` level by level; return the new directories."""
    created: list[str] = []
    directory = mount_point
    for part in relative.split("/"):
        parent, directory = directory, os.path.join(directory, part)
        if fs.make_dir(directory):
            created.append(directory)
        if is_cpuset:
            _inherit_cpuset(parent, directory)
    return created


def _inherit_cpuset(parent: str, directory: str) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not fs.read(os.path.join(directory, name)).strip():
            value = fs.read(os.path.join(parent, name)).strip()
            fs.CgroupWrite(os.path.join(directory, name), value).run()


def oom_kills(directory: str) -> int:
    """Return the ``oom_kill`` count of ``memory.oom_control`` (0 without it).

    The count exists since Linux 4.13; older kernels show only ``under_oom``,
    which is 0 again once the killed process has gone.
    """
    try:
        return fs.read_keyed(os.path.join(directory, "memory.oom_control")).get(
            "oom_kill", 0
        )
    except FileNotFoundError:
        return 0


def stats(dirs: dict[str, str]) -> dict[str, Any]:
    """Read memory, CPU, pids and I/O numbers from each controller's directory."""
    read_bytes = write_bytes = None
    io_text = _read(dirs, "blkio", "blkio.throttle.io_service_bytes_recursive")
    if io_text is not None:
        read_bytes = write_bytes = 0
        for line in io_text.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] == "Read":
                read_bytes += int(fields[2])
            elif len(fields) == 3 and fields[1] == "Write":
                write_bytes += int(fields[2])
    return {
        "memory": {
            "usage": _number(_read(dirs, "memory", "memory.usage_in_bytes")),
            "limit": _number(_read(dirs, "memory", "memory.limit_in_bytes")),
        },
        "cpu": {"usage_ns": _number(_read(dirs, "cpuacct", "cpuacct.usage"))},
        "pids": {
            "current": _number(_read(dirs, "pids", "pids.current")),
            "limit": _number(_read(dirs, "pids", "pids.max")),
        },
        "io": {"read_bytes": read_bytes, "write_bytes": write_bytes},
    }


# cgroup v1 shows "no limit" as the largest page-aligned counter, such as
# 9223372036854771712 on x86-64; anything this large is no limit.
_UNLIMITED = 1 << 62


def _number(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    value = int(text)
    return None if value >= _UNLIMITED else value


def _read(dirs: dict[str, str], controller: str, name: str) -> str | None:
    directory = dirs.get(controller)
    if directory is None:
        return None
    try:
        return fs.read(os.path.join(directory, name))
    except FileNotFoundError:
        return None
