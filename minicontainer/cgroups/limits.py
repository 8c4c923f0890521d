"""Docker-style resource options, validated and turned into ``config.resources``.

The options use Docker's names and units (``--memory 64m``, ``--cpus 0.5``).
This module checks every value before anything is created and produces a
plain dict shaped like the ``linux.resources`` object of the OCI runtime spec,
so the stored config is readable JSON and independent of the cgroup version:

    {"memory": {"limit": 67108864, "swap": 134217728, "reservation": ...},
     "cpu": {"quota": 50000, "period": 100000, "shares": 512,
             "cpus": "0-1", "mems": "0"},
     "pids": {"limit": 20},
     "blockIO": {"weight": 500,
                 "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                 "throttleWriteBpsDevice": [...]}}

As in the OCI spec, ``memory.swap`` is the limit of memory plus swap, and -1
means unlimited. Only the limits a user asked for appear. Conversions are exact:
``--cpus`` is parsed as a ``Decimal``, so 0.57 CPUs is a quota of 57000 us in
each 100000 us period, not the 56999 that binary floating point gives.
"""

from __future__ import annotations

import os
import re
import stat
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidArgument

# The smallest memory limit Docker accepts ("Minimum memory limit allowed is
# 6MB"); minictr keeps the same floor so that labs move between the two.
MIN_MEMORY = 6 * 1024 * 1024

# CFS bandwidth control: the kernel rejects a quota below 1 ms
# (Documentation/scheduler/sched-bwc.rst), and Docker uses a 100 ms period.
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000

# cpu.shares range accepted by cgroup v1 (kernel/sched/core.c, MIN/MAX_SHARES).
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262_144

# blkio.weight range of cgroup v1.
MIN_BLKIO_WEIGHT = 10
MAX_BLKIO_WEIGHT = 1000

_SIZE_UNITS = {
    "": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "p": 1 << 50,
}
# The largest byte count the kernel takes: cgroup files and tmpfs parse
# sizes into a signed 64-bit number (page_counter_memparse, memparse).
MAX_SIZE = 2**63 - 1
SIZE_UNITS_TEXT = "b, k, m, g, t or p"

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)
_CPU_LIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_size(value: str | int, option: str) -> int:
    """Parse a size such as ``64m``, ``1.5g``, ``512k`` or ``100`` into bytes.

    Suffixes are binary (k = 1024), as in Docker; a trailing ``b`` or ``ib`` is
    accepted. Fractions of a byte are dropped. A size above ``MAX_SIZE`` is
    an error, because the kernel would not store it as given.
    """
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.startswith("-") and _SIZE_RE.match(text[1:]):
        return -parse_size(text[1:], option)
    match = _SIZE_RE.match(text)
    if not match:
        raise InvalidArgument(
            f"invalid size {value!r} for {option}: use a number with an optional"
            f" unit {SIZE_UNITS_TEXT} (for example 64m)"
        )
    number, unit = match.groups()
    exact = Decimal(number) * _SIZE_UNITS[unit.lower()]
    size = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    if size > MAX_SIZE:
        raise InvalidArgument(
            f"invalid size {value!r} for {option}: {size} bytes is more than the"
            f" kernel accepts ({MAX_SIZE} bytes, just under 8192p)"
        )
    return size


def parse_cpu_list(value: str) -> set[int]:
    """Parse a kernel CPU or node list such as ``0-2,4`` into a set of numbers."""
    text = value.strip()
    if not _CPU_LIST_RE.match(text):
        raise ValueError(text)
    numbers: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high:
            raise ValueError(part)
        numbers.update(range(low, high + 1))
    return numbers


def _online(path: str, fallback: str) -> set[int]:
    try:
        with open(path) as file:
            return parse_cpu_list(file.read())
    except (OSError, ValueError):
        return parse_cpu_list(fallback)


def online_cpus() -> set[int]:
    return _online("/sys/devices/system/cpu/online", f"0-{(os.cpu_count() or 1) - 1}")


def online_mems() -> set[int]:
    return _online("/sys/devices/system/node/online", "0")


def cpus_to_quota(value: str | float | Decimal) -> int:
    """Convert a ``--cpus`` value to a CFS quota in microseconds per 100 ms.

    Raises InvalidArgument for malformed, negative, too precise or too small
    values and for more CPUs than the host has online.
    """
    try:
        cpus = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidArgument(
            f"invalid --cpus value {value!r}: use a decimal number such as 1.5"
        ) from None
    if not cpus.is_finite() or cpus <= 0:
        raise InvalidArgument(
            f"invalid --cpus value {value!r}: use a number of CPUs above 0"
        )
    if cpus * 10**9 != (cpus * 10**9).to_integral_value():
        raise InvalidArgument(
            f"invalid --cpus value {value!r}: at most 9 decimal places are allowed"
        )
    available = len(online_cpus())
    if cpus > available:
        raise InvalidArgument(
            f"invalid --cpus value {value!r}: the host has only {available} CPUs"
        )
    quota = int((cpus * CPU_PERIOD_US).to_integral_value(rounding=ROUND_FLOOR))
    if quota < MIN_CPU_QUOTA_US:
        minimum = Decimal(MIN_CPU_QUOTA_US) / CPU_PERIOD_US
        raise InvalidArgument(
            f"invalid --cpus value {value!r}: the kernel's minimum is {minimum} CPUs"
            f" ({MIN_CPU_QUOTA_US} us per {CPU_PERIOD_US} us period)"
        )
    return quota


def _parse_memory(kwargs: dict[str, Any]) -> dict[str, int]:
    memory: dict[str, int] = {}
    limit = _optional_size(kwargs.get("memory"), "--memory")
    if limit:
        _check_memory_minimum(limit, "--memory", kwargs["memory"])
        memory["limit"] = limit

    swap_value = kwargs.get("memory_swap")
    swap = _optional_size(swap_value, "--memory-swap", allow_unlimited=True)
    if swap:
        if "limit" not in memory:
            raise InvalidArgument(
                f"invalid --memory-swap {swap_value!r}: set --memory as well, because"
                " --memory-swap is the limit of memory plus swap"
            )
        if swap != -1 and swap < memory["limit"]:
            raise InvalidArgument(
                f"invalid --memory-swap {swap_value!r}: it must be at least --memory"
                f" ({memory['limit']} bytes), or -1 for unlimited swap"
            )
        memory["swap"] = swap

    reservation_value = kwargs.get("memory_reservation")
    reservation = _optional_size(reservation_value, "--memory-reservation")
    if reservation:
        _check_memory_minimum(reservation, "--memory-reservation", reservation_value)
        if "limit" in memory and reservation > memory["limit"]:
            raise InvalidArgument(
                f"invalid --memory-reservation {reservation_value!r}: it must not be"
                f" above --memory ({memory['limit']} bytes)"
            )
        memory["reservation"] = reservation
    return memory


def _optional_size(value: Any, option: str, allow_unlimited: bool = False) -> int:
    """Parse an optional size; 0 and None mean unset."""
    if value is None or value == "":
        return 0
    size = parse_size(value, option)
    if allow_unlimited and size == -1:
        return -1
    if size < 0:
        hint = ", or -1 for unlimited" if allow_unlimited else ""
        raise InvalidArgument(
            f"invalid {option} {value!r}: sizes must not be negative{hint}"
        )
    return size


def _check_memory_minimum(size: int, option: str, value: Any) -> None:
    if size < MIN_MEMORY:
        raise InvalidArgument(
            f"invalid {option} {value!r}: the minimum is 6m ({MIN_MEMORY} bytes)"
        )


def _parse_cpu(kwargs: dict[str, Any]) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    cpus = kwargs.get("cpus")
    if cpus is not None and str(cpus).strip() not in ("", "0"):
        cpu["quota"] = cpus_to_quota(cpus)
        cpu["period"] = CPU_PERIOD_US

    shares = _optional_int(kwargs.get("cpu_shares"), "--cpu-shares")
    if shares:
        if not MIN_CPU_SHARES <= shares <= MAX_CPU_SHARES:
            raise InvalidArgument(
                f"invalid --cpu-shares {shares}: use a value from {MIN_CPU_SHARES}"
                f" to {MAX_CPU_SHARES} (1024 is the default weight)"
            )
        cpu["shares"] = shares

    cpuset_cpus = kwargs.get("cpuset_cpus")
    if cpuset_cpus:
        _check_list(cpuset_cpus, "--cpuset-cpus", online_cpus(), "CPUs")
        cpu["cpus"] = cpuset_cpus.strip()
    cpuset_mems = kwargs.get("cpuset_mems")
    if cpuset_mems:
        _check_list(cpuset_mems, "--cpuset-mems", online_mems(), "memory nodes")
        cpu["mems"] = cpuset_mems.strip()
    return cpu


def _check_list(value: str, option: str, online: set[int], noun: str) -> None:
    try:
        requested = parse_cpu_list(value)
    except ValueError:
        raise InvalidArgument(
            f"invalid {option} {value!r}: use a list such as 0-2,4"
        ) from None
    missing = sorted(requested - online)
    if missing:
        raise InvalidArgument(
            f"invalid {option} {value!r}: {noun} {missing} are not online"
            f" (online: {_format_list(online)})"
        )


def _format_list(numbers: set[int]) -> str:
    return ",".join(str(n) for n in sorted(numbers))


def _optional_int(value: Any, option: str) -> int:
    if value is None or value == "":
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"invalid {option} {value!r}: use a whole number"
        ) from None
    if number < 0:
        raise InvalidArgument(f"invalid {option} {value!r}: it must not be negative")
    return number


def _parse_pids(kwargs: dict[str, Any]) -> dict[str, int]:
    value = kwargs.get("pids_limit")
    if value is None or value == "":
        return {}
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"invalid --pids-limit {value!r}: use a whole number; 0 or -1 mean"
            " unlimited"
        ) from None
    if limit < -1:
        raise InvalidArgument(
            f"invalid --pids-limit {value!r}: use a positive number, or 0 or -1"
            " for unlimited"
        )
    # 0 and -1 mean unlimited, which is what a new cgroup has already.
    return {"limit": limit} if limit > 0 else {}


def _parse_block_io(kwargs: dict[str, Any]) -> dict[str, Any]:
    block_io: dict[str, Any] = {}
    weight = _optional_int(kwargs.get("blkio_weight"), "--blkio-weight")
    if weight:
        if not MIN_BLKIO_WEIGHT <= weight <= MAX_BLKIO_WEIGHT:
            raise InvalidArgument(
                f"invalid --blkio-weight {weight}: use a value from"
                f" {MIN_BLKIO_WEIGHT} to {MAX_BLKIO_WEIGHT}"
            )
        block_io["weight"] = weight
    for option, key in (
        ("device_read_bps", "throttleReadBpsDevice"),
        ("device_write_bps", "throttleWriteBpsDevice"),
    ):
        values = kwargs.get(option) or ()
        if isinstance(values, str):
            values = (values,)
        rates = [parse_device_rate(v, "--" + option.replace("_", "-")) for v in values]
        if rates:
            block_io[key] = rates
    return block_io


def parse_device_rate(value: str, option: str) -> dict[str, int]:
    """Parse ``/dev/sda:1mb`` into the device numbers and a rate in bytes/s."""
    path, sep, rate_text = value.rpartition(":")
    if not sep or not path:
        raise InvalidArgument(
            f"invalid {option} {value!r}: use DEVICE:RATE, for example /dev/sda:1mb"
        )
    rate = parse_size(rate_text, option)
    if rate <= 0:
        raise InvalidArgument(f"invalid {option} {value!r}: the rate must be above 0")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(
            f"invalid {option} {value!r}: cannot stat {path}: {exc.strerror}"
        ) from None
    if not stat.S_ISBLK(info.st_mode):
        raise InvalidArgument(
            f"invalid {option} {value!r}: {path} is not a block device"
        )
    return {
        "major": os.major(info.st_rdev),
        "minor": os.minor(info.st_rdev),
        "rate": rate,
    }


def parse_resources(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Validate Docker-style option values and build ``config.resources``.

    ``kwargs`` uses the click parameter names (``memory``, ``memory_swap``,
    ``memory_reservation``, ``cpus``, ``cpu_shares``, ``cpuset_cpus``,
    ``cpuset_mems``, ``pids_limit``, ``device_read_bps``, ``device_write_bps``,
    ``blkio_weight``); missing keys and None mean "not set". Raises
    InvalidArgument naming the first bad value.
    """
    resources: dict[str, Any] = {}
    sections = (
        ("memory", _parse_memory),
        ("cpu", _parse_cpu),
        ("pids", _parse_pids),
        ("blockIO", _parse_block_io),
    )
    for key, parse in sections:
        section = parse(kwargs)
        if section:
            resources[key] = section
    return resources


def validate_cgroup_parent(value: str | None) -> str:
    """Check a ``--cgroup-parent`` value and return it without slashes at the ends.

    The parent is a path below the root of each cgroup hierarchy, such as
    ``minictr`` or ``lab/students``. As in Docker, an absolute ``/lab/students``
    is accepted and means the same path, from each hierarchy's root.
    """
    if not value:
        return "minictr"
    parent = value.strip("/")
    parts = parent.split("/")
    if not parent or any(p in (".", "..") or not _NAME_RE.match(p) for p in parts):
        raise InvalidArgument(
            f"invalid --cgroup-parent {value!r}: use names made of letters, digits,"
            " '_', '.' and '-', separated by '/'"
        )
    return parent
