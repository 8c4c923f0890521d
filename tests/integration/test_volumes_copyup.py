"""Filling a volume from a layered image: whiteouts and opaque directories.

Whiteouts are character devices 0/0 and opaque directories carry a
``trusted.*`` extended attribute, so building the layers needs root.
"""

from __future__ import annotations

import os

from minicontainer.mounts import copyup


def make_layers(tmp_path):
    bottom = tmp_path / "bottom"
    top = tmp_path / "top"
    for layer in (bottom, top):
        (layer / "etc" / "app").mkdir(parents=True)
    app = bottom / "etc" / "app"
    (app / "kept.conf").write_text("bottom\n")
    (app / "deleted.conf").write_text("bottom\n")
    (app / "replaced.conf").write_text("bottom\n")
    (app / "hidden").mkdir()
    (app / "hidden" / "old").write_text("bottom\n")

    upper_app = top / "etc" / "app"
    os.mknod(upper_app / "deleted.conf", 0o600 | 0o020000, os.makedev(0, 0))
    (upper_app / "replaced.conf").write_text("top\n")
    (upper_app / "hidden").mkdir()
    os.setxattr(upper_app / "hidden", copyup.OPAQUE_XATTR, b"y")
    (upper_app / "hidden" / "new").write_text("top\n")
    os.symlink("kept.conf", upper_app / "link")
    os.chmod(upper_app, 0o750)
    return [str(top), str(bottom)]


def test_fill_volume_merges_layers(tmp_path):
    lowers = make_layers(tmp_path)
    data = tmp_path / "data"
    data.mkdir()

    assert copyup.fill_volume(lowers, "/etc/app", str(data)) is True

    assert sorted(os.listdir(data)) == ["hidden", "kept.conf", "link", "replaced.conf"]
    assert (data / "kept.conf").read_text() == "bottom\n"
    assert (data / "replaced.conf").read_text() == "top\n"
    assert os.listdir(data / "hidden") == ["new"]
    assert os.readlink(data / "link") == "kept.conf"
    assert oct(os.stat(data).st_mode & 0o7777) == oct(0o750)


def test_fill_volume_stops_at_whiteout(tmp_path):
    lowers = make_layers(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    assert copyup.fill_volume(lowers, "/etc/app/deleted.conf", str(data)) is False
    assert copyup.fill_volume(lowers, "/no/such/dir", str(data)) is False
    assert os.listdir(data) == []
