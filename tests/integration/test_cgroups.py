"""Cgroup limits on the real kernel, on whatever layout this host has.

On a hybrid host these exercise cgroup v1; tests/cgroup2 runs the same
tests inside a qemu VM with pure cgroup v2. Each test makes its own
``minictr-test-*`` parent cgroup and removes it, even when it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from minicontainer.cgroups import (
    Cgroup,
    detect,
    list_container_cgroups,
    parse_resources,
    remove_orphans,
)
from minicontainer.errors import CgroupError, InvalidArgument

pytestmark = pytest.mark.root

MIB = 1024**2
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def parent():
    """A unique parent cgroup, removed with everything below it afterwards."""
    name = f"minictr-test-{uuid.uuid4().hex[:8]}"
    yield name
    host = detect()
    remove_orphans(set(), name, host)
    hierarchies = [*host.v1, *([host.unified] if host.unified else [])]
    for hierarchy in hierarchies:
        try:
            os.rmdir(os.path.join(hierarchy.mount_point, name))
        except FileNotFoundError:
            pass


@pytest.fixture
def make_cgroup(parent):
    """Create cgroups under the test's parent; destroy them afterwards."""
    created = []

    def make(resources=None):
        group = Cgroup.create(uuid.uuid4().hex[:12], parent, resources or {})
        created.append(group)
        return group

    yield make
    for group in created:
        group.destroy()


def start_in(group: Cgroup, *argv: str, **kwargs) -> subprocess.Popen:
    """Start a process that joins ``group`` before it execs ``argv``."""

    # preexec_fn is unsafe only with threads, and these tests start none.
    def join() -> None:
        group.add_process(os.getpid())

    return subprocess.Popen(list(argv), preexec_fn=join, **kwargs)  # noqa: PLW1509


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_process_joins_every_hierarchy(make_cgroup):
    group = make_cgroup()
    process = start_in(group, "sleep", "30")
    try:
        with open(f"/proc/{process.pid}/cgroup") as file:
            lines = file.read().splitlines()
        paths = {line.split(":", 2)[2] for line in lines}
        # Hierarchies that are active but not mounted (net_cls on some hosts)
        # cannot be joined; every mounted one shows the container's path.
        assert group.path in paths
        assert group.pids() == [process.pid]
        for directory in group.directories:
            with open(os.path.join(directory, "cgroup.procs")) as file:
                assert file.read().split() == [str(process.pid)]
    finally:
        process.kill()
        process.wait()


def test_memory_hog_is_oom_killed(make_cgroup):
    group = make_cgroup(parse_resources({"memory": "32m"}))
    # b"x" * n writes every byte, so the pages are really charged.
    hog = start_in(group, *python("data = b'x' * (256 * 1024 * 1024)"))
    assert hog.wait(timeout=120) == -signal.SIGKILL
    assert group.oom_killed()


def test_no_oom_flag_without_oom(make_cgroup):
    group = make_cgroup(parse_resources({"memory": "64m"}))
    process = start_in(group, *python("data = b'x' * (8 * 1024 * 1024)"))
    assert process.wait(timeout=120) == 0
    assert not group.oom_killed()


def test_pids_limit_stops_forks(make_cgroup):
    group = make_cgroup(parse_resources({"pids_limit": "10"}))
    forker = start_in(
        group,
        *python(
            """
            import os, time
            children = 0
            try:
                while children < 100:
                    if os.fork() == 0:
                        os.close(1)  # so that the test reads end of file
                        time.sleep(120)
                        os._exit(0)
                    children += 1
            except BlockingIOError:
                print(children, "EAGAIN", flush=True)
            """
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    output, _ = forker.communicate(timeout=120)
    assert forker.returncode == 0
    count, reason = output.split()
    assert reason == "EAGAIN"
    # The limit counts the forking process too.
    assert int(count) == 9
    assert group.stats()["pids"]["current"] == 9
    assert group.stats()["pids"]["limit"] == 10


def test_fork_bomb_stops_and_is_destroyed(parent):
    group = Cgroup.create("bomb", parent, parse_resources({"pids_limit": 20}))
    bomb = start_in(
        group,
        "bash",
        "-c",
        "bomb() { bomb | bomb & }; bomb; wait",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: group.stats()["pids"]["current"] >= 15)
        time.sleep(1)
        assert group.stats()["pids"]["current"] <= 20
    finally:
        group.destroy(timeout=60)
        bomb.wait(timeout=30)
    assert not group.exists()
    assert list_container_cgroups(parent) == []


def test_cpus_half_limits_busy_loop(make_cgroup):
    group = make_cgroup(parse_resources({"cpus": "0.5"}))
    started = time.monotonic()
    loop = start_in(
        group,
        *python(
            """
            import time
            end = time.monotonic() + 3
            while time.monotonic() < end:
                pass
            """
        ),
    )
    assert loop.wait(timeout=120) == 0
    elapsed = time.monotonic() - started
    used = group.stats()["cpu"]["usage_ns"] / 1e9
    share = used / elapsed
    # 0.5 CPUs: a busy loop gets about half a CPU. The range is broad because
    # a loaded machine or an emulated one gives the loop less than it may use.
    assert 0.2 < share < 0.75, f"{used:.2f} s of CPU in {elapsed:.2f} s"
    assert throttled_periods(group) > 0


def throttled_periods(group: Cgroup) -> int:
    directory = group.unified_dir() if group.mode == "v2" else group.v1_dir("cpu")
    with open(os.path.join(directory, "cpu.stat")) as file:
        stat = dict(line.split() for line in file)
    return int(stat["nr_throttled"])


def test_cpuset_pins_to_one_cpu(make_cgroup):
    cpu = max(os.sched_getaffinity(0))
    group = make_cgroup(parse_resources({"cpuset_cpus": str(cpu)}))
    process = start_in(group, "sleep", "30")
    try:
        with open(f"/proc/{process.pid}/status") as file:
            status = dict(line.split(":\t", 1) for line in file if ":\t" in line)
        assert status["Cpus_allowed_list"].strip() == str(cpu)
    finally:
        process.kill()
        process.wait()


def test_destroy_kills_and_removes(parent):
    group = Cgroup.create("doomed", parent, parse_resources({"memory": "64m"}))
    process = start_in(group, "sleep", "300")
    directories = group.directories
    assert all(os.path.isdir(d) for d in directories)

    group.destroy()

    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in directories)
    assert not group.exists()


def test_freeze_and_thaw(make_cgroup):
    group = make_cgroup()
    loop = start_in(group, *python("while True: pass"))
    try:
        assert wait_until(lambda: group.stats()["cpu"]["usage_ns"] > 0)
        group.freeze()
        frozen_at = group.stats()["cpu"]["usage_ns"]
        time.sleep(0.5)
        assert group.stats()["cpu"]["usage_ns"] == frozen_at
        group.thaw()
        assert wait_until(lambda: group.stats()["cpu"]["usage_ns"] > frozen_at)
    finally:
        loop.kill()
        loop.wait()


def test_stats_report_usage_and_limits(make_cgroup):
    group = make_cgroup(parse_resources({"memory": "64m", "pids_limit": 5}))
    process = start_in(
        group, *python("import time; data = b'x' * (24 * 1024 * 1024); time.sleep(60)")
    )
    try:
        assert wait_until(lambda: group.stats()["memory"]["usage"] > 24 * MIB)
        stats = group.stats()
        assert stats["memory"]["limit"] == 64 * MIB
        assert stats["pids"] == {"current": 1, "limit": 5}
        assert stats["cpu"]["usage_ns"] > 0
        assert stats["io"]["read_bytes"] is not None
    finally:
        process.kill()
        process.wait()


def test_rejected_write_creates_nothing(parent):
    # The kernel rejects a CPU that does not exist, after the directories are
    # made: create must remove them again.
    with pytest.raises(CgroupError, match="cpuset.cpus"):
        Cgroup.create("bad", parent, {"cpu": {"cpus": "4095"}})
    assert list_container_cgroups(parent) == []


@pytest.mark.parametrize(
    "options",
    [{"memory": "-1m"}, {"cpus": "1000"}, {"pids_limit": -5}, {"cpuset_cpus": "x"}],
)
def test_invalid_values_create_nothing(parent, options):
    with pytest.raises(InvalidArgument):
        Cgroup.create("bad", parent, parse_resources(options))
    assert list_container_cgroups(parent) == []


def test_remove_orphans_keeps_live(parent):
    live = Cgroup.create("live", parent)
    Cgroup.create("crashed", parent)
    assert list_container_cgroups(parent) == ["crashed", "live"]

    assert remove_orphans({"live"}, parent) == ["crashed"]

    assert list_container_cgroups(parent) == ["live"]
    live.destroy()


CONTAINER_VIEW = """
import json, os, sys
from minicontainer import steps, syscalls
from minicontainer.cgroups import Cgroup

group = Cgroup.from_dict(json.loads(sys.argv[1]))
root = sys.argv[2]
group.add_process(os.getpid())
syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP)
syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
os.makedirs(root + "/sys")
syscalls.mount("sysfs", root + "/sys", "sysfs", 0)
steps.run_all(group.container_mount_steps(root))
mounted = root + "/sys/fs/cgroup"
pids_max = mounted + ("/pids.max" if group.mode == "v2" else "/pids/pids.max")
try:
    open(pids_max, "w").write("5")
    writable = True
except OSError:
    writable = False
print(json.dumps({
    "proc_cgroup": open("/proc/self/cgroup").read().splitlines(),
    "pids_max": open(pids_max).read().strip(),
    "writable": writable,
}))
"""


def test_container_sees_own_cgroup_read_only(make_cgroup, tmp_path):
    group = make_cgroup(parse_resources({"pids_limit": 12}))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CONTAINER_VIEW,
            json.dumps(group.to_dict()),
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert {line.split(":", 2)[2] for line in view["proc_cgroup"]} == {"/"}
    assert view["pids_max"] == "12"
    assert not view["writable"]
