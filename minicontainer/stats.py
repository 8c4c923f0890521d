"""Resource usage of running containers, read from their cgroups.

The numbers come from the container's own cgroup files (``memory.current``
or ``memory.usage_in_bytes``, ``cpu.stat`` or ``cpuacct.usage``,
``pids.current``, ``io.stat`` or ``blkio.throttle.io_service_bytes``), so they
cover every process in the container, including those started by ``exec``.
CPU time is cumulative; a percentage needs two samples.
"""

from __future__ import annotations

import time
from typing import Any

from . import state
from .errors import CgroupError, Conflict


def sample(reference: str) -> dict[str, Any]:
    """Return one reading of the container's usage and limits.

    Keys: ``id``, ``name``, ``time`` (monotonic seconds), and ``memory``,
    ``cpu``, ``pids``, ``io`` as returned by ``Cgroup.stats()``.
    """
    from .cliopts.cgroups import stats_for
    from .lifecycle import current_state

    container_id = state.find(reference)
    record = current_state(container_id)
    if record.get("status") != "running" or not record.get("cgroup"):
        raise Conflict(f"container {reference} is not running: start it first")
    try:
        numbers = stats_for(record["cgroup"])
    except CgroupError as exc:
        raise Conflict(f"container {reference} is not running: {exc}") from exc
    return {
        "id": container_id,
        "name": state.read_config(container_id).name,
        "time": time.monotonic(),
        **numbers,
    }


def cpu_percent(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """Return the CPU use between two samples, in percent of one CPU."""
    used_before = before["cpu"].get("usage_ns")
    used_after = after["cpu"].get("usage_ns")
    elapsed = after["time"] - before["time"]
    if used_before is None or used_after is None or elapsed <= 0:
        return None
    return (used_after - used_before) / (elapsed * 1e9) * 100


def measure(references: list[str], interval: float = 0.5) -> list[dict[str, Any]]:
    """Sample each container twice, ``interval`` seconds apart, adding ``cpu_percent``."""
    first = [sample(ref) for ref in references]
    time.sleep(interval)
    result = []
    for ref, before in zip(references, first):
        after = sample(ref)
        after["cpu_percent"] = cpu_percent(before, after)
        result.append(after)
    return result
