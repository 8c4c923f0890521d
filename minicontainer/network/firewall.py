"""minictr's packet filter and NAT rules, in an nftables table of its own.

minictr uses nftables (the ``nft`` tool) rather than iptables. All of its
rules sit in one table, ``ip minictr``, so ``nft list table ip minictr``
shows them all and deleting the table removes them all. Its base chains hook
into the kernel next to any other table's chains, and they leave the host's
own rules alone. Each rule carries a comment naming its owner
(``net:NAME`` for a network, ``ctr:ID`` for a container), which is how
teardown finds it again, even after a crash.

Chains and what they do:

- ``forward`` (filter): lets replies through, lets published-port traffic
  through (``ct status dnat``), accepts traffic within one bridge, and drops
  traffic between two minictr bridges, which isolates networks.
- ``prerouting`` / ``output`` (nat): send packets addressed to a local
  address into ``publish``, which holds one DNAT rule per published port.
- ``postrouting`` (nat): masquerades (source NAT to the outgoing
  interface's address) traffic that leaves a network, and rewritten
  published-port traffic that comes back into the same bridge or started
  on 127.0.0.1, so that replies pass through the host again.
"""

from __future__ import annotations

import json
import logging
import subprocess
from typing import Any

from ..errors import KernelError
from . import names

log = logging.getLogger(__name__)

FAMILY = "ip"


def table() -> str:
    """Return the table name: ``minictr``, with a suffix for a non-default root."""
    suffix = names.root_suffix()
    return f"minictr_{suffix}" if suffix else "minictr"


_BASE = """
table {family} {table} {{
  set bridges {{ type ifname; }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ct state established,related accept comment "base"
    ct status dnat accept comment "base"
    iifname @bridges oifname @bridges drop comment "base"
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump publish comment "base"
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local jump publish comment "base"
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname @bridges ip saddr 127.0.0.0/8 masquerade comment "base"
  }}
  chain publish {{
  }}
}}
"""


def _nft(script: str | None = None, *args: str) -> str:
    command = ["nft", *args] if script is None else ["nft", "-f", "-"]
    try:
        result = subprocess.run(
            command, input=script, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise KernelError(
            "nft not found: install the nftables package (apt-get install nftables)"
        ) from None
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise KernelError(
            f"nft {' '.join(args) or '-f -'} failed: {detail[0] if detail else result.returncode}"
            + (f"; script was: {script.strip()}" if script else "")
        )
    return result.stdout


def apply(lines: list[str]) -> None:
    """Apply nft commands as one transaction: all take effect or none."""
    if not lines:
        return
    for line in lines:
        log.debug("nft %s", line)
    _nft("\n".join(lines) + "\n")


def _list_table() -> list[dict[str, Any]] | None:
    """Return the table's objects as nft's JSON (with handles), or None if it is absent."""
    result = subprocess.run(
        ["nft", "-j", "-a", "list", "table", FAMILY, table()],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout).get("nftables", [])


def table_exists() -> bool:
    return _list_table() is not None


def ensure_table() -> None:
    """Create the table and its base chains unless they exist; hold the network lock."""
    if not table_exists():
        _create_table()


def _create_table() -> None:
    log.debug("nft: creating table %s %s", FAMILY, table())
    _nft(_BASE.format(family=FAMILY, table=table()))


def list_rules() -> list[dict[str, Any]]:
    """Return every rule of the table as nft's JSON objects (with handles)."""
    return [item["rule"] for item in _list_table() or [] if "rule" in item]


def rules_by_owner(owner: str) -> list[dict[str, Any]]:
    return [rule for rule in list_rules() if rule.get("comment") == owner]


def bridges(items: list[dict[str, Any]] | None = None) -> list[str]:
    """Return the elements of the ``bridges`` set, from ``items`` if given."""
    for item in _list_table() or [] if items is None else items:
        if "set" in item and item["set"].get("name") == "bridges":
            return list(item["set"].get("elem", []))
    return []


def network_rules(record: dict[str, Any]) -> list[str]:
    """Return the nft commands that add a network's rules."""
    bridge = record["bridge"]
    subnet = record["subnet"]
    owner = f'comment "net:{record["name"]}"'
    return [
        f"add element {FAMILY} {table()} bridges {{ {bridge} }}",
        (
            f"insert rule {FAMILY} {table()} forward iifname {bridge} oifname {bridge}"
            f" accept {owner}"
        ),
        (
            f"add rule {FAMILY} {table()} postrouting ip saddr {subnet} oifname != {bridge}"
            f" masquerade {owner}"
        ),
        (
            f"add rule {FAMILY} {table()} postrouting oifname {bridge} ip saddr {subnet}"
            f" ct status dnat masquerade {owner}"
        ),
    ]


def ensure_network(record: dict[str, Any]) -> None:
    """Add a network's rules unless they are there; hold the network lock."""
    items = _list_table()
    if items is None:
        _create_table()
        items = []
    owner = f"net:{record['name']}"
    if not any(item.get("rule", {}).get("comment") == owner for item in items):
        apply(network_rules(record))


def remove_network(record: dict[str, Any]) -> None:
    """Delete a network's rules and its element of the ``bridges`` set."""
    items = _list_table() or []
    owner = f"net:{record['name']}"
    lines = [
        delete_rule_command(item["rule"])
        for item in items
        if item.get("rule", {}).get("comment") == owner
    ]
    if record["bridge"] in bridges(items):
        lines.append(delete_bridge_command(record["bridge"]))
    apply(lines)


def add_container(container_id: str, rule_bodies: list[str]) -> None:
    """Add DNAT rules for a container to the ``publish`` chain."""
    apply(
        [
            f'add rule {FAMILY} {table()} publish {body} comment "ctr:{container_id}"'
            for body in rule_bodies
        ]
    )


def remove_container(container_id: str) -> int:
    """Delete every rule owned by ``container_id``; return how many."""
    lines = _delete_lines(f"ctr:{container_id}")
    apply(lines)
    return len(lines)


def _delete_lines(owner: str) -> list[str]:
    return [delete_rule_command(rule) for rule in rules_by_owner(owner)]


def delete_rule_command(rule: dict[str, Any]) -> str:
    return f"delete rule {FAMILY} {table()} {rule['chain']} handle {rule['handle']}"


def delete_bridge_command(bridge: str) -> str:
    return f"delete element {FAMILY} {table()} bridges {{ {bridge} }}"


def delete_table() -> None:
    if table_exists():
        apply([f"delete table {FAMILY} {table()}"])
