"""Start one container and watch it: namespaces, root, exec, exit status.

The process tree of a running container::

    minictr (monitor, on the host, a child subreaper)
      └─ first child: joins the cgroup, unshares the namespaces, forks
           └─ PID 1 of the new PID namespace: mounts the root, pivots,
              waits for the monitor's go, then execs the user's command

A new PID namespace applies to the children of the process that unshares
it, not to that process itself, so the first child forks the container's
PID 1 and exits. Because the monitor is a child subreaper, PID 1 is then
reparented to it, and the monitor reaps it and records its exit status.
The monitor never enters the container's PID namespace itself, so it can
still fork helpers on the host.

Three pipes connect the processes. The first child sends PID 1's host pid
on one. The monitor sends "go" on another once it has finished its host-side
work (network, state). The third is close-on-exec: a failure before exec is
written to it as JSON, and a successful exec closes it, which tells the
monitor that the command is running.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from . import devices, errors, process, rootfs, security, state
from . import syscalls as sc
from .config import ContainerConfig
from .steps import (
    Callback,
    LoopbackUp,
    Mount,
    SetNs,
    Step,
    Unshare,
    run_all,
    set_process_role,
)

log = logging.getLogger(__name__)

NAMESPACE_FLAGS = {
    "mount": sc.CLONE_NEWNS,
    "uts": sc.CLONE_NEWUTS,
    "ipc": sc.CLONE_NEWIPC,
    "net": sc.CLONE_NEWNET,
    "pid": sc.CLONE_NEWPID,
    "cgroup": sc.CLONE_NEWCGROUP,
    "user": sc.CLONE_NEWUSER,
}

# /proc/PID/ns file for each namespace name used in configs.
NS_FILES = {
    "mount": "mnt",
    "uts": "uts",
    "ipc": "ipc",
    "net": "net",
    "pid": "pid",
    "cgroup": "cgroup",
    "user": "user",
}

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

_ERROR_CLASSES = {
    cls.__name__: cls
    for cls in (
        errors.MinictrError,
        errors.InvalidArgument,
        errors.KernelError,
        errors.CgroupError,
        errors.CommandNotExecutable,
        errors.CommandNotFound,
    )
}


def process_start_time(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks after boot, or None.

    A pid and its start time identify a process even after the pid is reused.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


@dataclass
class Stdio:
    """The descriptors the container's PID 1 gets as 0, 1 and 2."""

    stdin: int | None = None  # None: /dev/null inside the container
    stdout: int = 1
    stderr: int = 2
    terminal: int | None = None  # the pty's slave side, for -t
    close_in_child: list[int] = field(default_factory=list)


class Container:
    """One container's processes, from fork to exit and teardown."""

    def __init__(self, config: ContainerConfig, directory: str) -> None:
        self.config = config
        self.directory = directory
        self.pid = 0
        self.cgroup: Any = None
        self.network_plan: dict[str, Any] | None = None

    # ---- on the host, before fork -------------------------------------------

    def prepare(self) -> None:
        """Create what the container needs on the host: files, cgroup, network plan."""
        self._write_etc_files()
        if self.config.mounts:
            from . import mounts

            mounts.prepare(self.config, self.directory)
        self.cgroup = _create_cgroup(self.config)
        if self.cgroup is not None:
            devices.apply_rules(self.config, self.cgroup)
        if self.cgroup is not None:
            state.update_state(self.config.id, cgroup=self.cgroup.to_dict())

    def _write_etc_files(self) -> None:
        mode = self.config.network.get("mode", "none")
        has_etc_options = any(
            self.config.network.get(key) for key in ("dns", "add_hosts")
        )
        if mode not in ("none", "host") or has_etc_options:
            from . import network

            self.network_plan = network.prepare(self.config, self.directory)
            state.update_state(self.config.id, network=self.network_plan)
            return
        contents = rootfs.etc_file_contents(self.config)
        if mode == "host":
            contents.pop("hosts")
            contents.pop("resolv.conf")
            for name in ("hosts", "resolv.conf"):
                with open(f"/etc/{name}", encoding="utf-8") as host_file:
                    contents[name] = host_file.read()
        for name, text in contents.items():
            with open(os.path.join(self.directory, name), "w", encoding="utf-8") as f:
                f.write(text)

    # ---- fork and start -----------------------------------------------------

    def start(self, stdio: Stdio) -> int:
        """Fork the container's processes and return once its command runs.

        Returns PID 1's host pid. Raises the error that stopped the container
        before its command could run, after reaping what was started.
        """
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        console = os.ttyname(stdio.terminal) if stdio.terminal is not None else None
        # With --userns, the lower directories are replaced by views or copies
        # owned by the container's id range, so this comes before the root steps.
        layer_steps = security.prepare_rootfs(self.config, self.directory)
        try:
            return self._fork(stdio, console, layer_steps)
        finally:
            security.close_layer_steps(layer_steps)

    def _fork(self, stdio: Stdio, console: str | None, layer_steps: list[Step]) -> int:
        error_r, error_w = os.pipe2(os.O_CLOEXEC)
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        root_steps = rootfs.root_steps(
            self.config, self.directory, console, layer_steps
        )
        merged = os.path.join(self.directory, "merged")
        root_steps += devices.node_steps(self.config, merged)
        if self.cgroup is not None:
            root_steps += self.cgroup.container_mount_steps(merged)
        if self.config.mounts:
            from . import mounts

            root_steps += mounts.volume_steps(self.config, self.directory, merged)
        # After the volumes, so that a volume on /etc does not hide them.
        root_steps += rootfs.etc_steps(self.config, self.directory)
        pivot_steps = rootfs.pivot_steps(self.config, self.directory)
        # The sysctls and masks come after the go, because a sysctl may name
        # an interface (net.ipv4.conf.eth0.*) that the monitor adds meanwhile.
        pivot_steps.append(
            Callback(
                "wait for the monitor's go (it records the pid, sets up the network)",
                functools.partial(_wait_for_go, go_r),
            )
        )
        pivot_steps += security.path_steps(self.config)

        log.debug("fork (the first child will create the namespaces)")
        first = os.fork()
        if first == 0:
            os.close(error_r)
            os.close(pid_r)
            os.close(go_w)
            _child_main(self, stdio, root_steps, pivot_steps, pid_w, go_r, error_w)
        os.close(error_w)
        os.close(pid_w)
        os.close(go_r)
        try:
            _, status = os.waitpid(first, 0)
            data = _read_all(pid_r)
            if not data:
                raise _error_from_pipe(error_r) or errors.MinictrError(
                    f"container setup failed before PID 1 started (status {status})"
                )
            self.pid = int(data)
            log.debug("container PID 1 is host pid %d", self.pid)
            try:
                self._after_fork()
            except errors.MinictrError:
                # PID 1 may have failed first, which makes host-side setup in
                # its namespaces fail too: report the cause, not the symptom.
                _close_quietly(go_w)
                cause = _error_from_pipe(error_r)
                os.waitpid(self.pid, 0)
                self.pid = 0
                if cause is not None:
                    raise cause from None
                raise
            released = True
            log.debug("go: PID 1 may now exec the command")
            try:
                os.write(go_w, b"go")
            except BrokenPipeError:
                # PID 1 failed while building its root and is gone: its
                # report is in the error pipe.
                released = False
            failure = _error_from_pipe(error_r)
            if failure is None and not released:
                failure = errors.MinictrError(
                    "container PID 1 exited before its command started"
                )
            if failure is not None:
                os.waitpid(self.pid, 0)
                self.pid = 0
                raise failure
        finally:
            for fd in (error_r, pid_r, go_w):
                _close_quietly(fd)
        log.debug("exec done: the container's command is running")
        state.update_state(self.config.id, status="running", started_at=_now())
        return self.pid

    def _after_fork(self) -> None:
        """Do the host-side work that needs PID 1 to exist, before its exec."""
        # The pid is recorded before exec so that a crash from here on leaves
        # enough for `prune` to find; "running" waits for the exec.
        state.update_state(
            self.config.id,
            pid=self.pid,
            pid_start_time=process_start_time(self.pid),
            monitor_pid=os.getpid(),
            monitor_start_time=process_start_time(os.getpid()),
        )
        if self.network_plan is not None:
            from . import network

            attached = network.attach(self.network_plan, self.pid)
            state.update_state(self.config.id, network=attached)

    # ---- wait and tear down -------------------------------------------------

    def wait(self) -> int:
        """Wait for PID 1 and return Docker's exit code (128+N for signal N)."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 125
            if pid == self.pid:
                break
        code = os.waitstatus_to_exitcode(status)
        self._reap_orphans()
        return 128 - code if code < 0 else code

    def _reap_orphans(self) -> None:
        # Processes left in the PID namespace are killed by the kernel when its
        # PID 1 exits, and reparented to this subreaper.
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.001)

    def record_exit(self, exit_code: int) -> None:
        oom = bool(self.cgroup is not None and self.cgroup.oom_killed())
        state.update_state(
            self.config.id,
            status="exited",
            exit_code=exit_code,
            oom_killed=oom,
            finished_at=_now(),
            pid=0,
        )

    def teardown(self, remove: bool) -> None:
        """Release the cgroup and network; delete the directory when ``remove``."""
        problems = []
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except errors.MinictrError as exc:
                problems.append(str(exc))
        if self.config.network.get("mode", "none") not in ("none", "host"):
            try:
                from . import network

                network.release(self.config.id)
            except errors.MinictrError as exc:
                problems.append(str(exc))
        if remove:
            state.remove_dir(self.config.id)
            if self.config.mounts:
                from . import mounts

                mounts.remove_anonymous(self.config)
        for problem in problems:
            log.warning("cleanup of container %s: %s", self.config.id[:12], problem)


def _create_cgroup(config: ContainerConfig) -> Any:
    from .cgroups import Cgroup

    return Cgroup.create(
        config.id, parent=config.cgroup_parent, resources=config.resources
    )


def _now() -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{time.time_ns() % 10**9:09d}Z"
    )


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _error_from_pipe(fd: int) -> errors.MinictrError | None:
    data = _read_all(fd)
    if not data:
        return None
    try:
        report = json.loads(data)
        cls = _ERROR_CLASSES.get(report["class"], errors.MinictrError)
        message = report["message"]
    except (ValueError, KeyError):
        return errors.MinictrError(data.decode(errors="replace"))
    if cls is errors.KernelError:
        return errors.KernelError(message, report.get("errno", 0))
    return cls(message)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _report_and_exit(error_w: int, exc: BaseException) -> None:
    if isinstance(exc, errors.MinictrError):
        cls = (
            type(exc).__name__
            if type(exc).__name__ in _ERROR_CLASSES
            else "MinictrError"
        )
        code = exc.exit_code
    elif isinstance(exc, OSError):
        cls, code = "KernelError", 125
    else:
        cls, code = "MinictrError", 125
    message = str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, errors.MinictrError):
        message = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)
    report = {"class": cls, "message": message, "errno": getattr(exc, "errno", 0)}
    try:
        os.write(error_w, json.dumps(report).encode())
    finally:
        os._exit(code)


def namespace_steps(config: ContainerConfig) -> list[Step]:
    """Return the unshare/setns steps of the first child, in order."""
    flags = 0
    for name in config.namespaces:
        flags |= NAMESPACE_FLAGS[name]
    steps: list[Step] = []
    join_net = None
    mode = config.network.get("mode", "none")
    if mode.startswith("container:"):
        from .network import netns_path_for

        join_net = netns_path_for(config)
    if mode == "host" or join_net:
        flags &= ~sc.CLONE_NEWNET
    if join_net:
        steps.append(SetNs(join_net))
    steps.append(Unshare(flags))
    # Mounts made from here on must not propagate back to the host. A slave
    # mount still receives the host's new mounts, which bind mounts with
    # slave propagation ask for.
    slave = any(str(m.get("Propagation", "")).endswith("slave") for m in config.mounts)
    propagation = sc.MS_SLAVE if slave else sc.MS_PRIVATE
    steps.append(Mount(None, "/", None, sc.MS_REC | propagation))
    if flags & sc.CLONE_NEWNET:
        steps.append(LoopbackUp())
    return steps


def _child_main(
    container: Container,
    stdio: Stdio,
    root_steps: list[Step],
    pivot_steps: list[Step],
    pid_w: int,
    go_r: int,
    error_w: int,
) -> None:
    """Run the first child: join the cgroup, unshare, fork PID 1; never return."""
    try:
        set_process_role("child")
        _reset_signals()
        if container.cgroup is not None:
            container.cgroup.add_process(os.getpid())
        run_all(namespace_steps(container.config))
        log.debug("fork (the child is PID 1 of the new PID namespace)")
        pid1 = os.fork()
        if pid1 == 0:
            os.close(pid_w)
            _pid1_main(container, stdio, root_steps, pivot_steps, go_r, error_w)
        os.write(pid_w, str(pid1).encode())
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        _report_and_exit(error_w, exc)


def _reset_signals() -> None:
    for sig in FORWARDED_SIGNALS + (signal.SIGWINCH, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    # run_foreground blocks them during the setup; the container must not
    # inherit that.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)


def _pid1_main(
    container: Container,
    stdio: Stdio,
    root_steps: list[Step],
    pivot_steps: list[Step],
    go_r: int,
    error_w: int,
) -> None:
    """Build the root, wait for the go, become the user's command."""
    config = container.config
    try:
        set_process_role("pid 1")
        run_all(root_steps)
        run_all(pivot_steps)

        identity = process.resolve_identity(config.process.user)
        env = process.build_env(
            config.process.env, identity.home, config.hostname, config.process.terminal
        )
        _setup_stdio(stdio)
        # Closed before chdir, so a descriptor leaked from the host can never
        # serve as the working directory through /proc/self/fd/N.
        process.close_other_fds([error_w])
        _enter_workdir(config.process.cwd)
        security.apply_process(config, identity)
        log.debug("exec %s", " ".join(config.process.args))
        process.exec_command(config.process.args, env)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        _report_and_exit(error_w, exc)


def _wait_for_go(go_r: int) -> None:
    if os.read(go_r, 2) != b"go":
        os._exit(125)  # the monitor died before releasing us
    os.close(go_r)


def _enter_workdir(cwd: str) -> None:
    # Run after pivot_root: the path and its symlinks resolve inside the container.
    os.makedirs(cwd, mode=0o755, exist_ok=True)
    os.chdir(cwd)


def _setup_stdio(stdio: Stdio) -> None:
    if stdio.terminal is not None:
        os.setsid()
        import fcntl
        import termios

        fcntl.ioctl(stdio.terminal, termios.TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(stdio.terminal, target)
        return
    stdin = stdio.stdin
    if stdin is None:
        stdin = os.open("/dev/null", os.O_RDONLY)
    for source, target in ((stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)):
        if source != target:
            os.dup2(source, target)


def install_signal_forwarding(pid: int) -> None:
    """Forward the signals minictr receives to the container's PID 1."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)


def run_foreground(config: ContainerConfig) -> int:
    """Run a container attached to this terminal; return its exit code."""
    # A signal that interrupted the setup at an arbitrary point could leave a
    # cgroup directory or a lease half made. The signals wait until PID 1
    # runs, and are then forwarded to it; the first child unblocks them for
    # the container's processes.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    directory = state.reserve(config)
    container = Container(config, directory)
    terminal = None
    try:
        container.prepare()
        stdio = Stdio(stdin=0 if config.process.interactive else None)
        if config.process.terminal:
            from . import tty

            terminal = tty.Terminal.open()
            stdio = Stdio(terminal=terminal.slave)
        container.start(stdio)
        install_signal_forwarding(container.pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        if terminal is not None:
            terminal.close_slave()
            exit_code = terminal.relay(container.pid, config.process.interactive)
            container._reap_orphans()
        else:
            exit_code = container.wait()
        container.record_exit(exit_code)
        container.teardown(remove=config.auto_remove)
        return exit_code
    except BaseException:
        # Nothing ran (start reaps PID 1 before it raises): leave no trace.
        if container.pid == 0:
            container.teardown(remove=True)
        raise
    finally:
        if terminal is not None:
            terminal.restore()
