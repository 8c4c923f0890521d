"""Validation and exact conversion of the Docker-style resource options."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from minicontainer.cgroups import limits
from minicontainer.cliopts import cgroups as cgroup_options
from minicontainer.errors import InvalidArgument


@pytest.fixture(autouse=True)
def two_cpus_one_node(monkeypatch):
    """Make the host look like two online CPUs and one memory node."""
    monkeypatch.setattr(limits, "online_cpus", lambda: {0, 1})
    monkeypatch.setattr(limits, "online_mems", lambda: {0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("100b", 100),
        ("512k", 512 * 1024),
        ("64m", 64 * 1024**2),
        ("64M", 64 * 1024**2),
        ("64mb", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("1.5g", 1536 * 1024**2),
        ("2t", 2 * 1024**4),
        (4096, 4096),
    ],
)
def test_parse_size_units(text, expected):
    assert limits.parse_size(text, "--memory") == expected


def test_parse_size_takes_the_largest_size_the_kernel_does():
    assert limits.parse_size("9223372036854775807", "--memory") == 2**63 - 1
    with pytest.raises(InvalidArgument, match="9223372036854775808 bytes is more"):
        limits.parse_size("9223372036854775808", "--memory")


@pytest.mark.parametrize("text", ["", "m", "64x", "1.2.3m", "64 m b", "0x10", "1e6"])
def test_parse_size_rejects_malformed(text):
    with pytest.raises(InvalidArgument, match="invalid size"):
        limits.parse_size(text, "--memory")


@pytest.mark.parametrize(
    ("cpus", "quota"),
    [
        ("0.57", 57_000),
        ("0.5", 50_000),
        ("1", 100_000),
        ("1.5", 150_000),
        ("2", 200_000),
        ("0.01", 1_000),
        ("0.333", 33_300),
        ("0.123456", 12_345),
    ],
)
def test_cpus_to_quota_is_exact(cpus, quota):
    assert limits.cpus_to_quota(cpus) == quota


def test_cpus_float_would_be_off_by_one():
    # The reason for Decimal: binary floating point loses the last microsecond.
    assert int(0.57 * 100_000) == 56_999
    assert limits.cpus_to_quota(0.57) == 57_000


@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        ("-1", "above 0"),
        ("abc", "decimal number"),
        ("nan", "above 0"),
        ("inf", "above 0"),
        ("3", "only 2 CPUs"),
        ("0.001", "minimum is 0.01"),
        ("0.0000000001", "9 decimal places"),
    ],
)
def test_cpus_rejected(cpus, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        limits.parse_resources({"cpus": cpus})
    assert repr(cpus) in str(info.value)


def test_all_options_build_resources():
    resources = limits.parse_resources(
        {
            "memory": "64m",
            "memory_swap": "128m",
            "memory_reservation": "32m",
            "cpus": "0.5",
            "cpu_shares": 512,
            "cpuset_cpus": "1",
            "cpuset_mems": "0",
            "pids_limit": 20,
            "blkio_weight": 300,
        }
    )
    assert resources == {
        "memory": {
            "limit": 64 * 1024**2,
            "swap": 128 * 1024**2,
            "reservation": 32 * 1024**2,
        },
        "cpu": {
            "quota": 50_000,
            "period": 100_000,
            "shares": 512,
            "cpus": "1",
            "mems": "0",
        },
        "pids": {"limit": 20},
        "blockIO": {"weight": 300},
    }


def test_unset_options_give_empty_resources():
    assert limits.parse_resources({}) == {}
    unset = dict.fromkeys(["memory", "cpus", "cpu_shares", "pids_limit"])
    assert limits.parse_resources(unset) == {}
    assert limits.parse_resources({"device_read_bps": ()}) == {}


@pytest.mark.parametrize("value", [0, -1, "0", "-1"])
def test_pids_limit_unlimited_values(value):
    assert limits.parse_resources({"pids_limit": value}) == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": "-64m"}, "must not be negative"),
        ({"memory": "5m"}, "minimum is 6m"),
        ({"memory": "64q"}, "invalid size '64q' for --memory"),
        ({"memory_swap": "128m"}, "set --memory as well"),
        ({"memory": "64m", "memory_swap": "32m"}, "at least --memory"),
        ({"memory": "64m", "memory_swap": "-2"}, "must not be negative"),
        ({"memory": "64m", "memory_reservation": "65m"}, "must not be above --memory"),
        ({"memory_reservation": "1m"}, "minimum is 6m"),
        ({"cpu_shares": 1}, "from 2 to 262144"),
        ({"cpu_shares": 262145}, "from 2 to 262144"),
        ({"cpu_shares": -5}, "must not be negative"),
        ({"cpuset_cpus": "2"}, r"CPUs \[2\] are not online"),
        ({"cpuset_cpus": "0-3"}, r"CPUs \[2, 3\] are not online"),
        ({"cpuset_cpus": "1-0"}, "use a list"),
        ({"cpuset_cpus": "a"}, "use a list"),
        ({"cpuset_mems": "1"}, r"memory nodes \[1\] are not online"),
        ({"pids_limit": -2}, "or 0 or -1 for unlimited"),
        ({"memory": "99999999999g"}, "107374182398926258176 bytes is more than"),
        ({"memory": "64m", "memory_swap": "8192p"}, "more than the kernel accepts"),
        ({"pids_limit": "many"}, "whole number"),
        ({"blkio_weight": 5}, "from 10 to 1000"),
        ({"blkio_weight": 1001}, "from 10 to 1000"),
    ],
)
def test_invalid_values_rejected(options, message):
    with pytest.raises(InvalidArgument, match=message):
        limits.parse_resources(options)


def test_memory_swap_unlimited():
    resources = limits.parse_resources({"memory": "64m", "memory_swap": "-1"})
    assert resources["memory"]["swap"] == -1


def test_device_rate_of_block_device(monkeypatch):
    fake = SimpleNamespace(st_mode=stat.S_IFBLK | 0o660, st_rdev=os.makedev(8, 16))
    monkeypatch.setattr(limits.os, "stat", lambda path: fake)
    resources = limits.parse_resources(
        {"device_read_bps": ("/dev/sdb:1mb",), "device_write_bps": ("/dev/sdb:512k",)}
    )
    assert resources["blockIO"] == {
        "throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 1024**2}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 512 * 1024}],
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/dev/null:1m", "not a block device"),
        ("/nonexistent/disk:1m", "cannot stat"),
        ("1m", "use DEVICE:RATE"),
        ("/dev/null:0", "above 0"),
        ("/dev/null:fast", "invalid size"),
    ],
)
def test_device_rate_rejected(value, message):
    with pytest.raises(InvalidArgument, match=message):
        limits.parse_resources({"device_write_bps": (value,)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "minictr"),
        ("", "minictr"),
        ("lab", "lab"),
        ("/lab/students/", "lab/students"),
    ],
)
def test_cgroup_parent_accepted(value, expected):
    assert limits.validate_cgroup_parent(value) == expected


@pytest.mark.parametrize("value", ["../escape", "a/../b", "a b", "/", "a//b", "lab:1"])
def test_cgroup_parent_rejected(value):
    with pytest.raises(InvalidArgument, match="--cgroup-parent"):
        limits.validate_cgroup_parent(value)


def test_parse_cpu_list():
    assert limits.parse_cpu_list("0-2,4") == {0, 1, 2, 4}
    assert limits.parse_cpu_list("3\n") == {3}
    with pytest.raises(ValueError):
        limits.parse_cpu_list("0-")


def test_to_config_pops_its_options():
    kwargs = {"memory": "64m", "cpus": None, "cgroup_parent": "lab", "name": "web"}
    part = cgroup_options.to_config(kwargs)
    assert part == {
        "resources": {"memory": {"limit": 64 * 1024**2}},
        "cgroup_parent": "lab",
    }
    assert kwargs == {"name": "web"}


def test_options_use_docker_names():
    import click

    @click.command()
    def command(**kwargs):
        pass

    for option in cgroup_options.OPTIONS:
        command = option(command)
    names = {opt for param in command.params for opt in param.opts}
    for name in (
        "-m",
        "--memory",
        "--memory-swap",
        "--memory-reservation",
        "--cpus",
        "--cpu-shares",
        "--cpuset-cpus",
        "--cpuset-mems",
        "--pids-limit",
        "--device-read-bps",
        "--device-write-bps",
        "--blkio-weight",
        "--cgroup-parent",
    ):
        assert name in names
