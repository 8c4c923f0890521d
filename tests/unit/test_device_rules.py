"""Device options, rules, the v1 rule lines and the cgroup v2 device program.

The BPF program is checked by running it on a small interpreter of the six
instruction kinds it uses, so its decisions are tested without root; the
integration tests load the same program into the kernel.
"""

from __future__ import annotations

import os
import struct

import pytest

from minicontainer.cliopts import devices as device_options
from minicontainer.devices import bpf
from minicontainer.devices.nodes import parse_device, stat_node
from minicontainer.devices.rules import (
    ALLOW_ALL,
    STANDARD_RULES,
    Rule,
    container_rules,
    parse_rule,
)
from minicontainer.errors import InvalidArgument

CHAR, BLOCK = bpf.BPF_DEVCG_DEV_CHAR, bpf.BPF_DEVCG_DEV_BLOCK
MKNOD, READ, WRITE = 1, 2, 4


def run_program(
    program: list[bpf.Instruction], kind: int, access: int, major: int, minor: int
) -> int:
    """Interpret a device program on one access; return r0 at exit."""
    context = struct.pack("<III", (access << 16) | kind, major, minor)
    registers = [0] * 11
    registers[1] = -1  # the context pointer; only offsets from it are read
    pc = 0
    while True:
        insn = program[pc]
        pc += 1
        if insn.code == bpf._LDX_MEM_W:
            assert insn.src == 1
            registers[insn.dst] = struct.unpack_from("<I", context, insn.offset)[0]
        elif insn.code == bpf._ALU32_AND_K:
            registers[insn.dst] = (registers[insn.dst] & insn.imm) & 0xFFFFFFFF
        elif insn.code == bpf._ALU32_RSH_K:
            registers[insn.dst] = (registers[insn.dst] & 0xFFFFFFFF) >> insn.imm
        elif insn.code == bpf._ALU32_MOV_X:
            registers[insn.dst] = registers[insn.src] & 0xFFFFFFFF
        elif insn.code == bpf._ALU64_MOV_K:
            registers[insn.dst] = insn.imm
        elif insn.code == bpf._JMP_JNE_K:
            if registers[insn.dst] != insn.imm:
                pc += insn.offset
        elif insn.code == bpf._JMP_EXIT:
            return registers[0]
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")


def decide(rules: list[Rule], kind: int, access: int, major: int, minor: int) -> int:
    return run_program(bpf.assemble(rules), kind, access, major, minor)


# ------------------------------------------------------------------ program


@pytest.mark.parametrize(
    ("kind", "access", "major", "minor", "expected"),
    [
        (CHAR, READ | WRITE, 1, 3, 1),  # /dev/null
        (CHAR, READ, 1, 9, 1),  # /dev/urandom
        (CHAR, READ | WRITE, 136, 7, 1),  # any /dev/pts/N
        (CHAR, MKNOD, 8, 0, 1),  # mknod of any node is allowed
        (BLOCK, MKNOD, 8, 0, 1),
        (BLOCK, READ, 8, 0, 0),  # but opening a disk is not
        (CHAR, READ, 1, 1, 0),  # /dev/mem
        (CHAR, READ, 195, 0, 0),  # a GPU nobody asked for
        (BLOCK, READ | WRITE, 1, 3, 0),  # the type must match too
    ],
)
def test_program_standard_rules(kind, access, major, minor, expected):
    assert decide(list(STANDARD_RULES), kind, access, major, minor) == expected


def test_program_checks_each_access_bit():
    rules = [Rule("c", 10, 229, "r")]
    assert decide(rules, CHAR, READ, 10, 229) == 1
    assert decide(rules, CHAR, READ | WRITE, 10, 229) == 0
    assert decide(rules, CHAR, MKNOD, 10, 229) == 0


def test_program_wildcard_minor_and_type_a():
    rules = [Rule("a", 195, None, "rwm")]
    assert decide(rules, CHAR, READ, 195, 0) == 1
    assert decide(rules, BLOCK, READ, 195, 254) == 1
    assert decide(rules, CHAR, READ, 196, 0) == 0


def test_program_last_matching_rule_wins():
    rules = [Rule("c", 195, None, "rwm"), Rule("c", 195, 1, "rwm", allow=False)]
    assert decide(rules, CHAR, READ, 195, 0) == 1
    assert decide(rules, CHAR, READ, 195, 1) == 0


def test_program_without_rules_denies():
    assert decide([], CHAR, READ, 1, 3) == 0


def test_program_allow_all():
    assert decide([ALLOW_ALL], BLOCK, READ | WRITE | MKNOD, 8, 1) == 1


def test_instruction_encoding():
    insn = bpf.Instruction(bpf._LDX_MEM_W, dst=2, src=1, offset=4, imm=0)
    assert insn.encode() == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])


def test_jumps_stay_inside_program():
    program = bpf.assemble(list(STANDARD_RULES) + [Rule("b", 8, None, "r")])
    for index, insn in enumerate(program):
        if insn.code == bpf._JMP_JNE_K:
            assert 0 <= index + 1 + insn.offset < len(program)
    assert program[-1].code == bpf._JMP_EXIT


def test_rule_for_every_device_ends_the_program():
    # The verifier rejects unreachable instructions, so nothing may follow
    # a rule without conditions, such as --device-cgroup-rule 'a *:* rwm'.
    rules = list(STANDARD_RULES) + [Rule("a", None, None, "rwm")]
    program = bpf.assemble(rules)
    assert [insn.code for insn in program[-2:]] == [bpf._ALU64_MOV_K, bpf._JMP_EXIT]
    assert sum(insn.code == bpf._JMP_EXIT for insn in program) == 1
    assert run_program(program, bpf.BPF_DEVCG_DEV_BLOCK, 0b111, 8, 0) == 1


# ------------------------------------------------------------------ rules


def test_parse_rule():
    assert parse_rule("c 195:* rwm") == Rule("c", 195, None, "rwm")
    assert parse_rule("b 8:16 r") == Rule("b", 8, 16, "r")
    assert parse_rule("a") == ALLOW_ALL


@pytest.mark.parametrize(
    "text", ["c 195 rwm", "x 1:3 r", "c 1:3 rx", "c 1:3 rr", "", "c a:b r"]
)
def test_parse_rule_rejects(text):
    with pytest.raises(InvalidArgument, match="invalid device"):
        parse_rule(text)


def test_v1_lines():
    assert Rule("c", 1, 3, "rwm").v1_lines() == ["c 1:3 rwm"]
    assert Rule("c", 136, None, "rwm").v1_lines() == ["c 136:* rwm"]
    assert ALLOW_ALL.v1_lines() == ["a"]
    assert Rule("a", 195, None, "rw").v1_lines() == ["c 195:* rw", "b 195:* rw"]


def test_container_rules_privileged_allows_all():
    assert container_rules({"rules": []}, privileged=True) == [ALLOW_ALL]


def test_container_rules_default_is_standard_set():
    assert container_rules({}, privileged=False) == list(STANDARD_RULES)


def test_rule_round_trips_through_dict():
    rule = Rule("c", 195, None, "rw")
    assert Rule.from_dict(rule.to_dict()) == rule


# ------------------------------------------------------------------ --device


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/dev/fuse", ("/dev/fuse", "/dev/fuse", "rwm")),
        ("/dev/fuse:rw", ("/dev/fuse", "/dev/fuse", "rw")),
        ("/dev/fuse:/dev/myfuse", ("/dev/fuse", "/dev/myfuse", "rwm")),
        ("/dev/fuse:/dev/myfuse:r", ("/dev/fuse", "/dev/myfuse", "r")),
    ],
)
def test_parse_device(spec, expected):
    assert parse_device(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/dev/fuse:/dev/f:rx", "invalid device permissions"),
        ("/dev/fuse:dev/f", "must be an absolute path"),
        ("fuse", "must be an absolute path"),
        ("/a:/b:r:w", "expected HOST_PATH"),
    ],
)
def test_parse_device_rejects(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_device(spec)


def test_stat_node_reads_numbers():
    node = stat_node("/dev/null", "/dev/mynull", "rw")
    assert (node["type"], node["major"], node["minor"]) == ("c", 1, 3)
    assert node["path"] == "/dev/mynull"


def test_stat_node_rejects_regular_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(InvalidArgument, match="not a character or block device"):
        stat_node(str(path), "/dev/x", "rwm")


def test_stat_node_missing(tmp_path):
    with pytest.raises(InvalidArgument, match="not found on the host"):
        stat_node(str(tmp_path / "missing"), "/dev/x", "rwm")


# ------------------------------------------------------------------ options


def options(**values):
    kwargs = {"device": (), "device_cgroup_rule": (), "gpus": None}
    kwargs.update(values)
    return kwargs


def test_to_config_pops_its_options():
    kwargs = options()
    kwargs["name"] = "kept"
    device_options.to_config(kwargs)
    assert kwargs == {"name": "kept"}


def test_to_config_lists_every_rule():
    config = device_options.to_config(
        options(device=("/dev/null:/dev/other:r",), device_cgroup_rule=("c 195:* rwm",))
    )
    rules = [Rule.from_dict(rule) for rule in config["rules"]]
    assert rules[: len(STANDARD_RULES)] == list(STANDARD_RULES)
    assert Rule("c", 1, 3, "r") in rules
    assert rules[-1] == Rule("c", 195, None, "rwm")
    assert config["nodes"][0]["path"] == "/dev/other"
    assert config["cgroup_rules"] == ["c 195:* rwm"]


def test_to_config_missing_device_names_it(tmp_path):
    missing = str(tmp_path / "nvidia9")
    with pytest.raises(InvalidArgument, match="nvidia9"):
        device_options.to_config(options(device=(missing,)))


def test_to_config_bad_gpus_names_value():
    with pytest.raises(InvalidArgument, match="'devices=0'"):
        device_options.to_config(options(gpus="devices=0"))


def test_to_config_device_directory(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    os.mkdir(tmp_path / "dri")
    os.mknod(tmp_path / "dri" / "card0", 0o660 | 0o020000, os.makedev(226, 0))
    config = device_options.to_config(options(device=(f"{tmp_path}/dri:/dev/dri",)))
    assert [n["path"] for n in config["nodes"]] == ["/dev/dri/card0"]
    assert config["nodes"][0]["major"] == 226
