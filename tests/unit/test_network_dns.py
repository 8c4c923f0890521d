"""Hosts, resolv.conf and hostname content, and option parsing for the network."""

from __future__ import annotations

import os

import pytest

from minicontainer.cliopts import network as network_options
from minicontainer.errors import InvalidArgument
from minicontainer.network import dns


def test_hosts_lists_self_peers_and_extra():
    text = dns.render_hosts(
        [("10.89.0.2", ["abc123", "web", "www"])],
        [("10.89.0.3", ["db", "database"])],
        ["gateway.test:10.89.0.1"],
    )
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.89.0.2\tabc123 web www" in lines
    assert "10.89.0.3\tdb database" in lines
    assert lines[-1] == "10.89.0.1\tgateway.test"


def test_peer_entries_only_on_user_networks():
    records = [
        {
            "name": "bridge",
            "default": True,
            "leases": {
                "10.88.0.2": {"container_id": "a", "name": "web", "hostname": "h1"},
                "10.88.0.3": {"container_id": "b", "name": "other", "hostname": "h2"},
            },
        },
        {
            "name": "lab",
            "default": False,
            "leases": {
                "10.89.0.2": {
                    "container_id": "a",
                    "name": "web",
                    "hostname": "h1",
                    "aliases": ["www"],
                },
                "10.89.0.3": {
                    "container_id": "c",
                    "name": "db",
                    "hostname": "h3",
                    "aliases": ["pg"],
                },
            },
        },
    ]
    own, peers = dns.peer_entries(records, "a")

    assert own == [("10.88.0.2", ["h1", "web"]), ("10.89.0.2", ["h1", "web", "www"])]
    assert peers == [("10.89.0.3", ["db", "pg"])]


def test_resolv_conf_drops_loopback_stub():
    host = "nameserver 127.0.0.53\nsearch example.test\noptions edns0\n"
    text = dns.render_resolv_conf([], host)

    assert "127.0.0.53" not in text
    assert "nameserver" not in text.replace("# no name server", "")
    assert "search example.test" in text


def test_resolv_conf_keeps_real_servers_and_dns_option():
    host = "nameserver 127.0.0.53\nnameserver 192.0.2.53\n"
    assert dns.render_resolv_conf([], host).splitlines()[0] == "nameserver 192.0.2.53"
    assert dns.render_resolv_conf(["198.51.100.1"], host).splitlines() == [
        "nameserver 198.51.100.1"
    ]
    with pytest.raises(InvalidArgument):
        dns.render_resolv_conf(["not-an-ip"], host)


def test_write_in_place_keeps_inode(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("old content that is longer\n")
    inode = os.stat(path).st_ino
    dns.write_in_place(str(path), "new\n")

    assert path.read_text() == "new\n"
    assert os.stat(path).st_ino == inode


def test_add_host_parsing():
    assert dns.parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert dns.parse_add_host("db=10.0.0.5") == ("db", "10.0.0.5")
    for bad in ("db", "db:nope", ":10.0.0.5"):
        with pytest.raises(InvalidArgument):
            dns.parse_add_host(bad)


def test_options_to_config():
    kwargs = {
        "network": "lab",
        "ip": "10.89.0.9",
        "mac_address": "02:42:0a:59:00:09",
        "dns": ("192.0.2.53",),
        "add_hosts": ("db:10.0.0.5",),
        "network_aliases": ("www",),
        "publish": ("8080:80",),
        "publish_all": False,
        "other": 1,
    }
    config = network_options.to_config(kwargs)

    assert kwargs == {"other": 1}
    assert config["mode"] == "lab"
    assert config["ports"][0]["host_port"] == 8080
    assert config["aliases"] == ["www"]
    assert config["mac"] == "02:42:0a:59:00:09"


def test_options_reject_bad_values():
    with pytest.raises(InvalidArgument, match="mac-address"):
        network_options.to_config(
            {"network": "bridge", "mac_address": "01:00:00:00:00:01"}
        )
    with pytest.raises(InvalidArgument, match="cannot be used with --network none"):
        network_options.to_config({"network": "none", "publish": ("80",)})
    with pytest.raises(InvalidArgument, match="invalid network name"):
        network_options.to_config({"network": "bad/name"})
    assert network_options.to_config({"network": None}) == {"mode": "bridge"}


def test_host_gateway_becomes_the_network_gateway():
    values = ["host.docker.internal:host-gateway", "db:10.0.0.5"]
    assert dns.resolve_host_gateway(values, "10.89.0.1") == [
        "host.docker.internal:10.89.0.1",
        "db:10.0.0.5",
    ]
