"""The Python API: start, look at, enter, stop and remove containers from tests.

It calls the same library functions as the ``minictr`` commands, in the
calling process, so it needs root like them. State goes where
``MINICTR_ROOT`` and ``MINICTR_RUN`` point when each call is made.

Example::

    from minicontainer import run

    with run("rootfs/busybox", ["sleep", "60"], memory="64m") as container:
        result = container.exec(["cat", "/proc/self/cgroup"])
        assert result.exit_code == 0
    # the container, its cgroup and its directory are gone here
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from . import lifecycle, state

__all__ = ["Container", "ExecFailed", "ExecResult", "create", "get", "run"]


@dataclass
class ExecResult:
    """The exit code and output of a command run with :meth:`Container.exec`."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> str:
        """Stdout decoded as UTF-8."""
        return self.stdout.decode(errors="replace")


class Container:
    """A container known to minictr, looked up by id.

    Use it as a context manager to remove the container, running or not,
    when the block ends, even when it ends with an exception.
    """

    def __init__(self, container_id: str) -> None:
        self.id = container_id

    def __repr__(self) -> str:
        return f"Container({self.id[:12]!r}, name={self.name!r})"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove(force=True)

    # ------------------------------------------------------------ reading

    @property
    def name(self) -> str:
        return state.read_config(self.id).name

    @property
    def state(self) -> dict[str, Any]:
        """The true state: ``status``, ``pid``, ``exit_code``, ``oom_killed`` ..."""
        return lifecycle.current_state(self.id)

    @property
    def status(self) -> str:
        """``created``, ``running``, ``paused`` or ``exited``."""
        return self.state["status"]

    @property
    def pid(self) -> int:
        """The host pid of the container's PID 1, or 0 when it is not running."""
        record = self.state
        return record.get("pid") or 0 if record["status"] != "exited" else 0

    @property
    def namespaces(self) -> dict[str, int]:
        """The inode of each namespace of PID 1, such as ``{"pid": 4026532242}``."""
        from .inspection import namespaces_of

        return {name: ns["inode"] for name, ns in namespaces_of(self.pid).items()}

    @property
    def cgroup(self) -> Any:
        """The container's ``Cgroup`` object (``minicontainer.cgroups``), or None."""
        return lifecycle._cgroup_of(self.state)

    def stats(self) -> dict[str, Any]:
        """Return one reading of memory, CPU time, pids and I/O from the cgroup.

        The same numbers as ``minictr stats``, without the CPU percentage,
        which needs two readings (see ``minicontainer.stats.cpu_percent``).
        """
        from . import stats

        return stats.sample(self.id)

    def inspect(self) -> dict[str, Any]:
        """Return the same document as ``minictr inspect``."""
        from .inspection import inspect

        return inspect(self.id)

    def logs(self, stream: str | None = None) -> str:
        """Return the logged output, of one stream (``stdout``/``stderr``) or both."""
        from .inspection import read_logs

        return "".join(
            entry["log"]
            for entry in read_logs(self.id)
            if stream is None or entry["stream"] == stream
        )

    # ------------------------------------------------------------ acting

    def exec(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        input: bytes | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Run ``command`` inside the container and capture its output.

        With ``check``, raise ExecFailed when the exit code is not 0.
        """
        from .exec import exec_in

        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if input is not None else (None, None)
        # exec_in blocks until the command exits, and a command can fill a
        # pipe before that, so threads drain the pipes while it waits.
        readers = [_PipeReader(out_r), _PipeReader(err_r)]
        writer = None
        if in_w is not None:
            writer = threading.Thread(target=_write_and_close, args=(in_w, input))
            writer.start()
        try:
            exit_code = exec_in(
                self.id,
                list(command),
                env=[f"{k}={v}" for k, v in (env or {}).items()],
                workdir=workdir,
                user=user,
                interactive=input is not None,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
            )
        finally:
            for fd in (out_w, err_w, in_r):
                if fd is not None:
                    os.close(fd)
            if writer is not None:
                writer.join()
            stdout, stderr = (reader.result() for reader in readers)
        result = ExecResult(exit_code, stdout, stderr)
        if check and result.exit_code != 0:
            raise ExecFailed(command, result)
        return result

    def kill(self, signal: str | int = "SIGKILL") -> None:
        lifecycle.kill(self.id, signal)

    def stop(self, timeout: float | None = None) -> None:
        """Send the stop signal, then SIGKILL after ``timeout`` seconds."""
        lifecycle.stop(self.id, timeout)

    def start(self) -> None:
        lifecycle.start(self.id)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the container exits; return its exit code."""
        return lifecycle.wait(self.id, timeout)

    def pause(self) -> None:
        lifecycle.pause(self.id)

    def unpause(self) -> None:
        lifecycle.unpause(self.id)

    def remove(self, force: bool = False) -> None:
        """Remove the container; with ``force``, kill it first. Gone is not an error."""
        if not os.path.isdir(state.container_dir(self.id)):
            return
        lifecycle.remove(self.id, force=force)


class ExecFailed(AssertionError):
    """A command run with ``check=True`` exited with a status other than 0."""

    def __init__(self, command: list[str], result: ExecResult) -> None:
        super().__init__(
            f"command {command!r} exited with {result.exit_code}:"
            f" {result.stderr.decode(errors='replace').strip()}"
        )
        self.result = result


class _PipeReader(threading.Thread):
    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.chunks: list[bytes] = []
        self.start()

    def run(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self.chunks.append(chunk)
        os.close(self.fd)

    def result(self) -> bytes:
        self.join()
        return b"".join(self.chunks)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        pass  # the command exited without reading everything
    finally:
        os.close(fd)


def run(
    rootfs: str,
    command: list[str],
    *,
    options: list[str] | None = None,
    **settings: Any,
) -> Container:
    """Start a detached container from ``rootfs`` and return it once its command runs.

    ``rootfs`` is a directory or an image. ``settings`` are the long options
    of ``minictr run`` with ``_`` for ``-``: ``name="web"``,
    ``env={"A": "1"}``, ``memory="64m"``, ``network="none"``,
    ``stop_timeout=2``. ``pull`` is the pull policy of ``--pull``:
    ``"missing"`` (the default) pulls an image that is not stored,
    ``"always"`` pulls it every time and ``"never"`` raises ``NotFound``
    instead. ``insecure_registry=True`` pulls over plain HTTP. A pull's
    progress goes to stderr. ``options`` takes further command-line options
    as given to ``minictr run``, such as ``["--cap-add", "NET_ADMIN"]``.
    """
    config = build_config(rootfs, command, options=options, **settings)
    return Container(lifecycle.run_detached(config))


def create(
    rootfs: str, command: list[str], *, options: list[str] | None = None, **settings
) -> Container:
    """Create a container like :func:`run` without starting it.

    It takes the same settings, ``pull`` among them.
    """
    config = build_config(rootfs, command, options=options, **settings)
    return Container(lifecycle.create(config))


def build_config(
    rootfs: str, command: list[str], *, options: list[str] | None = None, **settings
):
    """Parse ``settings`` and ``options`` with the ``minictr run`` options."""
    import click

    from .cli import container_options, make_config

    argv = list(options or [])
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, dict):
            for item_key, item_value in value.items():
                argv += [flag, f"{item_key}={item_value}"]
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]

    @click.command()
    @container_options
    def parse(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    try:
        kwargs = parse.main(argv, standalone_mode=False)
    except click.ClickException as exc:
        from .errors import InvalidArgument

        raise InvalidArgument(exc.format_message()) from exc
    return make_config(rootfs, tuple(command), kwargs, detach=True)


def get(reference: str) -> Container:
    """Return the container with this name, id or unique id prefix."""
    return Container(state.find(reference))
