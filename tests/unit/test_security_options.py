"""Parsing and validation of the security options of `run` and `create`."""

from __future__ import annotations

import json

import pytest

from minicontainer.cliopts import security as options
from minicontainer.errors import InvalidArgument
from minicontainer.security import capabilities, limits


def kwargs(**given):
    values = {
        "privileged": False,
        "cap_add": (),
        "cap_drop": (),
        "security_opt": (),
        "ulimit": (),
        "sysctl": (),
        "userns": None,
        "userns_map": None,
    }
    values.update(given)
    return values


def test_to_config_pops_its_keys():
    given = kwargs(other="kept")
    options.to_config(given)
    assert given == {"other": "kept"}


def test_defaults():
    security = options.to_config(kwargs())
    assert security["privileged"] is False
    assert security["seccomp"] == "default"
    assert security["no_new_privileges"] is False
    assert "userns" not in security


def test_cap_names_with_and_without_prefix():
    security = options.to_config(kwargs(cap_add=("cap_net_admin", "SYS_PTRACE")))
    assert security["cap_add"] == ["NET_ADMIN", "SYS_PTRACE"]


def test_unknown_cap_rejected_with_value():
    with pytest.raises(InvalidArgument, match="CAP_FLY"):
        options.to_config(kwargs(cap_drop=("CAP_FLY",)))


def test_resolve_default_caps():
    assert capabilities.resolve({}) == sorted(
        capabilities.DEFAULT, key=capabilities.CAPABILITIES.__getitem__
    )


def test_resolve_drop_all_then_add():
    assert capabilities.resolve({"cap_drop": ["ALL"], "cap_add": ["NET_RAW"]}) == [
        "NET_RAW"
    ]


def test_resolve_add_and_drop():
    kept = capabilities.resolve({"cap_add": ["SYS_ADMIN"], "cap_drop": ["CHOWN"]})
    assert "SYS_ADMIN" in kept
    assert "CHOWN" not in kept


def test_resolve_add_all_and_privileged():
    everything = capabilities.supported()
    assert capabilities.resolve({"cap_add": ["ALL"]}) == everything
    assert capabilities.resolve({"privileged": True}) == everything


def test_resolve_add_all_keeps_the_drops_out():
    kept = capabilities.resolve({"cap_add": ["ALL"], "cap_drop": ["SYS_ADMIN"]})
    assert "SYS_ADMIN" not in kept
    assert kept == [name for name in capabilities.supported() if name != "SYS_ADMIN"]


def test_resolve_drop_all_ignores_add_all():
    assert capabilities.resolve({"cap_add": ["ALL"], "cap_drop": ["ALL"]}) == []


def test_ambient_only_added_names():
    kept = capabilities.resolve({"cap_add": ["NET_ADMIN"]})
    assert capabilities.ambient({"cap_add": ["NET_ADMIN"]}, kept) == ["NET_ADMIN"]
    assert capabilities.ambient({}, kept) == []


def test_no_new_privileges_forms():
    for form in (
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
    ):
        assert options.to_config(kwargs(security_opt=(form,)))["no_new_privileges"]
    off = options.to_config(kwargs(security_opt=("no-new-privileges:false",)))
    assert off["no_new_privileges"] is False


def test_seccomp_unconfined_and_file(tmp_path):
    assert (
        options.to_config(kwargs(security_opt=("seccomp=unconfined",)))["seccomp"]
        == "unconfined"
    )
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    setting = options.to_config(kwargs(security_opt=(f"seccomp={path}",)))["seccomp"]
    assert setting == {"source": str(path), "profile": profile}


def test_seccomp_missing_file_rejected(tmp_path):
    with pytest.raises(InvalidArgument, match="nope.json"):
        options.to_config(kwargs(security_opt=(f"seccomp={tmp_path}/nope.json",)))


def test_unknown_security_opt_rejected():
    with pytest.raises(InvalidArgument, match="label=disable"):
        options.to_config(kwargs(security_opt=("label=disable",)))
    with pytest.raises(InvalidArgument, match="bogus"):
        options.to_config(kwargs(security_opt=("bogus",)))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nofile=1024:2048", ("nofile", 1024, 2048)),
        ("nproc=50", ("nproc", 50, 50)),
        ("core=unlimited", ("core", limits.RLIM_INFINITY, limits.RLIM_INFINITY)),
        ("stack=8192:-1", ("stack", 8192, limits.RLIM_INFINITY)),
    ],
)
def test_ulimit_parsing(spec, expected):
    assert limits.parse_ulimit(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nofile", "NAME=SOFT"),
        ("files=10", "unknown limit 'files'"),
        ("nofile=10:5", "above the hard limit"),
        ("nofile=ten", "'ten' is not a number"),
    ],
)
def test_ulimit_rejected(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        limits.parse_ulimit(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "net.ipv4.ip_forward=1",
        "kernel.shmmax=65536",
        "kernel.sem=250 32000 32 128",
        "fs.mqueue.msg_max=20",
        "kernel.domainname=example",
    ],
)
def test_namespaced_sysctl_accepted(spec):
    assert options.to_config(kwargs(sysctl=(spec,)))["sysctls"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kernel.panic=1", "not a namespaced sysctl"),
        ("vm.swappiness=10", "not a namespaced sysctl"),
        ("kernel.hostname=x", "--hostname"),
        ("net.ipv4.ip_forward", "KEY=VALUE"),
    ],
)
def test_host_sysctl_rejected(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        options.to_config(kwargs(sysctl=(spec,)))


def test_net_sysctl_rejected_with_host_network():
    with pytest.raises(InvalidArgument, match="--network host"):
        limits.sysctl_steps({"net.ipv4.ip_forward": "1"}, "host")
