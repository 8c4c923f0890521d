"""Device nodes and device rules on the real kernel, on both cgroup layouts.

The rules are checked by opening nodes: a node made with mknod inside the
container for numbers nobody allowed fails to open with EPERM, while an
allowed one opens. /dev/kmsg (1:11, not in the standard list) serves as the
test device, opened write-only, which the kernel allows without a
capability (only readers need CAP_SYSLOG), so EPERM can come only from the
device rules. Each layout is also tested alone, on a cgroup the test
creates: the v1 devices hierarchy, and the cgroup2 hierarchy with the BPF
device program.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass

import pytest

from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.devices import apply_rules, bpf
from minicontainer.devices.rules import STANDARD_RULES, Rule

KMSG = "/dev/kmsg"
KMSG_MAJOR, KMSG_MINOR = 1, 11
V1_DEVICES = "/sys/fs/cgroup/devices"
# Opens the node write-only and writes nothing, so no message reaches the log.
OPEN_FOR_WRITE = "exec 3>{path} && echo opened"


def unified_mount() -> str | None:
    with open("/proc/self/mountinfo") as file:
        for line in file:
            before, _, after = line.partition(" - ")
            if after.split()[0] == "cgroup2":
                return before.split()[4]
    return None


needs_kmsg = pytest.mark.skipif(
    not os.path.exists(KMSG), reason="the host has no /dev/kmsg to pass in"
)


def shell(minictr, rootfs, *options: str, script: str):
    return minictr(
        "run",
        "--rm",
        "--network",
        "none",
        *options,
        str(rootfs),
        "/bin/sh",
        "-c",
        script,
    )


# ---------------------------------------------------- through minictr run


def test_device_node_numbers_inside(minictr, busybox_rootfs):
    result = shell(
        minictr,
        busybox_rootfs,
        "--device",
        "/dev/null:/dev/mynull:rw",
        script="stat -c '%F %t %T' /dev/mynull; echo data > /dev/mynull && echo written",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "character special file 1 3"
    assert lines[1] == "written"


def test_unlisted_device_open_denied(minictr, busybox_rootfs):
    open_it = OPEN_FOR_WRITE.format(path="/tmp/kmsg")
    result = shell(
        minictr,
        busybox_rootfs,
        script=f"mknod /tmp/kmsg c {KMSG_MAJOR} {KMSG_MINOR} && echo made; {open_it}",
    )
    assert "made" in result.stdout
    assert "opened" not in result.stdout
    assert "Operation not permitted" in result.stderr


@needs_kmsg
def test_given_device_opens(minictr, busybox_rootfs):
    result = shell(
        minictr,
        busybox_rootfs,
        "--device",
        f"{KMSG}:/dev/logger:w",
        script=OPEN_FOR_WRITE.format(path="/dev/logger"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "opened"


@needs_kmsg
def test_device_permission_read_only(minictr, busybox_rootfs):
    result = shell(
        minictr,
        busybox_rootfs,
        "--device",
        f"{KMSG}:/dev/kmsg:r",
        script=OPEN_FOR_WRITE.format(path="/dev/kmsg"),
    )
    assert "opened" not in result.stdout
    assert "Operation not permitted" in result.stderr


def test_cgroup_rule_allows_device(minictr, busybox_rootfs):
    script = f"mknod /tmp/kmsg c {KMSG_MAJOR} {KMSG_MINOR} && " + OPEN_FOR_WRITE.format(
        path="/tmp/kmsg"
    )
    rule = f"c {KMSG_MAJOR}:* w"
    result = shell(minictr, busybox_rootfs, "--device-cgroup-rule", rule, script=script)
    assert result.stdout.strip() == "opened", result.stderr


def test_missing_device_rejected_before_start(minictr, busybox_rootfs, state_dirs):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        "/dev/minictr-missing",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "/dev/minictr-missing" in result.stderr
    containers = os.path.join(state_dirs["root"], "containers")
    assert not os.path.isdir(containers) or not os.listdir(containers)


def test_bad_cgroup_rule_rejected(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--device-cgroup-rule",
        "c 1:3 rx",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "'c 1:3 rx'" in result.stderr


def test_debug_narrates_rules(minictr, busybox_rootfs):
    result = minictr(
        "--debug",
        "run",
        "--rm",
        "--network",
        "none",
        "--device-cgroup-rule",
        "c 10:200 rw",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 0, result.stderr
    assert "device rule: allow c 10:200 rw" in result.stderr
    assert "device rule: allow c 1:3 rwm" in result.stderr


# ---------------------------------------------------- each layout alone


@dataclass
class OneLayoutCgroup:
    """A cgroup with only a v1 devices directory or only a cgroup2 one."""

    devices: str | None = None
    unified: str | None = None

    def v1_dir(self, controller: str) -> str | None:
        return self.devices if controller == "devices" else None

    def unified_dir(self) -> str | None:
        return self.unified


@pytest.fixture
def own_cgroup():
    """Make cgroup directories named for the test; remove them afterwards."""
    made: list[str] = []

    def make(mount_point: str) -> str:
        path = os.path.join(mount_point, f"minictr-test-{uuid.uuid4().hex[:12]}")
        os.mkdir(path)
        made.append(path)
        return path

    yield make
    for path in reversed(made):
        os.rmdir(path)


def open_inside(cgroup_dirs: list[str], tmp_path, major: int, minor: int) -> str:
    """Join the cgroups in a shell, mknod a node and open it; return stdout+stderr.

    The node is made on a tmpfs mounted in a private mount namespace, because
    the test's temporary directory may be on a nodev mount (as in the VM).
    """
    directory = tmp_path / f"dev-{major}-{minor}"
    directory.mkdir(exist_ok=True)
    node = directory / "node"
    joins = " ".join(f"echo $$ > {d}/cgroup.procs;" for d in cgroup_dirs)
    inner = (
        f"mount -t tmpfs tmpfs {directory} && mknod {node} c {major} {minor}"
        f" && {OPEN_FOR_WRITE.format(path=node)}"
    )
    result = subprocess.run(
        ["sh", "-c", f"{joins} exec unshare -m sh -c '{inner}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


def container_config(**devices) -> ContainerConfig:
    return ContainerConfig(
        id=uuid.uuid4().hex * 2,
        name="t",
        process=ProcessConfig(args=["true"]),
        devices=devices,
    )


def kmsg_config(with_kmsg: bool) -> ContainerConfig:
    rules = list(STANDARD_RULES)
    if with_kmsg:
        rules.append(Rule("c", KMSG_MAJOR, KMSG_MINOR, "w"))
    return container_config(rules=[rule.to_dict() for rule in rules])


def test_bpf_rule_for_every_device_loads():
    # A rule without conditions ends the program; anything after it would be
    # unreachable, which the verifier rejects.
    fd = bpf.load(list(STANDARD_RULES) + [Rule("a", None, None, "rwm")])
    os.close(fd)


@pytest.mark.skipif(unified_mount() is None, reason="no cgroup2 hierarchy is mounted")
def test_bpf_program_alone(own_cgroup, tmp_path):
    directory = own_cgroup(unified_mount())
    apply_rules(kmsg_config(with_kmsg=True), OneLayoutCgroup(unified=directory))
    assert len(bpf.attached_program_ids(directory)) == 1
    output = open_inside([directory], tmp_path, KMSG_MAJOR, KMSG_MINOR)
    assert "opened" in output, output

    # The same open fails once the program no longer allows the device.
    assert bpf.detach_all(directory) == 1
    apply_rules(kmsg_config(with_kmsg=False), OneLayoutCgroup(unified=directory))
    output = open_inside([directory], tmp_path, KMSG_MAJOR, KMSG_MINOR)
    assert "Operation not permitted" in output
    assert "opened" not in output

    assert bpf.detach_all(directory) == 1
    assert bpf.attached_program_ids(directory) == []


@pytest.mark.skipif(
    not os.path.exists(os.path.join(V1_DEVICES, "devices.allow")),
    reason="the cgroup v1 devices controller is not mounted",
)
def test_v1_devices_alone(own_cgroup, tmp_path):
    directory = own_cgroup(V1_DEVICES)
    apply_rules(kmsg_config(with_kmsg=True), OneLayoutCgroup(devices=directory))
    with open(os.path.join(directory, "devices.list")) as file:
        listed = file.read().split("\n")
    assert f"c {KMSG_MAJOR}:{KMSG_MINOR} w" in listed
    assert "a *:* rwm" not in listed
    output = open_inside([directory], tmp_path, KMSG_MAJOR, KMSG_MINOR)
    assert "opened" in output, output

    # Applying the rules again starts from deny-all, so the device is gone.
    apply_rules(kmsg_config(with_kmsg=False), OneLayoutCgroup(devices=directory))
    output = open_inside([directory], tmp_path, KMSG_MAJOR, KMSG_MINOR)
    assert "Operation not permitted" in output
    assert "opened" not in output


@pytest.mark.skipif(unified_mount() is None, reason="no cgroup2 hierarchy is mounted")
def test_privileged_attaches_no_program(own_cgroup):
    directory = own_cgroup(unified_mount())
    config = container_config()
    config.privileged = True
    apply_rules(config, OneLayoutCgroup(unified=directory))
    assert bpf.attached_program_ids(directory) == []


def test_privileged_gets_host_devices(minictr, busybox_rootfs):
    if not os.path.exists(KMSG):
        pytest.skip("the host has no /dev/kmsg")
    result = shell(
        minictr,
        busybox_rootfs,
        "--privileged",
        script="stat -c '%t %T' /dev/kmsg; head -c 1 /dev/kmsg > /dev/null && echo read",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1 b", "read"]
