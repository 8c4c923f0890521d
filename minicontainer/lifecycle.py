"""Detached containers: their monitor, their true status, and stop/kill/rm.

``minictr run -d`` and ``minictr start`` fork a monitor that outlives the
command. The monitor daemonizes (``setsid`` and a second fork), starts the
container as its child subreaper, tells the waiting command over a pipe that
the container's command runs (or why it could not start), and then execs
the lean watcher in ``minicontainer.monitor``. That watcher copies PID 1's
output into ``container.log``, reaps PID 1, writes ``exit_code``, and execs
:func:`finish`, which records the exit in ``state.json`` and tears down.

``state.json`` says what minictr last wrote, which a crash can leave stale:
a ``running`` container whose PID 1 is gone, or whose pid now belongs to
another program. :func:`current_state` corrects it from ``/proc``. A pid is
trusted only together with its start time (field 22 of ``/proc/PID/stat``),
because the kernel reuses pids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from . import errors, paths, state
from .config import ContainerConfig

log = logging.getLogger(__name__)

LOG_FILE = "container.log"
EXIT_FILE = "exit_code"
MONITOR_LOG = "monitor.log"

# How long commands wait for a monitor to record an exit and tear down.
MONITOR_TIMEOUT = 30.0

# How long ``kill`` waits for PID 1 to exit after a signal other than
# SIGKILL, when no monitor is left to notice the exit.
KILL_GRACE = 1.0


class NotRunning(errors.Conflict):
    """The container must be running for this operation."""


# ---------------------------------------------------------------- processes


def process_start_time(pid: int) -> int | None:
    """Return field 22 of ``/proc/PID/stat`` (start time in clock ticks), or None."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _stat_fields(pid: int) -> list[bytes] | None:
    """Return the fields of ``/proc/PID/stat`` after the command name (field 3 on)."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain both.
    return data[data.rindex(b")") + 2 :].split()


def process_alive(pid: int, start_time: int | None) -> bool:
    """Tell whether ``pid`` runs and is the process that started at ``start_time``.

    A zombie is not alive: it has exited and only waits to be reaped. With
    ``start_time`` None, any live process with that pid counts.
    """
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def _monitor_alive(record: dict[str, Any]) -> bool:
    pid = record.get("monitor_pid") or 0
    start_time = record.get("monitor_start_time")
    if not process_alive(pid, start_time):
        return False
    if start_time is not None:
        return True
    # NOTE: a foreground `minictr run` records no start time for itself, so
    # its pid is trusted when the process there is still a minictr command.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"minictr" in cmdline or b"minicontainer" in cmdline


# ---------------------------------------------------------------- status


def read_exit_file(directory: str) -> tuple[int, str] | None:
    """Return the exit code and finish time the watcher wrote, if it did."""
    try:
        with open(os.path.join(directory, EXIT_FILE), encoding="ascii") as f:
            code, finished = f.read().split()
    except (OSError, ValueError):
        return None
    return int(code), finished


def current_state(container_id: str) -> dict[str, Any]:
    """Return the container's state as it is now, not as last recorded.

    Adds ``monitor_alive``. A ``running`` or ``paused`` container whose PID 1
    is gone becomes ``exited`` with ``exit_unrecorded`` set, and with the
    watcher's exit code when it wrote one. Otherwise ``exit_code`` is None:
    unknown when the monitor is gone, and not written yet while
    ``monitor_alive`` is true. Raises ``state.UnreadableState`` when
    ``state.json`` is not valid JSON.
    """
    record = state.read_state(container_id)
    record["monitor_alive"] = _monitor_alive(record)
    if record.get("status") not in ("running", "paused"):
        return record
    if process_alive(record.get("pid") or 0, record.get("pid_start_time")):
        return record
    exit_info = read_exit_file(state.container_dir(container_id))
    record["status"] = "exited"
    record["pid"] = 0
    record["exit_unrecorded"] = True  # state.json still records running or paused
    if exit_info is None:
        record["exit_code"] = None
    else:
        record["exit_code"], record["finished_at"] = exit_info
    return record


def is_leftover(record: dict[str, Any]) -> bool:
    """Tell whether a crash of minictr left this container half set up or unwatched.

    ``record`` comes from :func:`current_state`. A container counts when a
    minictr process was responsible for it (a recorded monitor, or a cgroup
    recorded during setup) and that process died before finishing its work.
    """
    if record["monitor_alive"]:
        return False
    status = record.get("status")
    if status in ("running", "paused"):
        return True
    if status == "exited":
        # PID 1 died unwatched, or the monitor died while tearing down. An
        # exit recorded by stop, kill or start after the monitor died is
        # clean, even with an unknown exit code.
        return bool(record.get("exit_unrecorded")) or _cgroup_exists(record)
    return bool(record.get("monitor_pid")) or _cgroup_exists(record)


def _cgroup_exists(record: dict[str, Any]) -> bool:
    cgroup = record.get("cgroup")
    return bool(cgroup) and any(os.path.isdir(d) for d in cgroup["paths"].values())


# ---------------------------------------------------------------- create, start


def create(config: ContainerConfig) -> str:
    """Record a new container in state "created"; return its id."""
    if not config.created:
        config.created = _now()
    state.reserve(config)
    return config.id


def run_detached(config: ContainerConfig) -> str:
    """Create and start ``config`` in the background; return its id."""
    create(config)
    try:
        start(config.id)
    except errors.MinictrError:
        if state.read_state(config.id).get("status") in ("created", "removing"):
            state.remove_dir(config.id)
        raise
    return config.id


def start(container_id: str) -> None:
    """Fork the monitor of ``container_id`` and wait until its command runs.

    Starting a running container does nothing, as in Docker. An exited
    container starts again with the same configuration and upper directory.
    """
    with state.locked(f"start-{container_id}"):
        record = current_state(container_id)
        if record["status"] in ("running", "paused"):
            return
        # A live monitor here still tears down after PID 1 exited or the setup
        # failed. `wait` returns before that teardown ends, so `wait` followed
        # by `start` often finds the monitor alive.
        if record["monitor_alive"] and not _wait_for_monitor(container_id):
            raise errors.Conflict(
                f"container {container_id[:12]} is still being torn down after"
                f" {MONITOR_TIMEOUT} s: wait for its monitor and try again"
            )
        # The previous run may still hold its host port, address and cgroup
        # when its monitor died: release them before they collide.
        finish_for_dead_monitor(container_id)
        config = _read_config(container_id)
        _clear_previous_run(container_id)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        monitor = os.fork()
        if monitor == 0:
            os.close(ready_r)
            _monitor_main(config, ready_w)
        os.close(ready_w)
        report = _read_all(ready_r)
        os.close(ready_r)
        # The monitor forks once more so that it is not our child; reap the first fork.
        os.waitpid(monitor, 0)
    message = json.loads(report or b'{"error": "the monitor exited before starting"}')
    if "error" in message:
        cls = getattr(errors, message.get("class", ""), errors.MinictrError)
        if not (isinstance(cls, type) and issubclass(cls, errors.MinictrError)):
            cls = errors.MinictrError
        raise cls(message["error"])


# Backwards-compatible name.
start_detached = start


def _clear_previous_run(container_id: str) -> None:
    directory = state.container_dir(container_id)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, EXIT_FILE))
    record = state.read_state(container_id)
    if record.get("status") != "created" or record.get("monitor_pid"):
        state.update_state(
            container_id, status="created", pid=0, monitor_pid=0, exit_code=None
        )


def _monitor_main(config: ContainerConfig, ready_w: int) -> None:
    """Become the container's monitor: daemonize, start, hand over; never return."""
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        directory = state.container_dir(config.id)
        _detach_stdio(os.path.join(directory, MONITOR_LOG))
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        _start_and_watch(config, ready_w)
    except BaseException:  # a daemon has nobody to report to but its log
        log.exception("monitor of container %s failed", config.id[:12])
        os._exit(1)


def _start_and_watch(config: ContainerConfig, ready_w: int | None) -> None:
    """Start the container, report to ``ready_w``, exec the watcher; never return."""
    from .runtime import Container, Stdio

    directory = state.container_dir(config.id)
    state.update_state(
        config.id,
        monitor_pid=os.getpid(),
        monitor_start_time=process_start_time(os.getpid()),
    )
    container = Container(config, directory)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        container.prepare()
        container.start(Stdio(stdin=None, stdout=out_w, stderr=err_w))
    except BaseException as exc:  # noqa: BLE001 - reported to the waiting command
        container.teardown(remove=False)
        state.update_state(
            config.id, status="created", pid=0, monitor_pid=0, cgroup=None
        )
        if ready_w is not None:
            cls = type(exc).__name__ if isinstance(exc, errors.MinictrError) else ""
            report = {"error": str(exc), "class": cls or "MinictrError"}
            _send_report(config.id, ready_w, json.dumps(report).encode())
        os._exit(1)
    os.close(out_w)
    os.close(err_w)
    if ready_w is not None:
        _send_report(config.id, ready_w, b'{"ok": true}')
        os.close(ready_w)
    _exec_watcher(config.id, directory, container.pid, out_r, err_r)


def _send_report(container_id: str, ready_w: int, report: bytes) -> None:
    """Write ``report`` to the command that waits on ``ready_w``, if it still waits.

    That command may have been killed meanwhile (Ctrl-C, a timeout), which
    closes the pipe. The container runs regardless, so the monitor carries
    on instead of dying of the BrokenPipeError and leaving it unwatched.
    """
    try:
        os.write(ready_w, report)
    except BrokenPipeError:
        log.warning(
            "container %s: the start command exited before the monitor's report %s",
            container_id[:12],
            report.decode(),
        )


def _exec_watcher(
    container_id: str, directory: str, pid: int, out_r: int, err_r: int
) -> None:
    """Replace this process with the lean watcher, keeping only the log pipes."""
    from . import monitor

    for fd in (out_r, err_r):
        os.set_inheritable(fd, True)
    _close_fds_except({0, 1, 2, out_r, err_r})
    python = sys.executable
    argv = [python, "-S", "-I", monitor.__file__, "watch", directory, str(pid)]
    argv += [str(out_r), str(err_r), python, container_id]
    log.debug("exec the watcher of container %s", container_id[:12])
    os.execv(python, argv)


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _detach_stdio(error_log: str) -> None:
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    # Warnings and tracebacks of the monitor land in the container's directory.
    errors_fd = os.open(error_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(errors_fd, 2)
    os.close(errors_fd)


# ---------------------------------------------------------------- after exit


def finish(container_id: str) -> None:
    """Record the exit of PID 1, tear the container down, and maybe restart it.

    Runs in the monitor process after the watcher has reaped PID 1 and
    written the exit file.
    """
    directory = state.container_dir(container_id)
    config = state.read_config(container_id)
    exit_info = read_exit_file(directory) or (-1, _now())
    record = state.read_state(container_id)
    cgroup = _cgroup_of(record)
    oom = bool(cgroup is not None and cgroup.oom_killed())
    state.update_state(
        container_id,
        status="exited",
        exit_code=exit_info[0],
        finished_at=exit_info[1],
        oom_killed=oom,
        pid=0,
    )
    _teardown(config, record, remove=False)
    state.update_state(container_id, cgroup=None)
    if should_restart(config, state.read_state(container_id)):
        _start_and_watch(config, ready_w=None)
    if config.auto_remove:
        _keep_exit_code(container_id, config.name, exit_info[0])
        state.remove_dir(container_id)
        return
    state.update_state(container_id, monitor_pid=0)


def should_restart(config: ContainerConfig, record: dict[str, Any]) -> bool:
    """Decide whether the monitor starts the container again after it exited.

    This is where restart policies (``--restart always``, ``on-failure[:N]``,
    ``unless-stopped``) belong: ``record`` has the exit code, and a ``stop``
    or ``kill`` by the user sets ``stopped_by_user`` in it.
    """
    # NOTE: no restart policy is implemented yet, so a container never restarts.
    return False


def _keep_exit_code(container_id: str, name: str, exit_code: int) -> None:
    """Leave the exit code of an auto-removed container for ``minictr wait``."""
    directory = _exited_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    kept = {"exit_code": exit_code, "name": name}
    state.write_json_atomic(os.path.join(directory, container_id), kept)


def _exited_dir() -> str:
    return os.path.join(paths.run_root(), "exited")


def _read_kept_exit(container_id: str) -> dict[str, Any] | None:
    """Return the kept ``exit_code`` and ``name`` of a removed container, if any."""
    try:
        kept = state.read_json(os.path.join(_exited_dir(), container_id))
    except (OSError, ValueError):
        return None
    if isinstance(kept, int):  # written by minictr before names were kept
        return {"exit_code": kept, "name": ""}
    return kept if isinstance(kept, dict) and "exit_code" in kept else None


def find_for_wait(reference: str) -> str:
    """Return the id of container ``reference``, or of a removed one whose exit is kept.

    A ``--rm`` container is gone once it exited, but ``wait`` can still
    report its exit code, found by full id, name or unique id prefix.
    """
    try:
        return state.find(reference)
    except errors.NotFound:
        pass
    try:
        kept_ids = sorted(os.listdir(_exited_dir()))
    except FileNotFoundError:
        kept_ids = []
    if reference in kept_ids:
        return reference
    for container_id in kept_ids:
        kept = _read_kept_exit(container_id)
        if kept is not None and kept.get("name") == reference:
            return container_id
    matches = [cid for cid in kept_ids if reference and cid.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    raise errors.NotFound(f"no such container: {reference}")


def finish_for_dead_monitor(container_id: str) -> None:
    """Do the work of a monitor that died: record the exit of PID 1 and tear down.

    Does nothing while a monitor is alive or PID 1 runs. Records the exit
    in ``state.json`` if nobody did (the code is unknown unless the watcher
    wrote ``exit_code``), releases the cgroup and network, and removes an
    auto-remove container, as the monitor would have.
    """
    record = current_state(container_id)
    if record["monitor_alive"] or record["status"] != "exited":
        return
    config = _read_config(container_id)
    if record.get("exit_unrecorded"):
        exit_info = read_exit_file(state.container_dir(container_id))
        cgroup = _cgroup_of(record) if _cgroup_exists(record) else None
        state.update_state(
            container_id,
            status="exited",
            pid=0,
            exit_code=exit_info[0] if exit_info else None,
            finished_at=exit_info[1] if exit_info else _now(),
            oom_killed=bool(cgroup is not None and cgroup.oom_killed()),
        )
    elif not _holds_resources(config, record):
        return
    log.debug("tear down container %s for its dead monitor", container_id[:12])
    if config.auto_remove:
        if record.get("exit_code") is not None:
            _keep_exit_code(container_id, config.name, record["exit_code"])
        _clean(container_id, remove_dir=True)
        return
    _clean(container_id, remove_dir=False)
    state.update_state(container_id, monitor_pid=0)


def _holds_resources(config: ContainerConfig, record: dict[str, Any]) -> bool:
    if _cgroup_exists(record) or _find_cgroup(config) is not None:
        return True
    if config.network.get("mode", "none") in ("none", "host"):
        return False
    from .network import ipam

    return bool(ipam.leases_of(config.id))


def _read_config(container_id: str) -> ContainerConfig:
    """Return the config, with NotFound once the container has been removed."""
    try:
        return state.read_config(container_id)
    except FileNotFoundError:
        raise errors.NotFound(f"no such container: {container_id}") from None


def _cgroup_of(record: dict[str, Any]) -> Any:
    if not record.get("cgroup"):
        return None
    from .cgroups import Cgroup

    return Cgroup.from_dict(record["cgroup"])


def _teardown(config: ContainerConfig, record: dict[str, Any], remove: bool) -> None:
    from .runtime import Container

    container = Container(config, state.container_dir(config.id))
    container.cgroup = _cgroup_of(record)
    container.teardown(remove=remove)


# ---------------------------------------------------------------- signals


def parse_signal(value: str | int) -> int:
    """Turn ``SIGTERM``, ``TERM``, ``term`` or ``15`` into a signal number."""
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise errors.InvalidArgument(
        f"invalid signal {value!r}: give a name such as SIGTERM or KILL, or a number"
    )


def kill(container_id: str, sig: str | int = "SIGKILL") -> None:
    """Send ``sig`` to the container's PID 1."""
    number = parse_signal(sig)
    record = _require_running(container_id, "kill")
    _send_signal(container_id, record, number)
    if record["monitor_alive"]:
        return
    # Without a monitor, no other process records the exit. SIGKILL always ends
    # PID 1, and other signals get a short grace period.
    timeout = MONITOR_TIMEOUT if number == signal.SIGKILL else KILL_GRACE
    if _wait_for_exit(record["pid"], record.get("pid_start_time"), timeout):
        finish_for_dead_monitor(container_id)


def _send_signal(container_id: str, record: dict[str, Any], number: int) -> None:
    log.debug("kill -%d %d (PID 1 of %s)", number, record["pid"], container_id[:12])
    with contextlib.suppress(ProcessLookupError):
        os.kill(record["pid"], number)
    if record["status"] == "paused" and number == signal.SIGKILL:
        # A frozen process dies only when thawed.
        with contextlib.suppress(NotRunning):
            unpause(container_id)


def stop(container_id: str, timeout: float | None = None) -> None:
    """Send the stop signal, then SIGKILL after ``timeout`` seconds; wait for the exit.

    PID 1 of a PID namespace gets only the signals it has a handler for
    (SIGKILL always), so a PID 1 that ignores SIGTERM takes the whole timeout.
    """
    config = _read_config(container_id)
    record = current_state(container_id)
    if record["status"] not in ("running", "paused"):
        _wait_for_monitor(container_id)
        finish_for_dead_monitor(container_id)
        return
    timeout = config.stop_timeout if timeout is None else timeout
    pid = record["pid"]
    with contextlib.suppress(FileNotFoundError):  # an --rm container just exited
        state.update_state(container_id, stopped_by_user=True)
    with contextlib.suppress(ProcessLookupError):
        log.debug("kill -%s %d", config.stop_signal, pid)
        os.kill(pid, parse_signal(config.stop_signal))
    if record["status"] == "paused":
        unpause(container_id)
    if not _wait_for_exit(pid, record.get("pid_start_time"), timeout):
        log.debug("kill -KILL %d after %s s", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_for_exit(pid, record.get("pid_start_time"), MONITOR_TIMEOUT)
    _wait_for_monitor(container_id)
    if os.path.isdir(state.container_dir(container_id)):
        finish_for_dead_monitor(container_id)


def _wait_for_exit(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid, start_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_for_monitor(container_id: str, timeout: float = MONITOR_TIMEOUT) -> bool:
    """Wait until no monitor works on the container; False on timeout."""
    deadline = time.monotonic() + timeout
    while os.path.isdir(state.container_dir(container_id)):
        if not _monitor_alive(state.read_state(container_id)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def wait(container_id: str, timeout: float | None = None) -> int:
    """Block until the container exits; return its exit code (-1 if unknown)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if os.path.isdir(state.container_dir(container_id)):
            record = current_state(container_id)
            code = record.get("exit_code")
            if record["status"] == "exited" and code is not None:
                return code
            if record["status"] == "exited" and not record["monitor_alive"]:
                return -1  # nothing recorded the exit
        elif (kept := _read_kept_exit(container_id)) is not None:
            return int(kept["exit_code"])
        else:
            raise errors.NotFound(f"no such container: {container_id}")
        if deadline is not None and time.monotonic() >= deadline:
            raise errors.MinictrError(
                f"timed out after {timeout} s waiting for container"
                f" {container_id[:12]} to exit"
            )
        time.sleep(0.05)


def restart(container_id: str, timeout: float | None = None) -> None:
    stop(container_id, timeout)
    start(container_id)


# ---------------------------------------------------------------- pause


def pause(container_id: str) -> None:
    """Freeze every process of the container with the cgroup freezer."""
    record = _require_running(container_id, "pause")
    if record["status"] == "paused":
        raise errors.Conflict(f"container {container_id[:12]} is already paused")
    _freezer_cgroup(container_id, record).freeze()
    state.update_state(container_id, status="paused")


def unpause(container_id: str) -> None:
    record = current_state(container_id)
    if record["status"] != "paused":
        raise NotRunning(f"container {container_id[:12]} is not paused")
    _freezer_cgroup(container_id, record).thaw()
    state.update_state(container_id, status="running")


def _freezer_cgroup(container_id: str, record: dict[str, Any]) -> Any:
    cgroup = _cgroup_of(record)
    if cgroup is None:
        raise errors.CgroupError(
            f"cannot pause container {container_id[:12]}: it has no cgroup, and the"
            " freezer needs one"
        )
    return cgroup


def _require_running(container_id: str, action: str) -> dict[str, Any]:
    record = current_state(container_id)
    if record["status"] not in ("running", "paused"):
        raise NotRunning(
            f"cannot {action} container {container_id[:12]}: it is not running"
        )
    return record


# ---------------------------------------------------------------- remove, prune


def remove(container_id: str, force: bool = False) -> None:
    """Delete a stopped container; with ``force``, kill a running one first.

    A container that its monitor removes meanwhile (``--rm``) counts as
    removed. With ``force``, a container whose ``state.json`` cannot be read
    is removed too, after its cgroup's processes are killed.
    """
    try:
        record = current_state(container_id)
    except state.UnreadableState:
        if not force:
            raise  # its message points to rm -f
        _clean(container_id, remove_dir=True)
        return
    if record["status"] in ("running", "paused"):
        if not force:
            raise errors.Conflict(
                f"cannot remove running container {container_id[:12]}: stop it first"
                " or use rm -f"
            )
        _send_signal(container_id, record, signal.SIGKILL)
        _wait_for_exit(record["pid"], record.get("pid_start_time"), MONITOR_TIMEOUT)
    if not _wait_for_monitor(container_id):
        raise errors.MinictrError(
            f"the monitor of container {container_id[:12]} did not finish within"
            f" {MONITOR_TIMEOUT} s: try again, or kill it and run minictr prune"
        )
    _clean(container_id, remove_dir=True)


def _clean(container_id: str, remove_dir: bool) -> None:
    """Release what the container may still hold: processes, cgroup, network, mounts."""
    try:
        config = state.read_config(container_id)
    except FileNotFoundError:
        # The monitor of an auto-remove container got there first.
        # remove_dir waits for that removal, or finishes it after a crash.
        _remove_dir(container_id)
        return
    except state.UnreadableState:
        config = _placeholder_config(container_id)
    try:
        record = state.read_state(container_id)
    except state.UnreadableState:
        record = {}
    if not record.get("cgroup"):
        record["cgroup"] = _find_cgroup(config)
    _teardown(config, record, remove=False)
    _unmount_under(state.container_dir(container_id))
    if remove_dir:
        _remove_dir(container_id)
    else:
        state.update_state(container_id, cgroup=None)


def _remove_dir(container_id: str) -> None:
    state.remove_dir(container_id)


def _placeholder_config(container_id: str) -> ContainerConfig:
    """Return a config for tearing down a container whose config.json is unreadable.

    Its bridge mode makes the teardown release any leases and rules held
    under the container's id.
    """
    from .config import ProcessConfig

    # NOTE: a cgroup under a --cgroup-parent other than the default is not
    # found this way, and stays.
    return ContainerConfig(
        id=container_id,
        name="",
        process=ProcessConfig(args=[]),
        network={"mode": "bridge"},
    )


def _find_cgroup(config: ContainerConfig) -> dict[str, Any] | None:
    """Return the cgroup a crash left unrecorded, when its directory exists."""
    try:
        from .cgroups import Cgroup
    except ImportError:
        return None
    cgroup = Cgroup.open(config.id, config.cgroup_parent)
    if any(os.path.isdir(d) for d in cgroup.directories):
        return cgroup.to_dict()
    return None


def _unmount_under(directory: str) -> None:
    """Detach host mounts below ``directory``, deepest first."""
    from . import syscalls

    prefix = os.path.realpath(directory) + "/"
    targets = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix):
                targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        with contextlib.suppress(errors.KernelError):
            syscalls.umount2(target, syscalls.MNT_DETACH)


def prune() -> list[str]:
    """Clean up after crashes of minictr itself; return the ids cleaned.

    A running or half-created container whose monitor died is killed and
    removed with its cgroup, network and directory. An exited container
    whose monitor died during teardown keeps its record and loses only what
    it still held. Containers that a live monitor watches, and exited
    containers, are left alone. A container whose ``state.json`` cannot be
    read is removed.
    """
    cleaned = [
        container_id for container_id in state.list_ids() if _prune_one(container_id)
    ]
    _prune_exit_codes()
    if os.path.isdir(os.path.join(paths.state_root(), "networks")):
        # Leases, veths and rules of containers whose directory is gone.
        from .network import manage

        manage.prune(remove_unused_networks=False)
    return cleaned


def _prune_one(container_id: str) -> bool:
    try:
        record = current_state(container_id)
    except state.UnreadableState:
        log.debug("prune container %s (state unreadable)", container_id[:12])
        _clean(container_id, remove_dir=True)
        return True
    except OSError:
        return False  # removed while listing
    if not is_leftover(record):
        return False
    log.debug("prune container %s (%s)", container_id[:12], record["status"])
    # PID 1 died unwatched, with no exit code to keep, or the setup was
    # cut short: nothing worth keeping is left.
    unknown_exit = record.get("exit_unrecorded") and record.get("exit_code") is None
    if record["status"] != "exited" or unknown_exit:
        _clean(container_id, remove_dir=True)
        return True
    try:
        finish_for_dead_monitor(container_id)
    except state.UnreadableState:
        _clean(container_id, remove_dir=True)
    return True


def _prune_exit_codes() -> None:
    directory = os.path.join(paths.run_root(), "exited")
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))


# ---------------------------------------------------------------- helpers


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (
        f".{int(now % 1 * 1e9):09d}Z"
    )


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
