"""Typed setup steps: one source for doing, narrating and testing.

The runtime turns a container's configuration into an ordered list of steps
(mount, make a directory, make a device node, pivot_root, ...). The same list
is applied inside the container's namespaces, printed by ``--debug``, and
compared in unit tests. Each step's ``describe()`` is the narration line, so
what students read is what ran.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field

from . import syscalls
from .errors import InvalidArgument, KernelError
from .paths import resolve_in_root

log = logging.getLogger("minicontainer.steps")

# The process that narrates. After the fork the monitor and the container's
# processes work at the same time, so --debug prefixes each line with this.
process_role = "monitor"


def set_process_role(role: str) -> None:
    """Name the calling process in the --debug narration from now on."""
    global process_role
    process_role = role


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
    """A mount(2) call.

    With ``root`` set, ``target`` is a path inside the container's root,
    resolved without following symlinks out of it, and the mount point is
    created first: a directory, or an empty file when ``make`` is "file"
    (for bind mounts of single files). With ``cwd`` set, the call runs in
    that directory, so relative paths in ``data`` start there.
    """

    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    root: str | None = None
    make: str | None = "dir"
    cwd: str | None = None

    def describe(self) -> str:
        text = (
            f"mount {self.source or 'none'} on {_where(self.root, self.target)}"
            f" type {self.fstype or 'none'} flags {syscalls.mount_flag_names(self.flags)}"
        )
        if self.data:
            text += f" data {self.data}"
        if self.cwd:
            text += f" (from {self.cwd})"
        return text

    def _make_mount_point(self, target: str) -> None:
        if self.make == "file":
            _make_dirs(
                os.path.dirname(target),
                os.path.dirname(self.target),
                "mount point",
                leaf=self.target,
            )
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
        else:
            _make_dirs(target, self.target, "mount point")

    def apply(self) -> None:
        target = _host_path(self.root, self.target)
        if self.root and self.make and not os.path.lexists(target):
            try:
                self._make_mount_point(target)
            except OSError as exc:
                hint = (
                    "; a read-only mount covers that path, so make the file or"
                    " directory in the mounted source first"
                    if exc.errno == errno.EROFS
                    else ""
                )
                raise KernelError(
                    f"creating the mount point {self.target} in the container"
                    f" failed: {exc.strerror}{hint}",
                    exc.errno or 0,
                ) from exc
        try:
            if self.cwd:
                mount_from(
                    self.cwd, self.source, target, self.fstype, self.flags, self.data
                )
            else:
                syscalls.mount(self.source, target, self.fstype, self.flags, self.data)
        except KernelError as exc:
            if not self.root:
                raise
            # Name the path as the user wrote it, not the host's merged path.
            hint = _MOUNT_HINTS.get(exc.errno, "")
            message = (
                f"mount {self.source or 'none'} on {self.target} in the container"
                f" failed: {os.strerror(exc.errno)}{hint}"
            )
            raise KernelError(message, exc.errno) from exc


@dataclass
class MakeDir(Step):
    """``mkdir -p``; with ``owner`` (uid, gid), the directories it creates get it."""

    path: str
    mode: int = 0o755
    root: str | None = None
    what: str = "directory"  # how errors name the path, e.g. "working directory"
    owner: tuple[int, int] | None = None

    def describe(self) -> str:
        text = f"mkdir -p {_where(self.root, self.path)} mode {self.mode:o}"
        if self.owner is not None:
            text += f" owner {self.owner[0]}:{self.owner[1]}"
        return text

    def apply(self) -> None:
        host_path = _host_path(self.root, self.path)
        missing = []
        if self.owner is not None:
            parent = host_path
            while not os.path.lexists(parent):
                missing.append(parent)
                parent = os.path.dirname(parent)
        _make_dirs(host_path, self.path, self.what, self.mode)
        for created in missing:
            os.lchown(created, *self.owner)


def _make_dirs(
    host_path: str,
    path: str,
    what: str,
    mode: int = 0o755,
    leaf: str | None = None,
) -> None:
    """Create ``host_path`` and its parents; errors name the container path ``path``.

    ``leaf``, when given, is the container path that the error names instead,
    for a directory made as the parent of a file.
    """
    try:
        os.makedirs(host_path, mode=mode, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        # Walk up to the part that exists: that one is not a directory.
        blocker, blocker_host = path, host_path
        while blocker not in ("/", "") and not os.path.lexists(blocker_host):
            blocker, blocker_host = (
                os.path.dirname(blocker),
                os.path.dirname(blocker_host),
            )
        named = leaf or path
        if blocker == named:
            message = (
                f"{what} {named} is not a directory: a file of that name exists in"
                " the container's root"
            )
        else:
            message = (
                f"{what} {named} cannot be created: {blocker} is a file in the"
                " container's root; choose a path under a directory"
            )
        raise InvalidArgument(message) from exc


_MOUNT_HINTS = {
    errno.ENOTDIR: " (a directory and a file cannot be mounted on each other)",
    errno.ENOENT: " (the source does not exist)",
}


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
    root: str | None = None

    def describe(self) -> str:
        return (
            f"mknod {_where(self.root, self.path)} {self.kind} {self.major} {self.minor}"
            f" mode {self.mode:o}"
        )

    def apply(self) -> None:
        path = _host_path(self.root, self.path)
        type_bits = stat.S_IFCHR if self.kind == "c" else stat.S_IFBLK
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            os.mknod(path, self.mode | type_bits, os.makedev(self.major, self.minor))
        except OSError as exc:
            raise KernelError(
                f"creating device node {self.path} in the container failed:"
                f" {exc.strerror}; put device nodes under /dev",
                exc.errno or 0,
            ) from exc
        # mknod applies the umask; chmod sets the mode exactly.
        os.chmod(path, self.mode)
        if self.uid or self.gid:
            os.chown(path, self.uid, self.gid)


@dataclass
class Symlink(Step):
    target: str
    path: str
    root: str | None = None

    def describe(self) -> str:
        return f"symlink {_where(self.root, self.path)} -> {self.target}"

    def apply(self) -> None:
        path = _host_path(self.root, self.path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            os.rmdir(path)  # an empty mount point left by an earlier start
        os.symlink(self.target, path)


@dataclass
class WriteFile(Step):
    path: str
    content: str
    mode: int = 0o644
    root: str | None = None

    def describe(self) -> str:
        return f"write {_where(self.root, self.path)} ({len(self.content)} bytes)"

    def apply(self) -> None:
        path = _host_path(self.root, self.path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, self.mode)
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
class AttachMount(Step):
    """Attach a detached mount, made on the host before the fork, on ``target``.

    The detached mount is a descriptor from open_tree(2), here an id-mapped
    view of an image layer. move_mount(2) places it in this mount namespace.
    """

    tree_fd: int
    source: str
    target: str
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"move_mount {self.source}{note} on {self.target}"

    def apply(self) -> None:
        syscalls.attach_tree(self.tree_fd, self.target)
        os.close(self.tree_fd)


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


def mount_from(
    directory: str,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None,
) -> None:
    """Call mount(2) with ``directory`` as the working directory, then go back."""
    previous = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(directory)
        try:
            syscalls.mount(source, target, fstype, flags, data)
        except KernelError as exc:
            message = f"{exc} (relative paths from {directory})"
            raise KernelError(message, exc.errno) from None
    finally:
        os.fchdir(previous)
        os.close(previous)


def _host_path(root: str | None, path: str) -> str:
    return resolve_in_root(root, path) if root else path


def _where(root: str | None, path: str) -> str:
    return f"{root.rstrip('/')}{path}" if root else path


def run_all(steps: list[Step]) -> None:
    """Apply ``steps`` in order, narrating each at DEBUG level."""
    for step in steps:
        step.run()


@dataclass
class Unshare(Step):
    flags: int

    def describe(self) -> str:
        return f"unshare {syscalls.clone_flag_names(self.flags)}"

    def apply(self) -> None:
        syscalls.unshare(self.flags)


@dataclass
class SetNs(Step):
    """Join an existing namespace through its ``/proc/PID/ns/*`` file."""

    path: str

    def describe(self) -> str:
        return f"setns {self.path}"

    def apply(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(fd)
        finally:
            os.close(fd)


@dataclass
class LoopbackUp(Step):
    def describe(self) -> str:
        return "ioctl SIOCSIFFLAGS lo IFF_UP (bring up loopback in the new network namespace)"

    def apply(self) -> None:
        syscalls.set_link_up("lo")
