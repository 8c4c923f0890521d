"""Constants and helpers that test modules import (conftest.py is not importable
by name once several conftest files exist)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "rootfs" / "busybox"
MINICTR = [sys.executable, "-m", "minicontainer"]


def mount_table() -> list[str]:
    """Return the mount points of this process's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]
