"""Real containers under minictr's default isolation and its security options.

Each test starts a container with the real ``minictr run`` and reads what
the kernel reports from inside: /proc/self/status for the capability sets,
no_new_privs and seccomp; errno from small static C probes for denied
system calls and setuid programs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minicontainer.security import capabilities

PROBES = {
    # Prints the errno of keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING),
    # 0 on success. The call reads the caller's own keyring id and changes nothing.
    "keyctl-probe": r"""
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long r = syscall(SYS_keyctl, 0, -3, 0);
    printf("errno=%d\n", r < 0 ? errno : 0);
    return 0;
}
""",
    # Installed setuid root: prints the effective uid it runs with.
    "euid-probe": r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
""",
}


@pytest.fixture(scope="session")
def probe_rootfs(tmp_path_factory, busybox_rootfs) -> Path:
    """A copy of the busybox rootfs with the static C probes in /usr/local/bin."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the static probes (apt-get install gcc)")
    root = tmp_path_factory.mktemp("security") / "rootfs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, source in PROBES.items():
        c_file = root.parent / f"{name}.c"
        c_file.write_text(source)
        subprocess.run(
            ["gcc", "-static", "-O2", "-o", str(bin_dir / name), str(c_file)],
            check=True,
        )
    os.chown(bin_dir / "euid-probe", 0, 0)
    os.chmod(bin_dir / "euid-probe", 0o4755)
    return root


def status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def container_status(minictr, rootfs, *options: str) -> dict[str, str]:
    result = minictr("run", "--rm", *options, str(rootfs), "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    return status_fields(result.stdout)


def host_permitted() -> int:
    with open("/proc/self/status") as f:
        return int(status_fields(f.read())["CapPrm"], 16)


def default_mask() -> int:
    return capabilities.mask(list(capabilities.DEFAULT)) & host_permitted()


def test_default_caps_are_dockers_fourteen(minictr, busybox_rootfs):
    status = container_status(minictr, busybox_rootfs)
    assert int(status["CapBnd"], 16) == default_mask()
    assert int(status["CapPrm"], 16) == default_mask()
    assert int(status["CapEff"], 16) == default_mask()
    assert int(status["CapInh"], 16) == 0
    assert int(status["CapAmb"], 16) == 0


def test_cap_add_and_drop(minictr, busybox_rootfs):
    status = container_status(
        minictr, busybox_rootfs, "--cap-add", "NET_ADMIN", "--cap-drop", "CAP_CHOWN"
    )
    expected = (default_mask() | 1 << 12) & ~1
    assert int(status["CapBnd"], 16) == expected
    assert int(status["CapEff"], 16) == expected


def test_cap_drop_all(minictr, busybox_rootfs):
    status = container_status(minictr, busybox_rootfs, "--cap-drop", "ALL")
    assert int(status["CapBnd"], 16) == 0
    assert int(status["CapEff"], 16) == 0


def test_non_root_user_has_no_effective_caps(minictr, busybox_rootfs):
    status = container_status(minictr, busybox_rootfs, "-u", "1000")
    assert status["Uid"].split()[0] == "1000"
    assert int(status["CapBnd"], 16) == default_mask()
    assert int(status["CapPrm"], 16) == 0
    assert int(status["CapEff"], 16) == 0


def test_non_root_user_keeps_added_cap(minictr, busybox_rootfs):
    status = container_status(
        minictr, busybox_rootfs, "-u", "1000", "--cap-add", "NET_BIND_SERVICE"
    )
    bit = 1 << capabilities.CAPABILITIES["NET_BIND_SERVICE"]
    assert int(status["CapEff"], 16) == bit
    assert int(status["CapAmb"], 16) == bit


def test_privileged_keeps_all_and_no_seccomp(minictr, busybox_rootfs):
    status = container_status(minictr, busybox_rootfs, "--privileged")
    assert int(status["CapEff"], 16) == host_permitted()
    assert status["Seccomp"] == "0"


def test_default_seccomp_is_on(minictr, busybox_rootfs):
    status = container_status(minictr, busybox_rootfs)
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "0"


def test_keyctl_denied_by_default_profile(minictr, probe_rootfs):
    result = minictr("run", "--rm", str(probe_rootfs), "keyctl-probe")
    assert result.stdout.strip() == "errno=1", result.stderr  # EPERM


def test_keyctl_allowed_when_unconfined(minictr, probe_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        str(probe_rootfs),
        "keyctl-probe",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != "errno=1"


def test_unshare_user_namespace_denied_then_unconfined(minictr, busybox_rootfs):
    denied = minictr("run", "--rm", str(busybox_rootfs), "unshare", "-U", "true")
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr
    allowed = minictr(
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        str(busybox_rootfs),
        "unshare",
        "-U",
        "true",
    )
    assert allowed.returncode == 0, allowed.stderr


def test_seccomp_profile_file(minictr, busybox_rootfs, tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ],
    }
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    result = minictr(
        "run",
        "--rm",
        "--security-opt",
        f"seccomp={path}",
        str(busybox_rootfs),
        "mkdir",
        "/tmp/x",
    )
    assert result.returncode != 0
    assert "Permission denied" in result.stderr


def test_masked_paths_read_empty(minictr, busybox_rootfs):
    files = [
        p
        for p in ("/proc/keys", "/proc/timer_list", "/proc/interrupts")
        if os.path.exists(p)
    ]
    if not files:
        pytest.skip("this kernel has none of the masked /proc files")
    script = "; ".join(f"echo {p}=$(wc -c < {p})" for p in files)
    script += "; echo firmware=$(ls /sys/firmware | wc -l)"
    result = minictr("run", "--rm", str(busybox_rootfs), "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    for path in files:
        assert f"{path}=0" in result.stdout
    assert "firmware=0" in result.stdout


def test_privileged_does_not_mask(minictr, busybox_rootfs):
    if not os.path.exists("/proc/interrupts"):
        pytest.skip("this kernel has no /proc/interrupts")
    result = minictr(
        "run",
        "--rm",
        "--privileged",
        str(busybox_rootfs),
        "sh",
        "-c",
        "wc -c < /proc/interrupts",
    )
    assert int(result.stdout.strip()) > 0, result.stderr


def test_proc_sys_is_read_only(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        str(busybox_rootfs),
        "sh",
        "-c",
        "echo example > /proc/sys/kernel/domainname",
    )
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_sysrq_trigger_not_writable(minictr, busybox_rootfs):
    if not os.path.exists("/proc/sysrq-trigger"):
        pytest.skip("this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ off)")
    # "h" only prints help to the kernel log, in case the write got through.
    result = minictr(
        "run",
        "--rm",
        str(busybox_rootfs),
        "sh",
        "-c",
        "echo h > /proc/sysrq-trigger",
    )
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_namespaced_sysctls_applied(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--sysctl",
        "kernel.shmmax=65536",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        str(busybox_rootfs),
        "sh",
        "-c",
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["65536", "1"]


def test_host_sysctl_rejected_before_create(minictr, busybox_rootfs, state_dirs):
    result = minictr(
        "run", "--rm", "--sysctl", "kernel.panic=1", str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert "kernel.panic" in result.stderr
    assert "not a namespaced sysctl" in result.stderr
    containers = Path(state_dirs["root"]) / "containers"
    assert not containers.exists() or not any(containers.iterdir())


def test_ulimit_applied(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--ulimit",
        "nofile=512:1024",
        str(busybox_rootfs),
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["512", "1024"]


def test_setuid_raises_euid_without_no_new_privs(minictr, probe_rootfs):
    result = minictr("run", "--rm", "-u", "1000", str(probe_rootfs), "euid-probe")
    assert result.stdout.strip() == "euid=0", result.stderr


def test_no_new_privs_blocks_setuid(minictr, probe_rootfs):
    result = minictr(
        "run",
        "--rm",
        "-u",
        "1000",
        "--security-opt",
        "no-new-privileges",
        str(probe_rootfs),
        "sh",
        "-c",
        "grep NoNewPrivs /proc/self/status; euid-probe",
    )
    assert result.returncode == 0, result.stderr
    assert "NoNewPrivs:\t1" in result.stdout
    assert "euid=1000" in result.stdout


def test_only_stdio_fds_reach_container(minictr, busybox_rootfs, tmp_path):
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = minictr(
            "run",
            "--rm",
            str(busybox_rootfs),
            "sh",
            "-c",
            "ls /proc/1/fd; true",  # the shell stays PID 1 and ls lists its fds
            pass_fds=[leaked],
        )
    finally:
        os.close(leaked)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["0", "1", "2"]


def test_workdir_through_leaked_fd_rejected(minictr, busybox_rootfs, tmp_path):
    (tmp_path / "host-marker").write_text("host")
    leaked = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = minictr(
            "run",
            "--rm",
            "-w",
            f"/proc/self/fd/{leaked}",
            str(busybox_rootfs),
            "ls",
            pass_fds=[leaked],
        )
    finally:
        os.close(leaked)
    assert "host-marker" not in result.stdout
    assert result.returncode == 125
    # The descriptor is closed before chdir; if it were not, the check of the
    # working directory against the root would reject it.
    assert (
        "outside the container's root" in result.stderr
        or "No such file or directory: /proc/self/fd/" in result.stderr
    )


JOINER = r"""
import os, sys, time
from minicontainer.security import capabilities, hygiene
from minicontainer import syscalls

pid, harden = int(sys.argv[1]), sys.argv[2] == "harden"
if harden:
    hygiene.harden_joining_process()
fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
syscalls.setns(fd, syscalls.CLONE_NEWPID)
child = os.fork()
if child == 0:
    # Drop to the container's capabilities, as an exec'd process does
    # before its exec: the moment the 2019 runc attack used.
    kept = list(capabilities.DEFAULT)
    capabilities.drop_bounding(kept)
    capabilities.set_process_caps(kept, 0, [])
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.waitpid(child, 0)
"""

# Finds the joining process by its command line and tries to read its exe.
# The pattern joiner-[m]arker keeps the script from matching its own shell.
FIND_JOINER = (
    "for i in $(seq 300); do"
    " for d in /proc/[0-9]*; do"
    "  if grep -q joiner-[m]arker $d/cmdline 2>/dev/null; then"
    "   if cat $d/exe > /dev/null 2>&1; then echo OPENED; else echo DENIED; fi;"
    "   exit 0;"
    "  fi;"
    " done; sleep 0.1;"
    "done; echo NOT-FOUND"
)


def _container_pid(state_root: str, deadline: float) -> int:
    containers = Path(state_root) / "containers"
    while time.monotonic() < deadline:
        for state_file in containers.glob("*/state.json"):
            try:
                pid = json.loads(state_file.read_text()).get("pid")
            except ValueError:
                continue
            if pid:
                return pid
        time.sleep(0.05)
    raise AssertionError("the container did not start")


def _exe_access_from_container(busybox_rootfs, state_dirs, harden: bool) -> str:
    env = dict(
        os.environ, MINICTR_ROOT=state_dirs["root"], MINICTR_RUN=state_dirs["run"]
    )
    container = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minicontainer",
            "run",
            "--rm",
            str(busybox_rootfs),
            "sh",
            "-c",
            FIND_JOINER,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    joiner = None
    try:
        pid = _container_pid(state_dirs["root"], time.monotonic() + 30)
        joiner = subprocess.Popen(
            [
                sys.executable,
                "-c",
                JOINER,
                str(pid),
                "harden" if harden else "plain",
                "joiner-marker",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, err = container.communicate(timeout=60)
        assert container.returncode == 0, err
        return out.strip()
    finally:
        if container.poll() is None:
            container.kill()
            container.wait()
        if joiner is not None:
            for process in _children(joiner.pid) + [joiner.pid]:
                try:
                    os.kill(process, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            joiner.wait()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_userns_root_owns_what_minictr_creates(minictr, busybox_rootfs, state_dirs):
    # The working directory, an empty named volume, an anonymous volume filled
    # from the image, and a tmpfs all belong to root inside, so it can write.
    script = (
        "stat -c '%u' /work/dir /named /etc /scratch;"
        " touch /work/dir/a /named/a /etc/a /scratch/a && echo wrote"
    )
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--userns-map",
        "100000:65536",
        "-w",
        "/work/dir",
        "-v",
        "userns-named:/named",
        "-v",
        "/etc",
        "--tmpfs",
        "/scratch:mode=755",
        str(busybox_rootfs),
        "sh",
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "0", "0", "wrote"]
    data = Path(state_dirs["root"]) / "volumes" / "userns-named" / "_data"
    assert data.stat().st_uid == 100000
    assert (data / "a").stat().st_uid == 100000
    removed = minictr("volume", "rm", "userns-named")
    assert removed.returncode == 0, removed.stderr


def test_joining_process_exe_readable_without_hardening(busybox_rootfs, state_dirs):
    # The control case: it shows the attack works, so the next test means something.
    assert _exe_access_from_container(busybox_rootfs, state_dirs, False) == "OPENED"


def test_joining_process_exe_hidden_when_hardened(busybox_rootfs, state_dirs):
    assert _exe_access_from_container(busybox_rootfs, state_dirs, True) == "DENIED"


@pytest.mark.parametrize(
    ("idmap", "method"), [("on", "id-mapped mount"), ("off", "shifted copy")]
)
def test_userns_root_is_unprivileged_on_host(
    minictr, busybox_rootfs, state_dirs, monkeypatch, idmap, method
):
    # MINICTR_IDMAP=off forces the copy that hosts without id-mapped mounts use.
    monkeypatch.setenv("MINICTR_IDMAP", idmap)
    result = minictr(
        "run",
        "--network",
        "none",
        "--userns-map",
        "100000:65536",
        str(busybox_rootfs),
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /made-inside; stat -c %u /etc/passwd",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == "0"  # the image's root-owned files are root's inside
    [container_dir] = (Path(state_dirs["root"]) / "containers").iterdir()
    made = container_dir / "upper" / "made-inside"
    assert made.stat().st_uid == 100000
    state = json.loads((container_dir / "state.json").read_text())
    assert state["uid_map"] == [[0, 100000, 65536]]
    assert state["userns_layers"] == [method]
    copies = Path(state_dirs["root"]) / "userns"
    assert copies.exists() == (method == "shifted copy")
    minictr("rm", container_dir.name)


def test_profile_blocking_setresuid_is_named(minictr, busybox_rootfs, tmp_path):
    # Without no_new_privs the filter applies before the switch to the user.
    profile = tmp_path / "no-setresuid.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["setresuid"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        f"seccomp={profile}",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "the seccomp profile may block setgroups, setresgid, setresuid" in (
        result.stderr
    )
