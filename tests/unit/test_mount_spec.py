"""Parsing of -v, --mount, --tmpfs and --volumes-from, without a kernel."""

from __future__ import annotations

import pytest

from minicontainer.cliopts import mounts as mount_options
from minicontainer.errors import InvalidArgument
from minicontainer.mounts import spec


def options(**given) -> dict:
    kwargs = {"volumes": (), "mount_specs": (), "tmpfs_specs": (), "volumes_from": ()}
    kwargs.update(given)
    return kwargs


def test_volume_host_path_is_bind(tmp_path):
    entry = spec.parse_volume(f"{tmp_path}:/data:ro")
    assert entry["Type"] == "bind"
    assert entry["Source"] == str(tmp_path)
    assert entry["Destination"] == "/data"
    assert entry["RW"] is False
    assert entry["Mode"] == "ro"
    assert entry["Propagation"] == "rprivate"
    assert entry["CreateHostPath"] is True


def test_volume_missing_host_path_is_accepted():
    entry = spec.parse_volume("/nonexistent-minictr-test/dir:/data")
    assert entry["Source"] == "/nonexistent-minictr-test/dir"
    assert entry["CreateHostPath"] is True


def test_volume_name_is_named_volume():
    entry = spec.parse_volume("cache:/var/cache")
    assert entry["Type"] == "volume"
    assert entry["Name"] == "cache"
    assert entry["Anonymous"] is False
    assert entry["RW"] is True
    assert entry["Source"] == ""


def test_volume_path_alone_is_anonymous():
    first = spec.parse_volume("/scratch")
    second = spec.parse_volume("/scratch:ro")
    assert first["Anonymous"] is True
    assert len(first["Name"]) == 64
    assert first["Name"] != second["Name"]
    assert second["Destination"] == "/scratch"
    assert second["RW"] is False


def test_volume_options_combine():
    entry = spec.parse_volume("/src:/dst:ro,rslave")
    assert entry["RW"] is False
    assert entry["Propagation"] == "rslave"
    assert spec.parse_volume("data:/dst:nocopy")["NoCopy"] is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/src:data", "must be absolute"),
        ("data:relative", "must be absolute"),
        ("/src:/data:bogus", "unknown option 'bogus'"),
        ("/src:/data:shared", "shared propagation is not supported"),
        ("/src:/", "set up by the runtime"),
        ("/src:/proc", "set up by the runtime"),
        ("/src:/proc/sys", "set up by the runtime"),
        ("/src:/sys/kernel", "set up by the runtime"),
        ("/src:/dev", "set up by the runtime"),
        ("/src:/a/../proc", "set up by the runtime"),
        ("a:b:c:d", "expected"),
        ("x:/data", "invalid volume name"),
        ("data:/x:rslave", "applies to bind mounts only"),
        (":/x", "the source before ':' is empty"),
        (":/x:ro", "the source before ':' is empty"),
    ],
)
def test_volume_rejects_bad_input(value, message):
    with pytest.raises(InvalidArgument, match=message) as caught:
        spec.parse_volume(value)
    assert value in str(caught.value) or "volume name" in str(caught.value)


def test_volume_name_with_slash_is_rejected():
    with pytest.raises(InvalidArgument, match="cannot contain '/'"):
        spec.validate_volume_name("team/data")
    with pytest.raises(InvalidArgument, match="cannot contain '/'"):
        spec.parse_mount("type=volume,source=team/data,target=/data")


def test_mount_bind_requires_existing_source(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(InvalidArgument, match="does not exist") as caught:
        spec.parse_mount(f"type=bind,source={missing},target=/data")
    assert str(missing) in str(caught.value)


def test_mount_bind_fields(tmp_path):
    entry = spec.parse_mount(
        f"type=bind,src={tmp_path},dst=/data,readonly,bind-propagation=rslave"
    )
    assert entry["Type"] == "bind"
    assert entry["Source"] == str(tmp_path)
    assert entry["Destination"] == "/data"
    assert entry["RW"] is False
    assert entry["Propagation"] == "rslave"
    assert entry["CreateHostPath"] is False


def test_mount_defaults_to_volume():
    entry = spec.parse_mount("source=cache,target=/cache,readonly=false")
    assert entry["Type"] == "volume"
    assert entry["Name"] == "cache"
    assert entry["RW"] is True


def test_mount_quoted_field_may_contain_comma(tmp_path):
    source = tmp_path / "a,b"
    source.mkdir()
    entry = spec.parse_mount(f'type=bind,"source={source}",target=/data')
    assert entry["Source"] == str(source)


def test_mount_tmpfs_fields():
    entry = spec.parse_mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770")
    assert entry["Type"] == "tmpfs"
    assert entry["Options"] == [
        "noexec",
        "nosuid",
        "nodev",
        f"size={64 << 20}",
        "mode=1770",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("type=nfs,target=/x", "unknown type 'nfs'"),
        ("type=tmpfs,target=/x,bogus=1", "unsupported field 'bogus'"),
        ("type=tmpfs,target=/x,source=y", "takes no source"),
        ("type=tmpfs,target=/x,tmpfs-size=lots", "invalid size"),
        ("type=tmpfs,target=/x,tmpfs-mode=999", "invalid mode"),
        ("type=volume,target=/x,readonly=maybe", "true or false"),
        ("type=volume,target=/x,volume-driver=nfs", "not supported"),
        ("type=volume,target=/x,target=/y", "given twice"),
        ("type=volume,target", "KEY=VALUE"),
        ("type=volume,source=data", "container path is empty"),
        ("type=bind,source=relative,target=/x", "absolute host path"),
    ],
)
def test_mount_rejects_bad_input(value, message):
    with pytest.raises(InvalidArgument, match=message):
        spec.parse_mount(value)


def test_tmpfs_defaults_and_options():
    entry = spec.parse_tmpfs("/tmp:size=1g,mode=1777,exec,uid=1000")
    assert entry["Destination"] == "/tmp"
    assert entry["RW"] is True
    assert entry["Options"] == [
        "exec",
        "nosuid",
        "nodev",
        f"size={1 << 30}",
        "mode=1777",
        "uid=1000",
    ]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("512b", 512),
        ("2k", 2 << 10),
        ("1.5m", 3 << 19),
        ("1t", 1 << 40),
        ("2p", 2 << 50),
    ],
)
def test_tmpfs_size_takes_the_units_of_memory(size, expected):
    assert f"size={expected}" in spec.parse_tmpfs(f"/tmp:size={size}")["Options"]


def test_volume_name_message_states_the_rule():
    with pytest.raises(InvalidArgument) as caught:
        spec.validate_volume_name("-x")
    assert str(caught.value) == (
        "invalid volume name '-x': a name is two or more characters, letters,"
        " digits, '_', '.' or '-', and starts with a letter or digit"
    )


def test_tmpfs_read_only():
    assert spec.parse_tmpfs("/cache:ro")["RW"] is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tmp", "must be absolute"),
        ("/tmp:size=0", "invalid size"),
        ("/tmp:size=-1m", "invalid size"),
        ("/tmp:size=9000p", "more than the kernel accepts"),
        ("/tmp:mode=8", "invalid mode"),
        ("/tmp:uid=root", "whole number"),
        ("/tmp:hugepages=1", "unknown option"),
        ("/proc", "set up by the runtime"),
    ],
)
def test_tmpfs_rejects_bad_input(value, message):
    with pytest.raises(InvalidArgument, match=message):
        spec.parse_tmpfs(value)


def test_volumes_from_entry():
    assert spec.parse_volumes_from("web:ro") == {
        "Type": "volumes-from",
        "Container": "web",
        "Mode": "ro",
    }
    assert spec.parse_volumes_from("web")["Mode"] == ""
    with pytest.raises(InvalidArgument, match="CONTAINER"):
        spec.parse_volumes_from("web:rx")


def test_to_config_pops_keys_and_combines(tmp_path):
    kwargs = options(
        volumes=(f"{tmp_path}:/a", "data:/b"),
        mount_specs=("type=tmpfs,target=/c",),
        tmpfs_specs=("/d",),
        volumes_from=("other",),
    )
    kwargs["name"] = "kept"
    entries = mount_options.to_config(kwargs)
    assert kwargs == {"name": "kept"}
    assert [entry["Type"] for entry in entries] == [
        "bind",
        "volume",
        "tmpfs",
        "tmpfs",
        "volumes-from",
    ]


def test_to_config_without_options_is_empty():
    kwargs = options()
    assert mount_options.to_config(kwargs) == []
    assert kwargs == {}


def test_to_config_rejects_duplicate_target(tmp_path):
    kwargs = options(volumes=(f"{tmp_path}:/data",), tmpfs_specs=("/data/",))
    with pytest.raises(InvalidArgument, match="duplicate mount point /data"):
        mount_options.to_config(kwargs)
