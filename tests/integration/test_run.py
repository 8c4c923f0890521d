"""`minictr run` on a real kernel: namespaces, root, identity, exit codes."""

from __future__ import annotations

import glob
import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import MINICTR, mount_table, read_pty_until_exit

NAMESPACES = ["pid", "mnt", "uts", "ipc", "net", "cgroup"]


def containers(state_dirs) -> list[Path]:
    base = Path(state_dirs["root"]) / "containers"
    return sorted(base.iterdir()) if base.exists() else []


def test_command_is_pid_1(minictr, busybox_rootfs):
    result = minictr("run", "--rm", str(busybox_rootfs), "/bin/sh", "-c", "echo $$")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_namespaces_differ_from_host(minictr, busybox_rootfs):
    script = "for n in %s; do readlink /proc/self/ns/$n; done" % " ".join(NAMESPACES)
    result = minictr("run", "--rm", str(busybox_rootfs), "/bin/sh", "-c", script)
    assert result.returncode == 0, result.stderr
    inside = result.stdout.split()
    assert len(inside) == len(NAMESPACES)
    for name, link in zip(NAMESPACES, inside):
        assert link != os.readlink(f"/proc/self/ns/{name}"), name


def test_proc_shows_only_container_processes(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        "ls /proc | grep -E '^[0-9]+$'",
    )
    assert result.returncode == 0, result.stderr
    pids = [int(p) for p in result.stdout.split()]
    assert 1 in pids
    assert len(pids) <= 3  # sh, ls and grep at most


def test_hostname_defaults_to_short_id(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", str(busybox_rootfs), "/bin/hostname")
    assert result.returncode == 0, result.stderr
    (directory,) = containers(state_dirs)
    assert result.stdout.strip() == directory.name[:12]


def test_hostname_option(minictr, busybox_rootfs):
    result = minictr(
        "run", "--rm", "--hostname", "lab-box", str(busybox_rootfs), "hostname"
    )
    assert result.stdout.strip() == "lab-box"


def test_hostname_too_long_rejected(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", "--rm", "--hostname", "a" * 65, str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert "hostname" in result.stderr
    assert containers(state_dirs) == []


def test_env_and_defaults(minictr, busybox_rootfs, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=yes\n\n")
    result = minictr(
        "run",
        "--rm",
        "-e",
        "GREETING=hello world",
        "--env-file",
        str(env_file),
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        'echo "$GREETING|$FROM_FILE|$HOME|$PATH"',
    )
    assert result.returncode == 0, result.stderr
    greeting, from_file, home, path = result.stdout.strip().split("|")
    assert greeting == "hello world"
    assert from_file == "yes"
    assert home == "/root"
    assert "/bin" in path.split(":")


def test_workdir_created(minictr, busybox_rootfs):
    result = minictr("run", "--rm", "-w", "/srv/app/data", str(busybox_rootfs), "pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/srv/app/data"


def test_user_by_name(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "-u",
        "app",
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME",
    )
    assert result.returncode == 0, result.stderr
    uid, gid, groups, home = result.stdout.split("\n")[:4]
    assert uid == "1000"
    assert gid == "1000"
    assert "100" in groups.split()
    assert home == "/home/app"


def test_user_numeric_without_passwd_entry(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "-u",
        "4321:8765",
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        "id -u; id -g",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4321", "8765"]


def test_unknown_user_rejected(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", "--rm", "-u", "nosuchuser", str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert "nosuchuser" in result.stderr
    assert containers(state_dirs) == []


def test_writes_land_in_upper_layer(minictr, busybox_rootfs, state_dirs):
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    result = minictr(
        "run",
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        f"echo data > /{marker}; rm /etc/group",
    )
    assert result.returncode == 0, result.stderr
    (directory,) = containers(state_dirs)
    assert not (busybox_rootfs / marker).exists()
    assert (busybox_rootfs / "etc" / "group").exists()
    assert (directory / "upper" / marker).read_text() == "data\n"
    whiteout = os.stat(directory / "upper" / "etc" / "group", follow_symlinks=False)
    assert os.major(whiteout.st_rdev) == 0
    assert os.minor(whiteout.st_rdev) == 0


def test_device_nodes(minictr, busybox_rootfs):
    script = "for d in null zero full random urandom tty; do stat -c '%n %F %t %T' /dev/$d; done"
    result = minictr("run", "--rm", str(busybox_rootfs), "/bin/sh", "-c", script)
    assert result.returncode == 0, result.stderr
    nodes = {}
    for line in result.stdout.strip().splitlines():
        name, *kind, major, minor = line.split()
        nodes[name] = (" ".join(kind), int(major, 16), int(minor, 16))
    assert nodes["/dev/null"] == ("character special file", 1, 3)
    assert nodes["/dev/zero"] == ("character special file", 1, 5)
    assert nodes["/dev/full"] == ("character special file", 1, 7)
    assert nodes["/dev/random"] == ("character special file", 1, 8)
    assert nodes["/dev/urandom"] == ("character special file", 1, 9)
    assert nodes["/dev/tty"] == ("character special file", 5, 0)


def test_dev_and_sys_mounts(minictr, busybox_rootfs):
    result = minictr("run", "--rm", str(busybox_rootfs), "cat", "/proc/self/mounts")
    assert result.returncode == 0, result.stderr
    mounts = {line.split()[1]: line.split() for line in result.stdout.splitlines()}
    assert mounts["/"][2] == "overlay"
    assert mounts["/proc"][2] == "proc"
    assert mounts["/dev"][2] == "tmpfs"
    assert mounts["/dev/pts"][2] == "devpts"
    assert mounts["/dev/shm"][2] == "tmpfs"
    assert mounts["/dev/mqueue"][2] == "mqueue"
    assert mounts["/sys"][2] == "sysfs"
    assert "ro" in mounts["/sys"][3].split(",")


def test_loopback_is_up_and_alone(minictr, busybox_rootfs):
    result = minictr(
        "run", "--rm", "--network", "none", str(busybox_rootfs), "ip", "-o", "link"
    )
    assert result.returncode == 0, result.stderr
    links = result.stdout.strip().splitlines()
    assert len(links) == 1
    assert "lo:" in links[0]
    assert "UP" in links[0]


def test_exit_code_is_passed_through(minictr, busybox_rootfs):
    result = minictr("run", "--rm", str(busybox_rootfs), "/bin/sh", "-c", "exit 3")
    assert result.returncode == 3


def test_exit_code_of_signal_is_128_plus_n(state_dirs, busybox_rootfs):
    proc = subprocess.Popen(
        [*MINICTR, "run", "--rm", str(busybox_rootfs), "sleep", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pid = _wait_for_pid1(state_dirs)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == 137


def test_signals_are_forwarded_to_pid_1(state_dirs, busybox_rootfs):
    script = 'trap "exit 42" TERM; while true; do sleep 0.1; done'
    proc = subprocess.Popen(
        [*MINICTR, "run", "--rm", str(busybox_rootfs), "/bin/sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for_pid1(state_dirs)
    time.sleep(0.3)  # let the shell install its trap
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 42


def test_command_not_found_is_127(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", "--rm", str(busybox_rootfs), "no-such-command")
    assert result.returncode == 127
    assert "no-such-command" in result.stderr
    assert result.stderr.count("\n") == 1
    assert containers(state_dirs) == []


def test_command_not_executable_is_126(minictr, busybox_rootfs):
    result = minictr("run", "--rm", str(busybox_rootfs), "/etc/passwd")
    assert result.returncode == 126
    assert "/etc/passwd" in result.stderr


def test_bad_rootfs_leaves_nothing(minictr, state_dirs, tmp_path):
    before = mount_table()
    result = minictr("run", "--rm", str(tmp_path / "missing"), "true")
    assert result.returncode == 125
    assert "missing" in result.stderr
    assert containers(state_dirs) == []
    assert mount_table() == before


def test_bad_option_is_125(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", "--no-such-option", str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert containers(state_dirs) == []


def test_failure_after_reserve_leaves_nothing(minictr, busybox_rootfs, state_dirs):
    before = mount_table()
    result = minictr("run", str(busybox_rootfs), "/no/such/binary")
    assert result.returncode == 127
    assert containers(state_dirs) == []
    assert mount_table() == before


def test_rm_removes_container_directory(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", "--rm", str(busybox_rootfs), "true")
    assert result.returncode == 0
    assert containers(state_dirs) == []


def test_state_records_exit(minictr, busybox_rootfs, state_dirs):
    result = minictr("run", str(busybox_rootfs), "/bin/sh", "-c", "exit 7")
    assert result.returncode == 7
    (directory,) = containers(state_dirs)
    recorded = json.loads((directory / "state.json").read_text())
    assert recorded["status"] == "exited"
    assert recorded["exit_code"] == 7


def test_stdin_empty_without_interactive(minictr, busybox_rootfs):
    result = minictr(
        "run", "--rm", str(busybox_rootfs), "cat", input="should not arrive\n"
    )
    assert result.returncode == 0
    assert result.stdout == ""


def test_stdin_passed_with_interactive(minictr, busybox_rootfs):
    result = minictr(
        "run", "--rm", "-i", str(busybox_rootfs), "cat", input="line one\n"
    )
    assert result.stdout == "line one\n"


def test_debug_narrates_kernel_steps(minictr, busybox_rootfs):
    result = minictr("--debug", "run", "--rm", str(busybox_rootfs), "true")
    assert result.returncode == 0, result.stderr
    narration = result.stderr
    assert "unshare CLONE_NEWNS|" in narration
    assert "CLONE_NEWPID" in narration
    assert "mount overlay on" in narration
    assert "mount proc on" in narration
    assert "pivot_root" in narration
    assert "exec true" in narration


def test_tty_gives_a_terminal(state_dirs, busybox_rootfs):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            *MINICTR,
            "run",
            "--rm",
            "-t",
            str(busybox_rootfs),
            "/bin/sh",
            "-c",
            "test -t 0 && test -t 1 && echo TERMINAL-OK; stty size",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    output = read_pty_until_exit(master, proc)
    assert proc.wait(timeout=30) == 0
    os.close(master)
    assert b"TERMINAL-OK" in output


def _wait_for_pid1(state_dirs, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for directory in containers(state_dirs):
            try:
                recorded = json.loads((directory / "state.json").read_text())
            except (OSError, ValueError):
                continue
            if recorded.get("status") == "running" and recorded.get("pid"):
                return recorded["pid"]
        time.sleep(0.05)
    raise AssertionError("the container did not reach the running state")


def test_add_host_and_dns_without_network(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "192.0.2.53",
        str(busybox_rootfs),
        "cat",
        "/etc/hosts",
        "/etc/resolv.conf",
    )
    assert result.returncode == 0, result.stderr
    assert "10.1.2.3\tdb" in result.stdout
    assert "nameserver 192.0.2.53" in result.stdout


def test_invalid_stop_signal_rejected(minictr, busybox_rootfs, state_dirs):
    result = minictr(
        "run", "--rm", "--stop-signal", "BOGUS", str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert "BOGUS" in result.stderr
    assert containers(state_dirs) == []


def test_rootfs_that_is_a_file_rejected(minictr, tmp_path, state_dirs):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = minictr("run", "--rm", str(not_a_dir), "true")
    assert result.returncode == 125
    assert "is not a directory" in result.stderr


def test_workdir_that_is_a_file_names_it(minictr, busybox_rootfs, state_dirs):
    # PID 1 often exits before the monitor releases it. The loop makes that
    # case likely, because a write to the closed release pipe once hid the error.
    for _ in range(8):
        result = minictr(
            "run",
            "--rm",
            "--network",
            "none",
            "-w",
            "/etc/passwd",
            str(busybox_rootfs),
            "true",
        )
        assert result.returncode == 125, result.stderr
        assert "working directory /etc/passwd is not a directory" in result.stderr
        assert containers(state_dirs) == []


def test_setup_failure_on_bridge_reports_cause(minictr, busybox_rootfs, state_dirs):
    # PID 1 fails while the monitor is attaching its network: the error shown
    # must be PID 1's, not the network's.
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    result = minictr("run", "--rm", "-w", "/etc/passwd", str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert "working directory /etc/passwd" in result.stderr
    assert "veth" not in result.stderr
    assert containers(state_dirs) == []
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert after.count("mcv") == before.count("mcv")


def test_volume_on_etc_keeps_generated_files(minictr, busybox_rootfs, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "box",
        "-v",
        f"{etc}:/etc",
        str(busybox_rootfs),
        "cat",
        "/etc/hostname",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "box"


def test_sigterm_during_setup_leaves_nothing(busybox_rootfs, state_dirs):
    # A SIGTERM (from `timeout`, say) can reach a foreground run while it
    # still sets the container up. It once killed minictr there, and later
    # interrupted the creation of the cgroup, leaving a directory behind. It
    # now waits for PID 1 and is forwarded to it; sleep as PID 1 ignores it.
    base = Path(state_dirs["root"]) / "containers"
    seen: set[str] = set()
    for attempt in range(5):
        process = subprocess.Popen(
            [
                *MINICTR,
                "run",
                "--rm",
                "--network",
                "none",
                str(busybox_rootfs),
                "sleep",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while not list(base.glob("*/state.json")) and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.update(path.parent.name for path in base.glob("*/state.json"))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert containers(state_dirs) == [], f"attempt {attempt}"
    left = [
        path
        for container_id in seen
        for path in glob.glob(f"/sys/fs/cgroup/*/minictr/{container_id}")
    ]
    assert left == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--device", "/dev/null:/proc/x"],
            "creating device node /proc/x in the container failed",
        ),
        (
            ["--security-opt", "seccomp=/nonexistent.json"],
            "give the path of a JSON profile file, or seccomp=unconfined",
        ),
        (
            ["--sysctl", "net.ipv4.no_such_key=1"],
            "unknown --sysctl key net.ipv4.no_such_key",
        ),
        (
            ["--mount", "type=volume,source=/abs/path,target=/x"],
            "/abs/path is a host path, not a volume name; use type=bind",
        ),
    ],
)
def test_bad_option_names_value_and_fix(
    minictr, busybox_rootfs, state_dirs, options, message
):
    result = minictr(
        "run", "--rm", "--network", "none", *options, str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert containers(state_dirs) == []


def test_read_only_etc_volume_error(minictr, busybox_rootfs, state_dirs, tmp_path):
    # The generated /etc files need mount points, which a read-only /etc
    # cannot take.
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{tmp_path}:/etc:ro",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "creating the mount point /etc/hostname in the container failed" in (
        result.stderr
    )
    assert "a read-only mount covers that path" in result.stderr
    assert containers(state_dirs) == []
