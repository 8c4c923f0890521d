"""Parsing of --userns options and id shifting, with no kernel calls."""

from __future__ import annotations

import os

import pytest

from minicontainer.errors import InvalidArgument
from minicontainer.security import userns


def test_explicit_map():
    assert userns.parse(None, "200000:1000") == {
        "uid_map": [[0, 200000, 1000]],
        "gid_map": [[0, 200000, 1000]],
    }


@pytest.mark.parametrize("mapping", ["0:65536", "abc", "100000", "100000:0"])
def test_bad_map_rejected(mapping):
    with pytest.raises(InvalidArgument, match=mapping.split(":")[0]):
        userns.parse(None, mapping)


def test_unknown_mode_rejected():
    with pytest.raises(InvalidArgument, match="'sideways'"):
        userns.parse("sideways", None)


def test_subordinate_range_prefers_minictr(tmp_path):
    path = tmp_path / "subuid"
    path.write_text("root:100000:65536\nminictr:300000:65536\n")
    assert userns.subordinate_range(str(path)) == (300000, 65536)


def test_subordinate_range_missing_says_fix(tmp_path):
    with pytest.raises(InvalidArgument, match="root:100000:65536"):
        userns.subordinate_range(str(tmp_path / "subuid"))


def test_map_id_inside_and_outside_range():
    id_map = [[0, 100000, 65536]]
    assert userns.map_id(0, id_map) == 100000
    assert userns.map_id(1000, id_map) == 101000
    assert userns.map_id(70000, id_map) == 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")
def test_shifted_copy_shifts_owners_once(tmp_path):
    lower = tmp_path / "lower"
    (lower / "dir" / "sub").mkdir(parents=True)
    (lower / "dir" / "sub" / "file").write_text("x")
    (lower / "link").symlink_to("dir")
    os.chown(lower / "dir" / "sub" / "file", 1000, 1000)
    copy = userns.shifted_copy(
        str(lower), [[0, 100000, 65536]], [[0, 100000, 65536]], str(tmp_path / "state")
    )
    assert os.stat(copy).st_uid == 100000
    assert os.stat(os.path.join(copy, "dir", "sub")).st_uid == 100000
    assert os.stat(os.path.join(copy, "dir", "sub", "file")).st_uid == 101000
    assert os.lstat(os.path.join(copy, "link")).st_uid == 100000
