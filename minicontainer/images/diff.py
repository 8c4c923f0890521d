"""Turning a directory into an OCI layer archive.

Two kinds of directory become layers. A plain root file system (``minictr
import DIR``) is archived as it is. An overlayfs upper directory, where a
container or a build step wrote its changes, records deletions in overlayfs
form: a character device 0/0 for a removed file and the extended attribute
``trusted.overlay.opaque=y`` on a directory that hides the lower one. The OCI
image spec encodes those as ``.wh.NAME`` entries and a ``.wh..wh..opq`` entry,
so this module translates them back, the reverse of ``unpack``.

Archives are written in PAX format with numeric owners and without user and
group names, so the same tree gives the same bytes and the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import IO

from .oci import OCI_LAYER_GZIP
from .unpack import OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX

_CHUNK = 1 << 20


@dataclass
class LayerBlob:
    digest: str  # sha256 of the compressed blob, as a manifest names it
    diff_id: str  # sha256 of the uncompressed tar, as the image config names it
    size: int  # bytes of the compressed blob
    media_type: str = OCI_LAYER_GZIP


class _DigestingWriter:
    """A write-only stream that counts and hashes bytes before passing them on."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def write_layer(source_dir: str, out: IO[bytes], *, overlay_upper: bool) -> LayerBlob:
    """Write ``source_dir`` to ``out`` as a gzip-compressed layer archive.

    With ``overlay_upper`` set, overlayfs whiteouts and opaque directories
    become OCI whiteout entries. Returns the digests and the blob size.
    """
    compressed = _DigestingWriter(out)
    # mtime=0 and no file name in the gzip header keep the digest reproducible.
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as gz:  # type: ignore[arg-type]
        plain = _DigestingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(
            fileobj=plain,
            mode="w|",
            format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
        ) as archive:
            _add_tree(archive, source_dir, overlay_upper)
    return LayerBlob(compressed.digest(), plain.digest(), compressed.size)


def write_uncompressed_layer(source_dir: str, out: IO[bytes]) -> str:
    """Write ``source_dir`` to ``out`` as a plain tar; returns its diff ID."""
    plain = _DigestingWriter(out)
    with tarfile.open(
        fileobj=plain,
        mode="w|",
        format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
    ) as archive:
        _add_tree(archive, source_dir, overlay_upper=False)
    return plain.digest()


def _add_tree(archive: tarfile.TarFile, source_dir: str, overlay_upper: bool) -> None:
    seen_inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(source_dir):
        dirnames.sort()
        relative_dir = os.path.relpath(dirpath, source_dir)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            arcname = os.path.normpath(os.path.join(relative_dir, name))
            info = os.lstat(path)
            if overlay_upper and _is_whiteout(info):
                parent = os.path.dirname(arcname)
                whiteout = os.path.join(parent, WHITEOUT_PREFIX + name)
                archive.addfile(_bare_entry(whiteout, info))
                continue
            _add_entry(archive, path, arcname, info, seen_inodes)
            if overlay_upper and stat.S_ISDIR(info.st_mode) and _is_opaque(path):
                marker = os.path.join(arcname, OPAQUE_MARKER)
                archive.addfile(_bare_entry(marker, info))


def _add_entry(
    archive: tarfile.TarFile,
    path: str,
    arcname: str,
    info: os.stat_result,
    seen_inodes: dict[tuple[int, int], str],
) -> None:
    entry = archive.gettarinfo(path, arcname)
    if entry is None:
        return  # sockets have no tar form, and a server recreates them anyway
    entry.uname = entry.gname = ""
    entry.pax_headers = {
        "SCHILY.xattr." + name: value.decode("utf-8", "surrogateescape")
        for name, value in _read_xattrs(path).items()
    }
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        key = (info.st_dev, info.st_ino)
        if key in seen_inodes:
            entry.type = tarfile.LNKTYPE
            entry.linkname = seen_inodes[key]
            entry.size = 0
            archive.addfile(entry)
            return
        seen_inodes[key] = arcname
    if entry.isreg():
        with open(path, "rb") as content:
            archive.addfile(entry, content)
    else:
        archive.addfile(entry)


def _bare_entry(name: str, info: os.stat_result) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.mtime = int(info.st_mtime)
    entry.mode = 0o644
    return entry


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(0, 0)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _read_xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found = {}
    for name in names:
        if name.startswith("trusted.overlay."):
            continue  # overlayfs bookkeeping, not file content
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return found
