"""The container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

minictr runs no DNS server. Names between containers resolve through
``/etc/hosts``: each container's hosts file lists itself and every container
that shares a user-defined network with it, by container name and by its
``--network-alias`` names. The runtime bind-mounts a file from the
container's state directory onto /etc/hosts, and a bind mount pins the
inode. So when a container joins or leaves a network, the files of its
peers are rewritten in place (truncate and write), never replaced by rename.

``resolv.conf`` copies the host's name servers unless ``--dns`` is given. A
loopback server such as systemd-resolved's stub at 127.0.0.53 answers only
inside the host's network namespace, so loopback entries are dropped and the
upstream list that systemd-resolved keeps in
/run/systemd/resolve/resolv.conf is used instead, if there is one.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any

from ..errors import InvalidArgument

log = logging.getLogger(__name__)

HOST_RESOLV_CONF = "/etc/resolv.conf"
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

LOCALHOST_LINES = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::\tip6-localnet",
    "ff00::\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
]


# The --add-host address that stands for the host, as seen from the
# container: the gateway of its network, as in Docker.
HOST_GATEWAY = "host-gateway"


def parse_add_host(value: str) -> tuple[str, str]:
    """Parse ``--add-host NAME:IP`` (``NAME=IP`` also works) into (name, ip).

    The address may be ``host-gateway``, which :func:`resolve_host_gateway`
    replaces once the container's network is known.
    """
    sep = "=" if "=" in value else ":"
    name, _, address = value.partition(sep)
    address = address.strip("[]")
    if address != HOST_GATEWAY:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument(
                f"invalid --add-host {value!r}: expected NAME:IP or"
                " NAME:host-gateway, e.g. db:10.90.0.5"
            ) from None
    if not name or any(ch.isspace() for ch in name):
        raise InvalidArgument(f"invalid --add-host {value!r}: the host name is empty")
    return name, address


def resolve_host_gateway(values: list[str], gateway: str) -> list[str]:
    """Return ``--add-host`` values with ``host-gateway`` replaced by ``gateway``."""
    resolved = []
    for value in values:
        name, address = parse_add_host(value)
        resolved.append(f"{name}:{gateway}" if address == HOST_GATEWAY else value)
    return resolved


def render_hosts(
    own: list[tuple[str, list[str]]],
    peers: list[tuple[str, list[str]]],
    extra_hosts: list[str],
) -> str:
    """Return hosts file text.

    ``own`` and ``peers`` are (address, names) pairs, the container's own
    addresses first. ``extra_hosts`` are ``--add-host`` values, written last.
    """
    lines = list(LOCALHOST_LINES)
    for address, hostnames in own + peers:
        lines.append(f"{address}\t{' '.join(_unique(hostnames))}")
    for value in extra_hosts:
        name, address = parse_add_host(value)
        lines.append(f"{address}\t{name}")
    return "\n".join(lines) + "\n"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def render_resolv_conf(dns_servers: list[str], host_text: str | None = None) -> str:
    """Return resolv.conf text: ``--dns`` servers, else the host's usable ones."""
    for server in dns_servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"invalid --dns address {server!r}") from None
    host_text = host_resolv_conf() if host_text is None else host_text
    servers = list(dns_servers) or _nameservers(host_text)
    other = [
        line
        for line in host_text.splitlines()
        if line.split()[:1] in (["search"], ["options"], ["domain"])
    ]
    lines = [f"nameserver {server}" for server in servers] + other
    if not servers:
        lines.insert(0, "# no name server reachable from the container; use --dns")
    return "\n".join(lines) + "\n"


def _nameservers(text: str) -> list[str]:
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                if not ipaddress.ip_address(fields[1]).is_loopback:
                    servers.append(fields[1])
            except ValueError:
                continue
    return servers


def host_resolv_conf() -> str:
    """Return the host's resolv.conf, or systemd-resolved's upstream list.

    The upstream file is used when the host's own file names only loopback
    servers, the usual case with systemd-resolved's stub.
    """
    text = read_text(HOST_RESOLV_CONF)
    if not _nameservers(text) and os.path.exists(RESOLVED_UPSTREAM):
        log.debug(
            "host resolv.conf names only loopback servers; using %s", RESOLVED_UPSTREAM
        )
        return read_text(RESOLVED_UPSTREAM)
    return text


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def host_hosts() -> str:
    return read_text("/etc/hosts")


def host_hostname() -> str:
    return socket.gethostname()


def write_in_place(path: str, text: str) -> None:
    """Replace the content of ``path`` without replacing its inode.

    The file may be bind-mounted into a running container, which keeps
    seeing the old inode after a rename.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    finally:
        os.close(fd)


def write_files(
    container_dir: str, hosts: str, resolv_conf: str, hostname: str
) -> None:
    """Write ``hosts``, ``resolv.conf`` and ``hostname`` in ``container_dir``."""
    write_in_place(os.path.join(container_dir, "hosts"), hosts)
    write_in_place(os.path.join(container_dir, "resolv.conf"), resolv_conf)
    write_in_place(os.path.join(container_dir, "hostname"), hostname + "\n")


def peer_entries(
    records: list[dict[str, Any]], container_id: str
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """Return (own, peers) host entries of ``container_id`` across ``records``.

    Peers are listed only on user-defined networks: the default network
    gives no name resolution, as in Docker.
    """
    own: list[tuple[str, list[str]]] = []
    peers: list[tuple[str, list[str]]] = []
    for record in records:
        leases = record["leases"]
        mine = [
            (a, lease)
            for a, lease in leases.items()
            if lease["container_id"] == container_id
        ]
        if not mine:
            continue
        for address, lease in mine:
            own.append(
                (
                    address,
                    [lease.get("hostname", ""), lease.get("name", "")]
                    + lease.get("aliases", []),
                )
            )
        if record.get("default"):
            continue
        for address, lease in sorted(
            leases.items(), key=lambda item: item[1].get("name", "")
        ):
            if lease["container_id"] != container_id:
                peers.append(
                    (address, [lease.get("name", "")] + lease.get("aliases", []))
                )
    return own, peers
