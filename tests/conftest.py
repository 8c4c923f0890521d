"""Fixtures shared by every test tier.

Integration tests run the real ``minictr`` as root against the sample busybox
root file system, with private state directories, so they never touch
``/var/lib/minictr`` and never see each other's containers.

No test may send a registry request off the machine: a session-wide fixture
sets the registry client's loopback-only test hook, and every test fails if
a request to another host was rejected while it ran, even one made by a
``minictr`` subprocess that reported the error some other way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import MINICTR, REPO, ROOTFS

from minicontainer.images.registry import LOOPBACK_ONLY_ENV


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: the test creates namespaces and mounts")
    for item in items:
        if "integration" in item.path.parts or "cgroup2" in item.path.parts:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def loopback_only_record(tmp_path_factory) -> Path:
    """The file where the registry client records requests it rejected.

    Setting ``MINICTR_TEST_LOOPBACK_ONLY`` here, for the whole session, makes
    every registry request to a host other than loopback fail, in this process
    and in every ``minictr`` it starts.
    """
    record = tmp_path_factory.mktemp("loopback-only") / "rejected-urls"
    record.touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(LOOPBACK_ONLY_ENV, str(record))
        yield record


@pytest.fixture(autouse=True)
def no_registry_request_off_loopback(loopback_only_record: Path):
    """Fail the test if a registry request to a non-loopback host was attempted."""
    start = loopback_only_record.stat().st_size
    yield
    with open(loopback_only_record, encoding="utf-8") as record:
        record.seek(start)
        rejected = record.read().split()
    if rejected:
        pytest.fail(
            "the test tried to reach a registry that is not on loopback: "
            + ", ".join(rejected)
        )


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """The sample root file system, built once if missing."""
    if not (ROOTFS / "bin" / "busybox").exists():
        subprocess.run(
            ["sh", str(REPO / "rootfs" / "build-busybox.sh"), str(ROOTFS)], check=True
        )
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
