"""COPY and ADD: matching sources, hashing them, and copying them into a root.

Sources are paths relative to a source root: the build context, or the root
file system of another stage for ``COPY --from``. A source with wildcards
is matched one path component at a time with Go's ``filepath.Match``.
Context paths that ``.dockerignore`` excludes are invisible: they match no
wildcard, name no source, and are skipped inside copied directories.

The copy follows Docker's rules. A directory source copies its content, not
itself. A file source lands at the destination path, or inside it when the
destination ends in ``/`` or is an existing directory. Several sources need
a directory destination ending in ``/``. Copied files keep their mode and
modification time and belong to root, unless ``--chown`` names an owner.
ADD unpacks a local tar archive (plain, gzip, bzip2 or xz) into the
destination directory instead of copying the archive file.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import posixpath
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from ..errors import InvalidArgument
from ..paths import resolve_in_root
from .ignore import IgnoreMatcher, go_match, has_wildcards

_CHUNK = 1 << 20


class CopyError(InvalidArgument):
    """A COPY or ADD source or destination that cannot be used."""


def match_sources(
    root: str, patterns: list[str], ignore: IgnoreMatcher | None
) -> list[str]:
    """Return the root-relative paths the source ``patterns`` name, in order.

    Raises ``CopyError`` for a pattern that leaves the root or matches nothing.
    """
    matched: list[str] = []
    for pattern in patterns:
        cleaned = posixpath.normpath("/" + pattern).lstrip("/") or "."
        if posixpath.normpath(pattern).startswith(".."):
            raise CopyError(f"source {pattern!r} is outside the build context")
        if has_wildcards(cleaned):
            found = _glob(root, cleaned.split("/"), ignore)
        elif _lexists_in(root, cleaned) and not _ignored(ignore, cleaned):
            found = [cleaned]
        else:
            found = []
        if not found:
            raise CopyError(
                f"source {pattern!r} matches no file: check the path, and that "
                ".dockerignore does not exclude it"
            )
        matched += [path for path in found if path not in matched]
    return matched


def _ignored(ignore: IgnoreMatcher | None, relative: str) -> bool:
    return ignore is not None and ignore.is_ignored(relative)


def _lexists_in(root: str, relative: str) -> bool:
    return relative == "." or os.path.lexists(resolve_in_root(root, "/" + relative))


def _glob(root: str, parts: list[str], ignore: IgnoreMatcher | None) -> list[str]:
    candidates = [""]
    for part in parts:
        following = []
        for candidate in candidates:
            directory = resolve_in_root(root, "/" + candidate)
            if not has_wildcards(part):
                path = posixpath.join(candidate, part)
                if os.path.lexists(os.path.join(directory, part)):
                    following.append(path)
                continue
            try:
                names = sorted(os.listdir(directory))
            except (NotADirectoryError, FileNotFoundError):
                continue
            following += [
                posixpath.join(candidate, name)
                for name in names
                if go_match(part, name)
            ]
        candidates = following
    return [path for path in candidates if not _ignored(ignore, path)]


@dataclass
class Entry:
    relative: str  # path below the source, "" for the source itself
    host_path: str
    info: os.stat_result


def iter_source(
    root: str, relative: str, ignore: IgnoreMatcher | None
) -> Iterator[Entry]:
    """Yield the source itself and, for a directory, everything below it.

    A symbolic link named as the source is followed inside ``root``; links
    below a directory are copied as links. Ignored paths are skipped, but an
    ignored directory is still entered when a ``!`` rule may re-include
    something below it.
    """
    path = resolve_in_root(root, "/" + relative) if relative != "." else root
    info = os.stat(path)
    yield Entry("", path, info)
    if stat.S_ISDIR(info.st_mode):
        yield from _walk(path, "" if relative == "." else relative, "", ignore)


def _walk(
    directory: str, context_path: str, below: str, ignore: IgnoreMatcher | None
) -> Iterator[Entry]:
    for name in sorted(os.listdir(directory)):
        host_path = os.path.join(directory, name)
        relative = posixpath.join(below, name)
        in_context = posixpath.join(context_path, relative)
        info = os.lstat(host_path)
        excluded = _ignored(ignore, in_context)
        if not excluded:
            yield Entry(relative, host_path, info)
        if stat.S_ISDIR(info.st_mode) and (
            not excluded or (ignore is not None and ignore.has_exceptions)
        ):
            yield from _walk(host_path, context_path, relative, ignore)


def digest_sources(
    root: str, sources: list[str], ignore: IgnoreMatcher | None, archives: bool
) -> str:
    """Return a digest of the sources' names, types, modes and content.

    Owners and timestamps are left out: copied files get new owners anyway,
    and a file that was only touched must not invalidate the build cache.
    """
    digest = hashlib.sha256()
    for source in sources:
        digest.update(f"source {source}\0".encode())
        for entry in iter_source(root, source, ignore):
            mode = entry.info.st_mode
            digest.update(f"{entry.relative}\0{mode:o}\0".encode())
            if stat.S_ISREG(mode):
                digest.update(_file_digest(entry.host_path).encode())
            elif stat.S_ISLNK(mode):
                digest.update(os.readlink(entry.host_path).encode())
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                digest.update(f"{entry.info.st_rdev}".encode())
        if archives:
            digest.update(b"unpack-archives")
    return "sha256:" + digest.hexdigest()


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as content:
        while chunk := content.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CopyRequest:
    source_root: str
    sources: list[str]  # relative to source_root, as match_sources returns them
    destination: str  # absolute container path; a trailing "/" means a directory
    ignore: IgnoreMatcher | None = None
    owner: tuple[int, int] = (0, 0)
    chmod: int | None = None
    unpack_archives: bool = False  # ADD


def copy_into_root(root: str, request: CopyRequest) -> None:
    """Copy the request's sources into the file system mounted at ``root``."""
    wants_directory = request.destination.endswith("/") or request.destination.endswith(
        "/."
    )
    if len(request.sources) > 1 and not wants_directory:
        raise CopyError(
            f"destination {request.destination!r} must end with '/' when "
            "several files are copied"
        )
    destination = resolve_in_root(root, request.destination)
    for source in request.sources:
        entries = iter_source(request.source_root, source, request.ignore)
        top = next(entries)
        if stat.S_ISDIR(top.info.st_mode):
            _make_directories(root, destination, request.owner)
            for entry in entries:
                target = _below(root, destination, entry.relative)
                _copy_entry(entry, target, request)
        elif request.unpack_archives and _is_tar_archive(top.host_path):
            _make_directories(root, destination, request.owner)
            _unpack_archive(top.host_path, destination)
        else:
            target = destination
            if wants_directory or os.path.isdir(destination):
                _make_directories(root, destination, request.owner)
                target = os.path.join(destination, posixpath.basename(source))
            else:
                _make_directories(root, os.path.dirname(destination), request.owner)
            _copy_entry(top, target, request)


def _below(root: str, directory: str, relative: str) -> str:
    # Resolve inside the root so that a symbolic link in the image cannot
    # redirect the copy to a path outside it.
    container_path = "/" + os.path.relpath(os.path.join(directory, relative), root)
    return resolve_in_root(root, container_path)


def _make_directories(root: str, path: str, owner: tuple[int, int]) -> None:
    missing = []
    while not os.path.isdir(path):
        if os.path.lexists(path):
            raise CopyError(
                f"cannot copy into /{os.path.relpath(path, root)}: it is not a directory"
            )
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chown(directory, *owner)


def _copy_entry(entry: Entry, target: str, request: CopyRequest) -> None:
    mode = entry.info.st_mode
    if stat.S_ISDIR(mode):
        if not os.path.isdir(target):
            _remove_existing(target)
            os.mkdir(target, 0o700)
    else:
        _remove_existing(target)
        if stat.S_ISREG(mode):
            shutil.copyfile(entry.host_path, target, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.host_path), target)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(target, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(target, mode, entry.info.st_rdev)
        else:
            return  # sockets belong to a running server, not to an image
    os.lchown(target, *request.owner)
    if not stat.S_ISLNK(mode):
        # chmod after chown: chown clears the setuid and setgid bits.
        bits = request.chmod if request.chmod is not None else stat.S_IMODE(mode)
        os.chmod(target, bits)
    os.utime(
        target,
        ns=(entry.info.st_atime_ns, entry.info.st_mtime_ns),
        follow_symlinks=False,
    )


def _remove_existing(target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)


_MAGIC = {
    b"\x1f\x8b": gzip.open,
    b"BZh": bz2.open,
    b"\xfd7zXZ\x00": lzma.open,
}


def _open_decompressed(path: str) -> IO[bytes]:
    with open(path, "rb") as head:
        magic = head.read(6)
    for prefix, opener in _MAGIC.items():
        if magic.startswith(prefix):
            return opener(path, "rb")  # type: ignore[no-any-return, operator]
    return open(path, "rb")


def _is_tar_archive(path: str) -> bool:
    try:
        with _open_decompressed(path) as stream:
            header = stream.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    # A POSIX or GNU tar header has "ustar" at offset 257.
    return len(header) == 512 and header[257:262] == b"ustar"


def _unpack_archive(path: str, destination: str) -> None:
    from ..images.unpack import unpack_tar_stream

    # Entries keep the owners recorded in the archive: like Docker's ADD,
    # --chown applies to copied files, not to unpacked ones.
    with _open_decompressed(path) as stream:
        unpack_tar_stream(stream, destination)
