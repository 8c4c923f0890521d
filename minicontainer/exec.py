"""Run a command inside a running container: setns(2) into its namespaces.

A process joins an existing namespace by opening the namespace's file in
``/proc/PID/ns/`` and calling ``setns()`` on it. The order matters:

- Every file is opened first, because joining the mount namespace changes
  what ``/proc`` paths lead to.
- The mount namespace goes after the others, since it switches the root
  directory to the container's, and nothing later needs the host's files.
- The user namespace, when the container has one, is joined last, by the
  command's own process. minictr's containers create it after their other
  namespaces, so those belong to the host's user namespace and joining
  them needs the host's capabilities, which the user namespace would take.
- With ``-t``, the pseudo-terminal is opened inside the container's mount
  namespace, on the container's own devpts, and its master side is passed
  back to minictr over a Unix socket (SCM_RIGHTS), so ``tty`` in the
  container names it, as in Docker.
- Joining a PID namespace does not move the caller. Only children created
  afterwards are inside it, so the joining process forks once more and the
  child execs the command.

The process tree while the command runs::

    minictr exec (on the host, waits for the helper)
      └─ helper: joins the cgroup and the namespaces, reaps the command
           └─ the command, inside the container's PID namespace

The helper reaps the command, so neither the container nor the host keeps
a zombie. It also joins the container's cgroup first, so the command's
memory and pids count against the container's limits.
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import Any

from . import errors, lifecycle, process, security, state, syscalls
from .config import ContainerConfig

log = logging.getLogger(__name__)

# Join order: mount after the others, user last (by the command itself).
# "time" is joined only where it differs.
JOIN_ORDER = ("ipc", "uts", "net", "cgroup", "pid", "time", "mnt", "user")


def namespaces_to_join(pid: int) -> list[str]:
    """Return the namespaces of ``pid`` that differ from this process's, in join order."""
    names = []
    for name in JOIN_ORDER:
        try:
            theirs = os.stat(f"/proc/{pid}/ns/{name}").st_ino
            ours = os.stat(f"/proc/self/ns/{name}").st_ino
        except FileNotFoundError:
            continue  # this kernel lacks the namespace type
        if theirs != ours:
            names.append(name)
    return names


def open_namespaces(pid: int, start_time: int | None) -> list[tuple[str, int]]:
    """Open the namespace files of ``pid``; fail if it is not PID 1 any more."""
    opened = []
    try:
        for name in namespaces_to_join(pid):
            fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            opened.append((name, fd))
    except OSError as exc:
        _close_all(opened)
        raise errors.NotFound(
            f"cannot open the namespaces of pid {pid}: {exc.strerror}"
        ) from exc
    # The pid could have been reused between reading the state and the opens.
    if not lifecycle.process_alive(pid, start_time):
        _close_all(opened)
        raise lifecycle.NotRunning(f"process {pid} exited while joining it")
    return opened


def _close_all(opened: list[tuple[str, int]]) -> None:
    for _, fd in opened:
        os.close(fd)


def exec_in(
    container_id: str,
    args: list[str],
    *,
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    detach: bool = False,
    stdin: int | None = None,
    stdout: int = 1,
    stderr: int = 2,
    forward_signals: bool = False,
) -> int:
    """Run ``args`` in the running container; return its exit code.

    ``env``, ``workdir`` and ``user`` override the container's own. With
    ``detach`` the command runs in the background and 0 is returned once it
    has been executed. Raises CommandNotFound (127) or CommandNotExecutable
    (126) when the command cannot run, NotRunning when the container is not
    running.
    """
    from .runtime import Stdio, install_signal_forwarding

    record = lifecycle.current_state(container_id)
    if record["status"] == "paused":
        raise lifecycle.NotRunning(
            f"container {container_id[:12]} is paused: unpause it first"
        )
    if record["status"] != "running":
        raise lifecycle.NotRunning(f"container {container_id[:12]} is not running")
    config = state.read_config(container_id)
    _import_child_modules(config)

    terminal = None
    console = None
    if tty:
        import socket

        # The helper opens the pty in the container and sends its master here.
        console, helper_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stdio = Stdio()  # replaced in the helper by the pty's slave side
    elif detach:
        null = _dev_null()
        stdio = Stdio(stdin=None, stdout=null, stderr=null)
    else:
        if interactive and stdin is None:
            stdin = 0  # the caller's own stdin
        stdio = Stdio(stdin=stdin, stdout=stdout, stderr=stderr)
    namespaces = open_namespaces(record["pid"], record.get("pid_start_time"))
    request = _Request(config, args, env or [], workdir, user, tty, stdio)
    if console is not None:
        request.console = helper_console.fileno()
    try:
        helper = _fork_helper(record, namespaces, request, detach)
        if console is not None:
            terminal = _receive_terminal(console)
    finally:
        _close_all(namespaces)
        if console is not None:
            console.close()
            helper_console.close()
        if detach and not tty:
            os.close(stdio.stdout)
    if detach:
        return 0
    if forward_signals:
        install_signal_forwarding(helper)
    try:
        if terminal is not None:
            return terminal.relay(helper, interactive)
        return _wait(helper)
    finally:
        if terminal is not None:
            terminal.restore()


class _Request:
    def __init__(
        self,
        config: ContainerConfig,
        args: list[str],
        env: list[str],
        workdir: str | None,
        user: str | None,
        tty: bool,
        stdio: Any,
    ) -> None:
        self.config = config
        self.args = args
        self.env = env
        self.workdir = workdir
        self.user = user
        self.tty = tty
        self.stdio = stdio
        self.console: int | None = None  # the helper's end of the pty socket


def _fork_helper(
    record: dict[str, Any],
    namespaces: list[tuple[str, int]],
    request: _Request,
    detach: bool,
) -> int:
    """Fork the helper; return its pid once the command runs, or raise its error."""
    from .runtime import _error_from_pipe

    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:
        os.close(error_r)
        if detach:
            if os.fork() != 0:
                # The helper of a detached command outlives minictr: init reaps it.
                os._exit(0)
            # Holding the caller's stdout would keep a reader of it waiting.
            for fd in (0, 1, 2):
                os.dup2(request.stdio.stdout, fd)
        _helper_main(record, namespaces, request, error_w)
    os.close(error_w)
    try:
        failure = _error_from_pipe(error_r)
    finally:
        os.close(error_r)
    if failure is not None or detach:
        _wait(helper)
    if failure is not None:
        raise failure
    return helper


def _receive_terminal(console: Any) -> Any:
    """Receive the pty master the helper opened; return a Terminal for it."""
    import socket

    from . import tty as tty_module

    _, fds, _, _ = socket.recv_fds(console, 16, 1)
    if not fds:
        raise errors.MinictrError("exec -t: no terminal came back from the container")
    terminal = tty_module.Terminal(fds[0], -1)
    terminal.copy_window_size()
    return terminal


def _open_terminal_inside(request: _Request) -> None:
    """Open a pty on the container's devpts; send its master to minictr."""
    import socket

    from .runtime import Stdio

    master, slave = os.openpty()
    log.debug("openpty in the container: %s", os.ttyname(slave))
    with socket.socket(fileno=request.console) as console:
        socket.send_fds(console, [b"pty"], [master])
    request.console = None
    os.close(master)
    request.stdio = Stdio(terminal=slave)


def _helper_main(
    record: dict[str, Any],
    namespaces: list[tuple[str, int]],
    request: _Request,
    error_w: int,
) -> None:
    """Join the cgroup and namespaces, fork the command, reap it; never return."""
    from .runtime import _report_and_exit, _reset_signals
    from .steps import set_process_role

    try:
        set_process_role("helper")
        _reset_signals()
        _close_inherited_fds(namespaces, request, error_w)
        security.harden_joining_process()
        _join_cgroup(record)
        user_fd = None
        for name, fd in namespaces:
            if name == "user":
                user_fd = fd  # joined by the command, last
                continue
            log.debug("setns %s (of pid %d)", name, record["pid"])
            syscalls.setns(fd)
            os.close(fd)
        if request.tty:
            _open_terminal_inside(request)
        # setns(CLONE_NEWPID) applies to children only, so the command is
        # forked to land inside the container's PID namespace.
        log.debug("fork (the child is the command, in the container's PID namespace)")
        command = os.fork()
        if command == 0:
            _command_main(request, error_w, user_fd)
    except BaseException as exc:  # noqa: BLE001 - everything must reach minictr
        _report_and_exit(error_w, exc)
    os.close(error_w)
    if user_fd is not None:
        os.close(user_fd)
    if request.stdio.terminal is not None:
        os.close(request.stdio.terminal)
    _forward_signals_to(command)
    os._exit(_wait(command))


def _close_inherited_fds(
    namespaces: list[tuple[str, int]], request: _Request, error_w: int
) -> None:
    """Close what the caller had open, such as its end of the command's stdin.

    A helper that kept the write end of the command's stdin pipe would stop
    the command from ever reading EOF.
    """
    keep = [fd for _, fd in namespaces] + [error_w]
    stdio = request.stdio
    keep += [stdio.stdin, stdio.stdout, stdio.stderr, stdio.terminal, request.console]
    process.close_other_fds([fd for fd in keep if fd is not None])


def _command_main(request: _Request, error_w: int, user_fd: int | None) -> None:
    """Set up the command's process inside the container and exec it."""
    from .runtime import _enter_workdir, _report_and_exit, _setup_stdio
    from .steps import set_process_role

    config = request.config
    try:
        set_process_role("command")
        # As in Docker, an exec that cannot start its command exits 126.
        try:
            identity = process.resolve_identity(
                config.process.user if request.user is None else request.user
            )
        except errors.InvalidArgument as exc:
            raise errors.CommandNotExecutable(str(exc)) from exc
        env = process.build_env(
            config.process.env + request.env,
            identity.home,
            config.hostname,
            request.tty,
        )
        if request.workdir:
            _enter_existing_workdir(request.workdir)
        else:
            _enter_workdir(config.process.cwd)
        _setup_stdio(request.stdio)
        process.close_other_fds([error_w] + ([user_fd] if user_fd is not None else []))
        security.apply_process(config, identity, userns_fd=user_fd)
        log.debug("exec %s in %s", shlex.join(request.args), os.getcwd())
        process.exec_command(request.args, env)
    except BaseException as exc:  # noqa: BLE001 - everything must reach minictr
        _report_and_exit(error_w, exc)


def _enter_existing_workdir(workdir: str) -> None:
    """Enter ``-w``; unlike run, exec does not create it, as Docker does not."""
    try:
        os.chdir(workdir)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise errors.CommandNotExecutable(
            f"working directory {workdir} does not exist in the container:"
            " create it first, or choose another -w"
        ) from exc


def _join_cgroup(record: dict[str, Any]) -> None:
    if not record.get("cgroup"):
        return
    from .cgroups import Cgroup

    Cgroup.from_dict(record["cgroup"]).add_process(os.getpid())


def _import_child_modules(config: ContainerConfig) -> None:
    """Import what the children use while the host's files are still visible.

    After setns into the mount namespace, an import would search the
    container's file system instead of the host's. The security module's
    ``prepare`` imports its submodules and compiles the seccomp filter.
    """
    security.prepare(config)
    from . import cgroups, runtime, tty  # noqa: F401


def _forward_signals_to(pid: int) -> None:
    from .runtime import install_signal_forwarding

    install_signal_forwarding(pid)


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _dev_null() -> int:
    return os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
