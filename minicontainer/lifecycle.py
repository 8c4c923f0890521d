"""Detached containers: create, start in the background, and their monitor.

``minictr run -d`` forks a monitor that outlives the command: it starts the
container, tells the waiting command that the container's process runs (or
why it could not start), then copies the container's stdout and stderr into
the log file, reaps PID 1, records the exit status and tears down. Its only
link to the command that started it is a pipe that is closed once the
container runs, so the command can exit at once.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import time

from . import errors, state
from .config import ContainerConfig
from .runtime import Container, Stdio

log = logging.getLogger(__name__)

LOG_FILE = "container.log"


def create(config: ContainerConfig) -> str:
    """Record a new container in state "created"; return its id."""
    state.reserve(config)
    return config.id


def run_detached(config: ContainerConfig) -> str:
    """Create and start ``config`` in the background; return its id."""
    create(config)
    try:
        start_detached(config.id)
    except errors.MinictrError:
        if state.read_state(config.id).get("status") in ("created", "removing"):
            state.remove_dir(config.id)
        raise
    return config.id


def start_detached(container_id: str) -> None:
    """Fork the monitor of ``container_id`` and wait until its command runs."""
    config = state.read_config(container_id)
    status = state.read_state(container_id).get("status")
    if status == "running":
        return
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    monitor = os.fork()
    if monitor == 0:
        os.close(ready_r)
        _monitor_main(config, ready_w)
    os.close(ready_w)
    report = b""
    while chunk := os.read(ready_r, 65536):
        report += chunk
    os.close(ready_r)
    # The monitor forks once more so that it is not our child; reap the first fork.
    os.waitpid(monitor, 0)
    message = json.loads(report or b'{"error": "the monitor exited before starting"}')
    if "error" in message:
        cls = getattr(errors, message.get("class", ""), errors.MinictrError)
        if not (isinstance(cls, type) and issubclass(cls, errors.MinictrError)):
            cls = errors.MinictrError
        raise cls(message["error"])


def _monitor_main(config: ContainerConfig, ready_w: int) -> None:
    """Become the container's monitor: daemonize, start, log, wait; never return."""
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _detach_stdio()
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        directory = state.container_dir(config.id)
        container = Container(config, directory)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            container.prepare()
            container.start(Stdio(stdin=None, stdout=out_w, stderr=err_w))
        except BaseException as exc:
            container.teardown(remove=False)
            state.update_state(config.id, status="created", pid=0)
            cls = type(exc).__name__ if isinstance(exc, errors.MinictrError) else "MinictrError"
            os.write(ready_w, json.dumps({"error": str(exc), "class": cls}).encode())
            os._exit(1)
        os.close(out_w)
        os.close(err_w)
        state.update_state(config.id, monitor_pid=os.getpid())
        os.write(ready_w, b'{"ok": true}')
        os.close(ready_w)
        _copy_logs(os.path.join(directory, LOG_FILE), out_r, err_r)
        exit_code = container.wait()
        container.record_exit(exit_code)
        container.teardown(remove=config.auto_remove)
    except BaseException:  # noqa: BLE001 - a daemon has nobody to report to
        log.exception("monitor of container %s failed", config.id[:12])
        os._exit(1)
    os._exit(0)


def _detach_stdio() -> None:
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _copy_logs(path: str, out_r: int, err_r: int) -> None:
    """Append the container's output to ``path`` as JSON lines until both pipes close."""
    streams = {out_r: "stdout", err_r: "stderr"}
    partial = {out_r: b"", err_r: b""}
    with open(path, "ab", buffering=0) as logfile:
        while streams:
            ready, _, _ = select.select(list(streams), [], [])
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    if partial[fd]:
                        _write_entry(logfile, streams[fd], partial[fd])
                    os.close(fd)
                    del streams[fd]
                    continue
                lines = (partial[fd] + data).split(b"\n")
                partial[fd] = lines.pop()
                for line in lines:
                    _write_entry(logfile, streams[fd], line + b"\n")


def _write_entry(logfile, stream: str, data: bytes) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"
    entry = {"log": data.decode(errors="replace"), "stream": stream, "time": stamp}
    logfile.write(json.dumps(entry).encode() + b"\n")
