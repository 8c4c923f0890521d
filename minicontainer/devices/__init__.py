"""Device nodes, device rules and GPUs for a container.

A container sees only the device nodes made in its own /dev, and the device
controller of its cgroup decides which (type, major, minor) numbers its
processes may open or create, whatever nodes they make. Modules: ``nodes``
(``--device`` values and host nodes), ``rules`` (the rule list and cgroup
v1's files), ``bpf`` (cgroup v2's device program), ``gpu`` (NVIDIA
discovery) and ``plan`` (the setup steps inside the container).

The runtime calls two hooks: ``apply_rules`` on the host once the cgroup
exists, and ``node_steps`` for the steps PID 1 runs before pivot_root. This
module is imported by every ``minictr run``, so it imports its parts lazily.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import ContainerConfig

log = logging.getLogger(__name__)


def apply_rules(config: ContainerConfig, cgroup: Any) -> None:
    """Restrict the devices of ``cgroup`` to the container's rule list.

    Runs before any container process joins the cgroup. On a v1 or hybrid
    host the v1 devices hierarchy gets the rules; wherever the container has
    a cgroup2 directory, a BPF device program with the same rules is attached
    to it. The kernel checks both, so a hybrid host enforces each.
    """
    from . import rules as device_rules

    rules = device_rules.container_rules(config.devices, is_privileged(config))
    for rule in rules:
        log.debug("device rule: %s", rule)
    v1_dir = cgroup.v1_dir("devices")
    if v1_dir:
        device_rules.apply_v1(v1_dir, rules)
    unified_dir = cgroup.unified_dir()
    if unified_dir and rules != [device_rules.ALLOW_ALL]:
        _attach_program(unified_dir, rules, required=not v1_dir)
    if not v1_dir and not unified_dir:
        log.warning(
            "container %s: no devices cgroup and no cgroup2 directory, so device"
            " rules are not enforced",
            config.id[:12],
        )


def is_privileged(config: ContainerConfig) -> bool:
    """Tell whether the container gets every host device (``--privileged``).

    The security options store the flag in ``config.security``; the
    config's own ``privileged`` field counts as well.
    """
    return bool(config.privileged or config.security.get("privileged"))


def _attach_program(directory: str, rules: list, required: bool) -> None:
    from ..errors import KernelError
    from . import bpf

    try:
        bpf.attach(directory, rules)
    except KernelError as exc:
        if required:
            raise
        # The v1 devices controller enforces the same rules already.
        log.warning("device rules only through cgroup v1: %s", exc)


def node_steps(config: ContainerConfig, merged: str) -> list:
    """Return the steps that give the container its device nodes and GPU files."""
    from .plan import node_steps as plan_node_steps

    return plan_node_steps(config, merged)
