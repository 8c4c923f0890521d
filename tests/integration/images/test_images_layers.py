"""Layers made from overlayfs upper directories, and images committed from them.

These need root: whiteouts are character devices and the opaque marker is a
``trusted.*`` extended attribute.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minicontainer import syscalls
from minicontainer.images import layer_from_upper_dir, resolve_for_run
from minicontainer.images.archive import import_rootfs
from minicontainer.images.reference import parse_reference
from minicontainer.images.store import ImageStore
from minicontainer.images.unpack import (
    OPAQUE_XATTR,
    unpack_layer_blob,
    unpack_tar_stream,
)


def describe_tree(root: Path) -> dict[str, tuple]:
    """Map each path below ``root`` to what a layer must preserve about it."""
    described = {}
    inodes: dict[int, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        info = os.lstat(path)
        kind = stat.S_IFMT(info.st_mode)
        xattrs = {}
        if not stat.S_ISLNK(info.st_mode):
            xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
        detail: object = None
        if stat.S_ISLNK(info.st_mode):
            detail = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            detail = (path.read_bytes(), inodes.setdefault(info.st_ino, relative))
        elif stat.S_ISCHR(info.st_mode):
            detail = (os.major(info.st_rdev), os.minor(info.st_rdev))
        mode = stat.S_IMODE(info.st_mode)
        described[relative] = (kind, mode, info.st_uid, info.st_gid, detail, xattrs)
    return described


@pytest.fixture
def upper(tmp_path) -> Path:
    """An overlayfs upper directory as a container would leave it."""
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "config").write_text("changed\n")
    os.mknod(upper / "etc" / "removed", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "var" / "cache").mkdir(parents=True)
    os.setxattr(upper / "var" / "cache", OPAQUE_XATTR, b"y")
    (upper / "var" / "cache" / "fresh").write_text("fresh\n")
    tool = upper / "usr" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    os.chown(tool, 0, 50)
    os.chmod(tool, 0o4755)
    os.link(tool, upper / "usr" / "bin" / "tool-link")
    os.symlink("/usr/bin/tool", upper / "usr" / "bin" / "alias")
    os.mknod(upper / "etc" / "console", stat.S_IFCHR | 0o600, os.makedev(5, 1))
    (upper / "etc" / "labelled").write_text("x")
    os.setxattr(upper / "etc" / "labelled", "user.lesson", b"overlay")
    return upper


def test_upper_dir_layer_round_trips(upper, tmp_path, state_dirs):
    layer = layer_from_upper_dir(str(upper), root=state_dirs["root"])
    store = ImageStore(state_dirs["root"])
    assert layer.size == os.path.getsize(store.blob_path(layer.digest))

    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    result = unpack_layer_blob(store.blob_path(layer.digest), str(unpacked))
    assert result.diff_id == layer.diff_id
    assert describe_tree(unpacked) == describe_tree(upper)


def test_upper_dir_layer_uses_oci_whiteouts(upper, state_dirs):
    layer = layer_from_upper_dir(str(upper), root=state_dirs["root"])
    path = ImageStore(state_dirs["root"]).blob_path(layer.digest)
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert "etc/.wh.removed" in names
    assert "var/cache/.wh..wh..opq" in names
    assert "etc/removed" not in names


def test_upper_dir_layer_digest_is_reproducible(upper, state_dirs):
    first = layer_from_upper_dir(str(upper), root=state_dirs["root"])
    second = layer_from_upper_dir(str(upper), root=state_dirs["root"])
    assert first == second


def test_unpack_ignores_overlay_xattrs_from_archive(tmp_path):
    entry = tarfile.TarInfo("dir")
    entry.type = tarfile.DIRTYPE
    entry.pax_headers = {
        "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
        "SCHILY.xattr.user.kept": "yes",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry)
    unpack_tar_stream(io.BytesIO(buffer.getvalue()), str(tmp_path))
    assert os.listxattr(tmp_path / "dir") == ["user.kept"]


def test_commit_image_stacks_new_layer(upper, busybox_rootfs, state_dirs, tmp_path):
    store = ImageStore(state_dirs["root"])
    base = import_rootfs(store, str(busybox_rootfs), parse_reference("lab/base"))
    with store.ingest_lock():
        layer = layer_from_upper_dir(str(upper), root=state_dirs["root"])
        config = {"Cmd": ["/bin/sh"], "Env": ["STEP=2"]}
        history = [{"created_by": "RUN change things"}]
        image = store.commit_image(
            base, [layer], config, history, [parse_reference("lab/child:1")]
        )
    assert image.diff_ids == base.diff_ids + [layer.diff_id]
    assert len(image.config["history"]) == 2

    lower = resolve_for_run("lab/child:1", root=store.root).lower_dirs
    assert len(lower) == 2
    merged = tmp_path / "merged"
    merged.mkdir()
    syscalls.mount("overlay", str(merged), "overlay", 0, "lowerdir=" + ":".join(lower))
    try:
        assert (merged / "bin" / "busybox").is_file()
        assert (merged / "etc" / "config").read_text() == "changed\n"
        assert not (merged / "etc" / "removed").exists()
    finally:
        syscalls.umount2(str(merged), syscalls.MNT_DETACH)
