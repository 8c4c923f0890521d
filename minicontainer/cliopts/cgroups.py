"""The resource limit options of `minictr run` and `minictr create`.

The options and their units follow `docker run`. ``to_config`` validates
them into ``config.resources`` before anything is created; ``stats_for``
reads the numbers that `minictr stats` prints.
"""

from __future__ import annotations

from typing import Any

import click

from ..cgroups import limits

OPTIONS = [
    click.option(
        "-m",
        "--memory",
        default=None,
        help="Memory limit in bytes, or with a unit b, k, m, g, t or p (for"
        " example 64m).",
    ),
    click.option(
        "--memory-swap",
        default=None,
        help="Limit of memory plus swap, with a unit as for --memory; -1 for"
        " unlimited swap (default: twice --memory).",
    ),
    click.option(
        "--memory-reservation",
        default=None,
        help="Soft memory limit, with a unit as for --memory, that the kernel"
        " reclaims toward under memory pressure.",
    ),
    click.option(
        "--cpus",
        default=None,
        help="Number of CPUs the container may use, as a decimal (for example 0.5).",
    ),
    click.option(
        "--cpu-shares",
        type=int,
        default=None,
        help="Relative CPU weight, 2 to 262144 (default 1024).",
    ),
    click.option(
        "--cpuset-cpus",
        default=None,
        help="CPUs the container may run on, as a list (for example 0-2,4).",
    ),
    click.option(
        "--cpuset-mems",
        default=None,
        help="NUMA memory nodes the container may use, as a list (for example 0).",
    ),
    click.option(
        "--pids-limit",
        type=int,
        default=None,
        help="Maximum number of processes and threads; 0 or -1 for unlimited.",
    ),
    click.option(
        "--device-read-bps",
        multiple=True,
        help="Read rate limit of a block device, DEVICE:RATE in bytes per second"
        " with a unit b, k, m, g, t or p (for example /dev/sda:1m). Repeatable.",
    ),
    click.option(
        "--device-write-bps",
        multiple=True,
        help="Write rate limit of a block device, DEVICE:RATE in bytes per second"
        " with a unit b, k, m, g, t or p (for example /dev/sda:1m). Repeatable.",
    ),
    click.option(
        "--blkio-weight",
        type=int,
        default=None,
        help="Relative block I/O weight, 10 to 1000.",
    ),
    click.option(
        "--cgroup-parent",
        default=None,
        help="Parent cgroup of the container's cgroup, a path below the root of"
        " each hierarchy: lab/students and /lab/students are the same. A parent"
        " that minictr creates is removed again once its last container is gone"
        " (default: minictr, which stays).",
    ),
]

_KEYS = (
    "memory",
    "memory_swap",
    "memory_reservation",
    "cpus",
    "cpu_shares",
    "cpuset_cpus",
    "cpuset_mems",
    "pids_limit",
    "device_read_bps",
    "device_write_bps",
    "blkio_weight",
)


def to_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop this module's options from ``kwargs`` and validate them.

    Returns ``{"resources": config.resources, "cgroup_parent": str}``.
    Raises InvalidArgument naming the first invalid value.
    """
    values = {key: kwargs.pop(key, None) for key in _KEYS}
    parent = limits.validate_cgroup_parent(kwargs.pop("cgroup_parent", None))
    return {"resources": limits.parse_resources(values), "cgroup_parent": parent}


def stats_for(cgroup: dict[str, Any]) -> dict[str, Any]:
    """Read the usage numbers of a container's cgroup, saved with ``to_dict()``.

    Returns ``{"memory": {"usage": bytes, "limit": bytes},
    "cpu": {"usage_ns": nanoseconds}, "pids": {"current": n, "limit": n},
    "io": {"read_bytes": bytes, "write_bytes": bytes}}``, where None means
    no limit, or a number the host cannot provide. CPU time is cumulative:
    a CPU percentage is the difference of two samples divided by the time
    between them. Raises CgroupError if the cgroup no longer exists.
    """
    from ..cgroups import Cgroup
    from ..errors import CgroupError

    group = Cgroup.from_dict(cgroup)
    if not group.exists():
        raise CgroupError(
            f"cgroup {group.path} does not exist: the container is not running"
        )
    return group.stats()
