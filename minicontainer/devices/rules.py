"""Device rules: which device nodes a container may open or create.

A device node is only a name for a (type, major, minor) triple, and whoever
can create one with mknod(2) could reach any disk or terminal of the host.
So the kernel asks the device controller each time a process in a cgroup
opens a node or creates one: cgroup v1 keeps an allow list in
``devices.allow``/``devices.deny`` (Documentation/admin-guide/cgroup-v1/
devices.rst), cgroup v2 runs a BPF program instead (see ``bpf``).

A rule reads ``TYPE MAJOR:MINOR ACCESS`` as in those files: TYPE is ``c``
(character), ``b`` (block) or ``a`` (both), ``*`` matches any number, and
ACCESS is a subset of ``r`` (read), ``w`` (write) and ``m`` (mknod). A
container starts from "deny everything" and gets the standard set below plus
the rules for the devices it was given.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidArgument

log = logging.getLogger(__name__)

# The access bits of struct bpf_cgroup_dev_ctx (BPF_DEVCG_ACC_*).
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}

_RULE = re.compile(r"^([abc])\s+(\d+|\*):(\d+|\*)\s+([rwm]+)$")


@dataclass(frozen=True)
class Rule:
    """One device rule; ``None`` for major or minor matches any number."""

    type: str  # "c", "b" or "a"
    major: int | None
    minor: int | None
    access: str  # a subset of "rwm"
    allow: bool = True

    @property
    def access_mask(self) -> int:
        mask = 0
        for letter in self.access:
            mask |= ACCESS_BITS[letter]
        return mask

    def __str__(self) -> str:
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        verb = "allow" if self.allow else "deny"
        return f"{verb} {self.type} {major}:{minor} {self.access}"

    def v1_lines(self) -> list[str]:
        """Return the lines for ``devices.allow`` or ``devices.deny``.

        cgroup v1 reads a bare ``a`` as "every device, every access" and has
        no way to say "both types, these numbers", so such a rule becomes one
        line per type.
        """
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        if self.type != "a":
            return [f"{self.type} {major}:{minor} {self.access}"]
        if self.major is None and self.minor is None and self.access_mask == 0b111:
            return ["a"]
        return [f"{kind} {major}:{minor} {self.access}" for kind in ("c", "b")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        return cls(**data)


def _allow(kind: str, major: int | None, minor: int | None, access: str) -> Rule:
    return Rule(kind, major, minor, access)


# Every container may create any node (opening it is what the rules check,
# and CAP_MKNOD stays), and may use the nodes the runtime makes in /dev. The
# list matches what Docker 24 and runc 1.1 allow.
STANDARD_RULES = (
    _allow("c", None, None, "m"),
    _allow("b", None, None, "m"),
    _allow("c", 1, 3, "rwm"),  # /dev/null
    _allow("c", 1, 5, "rwm"),  # /dev/zero
    _allow("c", 1, 7, "rwm"),  # /dev/full
    _allow("c", 1, 8, "rwm"),  # /dev/random
    _allow("c", 1, 9, "rwm"),  # /dev/urandom
    _allow("c", 5, 0, "rwm"),  # /dev/tty
    _allow("c", 5, 1, "rwm"),  # /dev/console
    _allow("c", 5, 2, "rwm"),  # /dev/ptmx
    _allow("c", 136, None, "rwm"),  # /dev/pts/N
)

ALLOW_ALL = Rule("a", None, None, "rwm")


def validate_access(text: str, what: str) -> str:
    """Check an access string such as ``rw``; return it, or raise InvalidArgument."""
    if not text or set(text) - set("rwm") or len(set(text)) != len(text):
        raise InvalidArgument(
            f"invalid device permissions {text!r} in {what}:"
            " use one or more of r, w and m, each once (for example rwm)"
        )
    return text


def parse_rule(text: str) -> Rule:
    """Parse a ``--device-cgroup-rule`` value such as ``c 195:* rwm``."""
    stripped = text.strip()
    if stripped == "a":
        return ALLOW_ALL
    match = _RULE.match(stripped)
    if not match:
        raise InvalidArgument(
            f"invalid device cgroup rule {text!r}: expected 'TYPE MAJOR:MINOR ACCESS'"
            " with TYPE a, b or c, numbers or *, and ACCESS from rwm, such as"
            " 'c 195:* rwm'"
        )
    kind, major, minor, access = match.groups()
    validate_access(access, f"device cgroup rule {text!r}")
    return Rule(
        kind,
        None if major == "*" else int(major),
        None if minor == "*" else int(minor),
        access,
    )


def container_rules(devices: dict[str, Any], privileged: bool) -> list[Rule]:
    """Return the full rule list of a container, in the order it applies.

    ``devices`` is ``config.devices``, whose ``rules`` the command line
    resolved; without them only the standard set applies. A privileged
    container may use every device.
    """
    if privileged:
        return [ALLOW_ALL]
    if "rules" in devices:
        return [Rule.from_dict(rule) for rule in devices["rules"]]
    return list(STANDARD_RULES)


def apply_v1(directory: str, rules: list[Rule]) -> None:
    """Write ``rules`` to the v1 devices cgroup at ``directory``, deny-all first.

    ``a`` written to ``devices.deny`` empties the cgroup's list and makes it
    deny by default, so every later line in ``devices.allow`` is an exception.
    """
    from ..cgroups.fs import CgroupWrite

    deny = os.path.join(directory, "devices.deny")
    allow = os.path.join(directory, "devices.allow")
    if rules == [ALLOW_ALL]:
        CgroupWrite(allow, "a").run()
        return
    CgroupWrite(deny, "a").run()
    for rule in rules:
        for line in rule.v1_lines():
            CgroupWrite(allow if rule.allow else deny, line).run()
