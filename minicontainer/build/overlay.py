"""Changing a stage's file system without a container: COPY and ADD.

A COPY step needs the stage's current root to resolve its destination (an
existing directory keeps its owner and mode, a symbolic link in the path
resolves inside the image), and its result must be only the files it
changed. overlayfs gives both: a forked child enters a new mount namespace,
mounts the stage's layers as lower directories under an empty upper
directory, and copies into the merged tree. The upper directory then holds
exactly the new layer, as it does after a RUN step. Sources from another
stage (``COPY --from``) are mounted read-only beside it. The mounts vanish
with the child's mount namespace, so nothing is left on the host.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable

from .. import errors
from .. import syscalls as sc
from ..rootfs import link_lower_dirs, overlay_options
from ..steps import mount_from

log = logging.getLogger(__name__)


def _mount_read_only(lower_dirs: list[str], target: str, link_dir: str) -> None:
    if len(lower_dirs) == 1:
        # overlayfs without an upper directory needs two lower directories.
        sc.mount(lower_dirs[0], target, None, sc.MS_BIND | sc.MS_REC)
        return
    options = overlay_options(link_lower_dirs(lower_dirs, link_dir), None, None)
    mount_from(link_dir, "overlay", target, "overlay", sc.MS_RDONLY, options)


def change_in_overlay(
    lower_dirs: list[str],
    scratch_dir: str,
    action: Callable[[str, str | None], None],
    source_lower_dirs: list[str] | None = None,
) -> str:
    """Run ``action(merged, source_root)`` on an overlay of ``lower_dirs``.

    ``lower_dirs`` are top first. Returns the upper directory, inside a new
    temporary directory under ``scratch_dir`` that the caller removes.
    Errors raised by ``action`` in the child are raised again here.
    """
    base = tempfile.mkdtemp(prefix="step-", dir=scratch_dir)
    for name in ("upper", "work", "merged", "source"):
        os.mkdir(os.path.join(base, name), 0o755)
    upper = os.path.join(base, "upper")
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(error_r)
        _child(base, lower_dirs, source_lower_dirs, action, error_w)
    os.close(error_w)
    with os.fdopen(error_r, "rb") as report:
        data = report.read()
    _, status = os.waitpid(pid, 0)
    if data:
        _raise_report(data)
    if os.waitstatus_to_exitcode(status) != 0:
        raise errors.MinictrError(
            f"the copy process failed with status {os.waitstatus_to_exitcode(status)}"
        )
    return upper


def _child(
    base: str,
    lower_dirs: list[str],
    source_lower_dirs: list[str] | None,
    action: Callable[[str, str | None], None],
    error_w: int,
) -> None:
    try:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        merged = os.path.join(base, "merged")
        link_dir = os.path.join(base, "lower")
        names = link_lower_dirs(lower_dirs, link_dir)
        options = overlay_options(names, "../upper", "../work")
        log.debug("mount overlay on %s (%s, from %s)", merged, options, link_dir)
        mount_from(link_dir, "overlay", merged, "overlay", 0, options)
        source_root = None
        if source_lower_dirs is not None:
            source_root = os.path.join(base, "source")
            source_links = os.path.join(base, "source-lower")
            _mount_read_only(source_lower_dirs, source_root, source_links)
        action(merged, source_root)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
        report = {"class": type(exc).__name__, "message": _message(exc)}
        os.write(error_w, json.dumps(report).encode())
        os._exit(1)
    os._exit(0)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, errors.MinictrError):
        if exc.filename:
            return f"{exc.strerror}: {exc.filename}"
        return exc.strerror or str(exc)
    return str(exc)


def _raise_report(data: bytes) -> None:
    from .files import CopyError

    report = json.loads(data)
    classes = {
        "CopyError": CopyError,
        "InvalidArgument": errors.InvalidArgument,
        "KernelError": errors.KernelError,
    }
    cls = classes.get(report["class"], errors.MinictrError)
    raise cls(report["message"])


def remove_scratch(upper_dir: str) -> None:
    """Delete the temporary tree that ``change_in_overlay`` made."""
    shutil.rmtree(os.path.dirname(upper_dir), ignore_errors=True)
