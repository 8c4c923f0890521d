"""Typed setup steps: one source for doing, narrating and testing.

The runtime turns a container's configuration into an ordered list of steps
(mount, make a directory, make a device node, pivot_root, ...). The same list
is applied inside the container's namespaces, printed by ``--debug``, and
compared in unit tests. Each step's ``describe()`` is the narration line, so
what students read is what ran.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field

from . import syscalls

log = logging.getLogger("minicontainer.steps")


class Step:
    """One kernel action inside the container's setup."""

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        log.debug("%s", self.describe())
        self.apply()


@dataclass
class Mount(Step):
    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None

    def describe(self) -> str:
        text = (
            f"mount {self.source or 'none'} on {self.target} type {self.fstype or 'none'}"
            f" flags {syscalls.mount_flag_names(self.flags)}"
        )
        if self.data:
            text += f" data {self.data}"
        return text

    def apply(self) -> None:
        syscalls.mount(self.source, self.target, self.fstype, self.flags, self.data)


@dataclass
class MakeDir(Step):
    path: str
    mode: int = 0o755

    def describe(self) -> str:
        return f"mkdir -p {self.path} mode {self.mode:o}"

    def apply(self) -> None:
        os.makedirs(self.path, mode=self.mode, exist_ok=True)


@dataclass
class MakeNode(Step):
    """A device node made with mknod(2)."""

    path: str
    kind: str  # "c" for a character device, "b" for a block device
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0

    def describe(self) -> str:
        return (
            f"mknod {self.path} {self.kind} {self.major} {self.minor}"
            f" mode {self.mode:o}"
        )

    def apply(self) -> None:
        type_bits = stat.S_IFCHR if self.kind == "c" else stat.S_IFBLK
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.mknod(self.path, self.mode | type_bits, os.makedev(self.major, self.minor))
        # mknod applies the umask; chmod sets the mode exactly.
        os.chmod(self.path, self.mode)
        if self.uid or self.gid:
            os.chown(self.path, self.uid, self.gid)


@dataclass
class Symlink(Step):
    target: str
    path: str

    def describe(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def apply(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.symlink(self.target, self.path)


@dataclass
class WriteFile(Step):
    path: str
    content: str
    mode: int = 0o644

    def describe(self) -> str:
        return f"write {self.path} ({len(self.content)} bytes)"

    def apply(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
        try:
            os.write(fd, self.content.encode())
        finally:
            os.close(fd)


@dataclass
class PivotRoot(Step):
    """Make ``new_root`` the container's ``/`` and detach the host's root.

    ``pivot_root(".", ".")`` stacks the old root on top of the new one at the
    same place, so the old root can be detached with ``umount2(".",
    MNT_DETACH)`` without a spare directory inside the container.
    """

    new_root: str

    def describe(self) -> str:
        return f"pivot_root {self.new_root} (old root stacked on it, then detached)"

    def apply(self) -> None:
        os.chdir(self.new_root)
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")


@dataclass
class SetHostname(Step):
    hostname: str

    def describe(self) -> str:
        return f"sethostname {self.hostname}"

    def apply(self) -> None:
        syscalls.sethostname(self.hostname)


@dataclass
class Callback(Step):
    """A step implemented by a function, for setup that is not one call."""

    text: str
    function: object = field(repr=False, default=None)

    def describe(self) -> str:
        return self.text

    def apply(self) -> None:
        self.function()  # type: ignore[operator]


def run_all(steps: list[Step]) -> None:
    """Apply ``steps`` in order, narrating each at DEBUG level."""
    for step in steps:
        step.run()
