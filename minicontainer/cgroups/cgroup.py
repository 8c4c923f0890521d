"""One container's cgroup, in every hierarchy the host mounts."""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from typing import Any

from .. import syscalls
from ..errors import CgroupError
from ..steps import MakeDir, Mount, Step, Symlink
from . import fs, layout, v1, v2
from .fs import CgroupWrite, Setting

log = logging.getLogger(__name__)

UNIFIED = "unified"

# The parent of every container's cgroup unless --cgroup-parent names
# another. Like Docker's "docker" cgroup, it is shared and stays in place.
DEFAULT_PARENT = "minictr"

# A new parent can vanish between its mkdir and the leaf's when another
# container that created it is removed at that moment; create() retries.
_CREATE_ATTEMPTS = 3

# The options that set each controller's limits, for error messages.
_OPTIONS = {
    "memory": "--memory, --memory-swap or --memory-reservation",
    "cpu": "--cpus or --cpu-shares",
    "cpuset": "--cpuset-cpus or --cpuset-mems",
    "pids": "--pids-limit",
    "io": "--device-read-bps, --device-write-bps or --blkio-weight",
    "blkio": "--device-read-bps, --device-write-bps or --blkio-weight",
}

_READ_ONLY = (
    syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
)


class Cgroup:
    """A container's cgroup: the same relative path in each hierarchy.

    ``paths`` maps each v1 controller (``memory``, ``cpu``, ``name=systemd``
    ...) and ``"unified"`` (the cgroup2 hierarchy) to the container's
    directory in that hierarchy. ``created_parents`` lists the directories
    of a ``--cgroup-parent`` that this container's creation made, which
    ``destroy`` removes again once they are empty.
    """

    def __init__(
        self,
        name: str,
        mode: str,
        paths: dict[str, str],
        created_parents: list[str] | None = None,
    ) -> None:
        self.name = name
        self.mode = mode
        self.paths = paths
        self.created_parents = list(created_parents or [])

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, mode={self.mode!r})"

    @property
    def path(self) -> str:
        """The cgroup's path as /proc/PID/cgroup shows it, such as ``/minictr/ID``."""
        return "/" + self.name

    @property
    def directories(self) -> list[str]:
        """Each hierarchy's directory once, v1 controllers first."""
        return list(dict.fromkeys(self.paths.values()))

    def exists(self) -> bool:
        """Tell whether the cgroup's directory exists in any hierarchy."""
        return any(os.path.isdir(d) for d in self.directories)

    def v1_dir(self, controller: str) -> str | None:
        """The directory in the v1 hierarchy of ``controller``, if it has one."""
        return None if controller == UNIFIED else self.paths.get(controller)

    def unified_dir(self) -> str | None:
        """The directory in the cgroup2 hierarchy (for BPF device programs too)."""
        return self.paths.get(UNIFIED)

    # ------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        container_id: str,
        parent: str = "minictr",
        resources: dict[str, Any] | None = None,
        host: layout.Layout | None = None,
    ) -> Cgroup:
        """Create the container's cgroup in every hierarchy and write its limits.

        Raises CgroupError, after removing what it created, when a controller
        needed for a requested limit is missing or a write fails.
        """
        host = host or layout.detect()
        parent = parent.strip("/")
        name = f"{parent}/{container_id}"
        cgroup = cls(name, host.mode, _plan_paths(host, name))
        resources = resources or {}
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            created: list[str] = []
            try:
                if host.mode == "v2":
                    planned = v2.settings(resources)
                    _check_v2_controllers(host, planned)
                    created += _create_v2(host, name, planned)
                else:
                    planned = v1.settings(resources)
                    _check_v1_controllers(host, planned)
                    created += _create_v1(host, name)
                cgroup._apply(planned)
                break
            except CgroupError as exc:
                for directory in reversed(created):
                    _remove_quietly(directory)
                if attempt == _CREATE_ATTEMPTS or not _parent_vanished(exc):
                    raise
                log.debug("a parent of cgroup %s vanished; creating it again", name)
            except BaseException:
                for directory in reversed(created):
                    _remove_quietly(directory)
                raise
        if parent != DEFAULT_PARENT:
            leaves = set(cgroup.directories)
            cgroup.created_parents = [d for d in created if d not in leaves]
        return cgroup

    def _apply(self, planned: list[Setting]) -> None:
        for setting in planned:
            directory = self._dir_for(setting.controller)
            path = os.path.join(directory, setting.file)
            if not os.path.exists(path):
                if not setting.required:
                    log.debug("skip %s: the file does not exist", path)
                    continue
                raise CgroupError(
                    f"cannot apply {_OPTIONS.get(setting.controller, setting.file)}:"
                    f" {path} does not exist on this kernel"
                    + _missing_file_hint(setting.file)
                )
            CgroupWrite(path, setting.value).run()

    def _dir_for(self, controller: str) -> str:
        if self.mode == "v2":
            return self.paths[UNIFIED]
        return self.paths[controller]

    def add_process(self, pid: int) -> None:
        """Move process ``pid`` with all its threads into every hierarchy."""
        for directory in self.directories:
            CgroupWrite(os.path.join(directory, "cgroup.procs"), str(pid)).run()

    # --------------------------------------------------------- inside the container

    def container_mount_steps(
        self, merged_root: str, host: layout.Layout | None = None
    ) -> list[Step]:
        """Plan a read-only /sys/fs/cgroup under ``merged_root``.

        The steps run after sysfs is mounted there and inside the container's
        cgroup namespace, where a new cgroup mount shows the container's own
        cgroup as its root. A v2 host gets one cgroup2 mount. A v1 or hybrid
        host gets a tmpfs with each v1 hierarchy mounted in it, symlinks for
        co-mounted controllers (``cpu`` -> ``cpu,cpuacct``), and the cgroup2
        mount; the tmpfs is then made read-only too.
        """
        host = host or layout.detect()
        target = merged_root.rstrip("/") + "/sys/fs/cgroup"
        if host.mode == "v2":
            return [MakeDir(target), Mount("cgroup2", target, "cgroup2", _READ_ONLY)]

        tmpfs_flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
        steps: list[Step] = [
            MakeDir(target),
            Mount("tmpfs", target, "tmpfs", tmpfs_flags, "mode=755"),
        ]
        for hierarchy in host.v1:
            base = os.path.basename(hierarchy.mount_point)
            directory = f"{target}/{base}"
            options = hierarchy.mount_options
            steps += [
                MakeDir(directory),
                Mount("cgroup", directory, "cgroup", _READ_ONLY, options),
            ]
            for controller in hierarchy.controllers:
                if controller != base and not controller.startswith("name="):
                    steps.append(Symlink(base, f"{target}/{controller}"))
        if host.unified:
            directory = f"{target}/{os.path.basename(host.unified.mount_point)}"
            steps += [
                MakeDir(directory),
                Mount("cgroup2", directory, "cgroup2", _READ_ONLY),
            ]
        remount = syscalls.MS_REMOUNT | _READ_ONLY
        steps.append(Mount(None, target, None, remount, "mode=755"))
        return steps

    # ------------------------------------------------------------ reading

    def oom_killed(self) -> bool:
        """Tell whether the kernel's OOM killer killed a process in this cgroup."""
        if self.mode == "v2":
            return v2.oom_kills(self.paths[UNIFIED]) > 0
        memory = self.paths.get("memory")
        return memory is not None and v1.oom_kills(memory) > 0

    def stats(self) -> dict[str, Any]:
        """Read the numbers ``minictr stats`` shows; see ``stats_for``."""
        if self.mode == "v2":
            return v2.stats(self.paths[UNIFIED])
        return v1.stats(self.paths)

    def pids(self) -> list[int]:
        """Return every process in the cgroup, in any hierarchy."""
        found: dict[int, None] = {}
        for directory in self.directories:
            for top, _, files in os.walk(directory):
                if "cgroup.procs" in files:
                    found.update(dict.fromkeys(fs.read_pids(top)))
        return list(found)

    # ------------------------------------------------------------ freezing

    def freeze(self, timeout: float = 10.0) -> None:
        """Stop every process in the cgroup; return once the kernel reports it frozen."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        """Let the processes of a frozen cgroup run again."""
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if self.mode != "v1" and self._has(UNIFIED, "cgroup.freeze"):
            events = os.path.join(self.paths[UNIFIED], "cgroup.events")
            CgroupWrite(
                os.path.join(self.paths[UNIFIED], "cgroup.freeze"), str(int(frozen))
            ).run()
            _wait_for(
                lambda: fs.read_keyed(events).get("frozen") == int(frozen),
                timeout,
                events,
            )
            return
        if not self._has("freezer", "freezer.state"):
            raise CgroupError(
                f"cannot freeze cgroup {self.path}: the freezer controller is not mounted"
            )
        state = os.path.join(self.paths["freezer"], "freezer.state")
        wanted = "FROZEN" if frozen else "THAWED"
        CgroupWrite(state, wanted).run()
        _wait_for(lambda: fs.read(state).strip() == wanted, timeout, state)

    def _has(self, key: str, file: str) -> bool:
        directory = self.paths.get(key)
        return directory is not None and os.path.exists(os.path.join(directory, file))

    # ------------------------------------------------------------ removal

    def destroy(self, timeout: float = 10.0) -> None:
        """Kill every process left in the cgroup, then remove it everywhere.

        Raises CgroupError if processes survive ``timeout`` seconds or a
        directory cannot be removed.
        """
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"cannot remove cgroup {self.path}: processes {self.pids()[:10]}"
                    f" are still running after {timeout} s"
                )
            self._kill_all()
            time.sleep(0.05)
        for directory in self.directories:
            fs.remove_tree(directory, max(deadline - time.monotonic(), 1.0))
        self._remove_created_parents()

    def _remove_created_parents(self) -> None:
        # Deepest first, so "lab/a" goes before "lab". A parent that another
        # container still uses is not empty, and rmdir leaves it in place.
        for directory in sorted(self.created_parents, key=len, reverse=True):
            try:
                os.rmdir(directory)
                log.debug(
                    "rmdir %s (a --cgroup-parent this container created)", directory
                )
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.debug("keep %s: %s", directory, exc.strerror)

    def _kill_all(self) -> None:
        kill_file = os.path.join(self.paths.get(UNIFIED, ""), "cgroup.kill")
        if UNIFIED in self.paths and os.path.exists(kill_file):
            # cgroup.kill (Linux 5.14) kills the whole subtree at once, so a
            # process that forks at that moment cannot escape.
            CgroupWrite(kill_file, "1").run()
        frozen = False
        if self._has("freezer", "freezer.state"):
            # Without cgroup.kill, freezing first stops forks between the
            # listing of pids and the signals.
            self.freeze()
            frozen = True
        try:
            for pid in self.pids():
                log.debug("kill -KILL %d", pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "paths": dict(self.paths),
            "created_parents": list(self.created_parents),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cgroup:
        return cls(
            data["name"],
            data["mode"],
            dict(data["paths"]),
            data.get("created_parents", []),
        )

    @classmethod
    def open(
        cls,
        container_id: str,
        parent: str = "minictr",
        host: layout.Layout | None = None,
    ) -> Cgroup:
        """Return the cgroup of a container whose saved state is lost."""
        host = host or layout.detect()
        name = f"{parent.strip('/')}/{container_id}"
        return cls(name, host.mode, _plan_paths(host, name))


def _plan_paths(host: layout.Layout, name: str) -> dict[str, str]:
    paths = {}
    for hierarchy in host.v1:
        for controller in hierarchy.controllers:
            paths[controller] = os.path.join(hierarchy.mount_point, name)
    if host.unified:
        paths[UNIFIED] = os.path.join(host.unified.mount_point, name)
    return paths


def _check_v2_controllers(host: layout.Layout, planned: list[Setting]) -> None:
    assert host.unified is not None
    for controller in sorted({s.controller for s in planned if s.required}):
        if controller not in host.unified_controllers:
            raise CgroupError(
                f"cannot apply {_OPTIONS.get(controller, controller)}: the {controller}"
                f" controller is not available in {host.unified.mount_point}"
                f" (cgroup.controllers: {' '.join(sorted(host.unified_controllers))})"
            )


def _check_v1_controllers(host: layout.Layout, planned: list[Setting]) -> None:
    for controller in sorted({s.controller for s in planned if s.required}):
        if host.v1_hierarchy(controller) is None:
            raise CgroupError(
                f"cannot apply {_OPTIONS.get(controller, controller)}: no cgroup v1"
                f" hierarchy has the {controller} controller; mount it with"
                f" mount -t cgroup -o {controller} none /sys/fs/cgroup/{controller}"
            )


def _create_v2(host: layout.Layout, name: str, planned: list[Setting]) -> list[str]:
    assert host.unified is not None
    required = {s.controller for s in planned if s.required}
    wanted = set(v2.DEFAULT_CONTROLLERS) & host.unified_controllers
    controllers = sorted(required | wanted)
    parent, _, leaf = name.rpartition("/")
    created = v2.enable_controllers(
        host.unified.mount_point, parent, controllers, required
    )
    directory = os.path.join(host.unified.mount_point, name)
    if not fs.make_dir(directory):
        raise CgroupError(
            f"cgroup {directory} exists already: remove the old container {leaf}"
        )
    return [*created, directory]


def _create_v1(host: layout.Layout, name: str) -> list[str]:
    created: list[str] = []
    try:
        for hierarchy in host.v1:
            leaf = os.path.join(hierarchy.mount_point, name)
            if os.path.isdir(leaf):
                raise CgroupError(
                    f"cgroup {leaf} exists already: remove the old container"
                )
            is_cpuset = "cpuset" in hierarchy.controllers
            created += v1.make_dirs(hierarchy.mount_point, name, is_cpuset)
        if host.unified:
            created += v1.make_dirs(host.unified.mount_point, name, False)
    except BaseException:
        for directory in reversed(created):
            _remove_quietly(directory)
        raise
    return created


def _parent_vanished(exc: CgroupError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.ENOENT


def _missing_file_hint(file: str) -> str:
    if file == "blkio.weight":
        return " (the kernel offers blkio.weight only with the BFQ I/O scheduler)"
    if file.startswith("memory.memsw"):
        return " (swap accounting is off: boot with swapaccount=1)"
    return ""


def _remove_quietly(directory: str) -> None:
    """Remove a directory made by a failed create; a busy shared parent stays."""
    try:
        os.rmdir(directory)
        log.debug("rmdir %s", directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("keep %s: %s", directory, exc.strerror)


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise CgroupError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def list_container_cgroups(
    parent: str = "minictr", host: layout.Layout | None = None
) -> list[str]:
    """Return the container ids that have a cgroup under ``parent``, sorted."""
    host = host or layout.detect()
    hierarchies = [*host.v1, *([host.unified] if host.unified else [])]
    ids: set[str] = set()
    for hierarchy in hierarchies:
        directory = os.path.join(hierarchy.mount_point, parent.strip("/"))
        try:
            ids.update(e.name for e in os.scandir(directory) if e.is_dir())
        except FileNotFoundError:
            continue
    return sorted(ids)


def remove_orphans(
    live_ids: set[str], parent: str = "minictr", host: layout.Layout | None = None
) -> list[str]:
    """Destroy the cgroups under ``parent`` whose container is not in ``live_ids``.

    Returns the ids removed. This cleans up after a crashed run.
    """
    host = host or layout.detect()
    removed = []
    for container_id in list_container_cgroups(parent, host):
        if container_id not in live_ids:
            Cgroup.open(container_id, parent, host).destroy()
            removed.append(container_id)
    return removed
