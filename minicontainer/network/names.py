"""Host-side interface names that fit the kernel's limit.

The kernel stores an interface name in ``IFNAMSIZ`` (16) bytes including the
terminating NUL, so a name has at most 15 bytes and may not contain ``/``,
``:`` or whitespace (see ``dev_valid_name`` in net/core/dev.c). Container and
network names can be 128 characters long, so the names here are derived
from a hash. A name is stable for one container and network, which lets
teardown after a crash find it again. Names are distinct in practice
(a veth name carries 12 hex digits, 48 bits), and a collision with an
existing interface is resolved with a salt.
"""

from __future__ import annotations

import hashlib
import os

from .. import paths

IFNAMSIZ = 16
MAX_IFNAME_BYTES = IFNAMSIZ - 1

DEFAULT_BRIDGE = "minictr0"
DEFAULT_STATE_ROOT = "/var/lib/minictr"  # the default of paths.state_root()
BRIDGE_PREFIX = "mcbr"
VETH_PREFIX = "mcv"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def root_suffix() -> str:
    """Return "" for the default state root, else a short hash of the root.

    Bridges and firewall tables of a non-default ``MINICTR_ROOT`` (test
    suites use private roots) get names of their own, so one root's prune
    never touches another root's objects.
    """
    root = os.path.normpath(paths.state_root())
    if root == DEFAULT_STATE_ROOT:
        return ""
    return _digest(root, 8)


def default_bridge() -> str:
    """Return the default network's bridge: ``minictr0`` for the default root."""
    suffix = root_suffix()
    return f"{BRIDGE_PREFIX}{_digest(suffix, 11)}" if suffix else DEFAULT_BRIDGE


def bridge_name(network_id: str) -> str:
    """Return the bridge name of a user-defined network, from its id."""
    return (
        f"{BRIDGE_PREFIX}{_digest(network_id, MAX_IFNAME_BYTES - len(BRIDGE_PREFIX))}"
    )


def veth_name(container_id: str, network: str, salt: int = 0) -> str:
    """Return the host-side veth name for ``container_id`` on ``network``.

    A non-zero ``salt`` gives another name, for the rare hash collision with
    an interface that already exists.
    """
    text = (
        f"{container_id}/{network}" if not salt else f"{container_id}/{network}/{salt}"
    )
    return f"{VETH_PREFIX}{_digest(text, MAX_IFNAME_BYTES - len(VETH_PREFIX))}"


def is_valid_ifname(name: str) -> bool:
    """Tell whether the kernel accepts ``name`` as an interface name."""
    raw = name.encode()
    if not raw or len(raw) > MAX_IFNAME_BYTES or name in (".", ".."):
        return False
    return not any(ch in name for ch in "/: \t\n\r\v\f")


def is_minictr_veth(name: str) -> bool:
    """Tell whether ``name`` has the shape of a veth created by :func:`veth_name`."""
    suffix = name[len(VETH_PREFIX) :]
    return (
        name.startswith(VETH_PREFIX)
        and len(name) == MAX_IFNAME_BYTES
        and all(ch in "0123456789abcdef" for ch in suffix)
    )
