"""minictr's default seccomp profile, in Docker's JSON profile format.

The profile allows every system call except the groups below, which fail
with EPERM. Each group names the capability that lifts it: a container that
was given CAP_SYS_ADMIN may mount, as it could under Docker. Docker's own
default profile is an allow list instead. A deny list is shorter to read
and to evaluate, and its weak point, system calls added to the kernel after
the list was written, is closed in ``seccomp.compile_filter``: numbers above
the newest one in ``syscall_table`` fail with ENOSYS, so the C library falls
back to an older call, as it does on an older kernel.
"""

from __future__ import annotations

import errno

# Namespace bits of clone(2)'s flags argument: CLONE_NEWNS, CLONE_NEWCGROUP,
# CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID and CLONE_NEWNET.
CLONE_NAMESPACE_FLAGS = 0x7E020000

AF_VSOCK = 40

# personality(2) values that stay allowed: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff, which only reads the current value.
# Others, such as ADDR_NO_RANDOMIZE, would weaken the process's defences.
ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# (reason, capability that lifts the denial or None, system calls)
DENIED = [
    (
        "the kernel keyring is not namespaced: keys would be shared with the host",
        None,
        ["keyctl", "add_key", "request_key"],
    ),
    (
        "io_uring has been a steady source of kernel exploits",
        None,
        ["io_uring_setup", "io_uring_enter", "io_uring_register"],
    ),
    (
        "obsolete calls nothing needs, kept out to shrink the kernel's surface",
        None,
        [
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "nfsservctl",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "lookup_dcookie",
            "vserver",
            "afs_syscall",
            "tuxcall",
            "security",
            "getpmsg",
            "putpmsg",
        ],
    ),
    ("loading a new kernel", "SYS_BOOT", ["kexec_load", "kexec_file_load", "reboot"]),
    (
        "kernel modules change the host kernel",
        "SYS_MODULE",
        ["init_module", "finit_module", "delete_module"],
    ),
    (
        "mounts, namespaces and other system administration",
        "SYS_ADMIN",
        [
            "mount",
            "umount2",
            "pivot_root",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "setns",
            "unshare",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "fanotify_init",
            "name_to_handle_at",
        ],
    ),
    ("eBPF programs run in the host kernel", "SYS_ADMIN", ["bpf"]),
    ("eBPF programs run in the host kernel", "BPF", ["bpf"]),
    ("performance counters leak host activity", "SYS_ADMIN", ["perf_event_open"]),
    ("performance counters leak host activity", "PERFMON", ["perf_event_open"]),
    (
        "file handles bypass the container's root (the 2014 'shocker' escape)",
        "DAC_READ_SEARCH",
        ["open_by_handle_at"],
    ),
    ("raw I/O port access", "SYS_RAWIO", ["iopl", "ioperm"]),
    ("process accounting is host-wide", "SYS_PACCT", ["acct"]),
    (
        "the clock is not namespaced",
        "SYS_TIME",
        ["settimeofday", "clock_settime", "stime"],
    ),
    ("the kernel log is host-wide", "SYSLOG", ["syslog"]),
    ("virtual hangup of the terminal", "SYS_TTY_CONFIG", ["vhangup"]),
    (
        "NUMA memory placement is host-wide",
        "SYS_NICE",
        ["mbind", "set_mempolicy", "migrate_pages", "move_pages"],
    ),
    (
        "userfaultfd makes kernel races easy to win",
        "SYS_PTRACE",
        ["userfaultfd"],
    ),
    ("taking another process's descriptors", "SYS_PTRACE", ["pidfd_getfd"]),
]


def _rule(names: list[str], errno_ret: int, cap: str | None) -> dict:
    rule: dict = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}
    if cap:
        rule["excludes"] = {"caps": [f"CAP_{cap}"]}
    return rule


def _merge_alternatives(rules: list[dict]) -> list[dict]:
    # A call listed twice with different capabilities is lifted by either
    # one; Docker's "excludes" drops a rule when any listed capability is held.
    merged: dict[tuple, dict] = {}
    for rule in rules:
        key = tuple(rule["names"])
        if key in merged and "excludes" in rule:
            merged[key].setdefault("excludes", {"caps": []})
            merged[key]["excludes"]["caps"] += rule["excludes"]["caps"]
        else:
            merged[key] = rule
    return list(merged.values())


def profile() -> dict:
    """Return the default profile as a dict in Docker's JSON format."""
    rules = [_rule(names, errno.EPERM, cap) for _, cap, names in DENIED]
    syscalls = _merge_alternatives(rules)
    no_sys_admin = {"caps": ["CAP_SYS_ADMIN"]}
    syscalls += [
        # clone is allowed unless its flags create a namespace. The first
        # matching rule wins, so the allowing rule comes first.
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": 0,
                    "value": CLONE_NAMESPACE_FLAGS,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
            "excludes": no_sys_admin,
        },
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "excludes": no_sys_admin,
        },
        # clone3 passes its flags in memory, where a filter cannot look.
        # ENOSYS makes the C library fall back to clone, which is checked.
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.ENOSYS,
            "excludes": no_sys_admin,
        },
        # vsock reaches the hypervisor host, outside any network namespace.
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}],
        },
    ]
    syscalls += [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}],
        }
        for value in ALLOWED_PERSONALITIES
    ]
    syscalls.append(
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": syscalls,
    }
