"""Networks on disk and the address leases of their containers (IPAM).

Each network is one JSON file, ``<state root>/networks/NAME.json``: its
subnet, gateway, bridge and a ``leases`` map from IPv4 address to the
container that holds it. Every read-modify-write of these files happens
under one exclusive ``flock`` on ``<run root>/networks.lock``, so containers
started in parallel never receive the same address, and a lease is written
(atomically, by rename) before the container's interface exists. A lease
never uses the network address, the broadcast address or the gateway.

A lease also records what teardown needs after a crash: the host-side veth
name, the published ports, and the pid and start time of the container's
first process, which tell a live lease from one left by a dead container.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from .. import paths, state
from ..errors import Conflict, InvalidArgument, NotFound
from . import names

DEFAULT_NETWORK = "bridge"
NETWORK_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")

# Names that select a mode and so cannot name a user-defined network.
RESERVED_NAMES = {"none", "host", "default", "container"}

# Candidates for the default network (a /16 each), then pools that
# user-defined networks without --subnet take a /24 from. A candidate that
# overlaps a host route or another network is skipped.
DEFAULT_SUBNETS = ["10.88.0.0/16", "10.128.0.0/9"]
DEFAULT_PREFIX = 16
USER_SUBNET_POOLS = ["10.89.0.0/16", "10.90.0.0/15", "172.31.0.0/16"]
USER_SUBNET_PREFIX = 24


def networks_dir() -> str:
    return os.path.join(paths.state_root(), "networks")


def record_path(name: str) -> str:
    return os.path.join(networks_dir(), f"{name}.json")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the lock that serializes every change to network records."""
    with state.locked("networks"):
        yield


def validate_network_name(name: str) -> None:
    if not NETWORK_NAME_PATTERN.match(name) or name in RESERVED_NAMES:
        raise InvalidArgument(
            f"invalid network name {name!r}: use up to 64 letters, digits, '_', '.'"
            " and '-', starting with a letter or digit, and not none, host,"
            " default or container"
        )


def load(name: str) -> dict[str, Any]:
    try:
        with open(record_path(name), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise NotFound(
            f"network {name!r} not found: create it with 'minictr network create {name}'"
        ) from None


def save(record: dict[str, Any]) -> None:
    os.makedirs(networks_dir(), mode=0o700, exist_ok=True)
    state.write_json_atomic(record_path(record["name"]), record)


def delete(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(name))


def list_records() -> list[dict[str, Any]]:
    try:
        entries = sorted(os.listdir(networks_dir()))
    except FileNotFoundError:
        return []
    records = []
    for entry in entries:
        if entry.endswith(".json"):
            path = os.path.join(networks_dir(), entry)
            with (
                contextlib.suppress(OSError, ValueError),
                open(path, encoding="utf-8") as f,
            ):
                records.append(json.load(f))
    return records


def _taken_subnets(
    own_bridges: set[str], own: str | None = None
) -> list[ipaddress.IPv4Network]:
    """Return the subnets in use by other networks and by host routes.

    Routes through minictr's own bridges are skipped: those belong to a
    recorded network, or to a bridge whose network is gone.
    """
    taken = [
        ipaddress.IPv4Network(r["subnet"]) for r in list_records() if r["name"] != own
    ]
    return taken + _routes_not_through(own_bridges)


def _routes_not_through(bridges: set[str]) -> list[ipaddress.IPv4Network]:
    """Return the host's IPv4 route destinations, except through ``bridges``.

    Reading /proc/net/route avoids importing pyroute2 on this path. The file
    lists addresses as little-endian hex. The default route is left out
    because every subnet overlaps it.
    """
    routes = []
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] in bridges:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen > 0:
            routes.append(net)
    return routes


def check_subnet_free(subnet: ipaddress.IPv4Network, own: str | None = None) -> None:
    """Raise Conflict when ``subnet`` overlaps a host route or a network but ``own``."""
    bridges = {r["bridge"] for r in list_records()}
    for record in list_records():
        if record["name"] == own:
            continue
        if ipaddress.IPv4Network(record["subnet"]).overlaps(subnet):
            raise Conflict(
                f"subnet {subnet} overlaps network {record['name']!r}"
                f" ({record['subnet']}): choose another --subnet"
            )
    for route in _routes_not_through(bridges | {names.default_bridge()}):
        if route.overlaps(subnet):
            raise Conflict(
                f"subnet {subnet} overlaps the host route to {route}:"
                " choose another --subnet"
            )


def pick_subnet(
    candidates: list[str], prefixlen: int | None, own: str | None = None
) -> ipaddress.IPv4Network:
    """Return the first subnet from ``candidates`` (split to ``prefixlen``) that is free."""
    bridges = {r["bridge"] for r in list_records()} | {names.default_bridge()}
    taken = _taken_subnets(bridges, own)
    for pool in candidates:
        pool_net = ipaddress.IPv4Network(pool)
        subnets = pool_net.subnets(new_prefix=prefixlen) if prefixlen else [pool_net]
        for subnet in subnets:
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
    raise Conflict(
        f"no free subnet left in {', '.join(candidates)}: give one with --subnet"
    )


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InvalidArgument(
            f"invalid subnet {text!r}: {exc}; give an IPv4 network such as 10.90.0.0/24"
        ) from None
    if subnet.prefixlen > 30:
        raise InvalidArgument(
            f"subnet {text} is too small: use a prefix of /30 or shorter so that it"
            " holds a gateway and at least one container"
        )
    return subnet


def new_record(
    name: str,
    subnet: ipaddress.IPv4Network,
    gateway: str | None = None,
    bridge: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the record of a new network; ``gateway`` defaults to the first host."""
    if gateway is None:
        gateway_addr = next(subnet.hosts())
    else:
        try:
            gateway_addr = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway!r}") from None
        if gateway_addr not in subnet or gateway_addr in (
            subnet.network_address,
            subnet.broadcast_address,
        ):
            raise InvalidArgument(
                f"gateway {gateway} is not a host address of subnet {subnet}"
            )
    network_id = hashlib.sha256(f"{name}/{subnet}/{os.urandom(8).hex()}".encode())
    network_id_hex = network_id.hexdigest()
    return {
        "name": name,
        "id": network_id_hex,
        "subnet": str(subnet),
        "gateway": str(gateway_addr),
        "bridge": bridge or names.bridge_name(network_id_hex),
        "default": name == DEFAULT_NETWORK,
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "labels": labels or {},
        "leases": {},
    }


def allocate(
    record: dict[str, Any], lease: dict[str, Any], requested: str | None = None
) -> str:
    """Add ``lease`` to ``record`` at a free address and return the address.

    The caller holds :func:`locked` and saves the record. ``requested`` is an
    address the user asked for with --ip.
    """
    subnet = ipaddress.IPv4Network(record["subnet"])
    leases = record["leases"]
    reserved = {subnet.network_address, subnet.broadcast_address}
    reserved.add(ipaddress.IPv4Address(record["gateway"]))
    if requested is not None:
        address = _check_requested(record, requested, reserved)
    else:
        address = _first_free(subnet, reserved, leases)
        if address is None:
            raise Conflict(
                f"network {record['name']!r} has no free address left in"
                f" {subnet}: remove a container or use a larger subnet"
            )
    leases[str(address)] = lease
    return str(address)


def _check_requested(
    record: dict[str, Any], requested: str, reserved: set[ipaddress.IPv4Address]
) -> ipaddress.IPv4Address:
    subnet = ipaddress.IPv4Network(record["subnet"])
    try:
        address = ipaddress.IPv4Address(requested)
    except ValueError:
        raise InvalidArgument(f"invalid --ip address {requested!r}") from None
    if address not in subnet:
        raise InvalidArgument(
            f"--ip {requested} is outside subnet {subnet} of network {record['name']!r}"
        )
    if address in reserved:
        raise InvalidArgument(
            f"--ip {requested} is the network, broadcast or gateway address of"
            f" {subnet}: choose another address"
        )
    holder = record["leases"].get(str(address))
    if holder is not None:
        raise Conflict(
            f"address {requested} is already in use by container"
            f" {holder.get('name') or holder['container_id'][:12]}"
        )
    return address


def _first_free(
    subnet: ipaddress.IPv4Network,
    reserved: set[ipaddress.IPv4Address],
    leases: dict[str, Any],
) -> ipaddress.IPv4Address | None:
    for address in subnet.hosts():
        if address not in reserved and str(address) not in leases:
            return address
    return None


def leases_of(container_id: str) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """Return (record, address, lease) for every lease held by ``container_id``."""
    found = []
    for record in list_records():
        for address, lease in record["leases"].items():
            if lease.get("container_id") == container_id:
                found.append((record, address, lease))
    return found
