"""RUN: execute a command in a container on the stage's layers.

The container is an ordinary one from ``minicontainer.runtime``: its root is
an overlay of the stage's layer directories under a fresh upper directory,
so every file the command creates, changes or deletes lands in that upper
directory, deletions as overlayfs whiteouts. After the command exits, the
upper directory is archived into the new layer and the container removed.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from .. import state
from ..config import ContainerConfig, ProcessConfig
from ..errors import MinictrError
from ..runtime import FORWARDED_SIGNALS, Container, Stdio, install_signal_forwarding

log = logging.getLogger(__name__)

# Mount points the runtime creates for its generated /etc files when the
# image lacks them. They are empty files, not changes the command made.
_GENERATED_MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


class RunFailed(MinictrError):
    """A RUN command that exited with a non-zero status."""


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
    directory = state.reserve(config)
    container = Container(config, directory)
    stopped = False
    try:
        exit_code = _run(container, on_output)
        container.record_exit(exit_code)
        container.teardown(remove=False)
        stopped = True
        if exit_code != 0:
            raise RunFailed(
                f"the command {' '.join(request.args)!r} returned exit status "
                f"{exit_code}"
            )
        upper = os.path.join(directory, "upper")
        _drop_generated_mount_points(upper)
        return commit(upper)
    finally:
        if stopped:
            state.remove_dir(container_id)
        else:
            container.teardown(remove=True)


def _run(container: Container, on_output: Callable[[bytes], None]) -> int:
    container.prepare()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        container.start(Stdio(stdin=None, stdout=out_w, stderr=out_w))
    finally:
        os.close(out_w)
    install_signal_forwarding(container.pid)
    try:
        # The pipe reaches end of file once every process of the container
        # has exited, which the kernel forces when PID 1 exits.
        with os.fdopen(out_r, "rb", buffering=0) as output:
            while chunk := output.read(65536):
                on_output(chunk)
        return container.wait()
    finally:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
