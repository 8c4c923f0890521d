"""User-defined networks: create, list, inspect, remove, connect, prune.

A user-defined network is a record (see :mod:`.ipam`) plus, once a container
uses it, a bridge and its firewall rules. The bridge is created lazily by
the first container, so ``network create`` touches only the record and
costs no netlink call. ``network rm`` removes the record, the bridge and the
rules; it is rejected while a container holds a lease on the network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from .. import state
from ..errors import Conflict, InvalidArgument, MinictrError, NotFound
from . import container, ipam, names

log = logging.getLogger(__name__)

# Networks that exist without `network create`; Docker calls them predefined.
PREDEFINED_NETWORKS = (ipam.DEFAULT_NETWORK, "host", "none")


def create(
    name: str,
    subnet: str | None = None,
    gateway: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Record a new network; its subnet is picked from a free pool without ``subnet``."""
    ipam.validate_network_name(name)
    if gateway and not subnet:
        raise InvalidArgument("--gateway needs --subnet: give the subnet it belongs to")
    with ipam.locked():
        try:
            ipam.load(name)
        except NotFound:
            pass
        else:
            raise Conflict(f"network {name!r} already exists: choose another name")
        if subnet:
            chosen = ipam.parse_subnet(subnet)
            ipam.check_subnet_free(chosen)
        else:
            chosen = ipam.pick_subnet(ipam.USER_SUBNET_POOLS, ipam.USER_SUBNET_PREFIX)
        record = ipam.new_record(name, chosen, gateway, labels=labels)
        record["auto_subnet"] = not subnet
        ipam.save(record)
    log.debug(
        "network %s created: subnet %s, bridge %s", name, chosen, record["bridge"]
    )
    return record


def list_networks() -> list[dict[str, Any]]:
    return ipam.list_records()


def inspect(name: str) -> dict[str, Any]:
    return ipam.load(name)


def remove(name: str) -> None:
    """Delete a network that no container uses: rules, bridge and record.

    The predefined networks (the default bridge, ``host`` and ``none``) are
    rejected, as in Docker, because ``run`` relies on them.
    """
    if name in PREDEFINED_NETWORKS:
        raise InvalidArgument(
            f"network {name!r} is predefined and cannot be removed; only networks"
            " made with 'network create' can"
        )
    with ipam.locked():
        record = ipam.load(name)
        users = [
            lease.get("name") or lease["container_id"][:12]
            for lease in record["leases"].values()
        ]
        if users:
            raise Conflict(
                f"network {name!r} is in use by {', '.join(sorted(users))}:"
                " remove or disconnect those containers first"
            )
        _remove_infrastructure(record)
        ipam.delete(name)


def _remove_infrastructure(record: dict[str, Any]) -> None:
    from . import firewall, netlink

    firewall.remove_network(record)
    netlink.delete_link(record["bridge"])


def connect(
    reference: str,
    network: str,
    aliases: list[str] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Attach the running container ``reference`` to ``network`` as a new ethN."""
    container_id, pid = container._running_container(reference)
    config = state.read_config(container_id)
    if any(r["name"] == network for r, _, _ in ipam.leases_of(container_id)):
        raise Conflict(f"container {reference!r} is already on network {network!r}")
    plan: dict[str, Any] = {
        "mode": network,
        "container_id": container_id,
        "name": config.name,
        "hostname": config.hostname or container_id[:12],
        "extra_hosts": (config.network or {}).get("add_hosts", []),
        "networks": [],
        "ports": [],
    }
    options = {"aliases": aliases or [], "ip": ip}
    container._lease(plan, network, options, state.container_dir(container_id))
    interface = plan["networks"][0]
    try:
        container._ensure_network(network)
        from . import netlink

        netlink.add_container_interface(
            pid,
            interface["host_ifname"],
            interface["ifname"],
            interface["bridge"],
            interface["address"],
            interface["prefixlen"],
            interface["mac"],
            None,
        )
    except BaseException:
        _drop_lease(container_id, network)
        raise
    container._record_pid(container_id, pid)
    with ipam.locked():
        container._rewrite_hosts(ipam.list_records(), _lease_on(container_id, network))
    return interface


def disconnect(reference: str, network: str) -> None:
    """Detach a running container from ``network``: its ethN goes, and its name."""
    container_id = state.find(reference)
    lease = _lease_on(container_id, network)
    from . import netlink

    netlink.delete_link(lease["host_ifname"])
    _drop_lease(container_id, network)
    with ipam.locked():
        records = ipam.list_records()
        if ipam.leases_of(container_id):
            container._rewrite_hosts(records, ipam.leases_of(container_id)[0][2])


def _lease_on(container_id: str, network: str) -> dict[str, Any]:
    for record, _, lease in ipam.leases_of(container_id):
        if record["name"] == network:
            return lease
    raise NotFound(
        f"container {container_id[:12]} is not connected to network {network!r}"
    )


def _drop_lease(container_id: str, network: str) -> None:
    with ipam.locked():
        record = ipam.load(network)
        record["leases"] = {
            address: lease
            for address, lease in record["leases"].items()
            if lease["container_id"] != container_id
        }
        ipam.save(record)
        container._refresh_hosts_of_network(network)


def prune(remove_unused_networks: bool = True) -> dict[str, list[str]]:
    """Remove what dead containers left, and user-defined networks without containers.

    Leftovers are leases whose container directory is gone or whose process
    no longer runs, the veths and rules of those containers, minictr veths
    that no lease names, and rules or bridges of networks that no longer
    exist. The default network is never removed.
    """
    removed: dict[str, list[str]] = {
        "leases": [],
        "links": [],
        "rules": [],
        "networks": [],
    }
    stale = {
        lease["container_id"]
        for record in ipam.list_records()
        for lease in record["leases"].values()
        if container.lease_is_stale(lease)
    }
    for container_id in sorted(stale):
        result = container.release(container_id)
        removed["leases"].append(container_id)
        removed["links"] += result["links"]
    if remove_unused_networks:
        for record in ipam.list_records():
            if not record["leases"] and not record.get("default"):
                with contextlib.suppress(Conflict):
                    remove(record["name"])
                    removed["networks"].append(record["name"])
    _remove_orphans(removed)
    return removed


def _remove_orphans(removed: dict[str, list[str]]) -> None:
    """Delete veths, bridges and rules of this state root that nothing owns.

    A bridge belongs to this root when the firewall's ``bridges`` set lists
    it, and a veth when it is a port of such a bridge, so a prune never
    touches the objects of another ``MINICTR_ROOT``.
    """
    from . import firewall, netlink

    records = ipam.list_records()
    leased = {
        lease.get("host_ifname") for r in records for lease in r["leases"].values()
    }
    recorded_bridges = {r["bridge"] for r in records}
    own_bridges = set(firewall.bridges()) | recorded_bridges
    for link, master in netlink.list_links().items():
        orphan_veth = (
            names.is_minictr_veth(link) and master in own_bridges and link not in leased
        )
        orphan_bridge = link in own_bridges and link not in recorded_bridges
        if orphan_veth or orphan_bridge:
            with contextlib.suppress(MinictrError):
                if netlink.delete_link(link):
                    removed["links"].append(link)
    owners = {f"net:{r['name']}" for r in records} | {
        f"ctr:{lease['container_id']}"
        for r in records
        for lease in r["leases"].values()
    }
    lines = []
    for rule in firewall.list_rules():
        comment = rule.get("comment", "")
        if comment.startswith(("net:", "ctr:")) and comment not in owners:
            lines.append(firewall.delete_rule_command(rule))
            removed["rules"].append(comment)
    for bridge in set(firewall.bridges()) - recorded_bridges:
        lines.append(firewall.delete_bridge_command(bridge))
    firewall.apply(lines)


def subnet_of(record: dict[str, Any]) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(record["subnet"])
