"""Turn Docker-style options into a container config, and run it.

This is the layer between the command line (or the Python API) and the
runtime: it validates every option before anything is created, resolves the
root file system (a directory, or an image that is pulled first when the
pull policy requires it), and fills a ``ContainerConfig``.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from . import state
from .config import ContainerConfig, ProcessConfig
from .errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from .images.pulling import PullSettings

_HOSTNAME_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$")
_ENV_KEY = re.compile(r"^[^=\s]+$")


class NoCommand(InvalidArgument):
    """Neither the options nor the image name a command to run."""


def parse_env(items: list[str], host_env: dict[str, str] | None = None) -> list[str]:
    """Return ``KEY=VALUE`` items; a bare ``KEY`` takes the host's value, as in Docker."""
    host_env = os.environ if host_env is None else host_env
    result = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not _ENV_KEY.match(key):
            raise InvalidArgument(
                f"invalid environment variable {item!r}: expected KEY=VALUE"
            )
        if sep:
            result.append(f"{key}={value}")
        elif key in host_env:
            result.append(f"{key}={host_env[key]}")
    return result


def read_env_file(path: str) -> list[str]:
    """Read a Docker env file: ``KEY=VALUE`` lines, ``#`` comments, blank lines."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read env file {path!r}: {exc.strerror}") from exc
    items = [line.strip() for line in lines]
    return parse_env([line for line in items if line and not line.startswith("#")])


def validate_hostname(hostname: str) -> None:
    """Reject what the kernel (64 bytes at most) or RFC 1123 would not accept."""
    if len(hostname.encode()) > 64:
        raise InvalidArgument(
            f"invalid hostname {hostname!r}: {len(hostname.encode())} bytes, the kernel"
            " allows at most 64"
        )
    labels = hostname.split(".")
    if not hostname or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise InvalidArgument(
            f"invalid hostname {hostname!r}: use letters, digits and '-' in"
            " dot-separated labels"
        )


def parse_stop_signal(value: str) -> str:
    """Return a signal given as ``SIGTERM``, ``TERM`` or ``15`` as its name."""
    import signal

    text = value.strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text)).name
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"].name
    except (KeyError, ValueError):
        raise InvalidArgument(
            f"invalid --stop-signal {value!r}: give a signal name such as SIGTERM,"
            " or its number"
        ) from None


def validate_workdir(workdir: str) -> None:
    if not workdir.startswith("/"):
        raise InvalidArgument(
            f"invalid working directory {workdir!r}: it must be absolute"
        )


def resolve_rootfs(
    rootfs: str, pull: PullSettings | None = None
) -> tuple[list[str], dict | None, str]:
    """Return overlay lower dirs, the image config (or None) and the image id.

    An image is pulled first as ``pull`` sets (by default, when it is not in
    the store). A directory is never pulled.
    """
    if os.path.isdir(rootfs):
        return [os.path.realpath(rootfs)], None, ""
    if os.path.exists(rootfs):
        raise InvalidArgument(
            f"root file system {rootfs!r} is not a directory: give the directory"
            " that holds the container's files, or an image name"
        )
    # "rootfs/busybx" is a mistyped directory, not an image named that way,
    # when its first component is a local directory.
    looks_like_path = rootfs.startswith(("/", ".")) or (
        "/" in rootfs and os.path.isdir(rootfs.split("/", 1)[0])
    )
    if not looks_like_path:
        from .images import resolve_for_run
        from .images.pulling import PullSettings, ensure_image

        ensure_image(rootfs, pull or PullSettings())
        image = resolve_for_run(rootfs)
        return list(image.lower_dirs), image.config, image.image_id
    raise NotFound(
        f"root file system {rootfs!r} not found: give a directory"
        " (build the sample one with 'make rootfs') or an image name"
    )


def build_config(
    rootfs: str,
    command: list[str],
    *,
    name: str = "",
    hostname: str = "",
    env: list[str] | None = None,
    env_files: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    detach: bool = False,
    auto_remove: bool = False,
    read_only: bool = False,
    stop_signal: str | None = None,
    stop_timeout: int | None = None,
    labels: dict[str, str] | None = None,
    pull: PullSettings | None = None,
) -> ContainerConfig:
    """Validate options and return the config of a new container.

    ``pull`` sets when an image is pulled (default: when it is missing).
    """
    if name:
        state.validate_name(name)
    if hostname:
        validate_hostname(hostname)
    if workdir is not None:
        validate_workdir(workdir)
    if user is not None:
        from .process import parse_user_spec

        parse_user_spec(user)

    lower_dirs, image_config, image_id = resolve_rootfs(rootfs, pull)
    image_config = image_config or {}
    args = _command_for(command, entrypoint, image_config)

    environment: list[str] = []
    if image_config:
        from .images import image_env

        environment = list(image_env(image_config))
    for path in env_files or []:
        environment += read_env_file(path)
    environment += parse_env(env or [])

    container_id = state.new_id()
    process = ProcessConfig(
        args=args,
        env=environment,
        cwd=workdir or image_config.get("WorkingDir") or "/",
        user=user if user is not None else (image_config.get("User") or ""),
        terminal=tty,
        interactive=interactive,
    )
    return ContainerConfig(
        id=container_id,
        name=name,
        process=process,
        rootfs=rootfs,
        lower_dirs=lower_dirs,
        image=image_id,
        hostname=hostname or container_id[:12],
        auto_remove=auto_remove,
        detach=detach,
        readonly_rootfs=read_only,
        stop_signal=parse_stop_signal(
            stop_signal or image_config.get("StopSignal") or "SIGTERM"
        ),
        stop_timeout=10 if stop_timeout is None else stop_timeout,
        labels=dict(labels or {}),
        exposed_ports=sorted(image_config.get("ExposedPorts") or {}),
    )


def _command_for(
    command: list[str], entrypoint: str | None, image_config: dict
) -> list[str]:
    if image_config:
        from .images import merge_command

        args = merge_command(image_config, entrypoint, command)
    else:
        args = ([entrypoint] if entrypoint else []) + list(command)
    if not args and image_config:
        raise NoCommand(
            "no command specified: the image has no Entrypoint or Cmd, so give a"
            " command after the image name"
        )
    if not args:
        raise NoCommand("no command specified: give one after the root file system")
    return args
