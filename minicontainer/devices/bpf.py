"""Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no ``devices.allow`` file. Instead the kernel runs an eBPF
program attached to the cgroup (attach type ``BPF_CGROUP_DEVICE``) each time
a process inside opens or creates (mknod) a device node. The program reads a
``struct bpf_cgroup_dev_ctx`` from its context pointer in r1::

    u32 access_type   low 16 bits: BPF_DEVCG_DEV_BLOCK (1) or _CHAR (2)
                      high 16 bits: BPF_DEVCG_ACC_MKNOD (1) | _READ (2) | _WRITE (4)
    u32 major
    u32 minor

and returns 1 to allow the access or 0 to deny it (the caller gets EPERM).
The context and the constants are in include/uapi/linux/bpf.h; bpf(2)
describes the system call.

The program here is assembled from the rule list by hand, a few instructions
per rule, and loaded with the bpf(2) system call through ctypes. It needs six
instruction kinds, so a library would add more than it saves: bcc, for one,
compiles C with clang at run time and needs kernel headers. The cgroup keeps a reference to an attached program, so the program
stays attached after its file descriptor is closed, until it is detached or
the cgroup is removed with rmdir.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import logging
import os
import struct
from dataclasses import dataclass

from ..errors import KernelError
from .rules import ACCESS_BITS, Rule

log = logging.getLogger(__name__)

# bpf(2) commands, program type and attach type, from <linux/bpf.h>.
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
# Several programs may be attached to one cgroup, and a process must pass
# every program on the way from its cgroup up to the root.
BPF_F_ALLOW_MULTI = 2

BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

# Instruction classes and operations, from <linux/bpf_common.h> and <linux/bpf.h>.
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K: dst = (u32)(dst & imm)
_ALU32_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K: dst = (u32)(dst >> imm)
_ALU64_MOV_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
_ALU32_MOV_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X: dst = (u32)src
_JMP_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + 1 + off
_JMP_EXIT = 0x95  # BPF_JMP | BPF_EXIT: return r0

_LICENSE = b"GPL"
_PROGRAM_NAME = b"minictr_dev"
_LOG_SIZE = 1 << 16
_ATTR_SIZE = 128  # larger than every field used; the kernel wants the rest zero

_SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280, "riscv64": 280}


@dataclass(frozen=True)
class Instruction:
    """One eBPF instruction (``struct bpf_insn``, 8 bytes)."""

    code: int
    dst: int = 0
    src: int = 0
    offset: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        # dst_reg is the low nibble on little-endian machines (x86-64, arm64).
        registers = (self.src << 4) | self.dst
        return struct.pack("<BBhi", self.code, registers, self.offset, self.imm)


def _rule_block(rule: Rule) -> list[Instruction]:
    """Assemble the test of one rule; its jumps skip to the end of the block.

    The caller has loaded r2 = device type, r3 = requested access bits,
    r4 = major and r5 = minor. The jump offsets are filled in afterwards.
    """
    checks: list[Instruction] = []
    if rule.type != "a":
        kind = BPF_DEVCG_DEV_CHAR if rule.type == "c" else BPF_DEVCG_DEV_BLOCK
        checks.append(Instruction(_JMP_JNE_K, dst=2, imm=kind))
    allowed = rule.access_mask
    if allowed != 0b111:
        # The access passes only if it requests no bit outside the rule's.
        checks.append(Instruction(_ALU32_MOV_X, dst=1, src=3))
        checks.append(Instruction(_ALU32_AND_K, dst=1, imm=~allowed & 0b111))
        checks.append(Instruction(_JMP_JNE_K, dst=1, imm=0))
    if rule.major is not None:
        checks.append(Instruction(_JMP_JNE_K, dst=4, imm=rule.major))
    if rule.minor is not None:
        checks.append(Instruction(_JMP_JNE_K, dst=5, imm=rule.minor))
    verdict = [
        Instruction(_ALU64_MOV_K, dst=0, imm=1 if rule.allow else 0),
        Instruction(_JMP_EXIT),
    ]
    block = checks + verdict
    length = len(block)
    for index, insn in enumerate(checks):
        if insn.code == _JMP_JNE_K:
            block[index] = Instruction(
                insn.code, insn.dst, insn.src, length - index - 1, insn.imm
            )
    return block


def assemble(rules: list[Rule]) -> list[Instruction]:
    """Assemble a device program for ``rules``; the last matching rule decides.

    Rules are tested from the last to the first, as cgroup v1 applies later
    writes over earlier ones, and a device that matches no rule is denied.
    """
    program = [
        Instruction(_LDX_MEM_W, dst=2, src=1, offset=0),
        Instruction(_ALU32_AND_K, dst=2, imm=0xFFFF),
        Instruction(_LDX_MEM_W, dst=3, src=1, offset=0),
        Instruction(_ALU32_RSH_K, dst=3, imm=16),
        Instruction(_LDX_MEM_W, dst=4, src=1, offset=4),
        Instruction(_LDX_MEM_W, dst=5, src=1, offset=8),
    ]
    for rule in reversed(rules):
        block = _rule_block(rule)
        program += block
        if not any(insn.code == _JMP_JNE_K for insn in block):
            # A rule that matches every device decides alone. The verifier
            # rejects a program with instructions that cannot be reached.
            return program
    program += [Instruction(_ALU64_MOV_K, dst=0, imm=0), Instruction(_JMP_EXIT)]
    return program


def _bpf(command: int, attr: ctypes.Array, what: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    number = _SYSCALL_NUMBERS.get(os.uname().machine)
    if number is None:
        raise KernelError(f"{what}: no bpf syscall number known for this machine")
    result = libc.syscall(
        ctypes.c_long(number),
        ctypes.c_long(command),
        attr,
        ctypes.c_uint(len(attr)),
    )
    if result < 0:
        err = ctypes.get_errno()
        raise KernelError(
            f"{what} failed: {os.strerror(err)}"
            f" ({errno_module.errorcode.get(err, err)}){_HINTS.get(err, '')}",
            err,
        )
    return result


_HINTS = {
    errno_module.EPERM: "; loading BPF programs needs CAP_BPF or CAP_SYS_ADMIN",
    errno_module.EINVAL: "; the kernel may lack CONFIG_CGROUP_BPF",
}


def load(rules: list[Rule]) -> int:
    """Load the device program for ``rules``; return its file descriptor.

    On a verifier failure the error carries the verifier's log.
    """
    program = assemble(rules)
    code = b"".join(insn.encode() for insn in program)
    log.debug(
        "bpf BPF_PROG_LOAD BPF_PROG_TYPE_CGROUP_DEVICE: %d instructions for %d rules",
        len(program),
        len(rules),
    )
    insns = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(_LICENSE)
    verifier_log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(
        "<IIQQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_text),
    )
    struct.pack_into("<16s", attr, 48, _PROGRAM_NAME)
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf BPF_PROG_LOAD (cgroup device program)")
    except KernelError as exc:
        if exc.errno != errno_module.EACCES and exc.errno != errno_module.EINVAL:
            raise
        # Load again with the verifier log on, to say why it was rejected.
        struct.pack_into("<IIQ", attr, 24, 1, _LOG_SIZE, ctypes.addressof(verifier_log))
        try:
            _bpf(BPF_PROG_LOAD, attr, "bpf BPF_PROG_LOAD (cgroup device program)")
        except KernelError:
            pass
        lines = verifier_log.value.decode(errors="replace").strip().splitlines()
        if not lines:
            raise
        # The verifier explained the rejection, so the kernel has the feature.
        raise KernelError(
            "bpf BPF_PROG_LOAD rejected the cgroup device program:"
            f" {'; '.join(lines[-3:])}",
            exc.errno,
        ) from exc


def _cgroup_fd(directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise KernelError(
            f"cannot open cgroup {directory}: {exc.strerror}", exc.errno or 0
        ) from exc


def attach(directory: str, rules: list[Rule]) -> None:
    """Load a device program for ``rules`` and attach it to the cgroup ``directory``."""
    program_fd = load(rules)
    try:
        cgroup_fd = _cgroup_fd(directory)
        try:
            attr = ctypes.create_string_buffer(_ATTR_SIZE)
            struct.pack_into(
                "<IIII",
                attr,
                0,
                cgroup_fd,
                program_fd,
                BPF_CGROUP_DEVICE,
                BPF_F_ALLOW_MULTI,
            )
            log.debug(
                "bpf BPF_PROG_ATTACH to %s (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)",
                directory,
            )
            _bpf(BPF_PROG_ATTACH, attr, f"bpf BPF_PROG_ATTACH to {directory}")
        finally:
            os.close(cgroup_fd)
    finally:
        # The cgroup holds its own reference to the attached program.
        os.close(program_fd)


def attached_program_ids(directory: str) -> list[int]:
    """Return the ids of the device programs attached to the cgroup ``directory``."""
    cgroup_fd = _cgroup_fd(directory)
    try:
        ids = (ctypes.c_uint32 * 64)()
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        struct.pack_into("<II", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE)
        struct.pack_into("<QI", attr, 16, ctypes.addressof(ids), len(ids))
        _bpf(BPF_PROG_QUERY, attr, f"bpf BPF_PROG_QUERY on {directory}")
        count = struct.unpack_from("<I", attr, 24)[0]
        return list(ids[:count])
    finally:
        os.close(cgroup_fd)


def detach_all(directory: str) -> int:
    """Detach every device program from the cgroup ``directory``; return how many.

    Removing the cgroup detaches its programs as well, so the runtime needs
    this only to change the rules of a cgroup that stays.
    """
    detached = 0
    cgroup_fd = _cgroup_fd(directory)
    try:
        for program_id in attached_program_ids(directory):
            attr = ctypes.create_string_buffer(_ATTR_SIZE)
            struct.pack_into("<I", attr, 0, program_id)
            program_fd = _bpf(
                BPF_PROG_GET_FD_BY_ID, attr, f"bpf BPF_PROG_GET_FD_BY_ID {program_id}"
            )
            try:
                attr = ctypes.create_string_buffer(_ATTR_SIZE)
                struct.pack_into(
                    "<III", attr, 0, cgroup_fd, program_fd, BPF_CGROUP_DEVICE
                )
                _bpf(BPF_PROG_DETACH, attr, f"bpf BPF_PROG_DETACH from {directory}")
                detached += 1
            finally:
                os.close(program_fd)
    finally:
        os.close(cgroup_fd)
    return detached


__all__ = [
    "ACCESS_BITS",
    "Instruction",
    "assemble",
    "attach",
    "attached_program_ids",
    "detach_all",
    "load",
]
