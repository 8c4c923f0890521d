"""Resource limits through `minictr run`, on whatever cgroup layout this host has.

tests/cgroup2 loads these tests too and runs them on pure cgroup v2 in a
qemu VM. Inside a container /sys/fs/cgroup shows the container's own
cgroup, at /sys/fs/cgroup/CONTROLLER/ on v1 and at /sys/fs/cgroup/ on v2,
so the shell snippets read whichever file exists.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from minicontainer.cgroups import layout

pytestmark = pytest.mark.root

# Print "KEY=VALUE" for each line of the first of the files that exists.
READ_KEYED = """
for f in {files}; do
    [ -f "$f" ] || continue
    while read -r key value; do echo "$key=$value"; done < "$f"
    break
done
"""


def keyed(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def inspect(minictr, name: str) -> dict:
    result = minictr("inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_run_memory_hog_exits_137(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        str(busybox_rootfs),
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
        timeout=180,
    )
    assert result.returncode == 137, result.stderr
    state = inspect(minictr, "hog")["State"]
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137


def test_run_without_oom_has_no_flag(minictr, busybox_rootfs):
    result = minictr(
        "run", "--name", "small", "--memory", "64m", str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    assert inspect(minictr, "small")["State"]["OOMKilled"] is False


def test_run_fork_bomb_stops_at_pids_limit(minictr, busybox_rootfs):
    # A shell exits when it cannot fork, and the bomb keeps the cgroup at
    # its limit for a while, so PID 1 only loops on builtins after starting
    # it. The host reads the cgroup's counters.
    script = "f() { f | f & }; f; while :; do :; done"
    started = minictr(
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "20",
        str(busybox_rootfs),
        "sh",
        "-c",
        script,
    )
    assert started.returncode == 0, started.stderr
    try:
        directories = inspect(minictr, "bomb")["Cgroup"]["Directories"].values()
        [directory] = [
            d for d in directories if os.path.exists(os.path.join(d, "pids.max"))
        ]
        with open(os.path.join(directory, "pids.max")) as f:
            assert f.read().strip() == "20"

        def forks_over_limit() -> int:
            with open(os.path.join(directory, "pids.events")) as f:
                return int(dict(line.split() for line in f)["max"])

        deadline = time.monotonic() + 60
        while forks_over_limit() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert forks_over_limit() > 0
        while "can't fork" not in minictr("logs", "bomb").stderr:
            assert time.monotonic() < deadline, "no fork failure was logged"
            time.sleep(0.1)
    finally:
        minictr("rm", "-f", "bomb")


# Print the container's CPU time in nanoseconds: cpu.stat on v2, cpuacct on v1.
CPU_USAGE_NS = """
usage() {
    if [ -f /sys/fs/cgroup/cpu.stat ]; then
        while read -r key value; do
            [ "$key" = usage_usec ] && echo $((value * 1000))
        done < /sys/fs/cgroup/cpu.stat
    else
        read -r value < /sys/fs/cgroup/cpuacct/cpuacct.usage
        echo "$value"
    fi
}
"""


def test_run_cpus_half(minictr, busybox_rootfs):
    seconds = 3
    script = (
        CPU_USAGE_NS
        + "before=$(usage); "
        + f"timeout {seconds} sh -c 'while :; do :; done'; "
        + "echo before=$before after=$(usage)"
    )
    result = minictr(
        "run",
        "--rm",
        "--cpus",
        "0.5",
        str(busybox_rootfs),
        "sh",
        "-c",
        script,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    values = dict(field.split("=") for field in result.stdout.split())
    used = (int(values["after"]) - int(values["before"])) / 1e9
    # Half a CPU for 3 s is 1.5 s. The range is broad because a busy or an
    # emulated machine gives the loop less than the limit allows.
    assert 0.2 * seconds < used < 0.75 * seconds, result.stdout


def test_run_cpuset_pins_to_one_cpu(minictr, busybox_rootfs):
    cpu = max(os.sched_getaffinity(0))
    result = minictr(
        "run",
        "--rm",
        "--cpuset-cpus",
        str(cpu),
        str(busybox_rootfs),
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", str(cpu)]


def test_run_cgroup_gone_after_exit(minictr, busybox_rootfs):
    result = minictr(
        "run", "--name", "brief", "--memory", "64m", str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    directories = inspect(minictr, "brief")["Cgroup"]["Directories"]
    assert directories
    for directory in directories.values():
        assert directory.startswith("/sys/fs/cgroup")
        assert not os.path.exists(directory)


def test_run_sees_own_read_only_cgroup(minictr, busybox_rootfs):
    script = "cat /proc/self/cgroup; mkdir /sys/fs/cgroup/x 2>&1; mkdir /sys/fs/cgroup/pids/x 2>&1; true"
    result = minictr("run", "--rm", str(busybox_rootfs), "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert lines
    assert {line.split(":", 2)[2] for line in lines} == {"/"}
    assert "Read-only file system" in result.stdout


def hierarchy_roots() -> list[str]:
    host = layout.detect()
    return [h.mount_point for h in host.v1] + (
        [host.unified.mount_point] if host.unified else []
    )


@pytest.fixture
def cgroup_parent():
    """A unique parent name; whatever is left of it is removed afterwards."""
    name = f"minictr-test-{uuid.uuid4().hex[:10]}"
    yield name
    for root in hierarchy_roots():
        top = os.path.join(root, name)
        for directory, _, _ in sorted(os.walk(top), reverse=True):
            os.rmdir(directory)


def test_run_removes_the_cgroup_parent_it_created(
    minictr, busybox_rootfs, cgroup_parent
):
    # An absolute parent is a path from each hierarchy's root, as in Docker.
    started = minictr(
        "run",
        "-d",
        "--name",
        "nested",
        "--cgroup-parent",
        f"/{cgroup_parent}/inner",
        str(busybox_rootfs),
        "sleep",
        "300",
    )
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    for root in hierarchy_roots():
        assert os.path.isdir(os.path.join(root, cgroup_parent, "inner", container_id))

    removed = minictr("rm", "-f", "nested", timeout=120)
    assert removed.returncode == 0, removed.stderr
    for root in hierarchy_roots():
        assert not os.path.exists(os.path.join(root, cgroup_parent))


def test_run_keeps_a_cgroup_parent_it_did_not_create(
    minictr, busybox_rootfs, cgroup_parent
):
    roots = hierarchy_roots()
    os.mkdir(os.path.join(roots[0], cgroup_parent))
    result = minictr(
        "run", "--rm", "--cgroup-parent", cgroup_parent, str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    assert os.path.isdir(os.path.join(roots[0], cgroup_parent))
    for root in roots[1:]:
        assert not os.path.exists(os.path.join(root, cgroup_parent))


def test_run_pids_limit_zero_is_unlimited(minictr, busybox_rootfs):
    # /sys/fs/cgroup/pids/ on v1 and hybrid hosts, /sys/fs/cgroup/ on v2.
    result = minictr(
        "run",
        "--rm",
        "--pids-limit",
        "0",
        str(busybox_rootfs),
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "max\n"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--memory", "-5m"),
        ("--memory", "99999999999g"),
        ("--memory", "lots"),
        ("--memory", "1m"),
        ("--cpus", "-1"),
        ("--cpus", "4096"),
        ("--pids-limit", "-7"),
        ("--cpuset-cpus", "4095"),
        ("--blkio-weight", "5"),
    ],
)
def test_run_rejects_bad_values(minictr, busybox_rootfs, state_dirs, option, value):
    result = minictr("run", "--rm", option, value, str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert value in result.stderr
    containers = os.path.join(state_dirs["root"], "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []


def test_run_debug_lists_cgroup_writes(minictr, busybox_rootfs):
    result = minictr(
        "--debug", "run", "--rm", "--pids-limit", "33", str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    assert "write '33' to /sys/fs/cgroup/" in result.stderr
    assert "pids.max" in result.stderr
