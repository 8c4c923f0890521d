"""The idle part of a detached container's monitor: log copying and reaping.

A detached container needs a process on the host that stays its parent for
its whole life: the kernel reparents the container's PID 1 to the nearest
*child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), and only that process
can ``waitpid()`` for it and learn its exit status. The same process reads
the pipes that are PID 1's stdout and stderr, because a pipe with no reader
makes the next write fail with SIGPIPE.

The monitor that set the container up has the whole minicontainer package
and click in memory. Once the container runs, it execs this file with
``python -S -I``: no ``site`` and no package imports, only builtin modules.
The subreaper flag and the children survive ``execve()``, and the pipes are
passed as inherited descriptors. After PID 1 exits, this process writes
``exit_code`` in the container's directory and execs ``python -m
minicontainer.monitor finish ID``, which loads the package again to record
the exit in ``state.json`` and tear the container down.

Usage (internal)::

    python -S -I monitor.py watch DIRECTORY PID STDOUT_FD STDERR_FD PYTHON ID
    python -m minicontainer.monitor finish ID
"""

import os
import select
import sys
import time

# _json is the C accelerator behind the json module. Importing it alone
# avoids json's pure-Python layer and the re module it pulls in.
from _json import encode_basestring_ascii

EXIT_FILE = "exit_code"
LOG_FILE = "container.log"

# After PID 1 exits, output still in the pipes is copied for at most this
# long. A process outside the PID namespace that inherited a pipe could
# otherwise keep the monitor waiting for EOF forever.
DRAIN_SECONDS = 1.0


def timestamp(now: float) -> str:
    """Format ``now`` as RFC 3339 UTC with nanoseconds, as Docker's logs do."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{seconds}.{int(now % 1 * 1e9):09d}Z"


def log_entry(stream: str, data: bytes, now: float) -> bytes:
    """Return one JSON line of the log file: ``log``, ``stream`` and ``time``."""
    text = encode_basestring_ascii(data.decode(errors="replace"))
    return f'{{"log": {text}, "stream": "{stream}", "time": "{timestamp(now)}"}}\n'.encode()


class LogCopier:
    """Split the container's output into lines and append them to the log."""

    def __init__(self, path: str, streams: dict[int, str]) -> None:
        self.logfile = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.streams = dict(streams)
        self.partial = {fd: b"" for fd in streams}

    def read(self, fd: int) -> None:
        data = os.read(fd, 65536)
        if not data:
            self.close_stream(fd)
            return
        lines = (self.partial[fd] + data).split(b"\n")
        self.partial[fd] = lines.pop()
        now = time.time()
        out = b"".join(log_entry(self.streams[fd], line + b"\n", now) for line in lines)
        if out:
            os.write(self.logfile, out)

    def close_stream(self, fd: int) -> None:
        if self.partial[fd]:
            os.write(
                self.logfile, log_entry(self.streams[fd], self.partial[fd], time.time())
            )
        os.close(fd)
        del self.streams[fd]

    def close(self) -> None:
        for fd in list(self.streams):
            self.close_stream(fd)
        os.close(self.logfile)


def watch(directory: str, pid: int, out_fd: int, err_fd: int) -> tuple[int, float]:
    """Copy logs until PID 1 exits and its output is drained; return its exit code."""
    copier = LogCopier(
        os.path.join(directory, LOG_FILE), {out_fd: "stdout", err_fd: "stderr"}
    )
    # A pidfd becomes readable when the process exits (Linux 5.3), so one
    # select() waits for output and for the exit together.
    pidfd = os.pidfd_open(pid)
    exit_code = None
    finished = 0.0
    deadline = None
    while copier.streams:
        watched = list(copier.streams) + ([pidfd] if exit_code is None else [])
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
        ready, _, _ = select.select(watched, [], [], timeout)
        if not ready:
            break  # drained as long as allowed
        for fd in ready:
            if fd == pidfd:
                exit_code = reap(pid)
                finished = time.time()
                deadline = time.monotonic() + DRAIN_SECONDS
            else:
                copier.read(fd)
    copier.close()
    if exit_code is None:
        exit_code = reap(pid)
        finished = time.time()
    os.close(pidfd)
    reap_orphans()
    return exit_code, finished


def reap(pid: int) -> int:
    """Wait for ``pid``; return Docker's exit code (128+N after signal N)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return -1  # reaped by someone else: the exit code is unknown
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap_orphans() -> None:
    # When PID 1 exits the kernel kills the rest of its PID namespace. Those
    # processes are reparented to this subreaper, which must reap them.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def write_exit_file(directory: str, exit_code: int, finished: float) -> None:
    """Record the exit atomically, before the slower ``finish`` step runs."""
    path = os.path.join(directory, EXIT_FILE)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{exit_code} {timestamp(finished)}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def watch_main(argv: list[str]) -> None:
    directory, pid, out_fd, err_fd, python, container_id = argv
    with open("/proc/self/comm", "w") as comm:
        comm.write("minictr-monitor")
    exit_code, finished = watch(directory, int(pid), int(out_fd), int(err_fd))
    write_exit_file(directory, exit_code, finished)
    os.execv(python, [python, "-m", "minicontainer.monitor", "finish", container_id])


def finish_main(argv: list[str]) -> None:
    from minicontainer import lifecycle

    (container_id,) = argv
    lifecycle.finish(container_id)


if __name__ == "__main__":
    if sys.argv[1] == "watch":
        watch_main(sys.argv[2:])
    elif sys.argv[1] == "finish":
        finish_main(sys.argv[2:])
    else:
        sys.exit(f"minictr-monitor: unknown mode {sys.argv[1]!r}")
