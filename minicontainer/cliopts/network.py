"""Options of ``run`` and ``create`` that choose and shape the container's network."""

from __future__ import annotations

import re
from typing import Any

import click

from ..errors import InvalidArgument

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

OPTIONS = [
    click.option(
        "--network",
        "--net",
        "network",
        default="bridge",
        show_default=True,
        metavar="MODE",
        help=(
            "none (loopback only), host (the host's network), bridge (the default"
            " network), container:NAME (share NAME's network) or the name of a"
            " network made with 'minictr network create'."
        ),
    ),
    click.option("--ip", default=None, metavar="IPV4", help="Address on the network."),
    click.option(
        "--mac-address", default=None, metavar="MAC", help="MAC address of eth0."
    ),
    click.option(
        "--dns",
        multiple=True,
        metavar="IP",
        help="Name server for /etc/resolv.conf (default: the host's, minus loopback).",
    ),
    click.option(
        "--add-host",
        "add_hosts",
        multiple=True,
        metavar="NAME:IP",
        help="Add a line to the container's /etc/hosts.",
    ),
    click.option(
        "--network-alias",
        "network_aliases",
        multiple=True,
        metavar="NAME",
        help="Another name of the container on a user-defined network.",
    ),
    click.option(
        "-p",
        "--publish",
        multiple=True,
        metavar="[IP:][HOST_PORT:]PORT[/tcp|udp]",
        help=(
            "Forward a host port to a container port; without HOST_PORT a free"
            " port is chosen (see 'minictr port')."
        ),
    ),
    click.option(
        "-P",
        "--publish-all",
        is_flag=True,
        help="Publish every port the image exposes on free host ports.",
    ),
]


def to_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the network options from ``kwargs``; return ``config.network``."""
    mode = kwargs.pop("network", None) or "bridge"
    options: dict[str, Any] = {
        "mode": mode,
        "ip": kwargs.pop("ip", None),
        "mac": kwargs.pop("mac_address", None),
        "dns": list(kwargs.pop("dns", ())),
        "add_hosts": list(kwargs.pop("add_hosts", ())),
        "aliases": list(kwargs.pop("network_aliases", ())),
        "ports": [],
        "publish_all": bool(kwargs.pop("publish_all", False)),
    }
    # Submodules are imported only when their option is used: `--network none`
    # is on the path of every benchmarked `minictr run`.
    publish = kwargs.pop("publish", ())
    if publish:
        from ..network import ports

        for spec in publish:
            options["ports"] += ports.parse_publish(spec)
    if options["add_hosts"]:
        from ..network import dns

        for value in options["add_hosts"]:
            if dns.parse_add_host(value)[1] == dns.HOST_GATEWAY and mode == "none":
                raise InvalidArgument(
                    f"--add-host {value}: --network none has no gateway to the"
                    " host; use a network, or give the host's address"
                )
    if options["mac"] is not None:
        _check_mac(options["mac"])
    if mode.startswith("container:"):
        if not mode.partition(":")[2]:
            raise InvalidArgument("--network container: needs a container name or id")
    elif mode not in ("none", "host", "bridge", "default"):
        from ..network import ipam

        ipam.validate_network_name(mode)
    attached = mode not in ("none", "host") and not mode.startswith("container:")
    if not attached:
        _reject_bridge_only(options, mode)
    return {
        key: value for key, value in options.items() if value not in (None, [], False)
    }


def _check_mac(mac: str) -> None:
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise InvalidArgument(
            f"invalid --mac-address {mac!r}: give six hex octets such as"
            " 02:42:0a:58:00:05, with the multicast bit of the first one clear"
        )


def _reject_bridge_only(options: dict[str, Any], mode: str) -> None:
    given = [
        flag
        for flag, key in (
            ("--ip", "ip"),
            ("--mac-address", "mac"),
            ("--network-alias", "aliases"),
            ("--publish", "ports"),
            ("--publish-all", "publish_all"),
        )
        if options[key]
    ]
    if given:
        raise InvalidArgument(
            f"{', '.join(given)} cannot be used with --network {mode}: they need a"
            " bridge or user-defined network"
        )
