"""Resource limits with control groups (cgroups), on v2, v1 and hybrid hosts.

A cgroup is a directory in a special file system (cgroupfs). The processes
listed in its ``cgroup.procs`` file share the limits written to its other
files: ``memory.max`` caps their memory, ``pids.max`` the number of tasks,
``cpu.max`` their CPU time per period. Children of a process start in its
cgroup, so a container's whole process tree stays inside the limits once its
first process has joined. A cgroup namespace then makes that directory look
like ``/`` from inside the container.

Modules: ``layout`` finds the hierarchies from /proc/self/mountinfo and
/proc/self/cgroup; ``limits`` validates Docker-style options into
``config.resources``; ``v2`` and ``v1`` map those onto each version's files;
``cgroup`` creates, fills, reads and removes one container's cgroup; ``fs``
is the only code that reads and writes cgroupfs.
"""

from .cgroup import Cgroup, list_container_cgroups, remove_orphans
from .layout import Layout, detect
from .limits import parse_resources, validate_cgroup_parent

__all__ = [
    "Cgroup",
    "Layout",
    "detect",
    "list_container_cgroups",
    "parse_resources",
    "remove_orphans",
    "validate_cgroup_parent",
]
