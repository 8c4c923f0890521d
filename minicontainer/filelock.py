"""File locks (flock) that a forked child does not keep.

A flock(2) lock belongs to an open file description, and fork(2) copies
descriptors, so a child forked while its parent holds a lock holds it too
until the child closes its copy. minictr forks from more than one thread:
``compose up`` starts a container's monitor in one thread while a
healthcheck runs ``exec`` in another. A monitor forked while the other
thread held the containers lock would keep that lock for as long as it
runs, and every later minictr command, the monitor's own included, would
wait for it forever. So each lock's descriptor is closed in the child right
after fork; the parent still holds the lock and releases it as usual.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

# Descriptors of the locks this process has taken. The guard keeps a fork from
# falling between the open and the registration.
_lock_fds: set[int] = set()
_guard = threading.Lock()


def _before_fork() -> None:
    _guard.acquire()


def _after_fork_in_parent() -> None:
    _guard.release()


def _after_fork_in_child() -> None:
    for fd in _lock_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _lock_fds.clear()
    _guard.release()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


@contextlib.contextmanager
def flocked(path: str, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """Hold a flock of ``mode`` on ``path`` (created if missing) for the block."""
    with _guard:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _lock_fds.add(fd)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        with _guard:
            _lock_fds.discard(fd)
            os.close(fd)


@contextlib.contextmanager
def try_flocked(path: str, mode: int = fcntl.LOCK_EX) -> Iterator[bool]:
    """Like :func:`flocked`, without waiting; yields whether the lock was taken."""
    with _guard:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _lock_fds.add(fd)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        with _guard:
            _lock_fds.discard(fd)
            os.close(fd)
