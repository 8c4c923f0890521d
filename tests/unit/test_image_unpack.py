"""Layer unpacking: legitimate content kept, hostile archives contained.

Each hostile case builds a small tar in memory and checks both that
unpacking fails and that nothing appeared outside the layer directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from minicontainer.images.errors import LayerError
from minicontainer.images.unpack import unpack_layer_blob, unpack_tar_stream


def entry(name, kind=tarfile.REGTYPE, data=b"", **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tar(*entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in entries:
            tar.addfile(info, content)
    return buffer.getvalue()


@pytest.fixture
def dirs(tmp_path):
    layer = tmp_path / "layer"
    outside = tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "target").write_text("original")
    return layer, outside


def unpack(data: bytes, layer) -> int:
    return unpack_tar_stream(io.BytesIO(data), str(layer), preserve_owner=False)


def outside_unchanged(outside) -> bool:
    names = sorted(os.listdir(outside))
    return names == ["target"] and (outside / "target").read_text() == "original"


# Hostile archives


def test_unpack_rejects_absolute_path(dirs):
    layer, outside = dirs
    data = make_tar(entry(str(outside / "evil"), data=b"x"))
    with pytest.raises(LayerError, match="absolute"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_dotdot(dirs):
    layer, outside = dirs
    data = make_tar(entry("../outside/evil", data=b"x"))
    with pytest.raises(LayerError, match="'..'"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_inner_dotdot(dirs):
    layer, outside = dirs
    data = make_tar(entry("a/b/../../../outside/evil", data=b"x"))
    with pytest.raises(LayerError):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_write_through_absolute_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
        entry("escape/evil", data=b"x"),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_write_through_relative_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("dir", tarfile.DIRTYPE),
        entry("dir/up", tarfile.SYMTYPE, linkname="../../outside"),
        entry("dir/up/evil", data=b"x"),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_directory_replaced_by_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("d", tarfile.DIRTYPE),
        entry("d/first", data=b"1"),
        entry("d", tarfile.SYMTYPE, linkname=str(outside)),
        entry("d/evil", data=b"x"),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_hard_link_with_dotdot(dirs):
    layer, outside = dirs
    data = make_tar(entry("link", tarfile.LNKTYPE, linkname="../outside/target"))
    with pytest.raises(LayerError):
        unpack(data, layer)
    assert not (layer / "link").exists()
    assert outside_unchanged(outside)


def test_unpack_rejects_hard_link_to_absolute_path(dirs):
    layer, outside = dirs
    data = make_tar(entry("link", tarfile.LNKTYPE, linkname=str(outside / "target")))
    with pytest.raises(LayerError) as raised:
        unpack(data, layer)
    message = str(raised.value)
    assert "'link' is a hard link to" in message
    assert repr(str(outside / "target")) in message
    assert "outside the layer" in message
    assert not (layer / "link").exists()


def test_unpack_rejects_hard_link_through_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
        entry("link", tarfile.LNKTYPE, linkname="escape/target"),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert not (layer / "link").exists()
    assert os.stat(outside / "target").st_nlink == 1


def test_unpack_rejects_hard_link_to_missing_file(dirs):
    layer, _ = dirs
    data = make_tar(entry("link", tarfile.LNKTYPE, linkname="nowhere"))
    with pytest.raises(LayerError, match="not in the layer"):
        unpack(data, layer)


def test_unpack_file_replaces_planted_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("file", tarfile.SYMTYPE, linkname=str(outside / "target")),
        entry("file", data=b"inside"),
    )
    unpack(data, layer)
    assert outside_unchanged(outside)
    assert not (layer / "file").is_symlink()
    assert (layer / "file").read_bytes() == b"inside"


def test_unpack_rejects_whiteout_through_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
        entry("escape/.wh.target", data=b""),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert outside_unchanged(outside)


def test_unpack_rejects_opaque_marker_through_symlink(dirs):
    layer, outside = dirs
    data = make_tar(
        entry("escape", tarfile.SYMTYPE, linkname=str(outside)),
        entry("escape/.wh..wh..opq", data=b""),
    )
    with pytest.raises(LayerError, match="symlink"):
        unpack(data, layer)
    assert os.listxattr(outside) == []


def test_unpack_rejects_file_replacing_root(dirs):
    layer, _ = dirs
    with pytest.raises(LayerError, match="root"):
        unpack(make_tar(entry("./", data=b"x")), layer)


def test_unpack_rejects_invalid_whiteout_name(dirs):
    layer, _ = dirs
    with pytest.raises(LayerError, match="whiteout"):
        unpack(make_tar(entry("dir/.wh.", data=b"")), layer)


# Legitimate content


def test_unpack_keeps_absolute_symlink(dirs):
    layer, _ = dirs
    unpack(make_tar(entry("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox")), layer)
    assert os.readlink(layer / "bin" / "sh") == "/bin/busybox"


def test_unpack_keeps_relative_symlink_with_dotdot(dirs):
    layer, _ = dirs
    unpack(make_tar(entry("usr/lib/x", tarfile.SYMTYPE, linkname="../../lib/x")), layer)
    assert os.readlink(layer / "usr" / "lib" / "x") == "../../lib/x"


def test_unpack_keeps_setuid_mode(dirs):
    layer, _ = dirs
    unpack(make_tar(entry("bin/tool", data=b"#!", mode=0o4755)), layer)
    assert stat.S_IMODE(os.stat(layer / "bin" / "tool").st_mode) == 0o4755


def test_unpack_keeps_hard_link(dirs):
    layer, _ = dirs
    data = make_tar(
        entry("a", data=b"shared"),
        entry("dir/b", tarfile.LNKTYPE, linkname="a"),
    )
    unpack(data, layer)
    assert os.stat(layer / "a").st_ino == os.stat(layer / "dir" / "b").st_ino


def test_unpack_keeps_hard_link_to_symlink(dirs):
    layer, _ = dirs
    data = make_tar(
        entry("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        entry("second", tarfile.LNKTYPE, linkname="link"),
    )
    unpack(data, layer)
    assert os.readlink(layer / "second") == "/etc/passwd"
    assert os.lstat(layer / "second").st_ino == os.lstat(layer / "link").st_ino


def test_unpack_applies_directory_mode_and_mtime_last(dirs):
    layer, _ = dirs
    data = make_tar(
        entry("ro", tarfile.DIRTYPE, mode=0o555),
        entry("ro/file", data=b"x"),
        entry("./", tarfile.DIRTYPE, mode=0o711),
    )
    unpack(data, layer)
    info = os.stat(layer / "ro")
    assert stat.S_IMODE(info.st_mode) == 0o555
    assert info.st_mtime == 1_600_000_000
    assert stat.S_IMODE(os.stat(layer).st_mode) == 0o711
    assert (layer / "ro" / "file").read_bytes() == b"x"


def test_unpack_keeps_file_mtime(dirs):
    layer, _ = dirs
    unpack(make_tar(entry("f", data=b"content" * 1000)), layer)
    assert os.stat(layer / "f").st_mtime == 1_600_000_000


def test_unpack_accepts_dot_slash_names(dirs):
    layer, _ = dirs
    unpack(
        make_tar(entry("./etc/", tarfile.DIRTYPE), entry("./etc/hosts", data=b"h")),
        layer,
    )
    assert (layer / "etc" / "hosts").read_bytes() == b"h"


def test_unpack_counts_file_bytes(dirs):
    layer, _ = dirs
    assert (
        unpack(make_tar(entry("a", data=b"12345"), entry("b", data=b"678")), layer) == 8
    )


def test_unpack_blob_reports_diff_id(dirs, tmp_path):
    layer, _ = dirs
    plain = make_tar(entry("a", data=b"12345"))
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(plain))
    result = unpack_layer_blob(str(blob), str(layer), preserve_owner=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()


def test_unpack_rejects_garbage(dirs):
    layer, _ = dirs
    with pytest.raises(LayerError, match="invalid layer archive"):
        unpack(b"this is not a tar archive" * 40, layer)
