"""Links, addresses and routes through rtnetlink (pyroute2).

A container's network namespace starts with only a loopback device. minictr
connects it with a veth pair, two virtual Ethernet devices where a frame
sent into one comes out of the other: one end stays on the host as a port of
a Linux bridge (a software switch that also carries the gateway address),
the other end lives in the container as ``eth0``. The kernel can create the
peer end directly in another namespace (``IFLA_NET_NS_PID`` inside
``VETH_INFO_PEER``), which saves moving it afterwards.

To configure the inside end, this module opens a netlink socket while the
calling thread is in the container's namespace (``setns``) and switches back
at once. A socket stays bound to the namespace it was created in, so no
helper process is needed. pyroute2's own ``netns=`` option forks a child for
the same job. Such a socket keeps the namespace alive, so it is always
closed before returning.

pyroute2 is imported inside the functions: it takes about 0.2 s to import,
and containers without a network must not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from .. import syscalls
from ..errors import KernelError

log = logging.getLogger(__name__)


def _iproute() -> Any:
    from pyroute2 import IPRoute

    # pyroute2 logs every netlink message at DEBUG, which would bury the
    # --debug narration, and its import resets its logger to NOTSET, so a
    # level set before the import is lost.
    pyroute2_log = logging.getLogger("pyroute2")
    if pyroute2_log.level == logging.NOTSET:
        pyroute2_log.setLevel(logging.WARNING)
    return IPRoute()


@contextlib.contextmanager
def _host() -> Iterator[Any]:
    ipr = _iproute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextlib.contextmanager
def _in_netns(netns_path: str) -> Iterator[Any]:
    """Yield an IPRoute whose socket lives in the namespace at ``netns_path``."""
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWNET)
        try:
            ipr = _iproute()
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(own)
    try:
        yield ipr
    finally:
        ipr.close()


def _netlink_error(action: str, exc: Exception) -> KernelError:
    code = getattr(exc, "code", 0) or 0
    reason = os.strerror(code) if code else str(exc)
    return KernelError(f"{action} failed: {reason}", code)


def write_sysctl(path: str, value: str) -> None:
    """Write ``value`` to ``/proc/sys/PATH`` unless it already contains it."""
    full = os.path.join("/proc/sys", path)
    with open(full, encoding="ascii") as f:
        if f.read().strip() == value:
            return
    log.debug("sysctl %s = %s", path.replace("/", "."), value)
    with open(full, "w", encoding="ascii") as f:
        f.write(value)


def link_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/sys/class/net", name))


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """Create bridge ``name`` with ``gateway/prefixlen`` and bring it up.

    Does nothing that is already done, so concurrent starts may call it;
    the caller holds the network lock.
    """
    with _host() as ipr:
        try:
            if not ipr.link_lookup(ifname=name):
                log.debug("ip link add %s type bridge", name)
                ipr.link("add", ifname=name, kind="bridge")
            index = ipr.link_lookup(ifname=name)[0]
            present = {a.get("address") for a in ipr.get_addr(index=index, family=2)}
            if gateway not in present:
                log.debug("ip addr add %s/%d dev %s", gateway, prefixlen, name)
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
        except Exception as exc:
            raise _netlink_error(
                f"setting up bridge {name} ({gateway}/{prefixlen})", exc
            ) from exc

    # Packets to a published port on 127.0.0.1 are rewritten towards the
    # container and leave through the bridge with a loopback source. The
    # kernel drops those as martians unless route_localnet is set.
    write_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    write_sysctl("net/ipv4/ip_forward", "1")


def delete_link(name: str) -> bool:
    """Delete interface ``name`` on the host; return False when it was absent."""
    with _host() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return False
        log.debug("ip link del %s", name)
        try:
            ipr.link("del", index=indexes[0])
        except Exception as exc:
            if getattr(exc, "code", 0) == 19:  # ENODEV: gone in the meantime
                return False
            raise _netlink_error(f"deleting interface {name}", exc) from exc
    return True


def list_links() -> dict[str, str | None]:
    """Return each host interface's name and the name of its master (bridge)."""
    with _host() as ipr:
        links = ipr.get_links()
    by_index = {link["index"]: link.get("ifname") for link in links}
    return {link.get("ifname"): by_index.get(link.get("master")) for link in links}


def add_container_interface(
    pid: int,
    host_ifname: str,
    ifname: str,
    bridge: str,
    address: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
) -> None:
    """Connect the network namespace of ``pid`` to ``bridge`` through a veth pair.

    ``ifname`` is the name inside (eth0, eth1, ...). ``gateway`` is set as
    the default route, or no route is added when it is None.
    """
    netns_path = f"/proc/{pid}/ns/net"
    with _host() as ipr:
        try:
            log.debug(
                "ip link add %s type veth peer name %s netns %d address %s",
                host_ifname,
                ifname,
                pid,
                mac,
            )
            ipr.link(
                "add",
                ifname=host_ifname,
                kind="veth",
                peer={"ifname": ifname, "net_ns_pid": pid, "address": mac},
            )
            host_index = ipr.link_lookup(ifname=host_ifname)[0]
            bridge_index = ipr.link_lookup(ifname=bridge)[0]
            log.debug("ip link set %s master %s up", host_ifname, bridge)
            ipr.link("set", index=host_index, master=bridge_index, state="up")
        except Exception as exc:
            raise _netlink_error(
                f"creating veth {host_ifname} with peer {ifname} in {netns_path}", exc
            ) from exc
    try:
        _enable_hairpin(host_ifname)
        _configure_inside(netns_path, ifname, address, prefixlen, gateway)
    except Exception:
        delete_link(host_ifname)
        raise


def _enable_hairpin(host_ifname: str) -> None:
    # With br_netfilter loaded, a container's packet to its own published
    # port is rewritten while still in the bridge and must leave through the
    # port it came in on, which a bridge refuses unless hairpin mode is set.
    path = f"/sys/class/net/{host_ifname}/brport/hairpin_mode"
    log.debug("echo 1 > %s", path)
    with open(path, "w", encoding="ascii") as f:
        f.write("1")


def _configure_inside(
    netns_path: str, ifname: str, address: str, prefixlen: int, gateway: str | None
) -> None:
    with _in_netns(netns_path) as ipr:
        try:
            index = ipr.link_lookup(ifname=ifname)[0]
            log.debug("in %s: ip link set lo up", netns_path)
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            log.debug(
                "in %s: ip addr add %s/%d dev %s",
                netns_path,
                address,
                prefixlen,
                ifname,
            )
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
            if gateway is not None:
                log.debug("in %s: ip route add default via %s", netns_path, gateway)
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
        except Exception as exc:
            raise _netlink_error(
                f"configuring {ifname} ({address}/{prefixlen}) in {netns_path}", exc
            ) from exc


def remove_container_interface(pid: int, ifname: str) -> None:
    """Delete ``ifname`` inside the namespace of ``pid``, which removes its peer too."""
    with _in_netns(f"/proc/{pid}/ns/net") as ipr:
        indexes = ipr.link_lookup(ifname=ifname)
        if indexes:
            log.debug("in /proc/%d/ns/net: ip link del %s", pid, ifname)
            ipr.link("del", index=indexes[0])


def container_ifnames(pid: int) -> list[str]:
    with _in_netns(f"/proc/{pid}/ns/net") as ipr:
        return [link.get("ifname") for link in ipr.get_links()]
