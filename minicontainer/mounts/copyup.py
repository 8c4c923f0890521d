"""Fill a new volume with what the image has at the mount point.

Docker copies the image's content at a volume's mount point into the volume
when the volume is empty, so ``-v data:/etc/app`` starts with the image's
default configuration instead of hiding it. The image is a stack of
overlayfs lower directories (top first), not one tree, so the copy merges
them the way overlayfs does. Layers are applied bottom to top. A character
device 0/0 is a whiteout that deletes the name. A directory with the
``trusted.overlay.opaque=y`` extended attribute hides everything below it.

The copy runs on the host, so the mount point is resolved inside each lower
with ``resolve_in_root``: a symlink in the image can never make the copy read
host files.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat

from ..paths import resolve_in_root, walk_symlinks

log = logging.getLogger(__name__)

OPAQUE_XATTR = "trusted.overlay.opaque"


def image_sources(lower_dirs: list[str], destination: str) -> list[str]:
    """Return the directories that make up ``destination``, bottom layer first.

    The walk down the stack stops at a layer where the path is a whiteout, a
    file, or an opaque directory, because nothing below it is visible.
    """
    sources = []
    for lower in lower_dirs:
        path = resolve_in_root(lower, destination)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            break
        sources.append(path)
        if _is_opaque(path):
            break
    sources.reverse()
    return sources


def resolve_in_layers(layers: list[str], path: str) -> str:
    """Return the container path that ``path`` names in the merged ``layers``.

    ``layers`` are host directories, top first, as overlayfs stacks them.
    Symlinks are followed the way the container will see them once the
    overlay is mounted (an absolute link restarts at the root, ``..`` stops
    there), so the result tells before anything is created where a mount
    target would land. Missing components are kept as they are.
    """

    def read_link(resolved: list[str], name: str) -> str | None:
        directories = list(layers)
        for component in resolved:
            directories = _lookup(directories, component)[1]
        return _lookup(directories, name)[0]

    return "/" + "/".join(walk_symlinks(path, read_link))


def _lookup(directories: list[str], name: str) -> tuple[str | None, list[str]]:
    """Look ``name`` up in one merged directory made of ``directories``.

    Returns the link target when the visible entry is a symlink, and the
    host directories that make up the entry when it is a directory. As in
    overlayfs, the top layer that has the name decides what it is, and a
    whiteout, a file or an opaque directory hides the layers below.
    """
    found: list[str] = []
    for directory in directories:
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode) and not found:
            return os.readlink(path), []
        if not stat.S_ISDIR(info.st_mode):
            break
        found.append(path)
        if _is_opaque(path):
            break
    return None, found


def fill_volume(lower_dirs: list[str], destination: str, data_dir: str) -> bool:
    """Copy the image content at ``destination`` into the empty ``data_dir``.

    Returns whether anything was copied. Owners, modes and timestamps are
    kept, so a service that runs as another user can still write its files.
    """
    sources = image_sources(lower_dirs, destination)
    if not sources:
        return False
    log.debug("copy image content at %s into volume %s", destination, data_dir)
    for source in sources:
        _merge_tree(source, data_dir)
    _copy_metadata(os.lstat(sources[-1]), data_dir)
    return True


def _merge_tree(source: str, dest: str) -> None:
    with os.scandir(source) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            target = os.path.join(dest, entry.name)
            if _is_whiteout(info):
                _remove(target)
            elif stat.S_ISDIR(info.st_mode):
                _merge_dir(entry.path, info, target)
            else:
                _remove(target)
                _copy_entry(entry.path, info, target)


def _merge_dir(source: str, info: os.stat_result, target: str) -> None:
    if _is_opaque(source) or not _is_real_dir(target):
        _remove(target)
    if not os.path.lexists(target):
        os.mkdir(target, 0o700)
    _merge_tree(source, target)
    _copy_metadata(info, target)


def _copy_entry(source: str, info: os.stat_result, target: str) -> None:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(mode):
        shutil.copyfile(source, target, follow_symlinks=False)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(target, mode, info.st_rdev)
    else:
        log.debug("skip %s: a socket is not copied into a volume", source)
        return
    _copy_metadata(info, target)


def _copy_metadata(info: os.stat_result, target: str) -> None:
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        # chmod after chown, because chown clears the setuid and setgid bits.
        os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _is_real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _remove(path: str) -> None:
    if _is_real_dir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def empty_dir(path: str) -> None:
    """Delete everything inside ``path``, keeping ``path`` itself."""
    with os.scandir(path) as entries:
        for entry in entries:
            _remove(entry.path)
