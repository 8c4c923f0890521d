"""Errors raised by minicontainer, and the exit status each one maps to.

Every failure that reaches the command line is a ``MinictrError``. Its
``exit_code`` follows Docker's convention: 125 when the runtime itself failed,
126 when the container's command exists but cannot be executed, 127 when it
cannot be found. Lower layers translate ``OSError`` into these classes at
their boundary, so the CLI prints one line and exits with the right status.
"""

from __future__ import annotations


class MinictrError(Exception):
    """A failure of minictr itself: exit status 125."""

    exit_code = 125


class InvalidArgument(MinictrError):
    """Bad user input, found before anything was created."""


class NotFound(MinictrError):
    """A container, image, network or volume that does not exist."""


class Conflict(MinictrError):
    """A name already taken, or an object still in use."""


class KernelError(MinictrError):
    """A system call failed; the message names the call and its arguments."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class CgroupError(MinictrError):
    """A cgroup could not be created, configured or removed."""


class CommandNotExecutable(MinictrError):
    """The container's command exists but exec failed: exit status 126."""

    exit_code = 126


class CommandNotFound(MinictrError):
    """The container's command was not found: exit status 127."""

    exit_code = 127
