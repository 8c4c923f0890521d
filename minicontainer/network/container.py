"""One container's network: prepare before it starts, attach, release.

The runtime calls three functions, in this order:

1. :func:`prepare` before the container's processes exist: checks the
   options, leases an address, reserves host ports and writes the /etc
   files. Any failure leaves nothing behind.
2. :func:`attach` once the container's first process exists: bridge, veth
   pair, addresses, routes and firewall rules, all made from the host.
3. :func:`release` at teardown, also after a crash: rules, veth, leases and
   the peers' hosts entries. It is idempotent.

Modes: ``none`` (loopback only), ``host`` (the host's namespace),
``container:NAME`` (another container's namespace, see
:func:`netns_path_for`), ``bridge`` (the default network) or the name of a
user-defined network. Only the last two touch netlink and nftables.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
from typing import Any

from .. import state
from ..errors import Conflict, InvalidArgument, MinictrError, NotFound
from . import dns, ipam, names, ports

log = logging.getLogger(__name__)

NETWORK_MODES = ("none", "host", "bridge")


def network_name_of(mode: str) -> str | None:
    """Return the network a mode attaches to, or None for none/host/container."""
    if mode in ("none", "host") or mode.startswith("container:"):
        return None
    if mode in ("bridge", "default"):
        return ipam.DEFAULT_NETWORK
    return mode


def _config_dict(config: Any) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def prepare(config: Any, container_dir: str) -> dict[str, Any]:
    """Check the network options, lease an address and write the /etc files.

    Returns the plan that :func:`attach` and :func:`write_etc_files` take.
    Raises InvalidArgument, NotFound or Conflict with nothing left behind.
    """
    cfg = _config_dict(config)
    options = cfg.get("network") or {"mode": "none"}
    mode = options.get("mode", "none")
    plan: dict[str, Any] = {
        "mode": mode,
        "container_id": cfg["id"],
        "name": cfg["name"],
        "hostname": cfg.get("hostname") or cfg["id"][:12],
        "dns": list(options.get("dns", [])),
        "extra_hosts": list(options.get("add_hosts", [])),
        "networks": [],
        "ports": [],
    }
    for value in plan["extra_hosts"]:
        dns.parse_add_host(value)
    if mode == "host":
        # In the host's network namespace, the host is the loopback address.
        plan["extra_hosts"] = dns.resolve_host_gateway(plan["extra_hosts"], "127.0.0.1")
    if mode.startswith("container:"):
        plan["container"] = _running_container(mode.partition(":")[2])[0]
    network = network_name_of(mode)
    if network is not None:
        _lease(plan, network, options, container_dir)
        gateway = plan["networks"][0]["gateway"]
        plan["extra_hosts"] = dns.resolve_host_gateway(plan["extra_hosts"], gateway)
    try:
        write_etc_files(cfg, container_dir, plan)
    except BaseException:
        release(plan["container_id"])
        raise
    return plan


def _lease(
    plan: dict[str, Any], network: str, options: dict[str, Any], container_dir: str
) -> None:
    requested = list(options.get("ports", []))
    if options.get("publish_all"):
        requested += [
            mapping
            for spec in options.get("expose", [])
            for mapping in ports.parse_publish(str(spec))
        ]
    with ipam.locked():
        record = _load_or_create(network)
        reserved = ports.reserve_host_ports(requested, _published_ports())
        lease = _new_lease(plan, record, options, container_dir)
        lease["ports"] = reserved
        address = ipam.allocate(record, lease, options.get("ip"))
        if options.get("mac"):
            lease["mac"] = options["mac"]
        else:
            lease["mac"] = _mac_from_address(address)
        ipam.save(record)
        _refresh_hosts_of_network(record["name"], skip=plan["container_id"])
    plan["networks"].append(_interface_plan(record, address, lease))
    plan["ports"] = reserved


def _new_lease(
    plan: dict[str, Any],
    record: dict[str, Any],
    options: dict[str, Any],
    container_dir: str,
) -> dict[str, Any]:
    aliases = list(options.get("aliases", []))
    if aliases and record.get("default"):
        raise InvalidArgument(
            "--network-alias works only on a user-defined network: create one with"
            " 'minictr network create NAME' and run with --network NAME"
        )
    taken = {
        lease.get("ifname") for _, _, lease in ipam.leases_of(plan["container_id"])
    }
    ifname = next(f"eth{n}" for n in range(len(taken) + 1) if f"eth{n}" not in taken)
    return {
        "container_id": plan["container_id"],
        "name": plan["name"],
        "hostname": plan["hostname"],
        "aliases": aliases,
        "extra_hosts": dns.resolve_host_gateway(plan["extra_hosts"], record["gateway"]),
        "dir": container_dir,
        "ifname": ifname,
        "host_ifname": _free_veth_name(plan["container_id"], record["name"]),
    }


def _interface_plan(
    record: dict[str, Any], address: str, lease: dict[str, Any]
) -> dict[str, Any]:
    subnet = ipaddress.IPv4Network(record["subnet"])
    return {
        "network": record["name"],
        "bridge": record["bridge"],
        "address": address,
        "prefixlen": subnet.prefixlen,
        "gateway": record["gateway"],
        "mac": lease["mac"],
        "ifname": lease["ifname"],
        "host_ifname": lease["host_ifname"],
    }


def _load_or_create(network: str) -> dict[str, Any]:
    """Load ``network``, creating the default one or picking its subnet anew.

    A network's bridge exists only while a container uses it. Before the
    bridge comes back, its subnet is checked against the host's routes,
    which may have changed. If the old subnet is taken now, the default
    network and a network whose subnet minictr picked move to a free one.
    A subnet the user gave is an error instead.
    """
    record: dict[str, Any] | None
    try:
        record = ipam.load(network)
    except NotFound:
        if network != ipam.DEFAULT_NETWORK:
            raise
        record = None
    if record is not None and (record["leases"] or _link_exists(record["bridge"])):
        return record
    if record is not None and not record.get("default"):
        try:
            ipam.check_subnet_free(
                ipaddress.IPv4Network(record["subnet"]), record["name"]
            )
        except Conflict:
            if not record.get("auto_subnet"):
                raise
            return _move_subnet(record)
        return record
    subnet = ipam.pick_subnet(ipam.DEFAULT_SUBNETS, ipam.DEFAULT_PREFIX, network)
    if record is None or record["subnet"] != str(subnet):
        record = ipam.new_record(network, subnet, bridge=names.default_bridge())
        log.debug("default network %s uses subnet %s", network, subnet)
        ipam.save(record)
    return record


def _move_subnet(record: dict[str, Any]) -> dict[str, Any]:
    """Give an idle network whose picked subnet is now taken a free one."""
    subnet = ipam.pick_subnet(
        ipam.USER_SUBNET_POOLS, ipam.USER_SUBNET_PREFIX, record["name"]
    )
    log.info(
        "network %s moves from subnet %s, which a host route now covers, to %s",
        record["name"],
        record["subnet"],
        subnet,
    )
    record["subnet"] = str(subnet)
    record["gateway"] = str(next(subnet.hosts()))
    ipam.save(record)
    return record


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _mac_from_address(address: str) -> str:
    # A locally administered unicast address (02:...) that embeds the IPv4
    # address, so that it is unique wherever the address is.
    octets = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{octet:02x}" for octet in octets)


def _free_veth_name(container_id: str, network: str) -> str:
    used = {
        lease.get("host_ifname")
        for record in ipam.list_records()
        for lease in record["leases"].values()
    }
    for salt in range(100):
        candidate = names.veth_name(container_id, network, salt)
        if candidate not in used and not _link_exists(candidate):
            return candidate
    raise Conflict(f"no free interface name for container {container_id[:12]}")


def _published_ports() -> list[tuple[str, dict[str, Any]]]:
    return [
        (lease.get("name") or lease["container_id"][:12], port)
        for record in ipam.list_records()
        for lease in record["leases"].values()
        for port in lease.get("ports", [])
    ]


def _running_container(reference: str) -> tuple[str, int]:
    """Return (id, pid) of the running container ``reference``."""
    container_id = state.find(reference)
    pid = state.read_state(container_id).get("pid")
    if not pid or not os.path.exists(f"/proc/{pid}/ns/net"):
        raise Conflict(f"container {reference!r} is not running: start it first")
    return container_id, int(pid)


def netns_path_for(config: Any) -> str | None:
    """Return the network namespace a ``container:NAME`` container joins, else None."""
    mode = (_config_dict(config).get("network") or {}).get("mode", "none")
    if not mode.startswith("container:"):
        return None
    _, pid = _running_container(mode.partition(":")[2])
    return f"/proc/{pid}/ns/net"


def write_etc_files(config: Any, container_dir: str, plan: dict[str, Any]) -> None:
    """Write ``hosts``, ``resolv.conf`` and ``hostname`` for the container."""
    mode = plan["mode"]
    hostname = plan["hostname"]
    if mode.startswith("container:"):
        _copy_etc_files(state.container_dir(plan["container"]), container_dir)
        return
    if mode == "host":
        hosts = dns.host_hosts() + "".join(
            f"{address}\t{name}\n"
            for name, address in map(dns.parse_add_host, plan["extra_hosts"])
        )
        # The host's namespace reaches a loopback stub resolver, so the
        # host's file is used as it is.
        if plan["dns"]:
            resolv = dns.render_resolv_conf(plan["dns"])
        else:
            resolv = dns.read_text(dns.HOST_RESOLV_CONF)
        dns.write_files(container_dir, hosts, resolv, hostname)
        return
    if mode == "none":
        hosts = dns.render_hosts([], [], plan["extra_hosts"])
    else:
        own, peers = dns.peer_entries(ipam.list_records(), plan["container_id"])
        hosts = dns.render_hosts(own, peers, plan["extra_hosts"])
    dns.write_files(container_dir, hosts, dns.render_resolv_conf(plan["dns"]), hostname)


def _copy_etc_files(source_dir: str, container_dir: str) -> None:
    # NOTE: a copy, so later changes to the other container's hosts file
    # (peers joining its network) do not show here.
    for name in ("hosts", "resolv.conf", "hostname"):
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(
                os.path.join(source_dir, name), os.path.join(container_dir, name)
            )


def _refresh_hosts_of_network(network: str, skip: str | None = None) -> None:
    """Rewrite the hosts file of every container on ``network``; hold the lock."""
    records = ipam.list_records()
    for record in records:
        if record["name"] != network or record.get("default"):
            continue
        for lease in record["leases"].values():
            if lease["container_id"] != skip:
                _rewrite_hosts(records, lease)


def _rewrite_hosts(records: list[dict[str, Any]], lease: dict[str, Any]) -> None:
    path = os.path.join(lease.get("dir", ""), "hosts")
    if not os.path.exists(path):
        return
    own, peers = dns.peer_entries(records, lease["container_id"])
    log.debug("rewrite %s with %d peers", path, len(peers))
    dns.write_in_place(path, dns.render_hosts(own, peers, lease.get("extra_hosts", [])))


def attach(plan: dict[str, Any], pid: int) -> dict[str, Any]:
    """Connect the namespace of ``pid`` as described by ``plan``.

    Returns the plan with the host-side interface names and the pid added.
    On failure, undoes its own steps and raises, but the leases stay until
    :func:`release`.
    """
    if not plan.get("networks"):
        return {}
    from . import firewall, netlink

    container_id = plan["container_id"]
    done: list[str] = []
    try:
        for index, interface in enumerate(plan["networks"]):
            _ensure_network(interface["network"])
            netlink.add_container_interface(
                pid,
                interface["host_ifname"],
                interface["ifname"],
                interface["bridge"],
                interface["address"],
                interface["prefixlen"],
                interface["mac"],
                interface["gateway"] if index == 0 else None,
            )
            done.append(interface["host_ifname"])
        if plan["ports"]:
            address = plan["networks"][0]["address"]
            firewall.add_container(
                container_id, ports.dnat_rules(address, plan["ports"])
            )
    except BaseException:
        _undo_attach(container_id, done)
        raise
    _record_pid(container_id, pid)
    return dict(plan, host_ifnames=done, pid=pid)


def _undo_attach(container_id: str, host_ifnames: list[str]) -> None:
    from . import firewall, netlink

    for name in host_ifnames:
        with contextlib.suppress(MinictrError):
            netlink.delete_link(name)
    with contextlib.suppress(MinictrError):
        firewall.remove_container(container_id)


def _ensure_network(network: str) -> None:
    from . import firewall, netlink

    with ipam.locked():
        record = ipam.load(network)
        prefixlen = ipaddress.IPv4Network(record["subnet"]).prefixlen
        netlink.ensure_bridge(record["bridge"], record["gateway"], prefixlen)
        firewall.ensure_network(record)


def _process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # Field 22 (starttime) follows the command name, which is in
            # parentheses and may itself contain spaces.
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _record_pid(container_id: str, pid: int) -> None:
    with ipam.locked():
        for record in ipam.list_records():
            changed = False
            for lease in record["leases"].values():
                if lease["container_id"] == container_id:
                    lease["pid"] = pid
                    lease["start_time"] = _process_start_time(pid)
                    changed = True
            if changed:
                ipam.save(record)


def lease_is_stale(lease: dict[str, Any]) -> bool:
    """Return True when the container that owns ``lease`` is gone."""
    if not os.path.isdir(lease.get("dir", "")):
        return True
    pid = lease.get("pid")
    if pid is None:
        return False
    return _process_start_time(pid) != lease.get("start_time")


def release(container_id: str) -> dict[str, Any]:
    """Remove the container's rules, veths, leases and peers' hosts entries.

    Idempotent, and safe after a crash at any point of :func:`attach` or of
    an earlier :func:`release`: the leases go last, so a half-done release
    is found and finished by the next one. Returns what was removed.
    """
    held = ipam.leases_of(container_id)
    if not held:
        return {"leases": 0, "rules": 0, "links": []}
    from . import firewall, netlink

    rules = firewall.remove_container(container_id)
    links = []
    for _, _, lease in held:
        name = lease.get("host_ifname", "")
        if name and netlink.link_exists(name) and netlink.delete_link(name):
            links.append(name)
    with ipam.locked():
        networks = set()
        for record in ipam.list_records():
            kept = {
                address: lease
                for address, lease in record["leases"].items()
                if lease["container_id"] != container_id
            }
            if len(kept) != len(record["leases"]):
                record["leases"] = kept
                ipam.save(record)
                networks.add(record["name"])
        for network in networks:
            _refresh_hosts_of_network(network)
        _remove_unused_bridges(networks)
    log.debug(
        "released container %s: %d leases, %d rules, links %s",
        container_id[:12],
        len(held),
        rules,
        links,
    )
    return {"leases": len(held), "rules": rules, "links": links}


def _remove_unused_bridges(networks: set[str]) -> None:
    """Delete the bridge and rules of each of ``networks`` that has no container left.

    The record stays. The caller holds the network lock, so no container
    is between its lease and its attach. The table goes with the last one.
    """
    from . import firewall, netlink

    records = ipam.list_records()
    last = not any(record["leases"] for record in records)
    for record in records:
        if record["name"] in networks and not record["leases"]:
            if not last:
                firewall.remove_network(record)
            netlink.delete_link(record["bridge"])
    if last:
        firewall.delete_table()


def published_ports(container_id: str) -> list[dict[str, Any]]:
    """Return the port mappings of ``container_id``, for ``minictr port``."""
    return [
        port
        for _, _, lease in ipam.leases_of(container_id)
        for port in lease.get("ports", [])
    ]
