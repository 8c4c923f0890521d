"""Linux capabilities: root's power split into about forty separate rights.

Each thread has five capability sets. The bounding set caps what any later
exec can ever grant; the permitted set is what the thread may use; the
effective set is what the kernel checks right now; the inheritable and
ambient sets decide what survives an exec. After ``execve`` a root process
gets its bounding set as permitted and effective; a process of another user
gets only its ambient set. So a container keeps its root user while the
bounding set holds only the capabilities the container is given: Docker's
default fourteen, changed by ``--cap-add`` and ``--cap-drop``.

Changing uid from 0 to another user clears the permitted set, unless
``PR_SET_KEEPCAPS`` is set first; capabilities(7) and prctl(2) describe both.
"""

from __future__ import annotations

import logging
import os

from ..errors import InvalidArgument
from . import kernel

log = logging.getLogger(__name__)

# Capability numbers, from <linux/capability.h>.
CAPABILITIES = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11,
    "NET_ADMIN": 12,
    "NET_RAW": 13,
    "IPC_LOCK": 14,
    "IPC_OWNER": 15,
    "SYS_MODULE": 16,
    "SYS_RAWIO": 17,
    "SYS_CHROOT": 18,
    "SYS_PTRACE": 19,
    "SYS_PACCT": 20,
    "SYS_ADMIN": 21,
    "SYS_BOOT": 22,
    "SYS_NICE": 23,
    "SYS_RESOURCE": 24,
    "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26,
    "MKNOD": 27,
    "LEASE": 28,
    "AUDIT_WRITE": 29,
    "AUDIT_CONTROL": 30,
    "SETFCAP": 31,
    "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33,
    "SYSLOG": 34,
    "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36,
    "AUDIT_READ": 37,
    "PERFMON": 38,
    "BPF": 39,
    "CHECKPOINT_RESTORE": 40,
}

# What Docker gives a container that asks for nothing else.
DEFAULT = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)


def normalize(name: str, option: str) -> str:
    """Return ``name`` as ``SYS_ADMIN`` (no prefix, upper case) or ``ALL``."""
    upper = name.strip().upper()
    upper = upper.removeprefix("CAP_")
    if upper != "ALL" and upper not in CAPABILITIES:
        raise InvalidArgument(
            f"invalid {option} {name!r}: unknown capability; use a name from"
            " capabilities(7), such as NET_ADMIN or CAP_SYS_PTRACE, or ALL"
        )
    return upper


def resolve(security: dict) -> list[str]:
    """Return the names the container keeps, in capability-number order.

    Docker's rules: ``--cap-drop ALL`` keeps only the names added
    (``--cap-drop ALL --cap-add NET_RAW`` keeps NET_RAW), ``--cap-add ALL``
    keeps every capability but the names dropped, and otherwise the drops
    apply to the default set before the adds.
    """
    if security.get("privileged"):
        return supported()
    add = security.get("cap_add", [])
    drop = security.get("cap_drop", [])
    if "ALL" in drop:
        kept = set(add) - {"ALL"}
    elif "ALL" in add:
        kept = set(supported()) - set(drop)
    else:
        kept = (set(DEFAULT) - set(drop)) | set(add)
    known = set(supported())
    return sorted(kept & known, key=CAPABILITIES.__getitem__)


def ambient(security: dict, kept: list[str]) -> list[str]:
    """Return the capabilities a non-root user keeps across exec.

    Docker gives a non-root user no capabilities unless they were added by
    name, so only ``--cap-add`` names (or all, for ``--cap-add ALL``) count.
    """
    add = security.get("cap_add", [])
    if "ALL" in add:
        return list(kept)
    return [name for name in kept if name in add]


def supported() -> list[str]:
    """Return the capability names this kernel supports (up to ``cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            last = int(f.read())
    except OSError:
        last = max(CAPABILITIES.values())
    return [name for name, number in CAPABILITIES.items() if number <= last]


def mask(names: list[str]) -> int:
    """Return ``names`` as a bit mask, bit N for capability N."""
    bits = 0
    for name in names:
        bits |= 1 << CAPABILITIES[name]
    return bits


def drop_bounding(kept: list[str]) -> None:
    """Remove every capability not in ``kept`` from the bounding set.

    Needs CAP_SETPCAP, so it runs while the process is still full root.
    """
    keep = set(kept)
    dropped = [name for name in supported() if name not in keep]
    log.debug("prctl PR_CAPBSET_DROP %s", ",".join(dropped) or "(none)")
    for name in dropped:
        kernel.prctl(
            kernel.PR_CAPBSET_DROP,
            CAPABILITIES[name],
            what=f"prctl(PR_CAPBSET_DROP, CAP_{name})",
        )


def keep_across_setuid() -> None:
    """Keep the permitted set when the uid changes from 0 (PR_SET_KEEPCAPS)."""
    log.debug("prctl PR_SET_KEEPCAPS 1 (keep capabilities across setuid)")
    kernel.prctl(kernel.PR_SET_KEEPCAPS, 1, what="prctl(PR_SET_KEEPCAPS, 1)")


def set_process_caps(kept: list[str], uid: int, raised: list[str]) -> None:
    """Set permitted, effective, inheritable and ambient for the final user.

    Root gets ``kept`` as permitted and effective, and an empty inheritable
    set, so a file's inheritable capabilities grant nothing. A non-root user
    gets only ``raised``, placed in the ambient set so that exec keeps them.
    """
    if uid == 0:
        permitted = mask(kept)
        inheritable = 0
    else:
        permitted = mask(raised)
        inheritable = permitted
    log.debug(
        "capset permitted=effective=%#x inheritable=%#x (uid %d)",
        permitted,
        inheritable,
        uid,
    )
    kernel.capset(permitted, permitted, inheritable)
    kernel.prctl(
        kernel.PR_CAP_AMBIENT,
        kernel.PR_CAP_AMBIENT_CLEAR_ALL,
        what="prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)",
    )
    if uid != 0:
        for name in raised:
            log.debug("prctl PR_CAP_AMBIENT_RAISE CAP_%s", name)
            kernel.prctl(
                kernel.PR_CAP_AMBIENT,
                kernel.PR_CAP_AMBIENT_RAISE,
                CAPABILITIES[name],
                what=f"prctl(PR_CAP_AMBIENT_RAISE, CAP_{name})",
            )


def held(names: list[str]) -> list[str]:
    """Return the names in ``names`` that this process has in its permitted set.

    minictr may itself run with fewer than all capabilities (inside another
    container, for example), and capset(2) cannot grant what it lacks.
    """
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                permitted = int(line.split()[1], 16)
                return [n for n in names if permitted & (1 << CAPABILITIES[n])]
    return list(names)
