"""RUN: execute a command in a container on the stage's layers.

The container is an ordinary one from ``minicontainer.runtime``: its root is
an overlay of the stage's layer directories under a fresh upper directory,
so every file the command creates, changes or deletes lands in that upper
directory, deletions as overlayfs whiteouts. After the command exits, the
upper directory is archived into the new layer and the container removed.

SIGINT and SIGTERM cancel the build. Forwarding them would not stop the
step: PID 1 of a PID namespace receives only the signals it installed a
handler for, so ``RUN sleep 1000`` would ignore both. The step's PID 1 gets
SIGKILL instead, which the kernel always delivers and which takes the whole
PID namespace with it, and the container is torn down before the build
exits with 128 plus the signal number.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .. import state
from ..config import ContainerConfig, ProcessConfig
from ..errors import MinictrError
from ..runtime import FORWARDED_SIGNALS, Container, Stdio

log = logging.getLogger(__name__)

# Mount points the runtime creates for its generated /etc files when the
# image lacks them. They are empty files, not changes the command made.
_GENERATED_MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


# The signals that cancel a build, as Ctrl-C and `kill` send them.
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunFailed(MinictrError):
    """A RUN command that exited with a non-zero status."""


class BuildCancelled(MinictrError):
    """A build stopped by SIGINT or SIGTERM: exit status 128 plus the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"build cancelled by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


@contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Raise ``BuildCancelled`` where SIGINT or SIGTERM arrives, until the end.

    Raising lets every ``finally`` between here and the signal run, so what
    the build created so far is removed. Outside the main thread, where
    Python cannot install signal handlers, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, _frame: object) -> None:
        raise BuildCancelled(signum)

    previous = {sig: signal.signal(sig, cancel) for sig in CANCEL_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _StepSignals:
    """Signal handlers for the time a RUN step's container exists.

    A cancelling signal is recorded and PID 1 killed, instead of raising at
    an arbitrary point of the container's setup or teardown. Other signals
    are forwarded to PID 1, as ``minictr run`` does.
    """

    def __init__(self) -> None:
        self.pid = 0
        self.cancelled_by = 0
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in FORWARDED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def attach(self, pid: int) -> None:
        """Send later signals to ``pid``; kill it now if the build was cancelled."""
        self.pid = pid
        if self.cancelled_by:
            self._kill()

    def raise_if_cancelled(self) -> None:
        if self.cancelled_by:
            raise BuildCancelled(self.cancelled_by)

    def _handle(self, signum: int, _frame: object) -> None:
        if signum in CANCEL_SIGNALS:
            self.cancelled_by = self.cancelled_by or signum
            self._kill()
        elif self.pid:
            _signal_quietly(self.pid, signum)

    def _kill(self) -> None:
        if self.pid:
            log.debug("kill the RUN step's PID 1 (pid %d) with SIGKILL", self.pid)
            _signal_quietly(self.pid, signal.SIGKILL)


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@dataclass
class RunRequest:
    args: list[str]
    env: list[str]
    cwd: str
    user: str
    lower_dirs: list[str]  # top first
    network: str  # "none", "bridge", "host" or a network name


def run_in_container(
    request: RunRequest,
    on_output: Callable[[bytes], None],
    commit: Callable[[str], object],
) -> object:
    """Run the request's command; on success call ``commit(upper_dir)``.

    Returns what ``commit`` returns. Raises ``RunFailed`` with the exit
    status when the command fails. The container is removed either way.
    """
    container_id = state.new_id()
    config = ContainerConfig(
        id=container_id,
        name=f"build-{container_id[:12]}",
        process=ProcessConfig(
            args=request.args, env=request.env, cwd=request.cwd, user=request.user
        ),
        rootfs="(build step)",
        lower_dirs=request.lower_dirs,
        hostname=container_id[:12],
        network={"mode": request.network},
        labels={"io.minictr.build": "true"},
        auto_remove=True,
    )
    signals = _StepSignals()
    signals.install()
    try:
        directory = state.reserve(config)
        container = Container(config, directory)
        return _run_and_commit(container, request, signals, on_output, commit)
    finally:
        signals.restore()


def _run_and_commit(
    container: Container,
    request: RunRequest,
    signals: _StepSignals,
    on_output: Callable[[bytes], None],
    commit: Callable[[str], object],
) -> object:
    container_id = container.config.id
    stopped = False
    try:
        exit_code = _run(container, signals, on_output)
        container.record_exit(exit_code)
        container.teardown(remove=False)
        stopped = True
        signals.raise_if_cancelled()
        if exit_code != 0:
            raise RunFailed(
                f"the command {' '.join(request.args)!r} returned exit status "
                f"{exit_code}"
            )
        upper = os.path.join(container.directory, "upper")
        _drop_generated_mount_points(upper)
        return commit(upper)
    except MinictrError as exc:
        # SIGKILL during setup makes start() fail; report the cancellation.
        if signals.cancelled_by and not isinstance(exc, BuildCancelled):
            raise BuildCancelled(signals.cancelled_by) from exc
        raise
    finally:
        if stopped:
            state.remove_dir(container_id)
        else:
            container.teardown(remove=True)


def _run(
    container: Container, signals: _StepSignals, on_output: Callable[[bytes], None]
) -> int:
    signals.raise_if_cancelled()
    container.prepare()
    signals.raise_if_cancelled()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        container.start(Stdio(stdin=None, stdout=out_w, stderr=out_w))
    finally:
        os.close(out_w)
    signals.attach(container.pid)
    # The pipe reaches end of file once every process of the container has
    # exited, which the kernel forces when PID 1 exits.
    with os.fdopen(out_r, "rb", buffering=0) as output:
        while chunk := output.read(65536):
            on_output(chunk)
    return container.wait()


def _drop_generated_mount_points(upper: str) -> None:
    for relative in _GENERATED_MOUNT_POINTS:
        path = os.path.join(upper, relative)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if info.st_size == 0 and os.path.isfile(path) and not os.path.islink(path):
            log.debug("drop the generated mount point /%s from the layer", relative)
            os.unlink(path)
