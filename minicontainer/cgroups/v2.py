"""cgroup v2: one unified hierarchy, with limits in controller-prefixed files.

A cgroup v2 controller works in a cgroup only if its parent lists it in
``cgroup.subtree_control``, and enabling it there needs the grandparent to
have enabled it, up to the root. A cgroup (other than the root) that enables
controllers for its children may not hold processes itself: the "no internal
processes" rule. So the runtime enables controllers top-down in the parent
cgroups and puts processes only in each container's leaf cgroup.

The limits used here (Documentation/admin-guide/cgroup-v2.rst):
``memory.max``, ``memory.swap.max`` (swap alone, unlike v1's memory+swap),
``memory.low``, ``cpu.max`` ("QUOTA PERIOD" in microseconds), ``cpu.weight``
(1 to 10000), ``cpuset.cpus``/``cpuset.mems``, ``pids.max``, ``io.weight``
and ``io.max`` ("MAJOR:MINOR rbps=N wbps=N").
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import CgroupError
from . import fs
from .fs import Setting

log = logging.getLogger(__name__)

# Controllers enabled for every container when the host offers them, so that
# stats and the OOM flag work even without a limit.
DEFAULT_CONTROLLERS = ("cpu", "io", "memory", "pids")


def shares_to_weight(shares: int) -> int:
    """Map cgroup v1 ``cpu.shares`` (2 to 262144) onto ``cpu.weight`` (1 to 10000).

    The map is linear, so the default 1024 shares becomes weight 39, as in
    runc and crun (not the v2 default of 100).
    """
    return 1 + (shares - 2) * 9999 // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """Map ``blkio.weight`` (10 to 1000) onto ``io.weight`` (1 to 10000), linearly."""
    return 1 + (weight - 10) * 9999 // 990


def settings(resources: dict[str, Any]) -> list[Setting]:
    """Plan the cgroup v2 files to write for ``config.resources``, in order."""
    planned: list[Setting] = []
    memory = resources.get("memory", {})
    if "limit" in memory:
        planned.append(Setting("memory.max", str(memory["limit"])))
    if memory.get("swap") == -1:
        planned.append(Setting("memory.swap.max", "max"))
    elif "swap" in memory:
        planned.append(
            Setting("memory.swap.max", str(memory["swap"] - memory["limit"]))
        )
    elif "limit" in memory:
        # Docker's default without --memory-swap: as much swap as memory. The
        # file is missing when swap accounting is off, which is fine here.
        planned.append(Setting("memory.swap.max", str(memory["limit"]), required=False))
    if "reservation" in memory:
        planned.append(Setting("memory.low", str(memory["reservation"])))

    cpu = resources.get("cpu", {})
    if "quota" in cpu:
        planned.append(Setting("cpu.max", f"{cpu['quota']} {cpu['period']}"))
    if "shares" in cpu:
        planned.append(Setting("cpu.weight", str(shares_to_weight(cpu["shares"]))))
    if "cpus" in cpu:
        planned.append(Setting("cpuset.cpus", cpu["cpus"]))
    if "mems" in cpu:
        planned.append(Setting("cpuset.mems", cpu["mems"]))

    pids = resources.get("pids", {})
    if "limit" in pids:
        planned.append(Setting("pids.max", str(pids["limit"])))

    block_io = resources.get("blockIO", {})
    if "weight" in block_io:
        weight = blkio_weight_to_io_weight(block_io["weight"])
        planned.append(Setting("io.weight", f"default {weight}"))
    planned.extend(Setting("io.max", line) for line in _io_max_lines(block_io))
    return planned


def _io_max_lines(block_io: dict[str, Any]) -> list[str]:
    limits: dict[tuple[int, int], list[str]] = {}
    for key, name in (
        ("throttleReadBpsDevice", "rbps"),
        ("throttleWriteBpsDevice", "wbps"),
    ):
        for device in block_io.get(key, []):
            numbers = (device["major"], device["minor"])
            limits.setdefault(numbers, []).append(f"{name}={device['rate']}")
    return [
        f"{major}:{minor} {' '.join(keys)}" for (major, minor), keys in limits.items()
    ]


def enable_controllers(
    root: str, relative: str, controllers: list[str], required: set[str]
) -> list[str]:
    """Enable ``controllers`` in ``cgroup.subtree_control`` from ``root`` down.

    Each directory from the hierarchy's root down to ``root/relative`` gets
    them, creating missing directories on the way. Returns the directories
    created, so that a failure can remove them. A controller that is not in
    ``required`` is skipped when the kernel rejects it (for example ``cpu``
    while a real-time process runs in a child cgroup).
    """
    created: list[str] = []
    directory = root
    for part in ["", *relative.split("/")]:
        directory = os.path.join(directory, part) if part else directory
        if part and fs.make_dir(directory):
            created.append(directory)
        control = os.path.join(directory, "cgroup.subtree_control")
        enabled = set(fs.read(control).split())
        for controller in controllers:
            if controller in enabled:
                continue
            try:
                fs.CgroupWrite(control, f"+{controller}").run()
            except CgroupError:
                if controller in required:
                    raise
                log.warning(
                    "cannot enable the %s controller in %s", controller, directory
                )
    return created


def oom_kills(directory: str) -> int:
    """Return the ``oom_kill`` count of ``memory.events`` (0 without the file)."""
    try:
        return fs.read_keyed(os.path.join(directory, "memory.events")).get(
            "oom_kill", 0
        )
    except FileNotFoundError:
        return 0


def stats(directory: str) -> dict[str, Any]:
    """Read memory, CPU, pids and I/O numbers of the cgroup at ``directory``."""
    read_bytes = write_bytes = None
    io_stat = _read_optional(directory, "io.stat")
    if io_stat is not None:
        read_bytes = write_bytes = 0
        for line in io_stat.splitlines():
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            read_bytes += int(fields.get("rbytes", 0))
            write_bytes += int(fields.get("wbytes", 0))
    cpu_stat = _read_optional(directory, "cpu.stat")
    usage_us = None
    if cpu_stat is not None:
        usage_us = fs.read_keyed(os.path.join(directory, "cpu.stat")).get("usage_usec")
    return {
        "memory": {
            "usage": _number(_read_optional(directory, "memory.current")),
            "limit": _number(_read_optional(directory, "memory.max")),
        },
        "cpu": {"usage_ns": usage_us * 1000 if usage_us is not None else None},
        "pids": {
            "current": _number(_read_optional(directory, "pids.current")),
            "limit": _number(_read_optional(directory, "pids.max")),
        },
        "io": {"read_bytes": read_bytes, "write_bytes": write_bytes},
    }


def _read_optional(directory: str, name: str) -> str | None:
    try:
        return fs.read(os.path.join(directory, name))
    except FileNotFoundError:
        return None


def _number(text: str | None) -> int | None:
    """Parse a counter or limit; "max" (no limit) and a missing file give None."""
    if text is None or not text.strip().isdigit():
        return None
    return int(text)
