"""Published ports: ``-p`` parsing, host port checks and the DNAT rules.

A published port is not a listening socket on the host. It is a destination
NAT rule: a TCP or UDP packet addressed to a local address of the host on
the published port has its destination rewritten to the container's address
and port, and connection tracking rewrites the replies back. The rules match
``fib daddr type local`` in both the prerouting hook (packets from other
hosts and from containers) and the output hook (packets from the host
itself, including those to 127.0.0.1), so one rule matches every address
of the host.

Because no socket holds the host port, two checks run before anything is
created: the port must not be published by another container, and the host
must be able to bind it, which proves that no host process listens there.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any

from ..errors import Conflict, InvalidArgument

PROTOCOLS = ("tcp", "udp")
ANY_ADDRESS = "0.0.0.0"

_RANGE = r"\d+(?:-\d+)?"
_PUBLISH = re.compile(
    rf"^(?:(?:(?P<ip>[0-9.]*):)?(?P<host>{_RANGE})?:)?(?P<container>{_RANGE})"
    r"(?:/(?P<proto>[a-z]+))?$"
)


def parse_publish(spec: str) -> list[dict[str, Any]]:
    """Parse one ``-p`` value into port mappings, one per container port.

    Accepted forms: ``CPORT``, ``HPORT:CPORT``, ``IP:HPORT:CPORT``,
    ``IP::CPORT``, each with an optional ``/tcp`` or ``/udp`` and with equal
    ranges (``8000-8002:80-82``) in place of ports. A host port of 0 means
    "choose a free one when the container starts".
    """
    if spec.startswith("["):
        raise InvalidArgument(
            f"invalid --publish {spec!r}: IPv6 host addresses are not supported"
        )
    match = _PUBLISH.match(spec)
    if match is None:
        raise InvalidArgument(
            f"invalid --publish {spec!r}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT"
            "[/tcp|udp]"
        )
    proto = match["proto"] or "tcp"
    if proto not in PROTOCOLS:
        raise InvalidArgument(
            f"invalid protocol {proto!r} in --publish {spec!r}: use tcp or udp"
        )
    host_ip = _parse_host_ip(match["ip"] or ANY_ADDRESS, spec)
    container_ports = _parse_range(match["container"], spec)
    if match["host"]:
        host_ports = _parse_range(match["host"], spec)
        if len(host_ports) != len(container_ports):
            raise InvalidArgument(
                f"invalid --publish {spec!r}: the host and container ranges differ in length"
            )
    else:
        host_ports = [0] * len(container_ports)
    return [
        {"proto": proto, "host_ip": host_ip, "host_port": hp, "container_port": cp}
        for hp, cp in zip(host_ports, container_ports, strict=True)
    ]


def _parse_host_ip(text: str, spec: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InvalidArgument(
            f"invalid host address {text!r} in --publish {spec!r}: give an IPv4 address"
        ) from None


def _parse_range(text: str, spec: str) -> list[int]:
    first, _, last = text.partition("-")
    start = int(first)
    end = int(last) if last else start
    if not (1 <= start <= end <= 65535):
        raise InvalidArgument(
            f"invalid port {text!r} in --publish {spec!r}: ports run from 1 to 65535"
        )
    return list(range(start, end + 1))


def format_mapping(port: dict[str, Any]) -> str:
    """Return ``80/tcp -> 0.0.0.0:8080``, the line ``minictr port`` prints."""
    return (
        f"{port['container_port']}/{port['proto']} -> "
        f"{port['host_ip']}:{port['host_port']}"
    )


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["proto"] != b["proto"] or a["host_port"] != b["host_port"]:
        return False
    return ANY_ADDRESS in (a["host_ip"], b["host_ip"]) or a["host_ip"] == b["host_ip"]


def reserve_host_ports(
    requested: list[dict[str, Any]], published: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Assign host ports to ``requested`` and check each one is free.

    ``published`` lists (container name, mapping) for every port already
    published on this host. The caller holds the network lock, so two
    containers cannot take the same port between the check and the lease.
    Raises Conflict naming the port and its user.
    """
    resolved: list[dict[str, Any]] = []
    for port in requested:
        port = dict(port)
        if port["host_port"] == 0:
            port["host_port"] = _free_port(port, published, resolved)
        for owner, other in published + [("this container", p) for p in resolved]:
            if _overlap(port, other):
                raise Conflict(
                    f"host port {port['host_ip']}:{port['host_port']}/{port['proto']}"
                    f" is already published by {owner}: choose another host port"
                )
        _check_bindable(port)
        resolved.append(port)
    return resolved


def _free_port(
    port: dict[str, Any],
    published: list[tuple[str, dict[str, Any]]],
    resolved: list[dict[str, Any]],
) -> int:
    # The kernel picks a free ephemeral port when binding port 0; retry when
    # it picks one that a container already publishes through DNAT.
    for _ in range(64):
        candidate = dict(port, host_port=_bind(port, 0))
        others = [p for _, p in published] + resolved
        if not any(_overlap(candidate, other) for other in others):
            return candidate["host_port"]
    raise Conflict(f"no free host port found for --publish {port['container_port']}")


def _check_bindable(port: dict[str, Any]) -> None:
    try:
        _bind(port, port["host_port"])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(
                f"host port {port['host_ip']}:{port['host_port']}/{port['proto']} is"
                " already in use by a process on the host: choose another host port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(
                f"host address {port['host_ip']} in --publish is not an address of"
                " this host"
            ) from None
        raise


def _bind(port: dict[str, Any], number: int) -> int:
    kind = socket.SOCK_STREAM if port["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        # SO_REUSEADDR lets a port in TIME_WAIT pass, as a real listener would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((port["host_ip"], number))
        return sock.getsockname()[1]


def dnat_rules(container_ip: str, ports: list[dict[str, Any]]) -> list[str]:
    """Return the nft rule bodies that forward ``ports`` to ``container_ip``.

    They belong in the ``publish`` chain, which the prerouting and output
    hooks enter only for packets addressed to a local address.
    """
    rules = []
    for port in ports:
        match = ""
        if port["host_ip"] != ANY_ADDRESS:
            match = f"ip daddr {port['host_ip']} "
        rules.append(
            f"{match}{port['proto']} dport {port['host_port']}"
            f" dnat to {container_ip}:{port['container_port']}"
        )
    return rules
