"""Constants and helpers that test modules import (conftest.py is not importable
by name once several conftest files exist)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "rootfs" / "busybox"
MINICTR = [sys.executable, "-m", "minicontainer"]


def mount_table() -> list[str]:
    """Return the mount points of this process's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def read_pty_until_exit(master: int, proc, timeout: float = 30) -> bytes:
    """Return what ``proc`` wrote to the pty whose master side is ``master``.

    Reading stops when every holder of the slave side has closed it, when
    ``proc`` has exited and nothing more arrives, or after ``timeout`` seconds.
    """
    import os
    import select
    import time

    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break  # EIO: the slave side is closed
        if not chunk:
            break
        output += chunk
    return output


def free_subnet() -> str:
    """Return a /24 in 10.200.0.0-10.250.255.0 that no host route covers yet."""
    routes = subprocess.run(
        ["ip", "-4", "route"], check=True, capture_output=True, text=True
    ).stdout
    for _ in range(100):
        candidate = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if f"{candidate}." not in routes:
            return f"{candidate}.0/24"
    raise AssertionError("no free test subnet")
