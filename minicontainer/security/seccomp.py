"""seccomp: a filter the kernel runs on every system call of the container.

A seccomp filter is a classic BPF program (the packet-filter language of
tcpdump). On each system call the kernel runs it over ``struct
seccomp_data`` (the call's number at offset 0, the audit architecture at 4,
the six arguments as 64-bit words from 16) and the 32-bit value it returns
decides: allow, fail with an errno, send SIGSYS, or kill. Filters are
inherited by children and kept across exec, and none can be removed.

This module reads profiles in Docker's JSON format (``defaultAction``,
``syscalls`` with ``names``, ``action``, ``args``, ``errnoRet``,
``includes`` and ``excludes``) and compiles them to BPF itself, with no
libseccomp. The rules of one call are tried in profile order, and the first
whose arguments match decides. Only the native x86_64 ABI is compiled in:
i386 and x32 system calls reach a filter as other architectures or numbers,
and they are killed, as libseccomp does for an architecture not in the
filter. seccomp(2) and Documentation/userspace-api/seccomp_filter.rst in the
kernel tree describe the interface.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
from dataclasses import dataclass

from ..errors import InvalidArgument, MinictrError

log = logging.getLogger(__name__)

# Return values, from <linux/seccomp.h>. ERRNO and TRACE carry 16 bits of data.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# Classic BPF opcodes, from <linux/filter.h>.
LD_W_ABS = 0x20  # A = 32-bit word at offset k of seccomp_data
ALU_AND_K = 0x54  # A &= k
JEQ_K = 0x15
JGT_K = 0x25
JGE_K = 0x35
RET_K = 0x06

OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARGS = 16

ACTIONS = {
    "SCMP_ACT_ALLOW": RET_ALLOW,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_KILL": RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_LOG": RET_LOG,
}

OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)

# Docker's names for the architectures of x86_64 hosts.
NATIVE_ARCH_NAMES = ("SCMP_ARCH_X86_64", "amd64", "x86_64")

MAX_JUMP = 255  # jt and jf are 8-bit offsets


@dataclass
class Insn:
    """One BPF instruction; ``jt``/``jf`` are offsets or label names."""

    code: int
    k: int = 0
    jt: int | str = 0
    jf: int | str = 0


def load_file(path: str) -> dict:
    """Read and check a profile file; errors name the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except OSError as exc:
        raise InvalidArgument(
            f"invalid --security-opt seccomp={path}: {exc.strerror}; give the path"
            " of a JSON profile file, or seccomp=unconfined"
        ) from exc
    except ValueError as exc:
        raise InvalidArgument(
            f"invalid --security-opt seccomp={path}: not JSON ({exc})"
        ) from exc
    try:
        validate(profile)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid seccomp profile {path}: {exc}") from exc
    return profile


def validate(profile: object) -> None:
    """Raise InvalidArgument unless ``profile`` is a profile this module runs."""
    if not isinstance(profile, dict):
        raise InvalidArgument("the profile must be a JSON object")
    _action_value(profile.get("defaultAction"), profile.get("defaultErrnoRet"))
    for rule in profile.get("syscalls") or []:
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names:
            raise InvalidArgument(f"syscall rule {rule!r} has no names")
        _action_value(rule.get("action"), rule.get("errnoRet"))
        for arg in rule.get("args") or []:
            if arg.get("op") not in OPERATORS:
                raise InvalidArgument(
                    f"unknown operator {arg.get('op')!r} in the rule for {names[0]};"
                    f" use one of {', '.join(OPERATORS)}"
                )
            if not 0 <= int(arg.get("index", -1)) <= 5:
                raise InvalidArgument(
                    f"argument index {arg.get('index')!r} in the rule for"
                    f" {names[0]} is not between 0 and 5"
                )


def _action_value(action: object, errno_ret: object) -> int:
    if action not in ACTIONS:
        if action == "SCMP_ACT_NOTIFY":
            raise InvalidArgument(
                "SCMP_ACT_NOTIFY is not supported: minictr has no agent"
                " that answers seccomp notifications"
            )
        raise InvalidArgument(
            f"unknown action {action!r}; use one of {', '.join(ACTIONS)}"
        )
    value = ACTIONS[action]
    if value in (RET_ERRNO, RET_TRACE):
        data = errno.EPERM if errno_ret is None and value == RET_ERRNO else errno_ret
        value |= int(data or 0) & 0xFFFF
    return value


def _applies(rule: dict, caps: set[str], kernel: tuple[int, ...]) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if any(cap not in caps for cap in includes.get("caps") or []):
        return False
    if any(cap in caps for cap in excludes.get("caps") or []):
        return False
    arches = includes.get("arches")
    if arches and not set(arches) & set(NATIVE_ARCH_NAMES):
        return False
    if set(excludes.get("arches") or []) & set(NATIVE_ARCH_NAMES):
        return False
    min_kernel = includes.get("minKernel")
    if min_kernel and kernel < _version(min_kernel):
        return False
    return True


def _version(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("-")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers)


def compile_filter(
    profile: dict, caps: list[str], enosys_unknown: bool = False
) -> bytes:
    """Compile ``profile`` for a container holding ``caps`` (names like CHOWN).

    Returns the packed ``struct sock_filter`` array. ``enosys_unknown``
    makes numbers above the newest known call fail with ENOSYS.
    """
    from .syscall_table import X86_64

    if os.uname().machine != "x86_64":
        raise MinictrError(
            f"seccomp filters are not supported on {os.uname().machine}: minictr"
            " has only the x86_64 system call table; use"
            " --security-opt seccomp=unconfined"
        )
    validate(profile)
    held = {f"CAP_{name}" for name in caps}
    kernel = _version(os.uname().release)
    default = _action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))

    rules_by_number: dict[int, list[dict]] = {}
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, held, kernel):
            continue
        names = rule.get("names") or [rule["name"]]
        for name in names:
            number = X86_64.get(name)
            if number is None:
                # Profiles list calls of every architecture, as Docker's does.
                continue
            rules_by_number.setdefault(number, []).append(rule)

    program = _prologue()
    for number, rules in rules_by_number.items():
        body = _syscall_body(number, rules, default)
        program.append(Insn(JEQ_K, number, 0, len(body)))
        program += body
    if enosys_unknown:
        program += [
            Insn(JGT_K, max(X86_64.values()), 0, 1),
            Insn(RET_K, RET_ERRNO | errno.ENOSYS),
        ]
    program.append(Insn(RET_K, default))
    return _assemble(program)


def _prologue() -> list[Insn]:
    # Check the architecture first: the same number means another call in
    # another ABI. Then reject x32 numbers, which share AUDIT_ARCH_X86_64.
    return [
        Insn(LD_W_ABS, OFFSET_ARCH),
        Insn(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        Insn(RET_K, RET_KILL_PROCESS),
        Insn(LD_W_ABS, OFFSET_NR),
        Insn(JGE_K, X32_SYSCALL_BIT, 0, 1),
        Insn(RET_K, RET_KILL_PROCESS),
    ]


def _syscall_body(number: int, rules: list[dict], default: int) -> list[Insn]:
    """Return the instructions run once the call number matched; all end in RET."""
    body: list[Insn | str] = []
    for index, rule in enumerate(rules):
        fail = f"rule{index}.fail"
        for arg_index, arg in enumerate(rule.get("args") or []):
            body += _compare_arg(arg, fail, f"rule{index}.arg{arg_index}.ok")
        body.append(Insn(RET_K, _action_value(rule["action"], rule.get("errnoRet"))))
        body.append(fail)
    body.append(Insn(RET_K, default))
    resolved = _resolve_labels(body)
    if len(resolved) > MAX_JUMP:
        raise InvalidArgument(
            f"the rules for system call {number} compile to {len(resolved)} BPF"
            f" instructions, more than a jump can skip ({MAX_JUMP}); split them"
        )
    return resolved


def _compare_arg(arg: dict, fail: str, ok: str) -> list[Insn | str]:
    """Return code that jumps to ``fail`` unless the 64-bit argument matches."""
    offset = OFFSET_ARGS + 8 * int(arg["index"])
    low, high = offset, offset + 4  # little-endian: the low word comes first
    op = arg["op"]
    value = int(arg.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
    if op == "SCMP_CMP_MASKED_EQ":
        mask, value = value, int(arg.get("valueTwo", 0)) & 0xFFFFFFFFFFFFFFFF
        return [
            Insn(LD_W_ABS, high),
            Insn(ALU_AND_K, mask >> 32),
            Insn(JEQ_K, value >> 32, 0, fail),
            Insn(LD_W_ABS, low),
            Insn(ALU_AND_K, mask & 0xFFFFFFFF),
            Insn(JEQ_K, value & 0xFFFFFFFF, 0, fail),
        ]
    value_high, value_low = value >> 32, value & 0xFFFFFFFF
    code: list[Insn | str] = [Insn(LD_W_ABS, high)]
    if op == "SCMP_CMP_EQ":
        code += [
            Insn(JEQ_K, value_high, 0, fail),
            Insn(LD_W_ABS, low),
            Insn(JEQ_K, value_low, 0, fail),
        ]
    elif op == "SCMP_CMP_NE":
        code += [
            Insn(JEQ_K, value_high, 0, ok),
            Insn(LD_W_ABS, low),
            Insn(JEQ_K, value_low, fail, 0),
        ]
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        last = JGT_K if op == "SCMP_CMP_GT" else JGE_K
        code += [
            Insn(JGT_K, value_high, ok, 0),
            Insn(JEQ_K, value_high, 0, fail),
            Insn(LD_W_ABS, low),
            Insn(last, value_low, 0, fail),
        ]
    else:  # SCMP_CMP_LT, SCMP_CMP_LE: BPF has only > and >=, so jump on the opposite
        last = JGE_K if op == "SCMP_CMP_LT" else JGT_K
        code += [
            Insn(JGE_K, value_high, 0, ok),
            Insn(JGT_K, value_high, fail, 0),
            Insn(LD_W_ABS, low),
            Insn(last, value_low, fail, 0),
        ]
    code.append(ok)
    return code


def _resolve_labels(items: list[Insn | str]) -> list[Insn]:
    positions: dict[str, int] = {}
    program: list[Insn] = []
    for item in items:
        if isinstance(item, str):
            positions[item] = len(program)
        else:
            program.append(item)
    for index, insn in enumerate(program):
        for attr in ("jt", "jf"):
            target = getattr(insn, attr)
            if isinstance(target, str):
                setattr(insn, attr, positions[target] - index - 1)
    return program


def _assemble(program: list[Insn]) -> bytes:
    if len(program) > 4096:
        raise InvalidArgument(
            f"the seccomp profile compiles to {len(program)} BPF instructions;"
            " the kernel accepts at most 4096"
        )
    out = bytearray()
    for insn in program:
        if not (0 <= int(insn.jt) <= MAX_JUMP and 0 <= int(insn.jf) <= MAX_JUMP):
            raise InvalidArgument(f"BPF jump out of range in {insn}")
        out += struct.pack("<HBBI", insn.code, insn.jt, insn.jf, insn.k & 0xFFFFFFFF)
    return bytes(out)


def disassemble(program: bytes) -> list[str]:
    """Return one readable line per instruction, for tests and teaching."""
    names = {
        LD_W_ABS: "ld",
        ALU_AND_K: "and",
        JEQ_K: "jeq",
        JGT_K: "jgt",
        JGE_K: "jge",
        RET_K: "ret",
    }
    lines = []
    for index in range(0, len(program), 8):
        code, jt, jf, k = struct.unpack("<HBBI", program[index : index + 8])
        name = names.get(code, hex(code))
        if name.startswith("j"):
            lines.append(f"{name} {k:#x} jt {jt} jf {jf}")
        else:
            lines.append(f"{name} {k:#x}")
    return lines
