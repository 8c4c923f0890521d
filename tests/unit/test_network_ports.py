"""``-p`` parsing, host port reservation and DNAT rule text."""

from __future__ import annotations

import socket

import pytest

from minicontainer.errors import Conflict, InvalidArgument
from minicontainer.network import ports


def _one(spec: str) -> dict:
    (mapping,) = ports.parse_publish(spec)
    return mapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", ("tcp", "0.0.0.0", 0, 80)),
        ("8080:80", ("tcp", "0.0.0.0", 8080, 80)),
        ("127.0.0.1:8080:80", ("tcp", "127.0.0.1", 8080, 80)),
        ("127.0.0.1::80", ("tcp", "127.0.0.1", 0, 80)),
        ("53:53/udp", ("udp", "0.0.0.0", 53, 53)),
        ("9000/udp", ("udp", "0.0.0.0", 0, 9000)),
    ],
)
def test_publish_forms(spec, expected):
    mapping = _one(spec)
    got = (
        mapping["proto"],
        mapping["host_ip"],
        mapping["host_port"],
        mapping["container_port"],
    )
    assert got == expected


def test_publish_ranges():
    mappings = ports.parse_publish("8000-8002:80-82")
    assert [(m["host_port"], m["container_port"]) for m in mappings] == [
        (8000, 80),
        (8001, 81),
        (8002, 82),
    ]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "abc",
        "0",
        "70000",
        "80/sctp",
        "8000-8001:80",
        "1.2.3:80:80",
        "[::1]:80:80",
        "a:80:80",
    ],
)
def test_publish_rejects(spec):
    with pytest.raises(InvalidArgument):
        ports.parse_publish(spec)


def test_reserve_picks_free_port():
    (mapping,) = ports.reserve_host_ports([_one("127.0.0.1::80")], [])
    assert mapping["host_port"] > 0
    assert mapping["container_port"] == 80


def test_reserve_rejects_port_of_other_container():
    taken = (
        "web",
        {
            "proto": "tcp",
            "host_ip": "0.0.0.0",
            "host_port": 18080,
            "container_port": 80,
        },
    )
    with pytest.raises(Conflict, match="published by web"):
        ports.reserve_host_ports([_one("127.0.0.1:18080:80")], [taken])
    # Another protocol on the same number is a different port.
    assert ports.reserve_host_ports([_one("127.0.0.1:18080:80/udp")], [taken])


def test_reserve_rejects_port_in_use_on_host():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(Conflict, match="in use by a process"):
            ports.reserve_host_ports([_one(f"127.0.0.1:{port}:80")], [])


def test_reserve_rejects_duplicate_within_request():
    with pytest.raises(Conflict, match="this container"):
        ports.reserve_host_ports(
            [_one("127.0.0.1:18081:80"), _one("127.0.0.1:18081:81")], []
        )


def test_dnat_rules_text():
    rules = ports.dnat_rules(
        "10.88.0.2",
        [
            {
                "proto": "tcp",
                "host_ip": "0.0.0.0",
                "host_port": 8080,
                "container_port": 80,
            },
            {
                "proto": "udp",
                "host_ip": "127.0.0.1",
                "host_port": 5353,
                "container_port": 53,
            },
        ],
    )
    assert rules == [
        "tcp dport 8080 dnat to 10.88.0.2:80",
        "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.88.0.2:53",
    ]


def test_format_mapping():
    mapping = {
        "proto": "tcp",
        "host_ip": "0.0.0.0",
        "host_port": 8080,
        "container_port": 80,
    }
    assert ports.format_mapping(mapping) == "80/tcp -> 0.0.0.0:8080"
