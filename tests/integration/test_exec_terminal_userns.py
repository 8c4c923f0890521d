"""exec -t gets a pty of the container's own devpts; exec joins a user namespace."""

from __future__ import annotations

import os
import pty
import subprocess

from support import MINICTR, read_pty_until_exit


def _start(minictr, rootfs, *options):
    started = minictr(
        "run", "-d", "--network", "none", *options, str(rootfs), "sleep", "120"
    )
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def test_exec_tty_is_a_container_pty(minictr, busybox_rootfs, state_dirs):
    container_id = _start(minictr, busybox_rootfs)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*MINICTR, "exec", "-t", container_id, "/bin/sh", "-c", "tty; ls /dev/pts"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        output = read_pty_until_exit(master, proc).decode(errors="replace")
        assert proc.wait(timeout=30) == 0
        lines = output.split()
        assert "/dev/pts/0" in lines
        assert "0" in lines  # the node exists in the container's own devpts
    finally:
        os.close(master)
        minictr("rm", "-f", container_id)


def test_exec_joins_user_namespace(minictr, busybox_rootfs, state_dirs):
    container_id = _start(minictr, busybox_rootfs, "--userns-map", "300000:65536")
    try:
        inside = minictr(
            "exec",
            container_id,
            "/bin/sh",
            "-c",
            "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user",
        )
        assert inside.returncode == 0, inside.stderr
        uid, map_inside, map_host, map_count, user_ns = inside.stdout.split()
        assert uid == "0"
        assert (map_inside, map_host, map_count) == ("0", "300000", "65536")
        pid1 = int(
            minictr("inspect", "-f", "{{.State.Pid}}", container_id).stdout.strip()
        )
        assert user_ns == os.readlink(f"/proc/{pid1}/ns/user")
    finally:
        minictr("rm", "-f", container_id)
