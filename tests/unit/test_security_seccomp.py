"""The seccomp compiler, checked by running its BPF in a small interpreter."""

from __future__ import annotations

import errno
import json
import os
import struct

import pytest

from minicontainer.errors import InvalidArgument
from minicontainer.security import default_profile, seccomp
from minicontainer.security.syscall_table import X86_64

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the filter compiler targets x86_64"
)

DEFAULT_CAPS = ["CHOWN", "SETUID", "SETGID", "NET_RAW"]


def run_filter(program: bytes, nr: int, args=(0,) * 6, arch=seccomp.AUDIT_ARCH_X86_64):
    """Run a classic BPF program over one seccomp_data; return its verdict."""
    args = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *[a & (2**64 - 1) for a in args])
    insns = [
        struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)
    ]
    pc, a = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == seccomp.LD_W_ABS:
            a = struct.unpack_from("<I", data, k)[0]
        elif code == seccomp.ALU_AND_K:
            a &= k
        elif code == seccomp.RET_K:
            return k
        else:
            taken = {
                seccomp.JEQ_K: a == k,
                seccomp.JGT_K: a > k,
                seccomp.JGE_K: a >= k,
            }[code]
            pc += jt if taken else jf


def errno_of(verdict: int) -> int | None:
    if verdict & 0xFFFF0000 == seccomp.RET_ERRNO:
        return verdict & 0xFFFF
    return None


@pytest.fixture(scope="module")
def default_filter() -> bytes:
    return seccomp.compile_filter(
        default_profile.profile(), DEFAULT_CAPS, enosys_unknown=True
    )


def test_default_denies_keyring_calls(default_filter):
    for name in ("keyctl", "add_key", "request_key"):
        assert errno_of(run_filter(default_filter, X86_64[name])) == errno.EPERM, name


def test_default_denies_admin_calls_without_cap(default_filter):
    for name in (
        "mount",
        "umount2",
        "unshare",
        "setns",
        "kexec_load",
        "bpf",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "perf_event_open",
        "open_by_handle_at",
    ):
        assert errno_of(run_filter(default_filter, X86_64[name])) == errno.EPERM, name


def test_default_allows_ordinary_calls(default_filter):
    for name in ("read", "write", "openat", "execve", "mmap", "futex", "setresuid"):
        assert run_filter(default_filter, X86_64[name]) == seccomp.RET_ALLOW, name


def test_sys_admin_lifts_mount_denial():
    program = seccomp.compile_filter(
        default_profile.profile(), DEFAULT_CAPS + ["SYS_ADMIN"], enosys_unknown=True
    )
    assert run_filter(program, X86_64["mount"]) == seccomp.RET_ALLOW
    assert errno_of(run_filter(program, X86_64["keyctl"])) == errno.EPERM


def test_either_cap_lifts_bpf_denial():
    program = seccomp.compile_filter(default_profile.profile(), ["BPF"])
    assert run_filter(program, X86_64["bpf"]) == seccomp.RET_ALLOW


def test_clone_with_namespace_flag_denied(default_filter):
    clone = X86_64["clone"]
    plain_thread = 0x003D0F00  # CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|...
    assert run_filter(default_filter, clone, [plain_thread]) == seccomp.RET_ALLOW
    new_net = 0x40000000 | 17  # CLONE_NEWNET | SIGCHLD
    assert errno_of(run_filter(default_filter, clone, [new_net])) == errno.EPERM


def test_clone3_returns_enosys(default_filter):
    assert errno_of(run_filter(default_filter, X86_64["clone3"])) == errno.ENOSYS


def test_personality_allows_query_only_known(default_filter):
    nr = X86_64["personality"]
    assert run_filter(default_filter, nr, [0xFFFFFFFF]) == seccomp.RET_ALLOW
    assert errno_of(run_filter(default_filter, nr, [0x0040000])) == errno.EPERM


def test_unknown_newer_syscall_enosys(default_filter):
    newest = max(X86_64.values())
    assert errno_of(run_filter(default_filter, newest + 1)) == errno.ENOSYS


def test_foreign_arch_and_x32_killed(default_filter):
    i386 = 0x40000003
    assert run_filter(default_filter, 0, arch=i386) == seccomp.RET_KILL_PROCESS
    x32_read = 0x40000000
    assert run_filter(default_filter, x32_read) == seccomp.RET_KILL_PROCESS


def _profile_with_arg(op: str, value: int, value_two: int = 0) -> bytes:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["write"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 99,
                "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}],
            }
        ],
    }
    return seccomp.compile_filter(profile, [])


BIG = 0x1_0000_0005  # a value whose high word matters

COMPARISONS = [
    ("SCMP_CMP_EQ", BIG, [BIG], [5, BIG + 1, 0x2_0000_0005]),
    ("SCMP_CMP_NE", BIG, [5, BIG + 1, 0x2_0000_0005], [BIG]),
    ("SCMP_CMP_GT", BIG, [BIG + 1, 0x2_0000_0000], [BIG, 5, 0xFFFF_FFFF]),
    ("SCMP_CMP_GE", BIG, [BIG, BIG + 1, 0x2_0000_0000], [BIG - 1, 0xFFFF_FFFF]),
    ("SCMP_CMP_LT", BIG, [BIG - 1, 0xFFFF_FFFF, 0], [BIG, BIG + 1, 0x2_0000_0000]),
    ("SCMP_CMP_LE", BIG, [BIG, BIG - 1, 0xFFFF_FFFF], [BIG + 1, 0x2_0000_0000]),
]


@pytest.mark.parametrize(("op", "value", "matching", "other"), COMPARISONS)
def test_argument_comparison_64bit(op, value, matching, other):
    program = _profile_with_arg(op, value)
    for arg in matching:
        verdict = run_filter(program, X86_64["write"], [0, 0, arg])
        assert errno_of(verdict) == 99, f"{op} {value:#x} should match {arg:#x}"
    for arg in other:
        verdict = run_filter(program, X86_64["write"], [0, 0, arg])
        assert verdict == seccomp.RET_ALLOW, f"{op} {value:#x} matched {arg:#x}"


def test_masked_eq_compares_masked_bits():
    program = _profile_with_arg("SCMP_CMP_MASKED_EQ", 0xF0_0000_00F0, 0x10_0000_0020)
    nr = X86_64["write"]
    assert errno_of(run_filter(program, nr, [0, 0, 0x1F_0000_002F])) == 99
    assert run_filter(program, nr, [0, 0, 0x20_0000_0020]) == seccomp.RET_ALLOW


def test_allow_list_profile_denies_the_rest():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [
            {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"}
        ],
    }
    program = seccomp.compile_filter(profile, [])
    assert run_filter(program, X86_64["read"]) == seccomp.RET_ALLOW
    assert errno_of(run_filter(program, X86_64["openat"])) == errno.ENOSYS


def test_includes_min_kernel_skips_rule():
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["read"],
                "action": "SCMP_ACT_KILL_PROCESS",
                "includes": {"minKernel": "999.0"},
            }
        ],
    }
    program = seccomp.compile_filter(profile, [])
    assert run_filter(program, X86_64["read"]) == seccomp.RET_ALLOW


def test_load_file_rejects_unknown_action(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_MAYBE"}))
    with pytest.raises(InvalidArgument, match="SCMP_ACT_MAYBE"):
        seccomp.load_file(str(path))


def test_load_file_rejects_notify(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_NOTIFY"}))
    with pytest.raises(InvalidArgument, match="not supported"):
        seccomp.load_file(str(path))


def test_load_file_rejects_bad_json(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text("{")
    with pytest.raises(InvalidArgument, match="not JSON"):
        seccomp.load_file(str(path))


def test_load_file_rejects_bad_operator(tmp_path):
    path = tmp_path / "profile.json"
    rule = {
        "names": ["read"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}],
    }
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    with pytest.raises(InvalidArgument, match="SCMP_CMP_SOMETIMES"):
        seccomp.load_file(str(path))


def test_disassemble_starts_with_arch_check(default_filter):
    lines = seccomp.disassemble(default_filter)
    assert lines[0] == "ld 0x4"
    assert lines[1].startswith("jeq 0xc000003e")
