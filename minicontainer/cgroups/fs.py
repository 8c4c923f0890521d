"""Reading and writing cgroupfs files: the one place that touches them.

Each write is a ``CgroupWrite`` step, so the ``--debug`` narration shows
every file and value, and unit tests can compare the planned writes. Errors
from the kernel become ``CgroupError`` with the file, the value and a hint,
because the errno alone misleads: EINVAL means the kernel rejected the value,
EBUSY from rmdir means processes or child cgroups remain.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass

from ..errors import CgroupError
from ..steps import Step

log = logging.getLogger(__name__)

_WRITE_HINTS = {
    errno.EINVAL: "the kernel rejected the value",
    errno.ENOENT: "the controller is not enabled for this cgroup",
    errno.EACCES: "cgroups are not writable here; run as root",
    errno.EPERM: "cgroups are not writable here; run as root",
    errno.EROFS: "the cgroup file system is mounted read-only",
    errno.ENOSPC: "the cpuset has no CPUs or memory nodes yet",
    errno.EOPNOTSUPP: "the cgroup does not support this operation",
    errno.EBUSY: (
        "the cgroup is in use: on cgroup v2 a cgroup with processes of its own"
        " cannot enable controllers for its children"
    ),
}


@dataclass(frozen=True)
class Setting:
    """One limit file to write, relative to a container's cgroup directory.

    A setting that is not ``required`` is skipped when its file is missing.
    """

    file: str
    value: str
    required: bool = True

    @property
    def controller(self) -> str:
        """The controller that owns the file: the file name's prefix."""
        return self.file.split(".", 1)[0]


@dataclass
class CgroupWrite(Step):
    """Write ``value`` to the cgroupfs file at ``path``."""

    path: str
    value: str

    def describe(self) -> str:
        return f"write {self.value!r} to {self.path}"

    def apply(self) -> None:
        write(self.path, self.value)


def write(path: str, value: str) -> None:
    """Write one value with a single write(2), as cgroupfs expects."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        raise _error(f"cannot open {path} to write {value!r}", exc) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise _error(f"writing {value!r} to {path} failed", exc) from exc
    finally:
        os.close(fd)


def _error(message: str, exc: OSError) -> CgroupError:
    hint = _WRITE_HINTS.get(exc.errno or 0)
    text = f"{message}: {exc.strerror}"
    return CgroupError(f"{text} ({hint})" if hint else text)


def read(path: str) -> str:
    """Return the content of a cgroupfs file without the final newline."""
    with open(path) as file:
        return file.read().rstrip("\n")


def read_keyed(path: str) -> dict[str, int]:
    """Parse a flat keyed file such as ``memory.events`` (``key value`` lines)."""
    values = {}
    for line in read(path).splitlines():
        key, _, number = line.partition(" ")
        if number.strip().lstrip("-").isdigit():
            values[key] = int(number)
    return values


def read_pids(directory: str) -> list[int]:
    """Return the processes in the cgroup at ``directory`` (empty if it is gone)."""
    try:
        return [
            int(line) for line in read(os.path.join(directory, "cgroup.procs")).split()
        ]
    except FileNotFoundError:
        return []


def make_dir(path: str) -> bool:
    """Create one cgroup directory; return False if it existed already."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _error(f"cannot create cgroup {path}", exc) from exc
    log.debug("mkdir %s", path)
    return True


def remove_tree(path: str, timeout: float = 10.0) -> None:
    """Remove the cgroup at ``path`` and the cgroups below it, deepest first.

    A cgroup directory is removed with rmdir(2) alone: its files are not real
    files, and unlinking them fails. rmdir returns EBUSY while the cgroup still
    has processes, including ones that have exited but are not yet reaped, so
    it is retried until ``timeout`` seconds have passed.
    """
    if not os.path.isdir(path):
        return
    children = [
        os.path.join(top, name)
        for top, dirs, _ in os.walk(path, topdown=False)
        for name in dirs
    ]
    for directory in [*children, path]:
        _rmdir_retrying(directory, timeout)


def _rmdir_retrying(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            os.rmdir(path)
            log.debug("rmdir %s", path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                pids = read_pids(path)
                detail = f" (processes still inside: {pids[:10]})" if pids else ""
                raise CgroupError(
                    f"cannot remove cgroup {path}: {exc.strerror}{detail}"
                ) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
