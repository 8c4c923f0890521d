"""The lifecycle commands on real containers: run -d, ps, logs, exec, stop ...

Every test runs ``.venv/bin/minictr`` as a subprocess with its own
MINICTR_ROOT and MINICTR_RUN, and the fixture removes whatever a test left
running, even when it fails.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from support import free_subnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINICTR = os.path.join(os.path.dirname(sys.executable), "minictr")
ROOTFS = os.path.join(REPO, "rootfs", "busybox")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not os.path.isdir(ROOTFS), reason="no sample rootfs: run 'make rootfs'"
    ),
]

# A PID 1 that keeps a counter in /tmp/counter, ten times a second.
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done"
# Bridge networking is not what these tests check, and each private state
# root would create its own default bridge and subnet.
NO_NETWORK = ("--network", "none")
TERM_TRAP = "trap 'exit 3' TERM; while true; do sleep 0.1; done"


class Minictr:
    def __init__(self, tmp_path) -> None:
        self.root = str(tmp_path / "root")
        self.env = dict(
            os.environ, MINICTR_ROOT=self.root, MINICTR_RUN=str(tmp_path / "run")
        )

    def __call__(self, *args: str, check: bool = True, **kwargs):
        result = subprocess.run(
            [MINICTR, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"minictr {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def run_d(self, *args: str) -> str:
        return self("run", "-d", *NO_NETWORK, *args).stdout.strip()

    def inspect(self, container: str) -> dict:
        return json.loads(self("inspect", container).stdout)[0]

    def state_file(self, container_id: str) -> dict:
        path = os.path.join(self.root, "containers", container_id, "state.json")
        with open(path) as f:
            return json.load(f)


@pytest.fixture
def minictr(tmp_path):
    tool = Minictr(tmp_path)
    yield tool
    ids = tool("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        tool("rm", "-f", *ids, check=False)
    tool("prune", check=False)


def _wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _cgroup_dirs(document: dict) -> list[str]:
    return list(document["Cgroup"]["Directories"].values())


def test_run_detached_shows_in_ps(minictr):
    container_id = minictr.run_d("--name", "detached-ps", ROOTFS, "sleep", "60")
    assert len(container_id) == 64
    rows = [
        json.loads(line)
        for line in minictr("ps", "--format", "json").stdout.splitlines()
    ]
    assert [row["Names"] for row in rows] == ["detached-ps"]
    assert rows[0]["Status"].startswith("Up ")
    assert _alive(rows[0]["Pid"])
    assert minictr("ps", "-q").stdout.split() == [container_id[:12]]
    assert "detached-ps" in minictr("ps").stdout


def test_ps_hides_exited_without_all(minictr):
    minictr.run_d("--name", "quick", ROOTFS, "true")
    _wait_until(lambda: "Exited (0)" in minictr("ps", "-a").stdout)
    assert "quick" not in minictr("ps").stdout


def test_name_in_use_is_rejected(minictr):
    minictr.run_d("--name", "taken", ROOTFS, "sleep", "60")
    result = minictr("run", "-d", "--name", "taken", ROOTFS, "true", check=False)
    assert result.returncode == 125
    assert "already in use" in result.stderr


def test_logs_keep_streams_and_tail(minictr):
    script = "echo out1; echo err1 >&2; echo out2"
    minictr.run_d("--name", "logs", ROOTFS, "sh", "-c", script)
    assert minictr("wait", "logs").stdout.strip() == "0"
    result = minictr("logs", "logs")
    assert result.stdout == "out1\nout2\n"
    assert result.stderr == "err1\n"
    # --tail counts lines of both streams, whose relative order is not kept.
    tail = minictr("logs", "--tail", "1", "logs")
    assert (tail.stdout + tail.stderr).count("\n") == 1
    stamped = minictr("logs", "-t", "logs").stdout.splitlines()
    assert stamped[0].endswith("Z out1")


def test_logs_follow_until_exit(minictr):
    script = "for i in 1 2 3; do echo line$i; sleep 0.5; done"
    minictr.run_d("--name", "follow", ROOTFS, "sh", "-c", script)
    started = time.monotonic()
    result = minictr("logs", "-f", "follow")
    assert result.stdout == "line1\nline2\nline3\n"
    assert time.monotonic() - started >= 0.9  # it waited for the later lines


def test_exec_joins_every_namespace(minictr):
    minictr.run_d("--name", "ns", ROOTFS, "sleep", "60")
    document = minictr.inspect("ns")
    pid1 = document["State"]["Pid"]
    names = ["cgroup", "ipc", "mnt", "net", "pid", "uts"]
    script = "; ".join(f"readlink /proc/self/ns/{name}" for name in names)
    inside = minictr("exec", "ns", "sh", "-c", script).stdout.split()
    expected = [os.readlink(f"/proc/{pid1}/ns/{name}") for name in names]
    assert inside == expected
    for name in names:
        assert document["Namespaces"][name]["shared"] is False


def test_exec_runs_in_the_cgroup(minictr):
    minictr.run_d("--name", "cg", ROOTFS, "sleep", "60")
    document = minictr.inspect("cg")
    minictr("exec", "-d", "cg", "sleep", "30")
    rows = minictr("top", "cg").stdout.splitlines()[1:]
    exec_pid = next(
        int(r.split()[0]) for r in rows if r.split()[-2:] == ["sleep", "30"]
    )
    with open(f"/proc/{exec_pid}/cgroup") as f:
        assert document["Cgroup"]["Path"] in f.read()
    # Its pid inside the container is small: it is in the PID namespace.
    inner = next(int(r.split()[1]) for r in rows if r.split()[-2:] == ["sleep", "30"])
    assert inner < 100


def test_exec_returns_exit_codes(minictr):
    minictr.run_d("--name", "codes", ROOTFS, "sleep", "60")
    assert minictr("exec", "codes", "sh", "-c", "exit 7", check=False).returncode == 7
    missing = minictr("exec", "codes", "no-such-command", check=False)
    assert missing.returncode == 127
    not_executable = minictr("exec", "codes", "/etc/passwd", check=False)
    assert not_executable.returncode == 126
    unknown = minictr("exec", "no-such-container", "true", check=False)
    assert unknown.returncode == 1


def test_exec_cannot_start_exits_126(minictr):
    # Docker's exit status when the command cannot start: an unknown user,
    # or a working directory that does not exist (exec does not create it).
    minictr.run_d("--name", "refuses", ROOTFS, "sleep", "60")
    user = minictr("exec", "-u", "nosuchuser", "refuses", "true", check=False)
    assert user.returncode == 126
    assert "unable to find user nosuchuser" in user.stderr
    workdir = minictr("exec", "-w", "/nonexist", "refuses", "true", check=False)
    assert workdir.returncode == 126
    assert "working directory /nonexist does not exist" in workdir.stderr
    listed = minictr("exec", "refuses", "ls", "/", check=False)
    assert "nonexist" not in listed.stdout.split()


def test_exec_uses_and_overrides_config(minictr):
    minictr.run_d("--name", "cfg", "-e", "A=1", "-w", "/etc", ROOTFS, "sleep", "60")
    default = minictr("exec", "cfg", "sh", "-c", 'echo "$A $(pwd) $(id -u)"').stdout
    assert default.strip() == "1 /etc 0"
    script = 'echo "$A $(pwd) $(id -u)"'
    override = minictr(
        "exec", "-e", "A=2", "-w", "/tmp", "-u", "1000", "cfg", "sh", "-c", script
    ).stdout
    assert override.strip() == "2 /tmp 1000"


def test_exec_leaves_no_zombies(minictr):
    # Orphans of an exec'd command go to the container's PID 1, as in any
    # runtime; the exec'd processes themselves must be reaped by minictr.
    minictr.run_d("--name", "reap", ROOTFS, "sleep", "60")
    for code in (0, 3, 0):
        result = minictr("exec", "reap", "sh", "-c", f"exit {code}", check=False)
        assert result.returncode == code
    rows = minictr("top", "reap").stdout.splitlines()[1:]
    assert [row.split()[-2:] for row in rows] == [["sleep", "60"]]


def test_exec_stdin_with_interactive(minictr):
    minictr.run_d("--name", "stdin", ROOTFS, "sleep", "60")
    result = minictr("exec", "-i", "stdin", "cat", input="hello\n")
    assert result.stdout == "hello\n"


def test_stop_term_ignored_takes_timeout(minictr):
    minictr.run_d("--name", "ignore", ROOTFS, "sleep", "60")
    started = time.monotonic()
    minictr("stop", "-t", "1", "ignore")
    assert time.monotonic() - started >= 1.0
    assert minictr.inspect("ignore")["State"]["ExitCode"] == 137
    assert "Exited (137)" in minictr("ps", "-a").stdout


def test_stop_term_trapped_is_quick(minictr):
    minictr.run_d("--name", "trap", ROOTFS, "sh", "-c", TERM_TRAP)
    time.sleep(0.3)  # let the shell install its trap
    started = time.monotonic()
    minictr("stop", "-t", "30", "trap")
    assert time.monotonic() - started < 15
    assert minictr.inspect("trap")["State"]["ExitCode"] == 3


def test_stop_uses_stop_signal(minictr):
    script = "trap 'exit 4' USR1; while true; do sleep 0.1; done"
    minictr.run_d("--name", "usr1", "--stop-signal", "USR1", ROOTFS, "sh", "-c", script)
    time.sleep(0.3)
    minictr("stop", "-t", "30", "usr1")
    assert minictr.inspect("usr1")["State"]["ExitCode"] == 4


def test_kill_sends_signal(minictr):
    script = "trap 'exit 5' USR2; while true; do sleep 0.1; done"
    minictr.run_d("--name", "kill", ROOTFS, "sh", "-c", script)
    time.sleep(0.3)
    minictr("kill", "-s", "USR2", "kill")
    assert minictr("wait", "kill").stdout.strip() == "5"
    assert minictr("kill", "kill", check=False).returncode == 1  # not running


def test_kill_defaults_to_sigkill(minictr):
    minictr.run_d("--name", "kill9", ROOTFS, "sleep", "60")
    minictr("kill", "kill9")
    assert minictr("wait", "kill9").stdout.strip() == "137"


def test_pause_freezes_and_unpause_resumes(minictr):
    minictr.run_d("--name", "frozen", ROOTFS, "sh", "-c", COUNTER)

    def counter() -> int:
        return int(minictr("exec", "frozen", "cat", "/tmp/counter").stdout)

    _wait_until(
        lambda: (
            minictr("exec", "frozen", "cat", "/tmp/counter", check=False).returncode
            == 0
        )
    )
    minictr("pause", "frozen")
    assert "(Paused)" in minictr("ps").stdout
    assert minictr("exec", "frozen", "true", check=False).returncode == 1
    minictr("unpause", "frozen")
    before = counter()
    minictr("pause", "frozen")
    frozen_value = counter_while_paused = None
    # exec is refused while paused, so read the counter from the host side.
    upper = minictr.inspect("frozen")["GraphDriver"]["Data"]["UpperDir"]
    with open(os.path.join(upper, "tmp", "counter")) as f:
        frozen_value = int(f.read())
    time.sleep(1.0)
    with open(os.path.join(upper, "tmp", "counter")) as f:
        counter_while_paused = int(f.read())
    assert counter_while_paused == frozen_value
    assert frozen_value >= before
    minictr("unpause", "frozen")
    _wait_until(lambda: counter() > counter_while_paused)


def test_rm_refuses_running_without_force(minictr):
    minictr.run_d("--name", "busy", ROOTFS, "sleep", "60")
    result = minictr("rm", "busy", check=False)
    assert result.returncode == 1
    assert "rm -f" in result.stderr
    assert "busy" in minictr("ps").stdout


def test_rm_force_leaves_nothing(minictr):
    container_id = minictr.run_d("--name", "gone", ROOTFS, "sleep", "60")
    document = minictr.inspect("gone")
    pid = document["State"]["Pid"]
    monitor = document["State"]["MonitorPid"]
    minictr("rm", "-f", "gone")
    assert not _alive(pid)
    assert not _alive(monitor)
    assert not os.path.exists(os.path.join(minictr.root, "containers", container_id))
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)
    assert minictr("ps", "-aq").stdout == ""


def test_rm_accepts_ps_output(minictr):
    for name in ("one", "two", "three"):
        minictr.run_d("--name", name, ROOTFS, "true")
    ids = minictr("ps", "-aq").stdout.split()
    assert len(ids) == 3
    for container in ids:
        minictr("wait", container)
    minictr("rm", *ids)
    assert minictr("ps", "-aq").stdout == ""


def test_kill9_of_monitor_then_prune(minictr):
    container_id = minictr.run_d("--name", "orphan", ROOTFS, "sleep", "60")
    document = minictr.inspect("orphan")
    os.kill(document["State"]["MonitorPid"], signal.SIGKILL)
    _wait_until(lambda: "monitor lost" in minictr("ps").stdout)
    assert minictr("prune").stdout.split() == [container_id]
    assert not _alive(document["State"]["Pid"])
    assert not os.path.exists(os.path.join(minictr.root, "containers", container_id))
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)


def test_unwatched_exit_is_unknown(minictr):
    minictr.run_d("--name", "unwatched", ROOTFS, "sleep", "60")
    document = minictr.inspect("unwatched")
    os.kill(document["State"]["MonitorPid"], signal.SIGKILL)
    os.kill(document["State"]["Pid"], signal.SIGKILL)
    _wait_until(lambda: "Exited (unknown)" in minictr("ps", "-a").stdout)
    assert minictr("ps").stdout.count("\n") == 1  # the header only
    minictr("prune")
    assert minictr("ps", "-aq").stdout == ""


def test_kill9_of_foreground_run_then_prune(minictr):
    process = subprocess.Popen(
        [MINICTR, "run", *NO_NETWORK, "--name", "fg", ROOTFS, "sleep", "60"],
        env=minictr.env,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_until(lambda: "fg" in minictr("ps").stdout)
    finally:
        process.kill()
        process.wait()
    document = minictr.inspect("fg")
    _wait_until(lambda: "monitor lost" in minictr("ps").stdout)
    minictr("prune")
    assert not _alive(document["State"]["Pid"])
    assert minictr("ps", "-aq").stdout == ""
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)


def test_prune_keeps_healthy_containers(minictr):
    running = minictr.run_d("--name", "healthy", ROOTFS, "sleep", "60")
    exited = minictr.run_d("--name", "done", ROOTFS, "true")
    minictr("wait", exited)
    created = minictr(
        "create", *NO_NETWORK, "--name", "made", ROOTFS, "true"
    ).stdout.strip()
    assert minictr("prune").stdout == ""
    assert set(minictr("ps", "-aq", "--no-trunc").stdout.split()) == {
        running,
        exited,
        created,
    }


def test_parallel_run_detached(minictr):
    processes = [
        subprocess.Popen(
            [MINICTR, "run", "-d", *NO_NETWORK, ROOTFS, "sleep", "60"],
            env=minictr.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert len(set(ids)) == 20
    rows = [
        json.loads(line)
        for line in minictr("ps", "--format", "json").stdout.splitlines()
    ]
    assert len(rows) == 20
    assert len({row["Names"] for row in rows}) == 20
    for container_id in ids:
        assert minictr.state_file(container_id)["status"] == "running"


def test_inspect_fields(minictr):
    container_id = minictr.run_d("--name", "look", ROOTFS, "sleep", "60")
    document = minictr.inspect("look")
    assert document["Id"] == container_id
    assert document["Name"] == "look"
    assert document["State"]["Status"] == "running"
    assert document["State"]["Running"] is True
    assert document["State"]["OOMKilled"] is False
    assert document["State"]["StartedAt"].endswith("Z")
    assert document["Path"] == "sleep"
    assert document["Args"] == ["60"]
    assert document["Config"]["process"]["args"] == ["sleep", "60"]
    pid = document["State"]["Pid"]
    assert (
        document["Namespaces"]["pid"]["inode"] == os.stat(f"/proc/{pid}/ns/pid").st_ino
    )
    assert document["Cgroup"]["Path"].endswith(container_id)
    data = document["GraphDriver"]["Data"]
    for key in ("UpperDir", "WorkDir", "MergedDir"):
        assert os.path.isdir(data[key])
    assert data["LowerDir"] == os.path.realpath(ROOTFS)
    assert minictr("inspect", "-f", "{{.State.Pid}}", "look").stdout.strip() == str(pid)


def test_create_start_restart_and_wait(minictr):
    minictr(
        "create", *NO_NETWORK, "--name", "later", ROOTFS, "sh", "-c", "echo ran; exit 2"
    )
    assert "Created" in minictr("ps", "-a").stdout
    minictr("start", "later")
    assert minictr("wait", "later").stdout.strip() == "2"
    minictr("restart", "later")
    assert minictr("wait", "later").stdout.strip() == "2"
    assert minictr("logs", "later").stdout == "ran\nran\n"


def test_start_right_after_wait(minictr):
    # `wait` returns as soon as the exit code is known, while the monitor
    # still tears the container down. A `start` at once must wait for that
    # teardown, so the calls run in one process, without a CLI's start-up time.
    container_id = minictr.run_d("--name", "again", ROOTFS, "sh", "-c", "exit 5")
    script = (
        "import sys\n"
        "from minicontainer import lifecycle\n"
        "for _ in range(3):\n"
        "    print(lifecycle.wait(sys.argv[1]))\n"
        "    lifecycle.start(sys.argv[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, container_id],
        env=minictr.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "5", "5"]
    assert minictr("wait", container_id).stdout.strip() == "5"


def test_auto_remove_with_wait(minictr):
    container_id = minictr.run_d("--rm", ROOTFS, "sh", "-c", "sleep 0.5; exit 4")
    assert minictr("wait", container_id).stdout.strip() == "4"
    _wait_until(
        lambda: (
            not os.path.exists(os.path.join(minictr.root, "containers", container_id))
        )
    )


def _monitor_of_new_container(minictr) -> int:
    """Return the monitor pid of the only container, as soon as it is recorded."""
    containers = os.path.join(minictr.root, "containers")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for state_file in glob.glob(os.path.join(containers, "*", "state.json")):
            try:
                with open(state_file) as f:
                    monitor_pid = json.load(f).get("monitor_pid")
            except (OSError, ValueError):
                continue
            if monitor_pid:
                return monitor_pid
        time.sleep(0.001)
    raise AssertionError("no monitor pid was recorded within 20 s")


def test_monitor_outlives_killed_run_detached(minictr):
    # The monitor reports "started" to the waiting `run -d`. Here that
    # command is killed while the monitor is stopped before its report, so
    # the report goes to a closed pipe. The monitor must keep watching.
    command = "echo started; sleep 60"

    waiter = subprocess.Popen(
        [
            MINICTR,
            "run",
            "-d",
            *NO_NETWORK,
            "--name",
            "orphaned",
            ROOTFS,
            "sh",
            "-c",
            command,
        ],
        env=minictr.env,
        stdout=subprocess.DEVNULL,
    )

    try:
        monitor_pid = _monitor_of_new_container(minictr)
        os.kill(monitor_pid, signal.SIGSTOP)
    finally:
        waiter.kill()
        waiter.wait()
    os.kill(monitor_pid, signal.SIGCONT)
    if waiter.returncode == 0:
        pytest.skip("the monitor reported before it was stopped")

    _wait_until(lambda: "started" in minictr("logs", "orphaned").stdout)
    assert "monitor lost" not in minictr("ps").stdout
    assert _alive(monitor_pid)
    assert minictr.inspect("orphaned")["State"]["Status"] == "running"


def _container_dir(minictr, container_id: str) -> str:
    return os.path.join(minictr.root, "containers", container_id)


def _no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) <= 1, result.stderr


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
def test_rm_force_of_auto_remove_container(minictr, detach):
    name = f"autorm-{'d' if detach else 'fg'}"
    args = ["run", "--rm", *NO_NETWORK, "--name", name, ROOTFS, "sleep", "60"]
    foreground = None
    if detach:
        minictr(*args[:1], "-d", *args[1:])
    else:
        foreground = subprocess.Popen(
            [MINICTR, *args], env=minictr.env, stdout=subprocess.DEVNULL
        )
    try:
        _wait_until(lambda: name in minictr("ps").stdout)
        document = minictr.inspect(name)
        result = minictr("rm", "-f", name, check=False)
        _no_traceback(result)
        assert result.returncode == 0
        assert result.stdout.strip() == name
    finally:
        if foreground is not None:
            foreground.kill()
            foreground.wait()
    assert not _alive(document["State"]["Pid"])
    assert not os.path.exists(_container_dir(minictr, document["Id"]))
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)
    assert minictr("ps", "-aq").stdout == ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def network(minictr, monkeypatch):
    """A user-defined bridge network of this test's state root, removed afterwards."""
    name = f"lc{os.urandom(3).hex()}"
    minictr("network", "create", "--subnet", free_subnet(), name)
    yield name
    ids = minictr("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        minictr("rm", "-f", *ids, check=False)
    minictr("network", "rm", name, check=False)
    monkeypatch.setenv("MINICTR_ROOT", minictr.root)
    from minicontainer.network import firewall

    subprocess.run(
        ["nft", "delete", "table", "ip", firewall.table()],
        check=False,
        capture_output=True,
    )


def _leases(minictr, network: str) -> dict:
    return json.loads(minictr("network", "inspect", network).stdout)[0]["leases"]


def _nft_ruleset() -> str:
    return subprocess.run(
        ["nft", "list", "ruleset"], check=True, capture_output=True, text=True
    ).stdout


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _start_and_lose_monitor(minictr, network: str, port: int) -> tuple[dict, str]:
    """Run a published container on ``network``, then kill -9 its monitor."""
    minictr(
        "run", "-d", "--name", "ml", "--network", network, "-p", f"{port}:80",
        ROOTFS, "sleep", "300",
    )  # fmt: skip
    document = minictr.inspect("ml")
    (lease,) = _leases(minictr, network).values()
    assert f"ctr:{document['Id']}" in _nft_ruleset()
    os.kill(document["State"]["MonitorPid"], signal.SIGKILL)
    _wait_until(lambda: "monitor lost" in minictr("ps").stdout)
    return document, lease["host_ifname"]


def _assert_released(minictr, network: str, document: dict, veth: str) -> None:
    assert not _alive(document["State"]["Pid"])
    assert f"ctr:{document['Id']}" not in _nft_ruleset()
    assert _leases(minictr, network) == {}
    assert not _link_exists(veth)
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)


def test_stop_after_monitor_died_tears_down(minictr, network):
    port = _free_port()
    document, veth = _start_and_lose_monitor(minictr, network, port)
    minictr("stop", "-t", "1", "ml")
    _assert_released(minictr, network, document, veth)
    assert minictr.state_file(document["Id"])["status"] == "exited"
    assert "Exited (unknown)" in minictr("ps", "-a").stdout
    # The record of a stopped container stays, and it starts again on its port.
    assert minictr("prune").stdout == ""
    assert minictr("ps", "-aq").stdout.split() == [document["Id"][:12]]
    minictr("start", "ml")
    assert minictr.inspect("ml")["State"]["Status"] == "running"
    assert f"ctr:{document['Id']}" in _nft_ruleset()


def test_kill_after_monitor_died_tears_down(minictr, network):
    document, veth = _start_and_lose_monitor(minictr, network, _free_port())
    minictr("kill", "ml")
    _assert_released(minictr, network, document, veth)
    assert minictr.inspect("ml")["State"]["Status"] == "exited"


def test_start_after_monitor_and_pid1_died(minictr, network):
    document, _ = _start_and_lose_monitor(minictr, network, _free_port())
    owner = f"ctr:{document['Id']}"
    rules = _nft_ruleset().count(owner)
    os.kill(document["State"]["Pid"], signal.SIGKILL)
    _wait_until(lambda: "Exited (unknown)" in minictr("ps", "-a").stdout)
    # Without the teardown, the stale DNAT rule of the first run blocks the port.
    minictr("start", "ml")
    restarted = minictr.inspect("ml")
    assert restarted["State"]["Status"] == "running"
    assert restarted["State"]["MonitorAlive"] is True
    assert len(_leases(minictr, network)) == 1
    assert _nft_ruleset().count(owner) == rules


def test_wait_after_auto_remove(minictr):
    container_id = minictr.run_d("--rm", "--name", "five", ROOTFS, "sh", "-c", "exit 5")
    _wait_until(lambda: not os.path.exists(_container_dir(minictr, container_id)))
    for reference in (container_id, "five", container_id[:12]):
        result = minictr("wait", reference, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "5"
    missing = minictr("wait", "no-such-container", check=False)
    assert missing.returncode == 1
    assert "no such container" in missing.stderr


def _corrupt_state(minictr, name: str) -> dict:
    minictr.run_d("--name", name, ROOTFS, "sleep", "60")
    document = minictr.inspect(name)
    path = os.path.join(_container_dir(minictr, document["Id"]), "state.json")
    with open(path, "w") as f:
        f.write("{not json")
    return document


def test_unreadable_state_is_shown_and_removed(minictr):
    document = _corrupt_state(minictr, "garbled")
    rows = [
        json.loads(line)
        for line in minictr("ps", "-a", "--format", "json").stdout.splitlines()
    ]
    assert [(row["Names"], row["State"]) for row in rows] == [("garbled", "unknown")]
    assert "Unknown" in minictr("ps", "-a").stdout
    for command in (("inspect", "garbled"), ("rm", "garbled")):
        result = minictr(*command, check=False)
        assert result.returncode == 1
        _no_traceback(result)
        assert "rm -f" in result.stderr
    result = minictr("rm", "-f", "garbled", check=False)
    _no_traceback(result)
    assert result.returncode == 0
    assert not os.path.exists(_container_dir(minictr, document["Id"]))
    _wait_until(lambda: not _alive(document["State"]["Pid"]))
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)


def test_prune_removes_unreadable_state(minictr):
    document = _corrupt_state(minictr, "garbled")
    assert minictr("prune").stdout.split() == [document["Id"]]
    assert minictr("ps", "-aq").stdout == ""
    _wait_until(lambda: not _alive(document["State"]["Pid"]))
    for directory in _cgroup_dirs(document):
        assert not os.path.exists(directory)


def test_removed_containers_leave_no_lock_files(minictr):
    # The lock files of a container go with it, whichever path removed it.
    failed = minictr("run", "-d", *NO_NETWORK, ROOTFS, "no-such-command", check=False)
    assert failed.returncode == 127
    container_id = minictr.run_d("--rm", ROOTFS, "true")
    directory = os.path.join(minictr.root, "containers", container_id)
    _wait_until(lambda: not os.path.exists(directory))
    minictr.run_d("--name", "removed", ROOTFS, "true")
    minictr("rm", "-f", "removed")
    run_root = os.path.dirname(minictr.root) + "/run"
    locks = [
        name for name in os.listdir(run_root) if name.startswith(("start-", "state-"))
    ]
    assert locks == []


def test_inspect_exit_code_is_zero_until_exit(minictr):
    minictr.run_d("--name", "still", ROOTFS, "sleep", "60")
    shown = minictr("inspect", "-f", "{{.State.ExitCode}}", "still")
    assert shown.stdout.strip() == "0"
