"""Find the cgroup hierarchies of this host: v2 (unified), v1, or hybrid.

A cgroup v1 host mounts one hierarchy per controller (or group of
controllers, such as ``cpu,cpuacct``) under /sys/fs/cgroup. A v2 host mounts a
single ``cgroup2`` hierarchy that holds every controller. A hybrid host has
both: the controllers stay on v1, and a mostly empty cgroup2 mount (often
/sys/fs/cgroup/unified) is there for systemd and for BPF programs.

Two kernel files settle which case this is. /proc/self/cgroup lists every
hierarchy that is active, one ``ID:CONTROLLERS:PATH`` line each (ID 0 is
cgroup2), and /proc/self/mountinfo says where each one is mounted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import CgroupError


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount_point: str
    # Controllers bound to a v1 hierarchy, with "name=systemd" for a named
    # one; empty for cgroup2, whose controllers are in cgroup.controllers.
    controllers: tuple[str, ...] = ()
    version: int = 1

    @property
    def mount_options(self) -> str:
        """The options that mount this v1 hierarchy again, such as ``cpu,cpuacct``."""
        names = [c for c in self.controllers if not c.startswith("name=")]
        named = [c for c in self.controllers if c.startswith("name=")]
        return ",".join(names + named) if names else ",".join(["none", *named])


@dataclass(frozen=True)
class Layout:
    """The cgroup hierarchies mounted on this host."""

    unified: Hierarchy | None
    v1: tuple[Hierarchy, ...] = ()
    # Controllers that the cgroup2 root offers (its cgroup.controllers).
    unified_controllers: frozenset[str] = field(default_factory=frozenset)

    @property
    def mode(self) -> str:
        """``"v2"``, ``"hybrid"`` or ``"v1"``."""
        if not self.v1:
            return "v2"
        return "hybrid" if self.unified else "v1"

    def v1_hierarchy(self, controller: str) -> Hierarchy | None:
        for hierarchy in self.v1:
            if controller in hierarchy.controllers:
                return hierarchy
        return None

    def controller_available(self, controller: str) -> bool:
        """Tell whether ``controller`` can be used on this host's layout.

        On a hybrid host a controller bound to a v1 hierarchy is used there,
        even if cgroup2 also lists it.
        """
        if self.v1_hierarchy(controller):
            return True
        return self.mode == "v2" and controller in self.unified_controllers


def _unescape(text: str) -> str:
    """Decode the octal escapes (``\\040`` for a space) of mountinfo fields."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """Return ``(mount point, fstype, super options)`` of each cgroup mount."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        fields = before.split()
        fstype, _source, super_options = (after.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((_unescape(fields[4]), fstype, super_options))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each hierarchy's controller list (``""`` for cgroup2) to a cgroup path."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def detect(
    mountinfo: str = "/proc/self/mountinfo", proc_cgroup: str = "/proc/self/cgroup"
) -> Layout:
    """Read the two kernel files and describe the mounted hierarchies.

    Raises CgroupError when no cgroup hierarchy is mounted at all.
    """
    with open(mountinfo) as file:
        mounts = parse_mountinfo(file.read())
    with open(proc_cgroup) as file:
        active = parse_proc_cgroup(file.read())

    unified = None
    v1: list[Hierarchy] = []
    for key in active:
        if key == "":
            unified = _find_unified(mounts)
        else:
            wanted = set(key.split(","))
            hierarchy = _find_v1(mounts, wanted)
            if hierarchy:
                v1.append(hierarchy)
    if unified is None and not v1:
        raise CgroupError(
            "no cgroup hierarchy is mounted: mount cgroup2 on /sys/fs/cgroup"
            " (mount -t cgroup2 none /sys/fs/cgroup)"
        )

    controllers: frozenset[str] = frozenset()
    if unified:
        path = os.path.join(unified.mount_point, "cgroup.controllers")
        with open(path) as file:
            controllers = frozenset(file.read().split())
    return Layout(unified=unified, v1=tuple(v1), unified_controllers=controllers)


def _find_unified(mounts: list[tuple[str, str, str]]) -> Hierarchy | None:
    points = [point for point, fstype, _ in mounts if fstype == "cgroup2"]
    if not points:
        return None
    # Prefer the conventional place when a hierarchy is mounted twice.
    points.sort(key=lambda p: not p.startswith("/sys/fs/cgroup"))
    return Hierarchy(mount_point=points[0], version=2)


def _find_v1(mounts: list[tuple[str, str, str]], wanted: set[str]) -> Hierarchy | None:
    for point, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        names = [o for o in options.split(",") if o not in ("rw", "ro")]
        if wanted <= set(names):
            controllers = tuple(n for n in names if n in wanted)
            return Hierarchy(mount_point=point, controllers=controllers)
    return None
