"""Unpacking an OCI layer archive into a directory that overlayfs can stack.

An image layer is a tar archive of what changed relative to the layers below.
A deletion is an empty entry named ``.wh.NAME`` (a whiteout), and a directory
whose lower content must be hidden contains an entry ``.wh..wh..opq``. overlayfs
has its own encoding for both, and this module writes that encoding so each
unpacked layer can be a lowerdir as is. In it a whiteout is a character
device 0/0, and an opaque directory carries the extended attribute
``trusted.overlay.opaque=y`` (Documentation/filesystems/overlayfs.rst in the
kernel tree).

Layers come from registries and tarballs that nobody here controls, so every
entry is created relative to an open directory descriptor: the parent path is
walked one component at a time with ``O_NOFOLLOW``, and no symlink, absolute
path or ``..`` component can lead a write outside the layer directory. A
symlink's target is stored as given, absolute or not, because it is resolved
later inside the container's root and never by the unpacker.
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from typing import IO, BinaryIO

from .errors import LayerError

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

# Attributes in this namespace steer overlayfs itself (redirect, metacopy,
# origin). Taken from an archive, they would let a layer point into others.
_OVERLAY_XATTR_PREFIX = "trusted.overlay."

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HashingReader:
    """A read-only stream wrapper that computes the sha256 of what it returns."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def open_decompressed(fileobj: BinaryIO) -> IO[bytes]:
    """Return a stream of the tar inside ``fileobj``, found by its magic bytes.

    gzip and uncompressed tar are always available. zstd needs the
    ``zstandard`` package, which is imported only when a zstd layer appears.
    """
    magic = fileobj.read(4)
    fileobj.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if magic == _ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError as exc:
            raise LayerError(
                "layer is zstd-compressed but the zstandard package is missing: "
                "install it with 'pip install zstandard'"
            ) from exc
        return zstandard.ZstdDecompressor().stream_reader(fileobj)
    return fileobj


@dataclass
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of regular file content written


def unpack_layer_blob(
    blob_path: str, dest: str, *, preserve_owner: bool | None = None
) -> UnpackResult:
    """Decompress and unpack the layer blob at ``blob_path`` into ``dest``."""
    with open(blob_path, "rb") as raw:
        reader = HashingReader(open_decompressed(raw))
        size = unpack_tar_stream(reader, dest, preserve_owner=preserve_owner)
        reader.drain()
    return UnpackResult(diff_id=reader.digest(), size=size)


def unpack_tar_stream(
    stream: IO[bytes] | HashingReader, dest: str, *, preserve_owner: bool | None = None
) -> int:
    """Unpack the uncompressed tar ``stream`` into the directory ``dest``.

    Whiteouts become overlayfs whiteouts. Ownership is kept when
    ``preserve_owner`` is true, which defaults to running as root. Returns
    the number of bytes of regular file content written. Raises
    ``LayerError`` for an entry that would land outside ``dest``; what was
    already written stays, so callers unpack into a temporary directory.
    """
    if preserve_owner is None:
        preserve_owner = os.geteuid() == 0
    tree = _LayerTree(dest, preserve_owner)
    try:
        with tarfile.open(
            fileobj=stream,
            mode="r|",
            errors="surrogateescape",  # type: ignore[call-overload]
        ) as archive:
            for member in archive:
                tree.extract(archive, member)
        tree.finish_directories()
    except tarfile.TarError as exc:
        raise LayerError(f"invalid layer archive: {exc}") from exc
    finally:
        tree.close()
    return tree.bytes_written


def split_member_name(name: str) -> list[str]:
    """Split a tar entry name into path components, rejecting unsafe ones."""
    if name.startswith("/"):
        raise LayerError(f"layer entry {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} has a '..' component")
    return parts


class _LayerTree:
    """The destination directory, written only through descriptors."""

    def __init__(self, dest: str, preserve_owner: bool) -> None:
        self.root_fd = os.open(dest, _DIR_FLAGS)
        self.preserve_owner = preserve_owner
        self.bytes_written = 0
        self._directories: list[tuple[list[str], tarfile.TarInfo]] = []
        # The last parent opened, reused while entries stay in one directory.
        # Removing a directory marks it stale, because the removed directory
        # may be on its path; the descriptor stays open for the current entry.
        self._cached_parent: tuple[tuple[str, ...], int] | None = None
        self._cache_stale = False

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)

    def _drop_cache(self) -> None:
        if self._cached_parent is not None:
            os.close(self._cached_parent[1])
            self._cached_parent = None

    def open_directory(self, parts: list[str], create: bool, entry: str) -> int:
        """Open the directory ``parts`` below the root without following links.

        The caller closes the returned descriptor.
        """
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                fd = self._open_child_directory(fd, part, create, entry)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child_directory(
        self, fd: int, part: str, create: bool, entry: str
    ) -> int:
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"layer entry {entry!r} refers to {part!r}, which does not exist"
                ) from None
            os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise LayerError(
                f"layer entry {entry!r} goes through {part!r}, which is a symlink "
                "or a file, not a directory"
            ) from None
        os.close(fd)
        return child

    def _parent_fd(self, parts: list[str], entry: str) -> int:
        key = tuple(parts[:-1])
        cached = self._cached_parent
        if cached is not None and cached[0] == key and not self._cache_stale:
            return cached[1]
        fd = self.open_directory(list(key), True, entry)
        self._drop_cache()
        self._cached_parent = (key, fd)
        self._cache_stale = False
        return fd

    def extract(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_member_name(member.name)
        if not parts:
            if not member.isdir():
                raise LayerError(f"layer entry {member.name!r} replaces the root")
            self._directories.append((parts, member))
            return

        parent_fd = self._parent_fd(parts, member.name)
        name = parts[-1]
        if name == OPAQUE_MARKER:
            os.setxattr(parent_fd, OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX):
            self._write_whiteout(parent_fd, name[len(WHITEOUT_PREFIX) :], member)
            return

        existing = _lstat_at(parent_fd, name)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                self._remove(parent_fd, name, existing)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            self._directories.append((parts, member))
            return

        self._remove(parent_fd, name, existing)
        if member.isreg():
            self._write_file(archive, member, parent_fd, name)
            return
        self._write_special(member, parent_fd, name)
        self._apply_attributes(member, parent_fd, name)

    def _write_whiteout(
        self, parent_fd: int, target: str, member: tarfile.TarInfo
    ) -> None:
        if target in ("", ".", ".."):
            raise LayerError(f"layer entry {member.name!r} is an invalid whiteout")
        self._remove(parent_fd, target, _lstat_at(parent_fd, target))
        os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)

    def _remove(
        self, parent_fd: int, name: str, existing: os.stat_result | None
    ) -> None:
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            self._cache_stale = True
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)

    def _write_file(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        parent_fd: int,
        name: str,
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        with os.fdopen(fd, "wb") as out:
            source = archive.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, _CHUNK)
            out.flush()  # a write after utime would reset the mtime
            self.bytes_written += member.size
            if self.preserve_owner:
                os.fchown(fd, member.uid, member.gid)
            # chown clears setuid and setgid, so the mode comes after it.
            os.fchmod(fd, member.mode)
            _set_xattrs(member, fd)
            os.utime(fd, ns=(_mtime_ns(member), _mtime_ns(member)))

    def _write_special(
        self, member: tarfile.TarInfo, parent_fd: int, name: str
    ) -> None:
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=parent_fd)
        elif member.islnk():
            self._write_hard_link(member, parent_fd, name)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | 0o600, device, dir_fd=parent_fd)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
        else:
            raise LayerError(
                f"layer entry {member.name!r} has unsupported type {member.type!r}"
            )

    def _write_hard_link(
        self, member: tarfile.TarInfo, parent_fd: int, name: str
    ) -> None:
        try:
            target = split_member_name(member.linkname)
        except LayerError:
            raise LayerError(
                f"layer entry {member.name!r} is a hard link to "
                f"{member.linkname!r}, which is outside the layer"
            ) from None
        if not target:
            raise LayerError(f"layer entry {member.name!r} links to the root")
        target_fd = self.open_directory(target[:-1], False, member.name)
        try:
            # follow_symlinks=False makes this linkat(2) without
            # AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
            os.link(
                target[-1],
                name,
                src_dir_fd=target_fd,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        except FileNotFoundError:
            raise LayerError(
                f"layer entry {member.name!r} links to {member.linkname!r}, "
                "which is not in the layer"
            ) from None
        finally:
            os.close(target_fd)

    def _apply_attributes(
        self, member: tarfile.TarInfo, parent_fd: int, name: str
    ) -> None:
        if member.islnk():
            return  # a hard link shares the attributes of its target
        if self.preserve_owner:
            os.chown(
                name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False
            )
        if not member.issym():
            os.chmod(name, member.mode, dir_fd=parent_fd)
        _set_xattrs(member, f"/proc/self/fd/{parent_fd}/{name}")
        mtime = _mtime_ns(member)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)

    def finish_directories(self) -> None:
        """Apply directory modes, owners and times, deepest first.

        They come last so a read-only directory does not block its entries
        and writing the entries does not change the directory's time.
        """
        self._drop_cache()
        for parts, member in reversed(self._directories):
            try:
                fd = self.open_directory(parts, False, member.name)
            except LayerError:
                continue  # removed or replaced by a later entry
            try:
                if self.preserve_owner:
                    os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, member.mode)
                _set_xattrs(member, fd)
                os.utime(fd, ns=(_mtime_ns(member), _mtime_ns(member)))
            finally:
                os.close(fd)


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)


def archive_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """Return the extended attributes a tar entry carries in its PAX headers.

    GNU tar and Go's archive/tar write ``SCHILY.xattr.NAME``, and libarchive
    writes ``LIBARCHIVE.xattr.NAME`` with a base64 value.
    """
    found: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            found[key[len("SCHILY.xattr.") :]] = value.encode(
                "utf-8", "surrogateescape"
            )
        elif key.startswith("LIBARCHIVE.xattr."):
            name = key[len("LIBARCHIVE.xattr.") :]
            found[name] = base64.b64decode(value + "=" * (-len(value) % 4))
    return found


def _set_xattrs(member: tarfile.TarInfo, target: int | str) -> None:
    for name, value in archive_xattrs(member).items():
        if name.startswith(_OVERLAY_XATTR_PREFIX):
            log.warning("layer entry %r: ignored xattr %s", member.name, name)
            continue
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            # A file system without that namespace (security.selinux on a
            # host without SELinux, user.* on a symlink) must not fail a pull.
            log.warning(
                "layer entry %r: xattr %s not set: %s", member.name, name, exc.strerror
            )
