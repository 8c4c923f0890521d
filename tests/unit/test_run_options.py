"""Parsing and planning for `minictr run`, without a kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minicontainer import rootfs, syscalls
from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.containers import parse_env, validate_hostname, validate_workdir
from minicontainer.errors import InvalidArgument
from minicontainer.paths import resolve_in_root
from minicontainer.process import build_env, parse_user_spec, resolve_identity
from minicontainer.steps import Mount, PivotRoot


def test_parse_env_key_value():
    assert parse_env(["A=1", "B=x=y", "C="], host_env={}) == ["A=1", "B=x=y", "C="]


def test_parse_env_bare_key_takes_host_value():
    assert parse_env(["HOME", "UNSET"], host_env={"HOME": "/root"}) == ["HOME=/root"]


@pytest.mark.parametrize("item", ["=value", "BAD KEY=1", ""])
def test_parse_env_rejects_malformed(item):
    with pytest.raises(InvalidArgument, match="environment variable"):
        parse_env([item], host_env={})


@pytest.mark.parametrize("name", ["box", "lab-1", "a.b.c", "x" * 63])
def test_hostname_accepted(name):
    validate_hostname(name)


@pytest.mark.parametrize(
    "name", ["", "-lead", "trail-", "under_score", "a" * 65, "sp ace"]
)
def test_hostname_rejected(name):
    with pytest.raises(InvalidArgument, match="hostname"):
        validate_hostname(name)


def test_workdir_must_be_absolute():
    with pytest.raises(InvalidArgument, match="relative/dir"):
        validate_workdir("relative/dir")


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("app", ("app", None)),
        ("1000", ("1000", None)),
        ("1000:100", ("1000", "100")),
        ("app:users", ("app", "users")),
    ],
)
def test_parse_user_spec(spec, expected):
    assert parse_user_spec(spec) == expected


@pytest.mark.parametrize("spec", [":100", "app:", ""])
def test_parse_user_spec_rejects(spec):
    with pytest.raises(InvalidArgument):
        parse_user_spec(spec)


@pytest.fixture
def etc(tmp_path):
    (tmp_path / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (tmp_path / "group").write_text(
        "root:x:0:\nusers:x:100:app\nwheel:x:10:root,app\napp:x:1000:\n"
    )
    return str(tmp_path)


def test_identity_by_name_has_supplementary_groups(etc):
    identity = resolve_identity("app", etc)
    assert (identity.uid, identity.gid, identity.home) == (1000, 1000, "/home/app")
    assert sorted(identity.additional_gids) == [10, 100]


def test_identity_numeric_without_entry(etc):
    identity = resolve_identity("4242", etc)
    assert (identity.uid, identity.gid, identity.home) == (4242, 0, "/")


def test_identity_with_group_name(etc):
    identity = resolve_identity("app:users", etc)
    assert (identity.uid, identity.gid) == (1000, 100)
    assert identity.additional_gids == []


def test_identity_unknown_user(etc):
    with pytest.raises(InvalidArgument, match="unable to find user ghost"):
        resolve_identity("ghost", etc)


def test_identity_unknown_group(etc):
    with pytest.raises(InvalidArgument, match="unable to find group ghosts"):
        resolve_identity("app:ghosts", etc)


def test_build_env_user_values_win():
    env = build_env(["PATH=/custom", "X=1"], "/root", "box", terminal=True)
    assert "PATH=/custom" in env
    assert "HOSTNAME=box" in env
    assert "TERM=xterm" in env
    assert "HOME=/root" in env
    assert "X=1" in env


def test_overlay_options_escape_separators():
    options = rootfs.overlay_options(["/a,b", "/c:d"], "/up\\per", "/work")
    assert options == "lowerdir=/a\\,b:/c\\:d,upperdir=/up\\\\per,workdir=/work"


def test_overlay_options_without_upper_is_read_only():
    assert rootfs.overlay_options(["0", "1"], None, None) == "lowerdir=0:1"


def test_lower_links_name_layers_by_index(tmp_path):
    links = str(tmp_path / "lower")
    in_place = f"{links}/1"
    steps, names = rootfs.lower_link_steps(["/layers/a", in_place, "/x"], links)
    assert names == ["0", "1", "2"]
    assert [step.describe() for step in steps] == [
        f"mkdir -p {links} mode 700",
        f"symlink {links}/0 -> /layers/a",
        f"symlink {links}/2 -> /x",
    ]


def test_lower_links_reject_more_layers_than_overlayfs_stacks(tmp_path):
    lowers = [f"/layers/{number}" for number in range(rootfs.MAX_LOWER_LAYERS + 1)]
    with pytest.raises(InvalidArgument, match="501 layers, more than the 500"):
        rootfs.lower_link_steps(lowers, str(tmp_path / "lower"))


def test_link_lower_dirs_replaces_old_links(tmp_path):
    links = tmp_path / "lower"
    rootfs.link_lower_dirs(["/old"], str(links))
    (links / "1").mkdir()  # an empty mount point from an earlier start
    rootfs.link_lower_dirs(["/new", "/other"], str(links))
    assert (links / "0").readlink() == Path("/new")
    assert (links / "1").readlink() == Path("/other")


def test_flag_names():
    assert (
        syscalls.mount_flag_names(syscalls.MS_BIND | syscalls.MS_REC)
        == "MS_BIND|MS_REC"
    )
    assert syscalls.mount_flag_names(0) == "0"
    flags = syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID
    assert syscalls.clone_flag_names(flags) == "CLONE_NEWNS|CLONE_NEWPID"


def test_resolve_in_root_keeps_absolute_symlink_inside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", root / "data")
    assert resolve_in_root(str(root), "/data/passwd") == str(root / "etc" / "passwd")


def test_resolve_in_root_dotdot_stops_at_root(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    os.symlink("../../../../..", root / "a" / "up")
    assert resolve_in_root(str(root), "/a/up/etc") == str(root / "etc")


def test_resolve_in_root_symlink_loop(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/loop", root / "loop")
    with pytest.raises(InvalidArgument, match="too many symbolic links"):
        resolve_in_root(str(root), "/loop/x")


def _config() -> ContainerConfig:
    return ContainerConfig(
        id="c" * 64,
        name="t",
        process=ProcessConfig(args=["true"]),
        lower_dirs=["/lower"],
        hostname="box",
    )


def test_root_plan_order(tmp_path):
    steps = rootfs.root_steps(_config(), str(tmp_path))
    mounts = [s for s in steps if isinstance(s, Mount)]
    assert mounts[0].fstype == "overlay"
    assert [m.target for m in mounts[1:5]] == ["/proc", "/dev", "/dev/pts", "/dev/shm"]
    assert (
        mounts[0]
        .describe()
        .startswith(f"mount overlay on {tmp_path}/merged type overlay")
    )


def test_pivot_plan_read_only_and_hostname(tmp_path):
    config = _config()
    config.readonly_rootfs = True
    steps = rootfs.pivot_steps(config, str(tmp_path))
    assert isinstance(steps[0], PivotRoot)
    assert "MS_RDONLY" in steps[1].describe()
    assert steps[-1].describe() == "sethostname box"
