"""Resource limits (``--ulimit``) and namespaced sysctls (``--sysctl``).

setrlimit(2) limits are per process and inherited, so the container's PID 1
sets them before exec; raising a hard limit needs CAP_SYS_RESOURCE, which
minictr still holds at that point. A sysctl is a file under /proc/sys.
Only some of them belong to a namespace the container owns: the IPC ones
(``kernel.msg*``, ``kernel.sem``, ``kernel.shm*``, ``fs.mqueue.*``), the
network ones (``net.*``) when the container has its own network namespace,
and ``kernel.domainname`` in its UTS namespace. Writing any other sysctl
would change the host, so those are rejected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..steps import Step

log = logging.getLogger(__name__)

# ulimit names as Docker spells them, with the RLIMIT_ number of each.
RLIMITS = {
    "cpu": 0,
    "fsize": 1,
    "data": 2,
    "stack": 3,
    "core": 4,
    "rss": 5,
    "nproc": 6,
    "nofile": 7,
    "memlock": 8,
    "as": 9,
    "locks": 10,
    "sigpending": 11,
    "msgqueue": 12,
    "nice": 13,
    "rtprio": 14,
    "rttime": 15,
}

RLIM_INFINITY = 2**64 - 1

IPC_SYSCTLS = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
)

_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_*:-]+)+$")


def parse_ulimit(spec: str) -> tuple[str, int, int]:
    """Parse ``name=soft[:hard]``; ``unlimited`` or -1 means no limit."""
    name, sep, values = spec.partition("=")
    name = name.strip().lower()
    if not sep or not values:
        raise InvalidArgument(
            f"invalid --ulimit {spec!r}: expected NAME=SOFT[:HARD], such as"
            " nofile=1024:2048"
        )
    if name not in RLIMITS:
        raise InvalidArgument(
            f"invalid --ulimit {spec!r}: unknown limit {name!r}; use one of"
            f" {', '.join(RLIMITS)}"
        )
    soft_text, _, hard_text = values.partition(":")
    soft = _limit_value(soft_text, spec)
    hard = _limit_value(hard_text, spec) if hard_text else soft
    if soft > hard:
        raise InvalidArgument(
            f"invalid --ulimit {spec!r}: the soft limit {soft_text} is above the"
            f" hard limit {hard_text}"
        )
    return name, soft, hard


def _limit_value(text: str, spec: str) -> int:
    text = text.strip()
    if text in ("unlimited", "-1"):
        return RLIM_INFINITY
    if not text.isdigit():
        raise InvalidArgument(
            f"invalid --ulimit {spec!r}: {text!r} is not a number or 'unlimited'"
        )
    return int(text)


def apply_rlimits(ulimits: dict[str, list[int]]) -> None:
    """Set each ``name: [soft, hard]`` with setrlimit(2) on this process."""
    from ..errors import KernelError
    from . import kernel

    for name, (soft, hard) in ulimits.items():
        log.debug("setrlimit RLIMIT_%s soft %s hard %s", name.upper(), soft, hard)
        try:
            kernel.setrlimit(
                RLIMITS[name], soft, hard, f"setrlimit RLIMIT_{name.upper()}"
            )
        except KernelError as exc:
            current = kernel.getrlimit(RLIMITS[name])[1]
            raise InvalidArgument(
                f"invalid --ulimit {name}={soft}:{hard}: {exc}; the hard limit"
                f" cannot rise above {current} without CAP_SYS_RESOURCE"
            ) from exc


def check_sysctl(key: str, network_mode: str = "none") -> None:
    """Raise InvalidArgument unless ``key`` belongs to the container's namespaces."""
    if not _SYSCTL_KEY.match(key):
        raise InvalidArgument(f"invalid --sysctl key {key!r}: expected a.b.c")
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return
    if key == "kernel.domainname":
        return
    if key == "kernel.hostname":
        raise InvalidArgument(
            "invalid --sysctl kernel.hostname: set the hostname with --hostname"
        )
    if key.startswith("net."):
        if network_mode == "host" or network_mode.startswith("container:"):
            raise InvalidArgument(
                f"invalid --sysctl {key}: the container shares a network namespace"
                f" (--network {network_mode}), so the sysctl would change it for"
                " others"
            )
        return
    raise InvalidArgument(
        f"invalid --sysctl {key}: not a namespaced sysctl, so it would change the"
        " host; only kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.* and"
        " kernel.domainname are allowed"
    )


def parse_sysctl(spec: str) -> tuple[str, str]:
    """Split ``key=value`` and check that the key is namespaced."""
    key, sep, value = spec.partition("=")
    key = key.strip()
    if not sep:
        raise InvalidArgument(f"invalid --sysctl {spec!r}: expected KEY=VALUE")
    check_sysctl(key)
    return key, value


@dataclass
class WriteSysctl(Step):
    """Write ``value`` to /proc/sys/KEY, inside the container's namespaces."""

    key: str
    value: str

    def describe(self) -> str:
        return f"sysctl {self.key}={self.value} (write {self.path})"

    @property
    def path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")

    def apply(self) -> None:
        try:
            with open(self.path, "w", encoding="ascii") as f:
                f.write(self.value)
        except FileNotFoundError as exc:
            raise InvalidArgument(
                f"unknown --sysctl key {self.key}: the container's kernel has no"
                f" {self.path}; check the name with 'sysctl -a' on the host"
            ) from exc
        except OSError as exc:
            raise InvalidArgument(
                f"--sysctl {self.key}={self.value} failed: {exc.strerror}"
            ) from exc


def sysctl_steps(sysctls: dict[str, str], network_mode: str) -> list[Step]:
    """Return the sysctl writes, after checking them against the network mode."""
    for key in sysctls:
        check_sysctl(key, network_mode)
    return [WriteSysctl(key, value) for key, value in sysctls.items()]
