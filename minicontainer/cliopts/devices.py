"""Options for device nodes, device rules and GPUs: --device, --gpus."""

from __future__ import annotations

from typing import Any

import click

OPTIONS = [
    click.option(
        "--device",
        multiple=True,
        metavar="HOST[:CONTAINER][:rwm]",
        help="Give the container a host device node, with the permissions"
        " r (read), w (write) and m (mknod); default rwm.",
    ),
    click.option(
        "--device-cgroup-rule",
        multiple=True,
        metavar="'TYPE MAJOR:MINOR ACCESS'",
        help="Add a rule to the device allow list, such as 'c 195:* rwm'.",
    ),
    click.option(
        "--gpus",
        default=None,
        metavar="all|N|device=0,2|device=GPU-UUID",
        help="Give the container NVIDIA GPUs and the host's driver libraries;"
        " add capabilities=compute,utility,... to choose which driver files.",
    ),
]


def to_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the device options from ``kwargs``; return ``config.devices``.

    Host nodes and GPUs are looked up now, so a missing node, a bad rule or
    a host without the NVIDIA driver is reported before anything is created.
    """
    from ..devices.nodes import nodes_for_spec
    from ..devices.rules import STANDARD_RULES, Rule, parse_rule

    specs = kwargs.pop("device", ()) or ()
    rule_texts = kwargs.pop("device_cgroup_rule", ()) or ()
    gpus = kwargs.pop("gpus", None)

    nodes = [node for spec in specs for node in nodes_for_spec(spec)]
    extra_rules = [parse_rule(text) for text in rule_texts]
    devices: dict[str, Any] = {"nodes": nodes}
    if gpus:
        from ..devices import gpu

        devices["gpu"] = gpu.discover(gpu.parse_request(gpus))

    rules = list(STANDARD_RULES)
    for node in nodes + devices.get("gpu", {}).get("nodes", []):
        rules.append(
            Rule(node["type"], node["major"], node["minor"], node["permissions"])
        )
    rules += extra_rules
    devices["cgroup_rules"] = list(rule_texts)
    devices["rules"] = [rule.to_dict() for rule in rules]
    return devices
