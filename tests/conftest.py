"""Fixtures shared by every test tier.

Integration tests run the real ``minictr`` as root against the sample busybox
root file system, with private state directories, so they never touch
``/var/lib/minictr`` and never see each other's containers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import MINICTR, REPO, ROOTFS


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: the test creates namespaces and mounts")
    for item in items:
        if "integration" in item.path.parts or "cgroup2" in item.path.parts:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """The sample root file system, built once if missing."""
    if not (ROOTFS / "bin" / "busybox").exists():
        subprocess.run(["sh", str(REPO / "rootfs" / "build-busybox.sh"), str(ROOTFS)], check=True)
    return ROOTFS


@pytest.fixture
def state_dirs(tmp_path, monkeypatch) -> dict[str, str]:
    """Point MINICTR_ROOT and MINICTR_RUN at directories private to the test."""
    root = tmp_path / "state"
    run = tmp_path / "run"
    monkeypatch.setenv("MINICTR_ROOT", str(root))
    monkeypatch.setenv("MINICTR_RUN", str(run))
    return {"root": str(root), "run": str(run)}


@pytest.fixture
def minictr(state_dirs, busybox_rootfs):
    """Run the minictr command line; returns the CompletedProcess (text mode)."""

    def run(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run([*MINICTR, *args], timeout=timeout, **kwargs)

    return run
