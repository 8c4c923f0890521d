"""Pytest fixtures that give a test a running container and remove it afterwards.

Installed as the ``minicontainer`` plugin (a ``pytest11`` entry point), so
any project that has minicontainer installed can use::

    def test_hostname(minictr_container):
        result = minictr_container.exec(["hostname"])
        assert result.output.strip() == minictr_container.id[:12]

    def test_memory_limit(minictr_run):
        container = minictr_run(["sleep", "60"], memory="64m")
        ...

The root file system comes from the ``minictr_rootfs`` ini option or the
``MINICTR_TEST_ROOTFS`` environment variable, relative to pytest's root
directory (default ``rootfs/busybox``). The fixtures need root, and skip
the test with a reason otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

DEFAULT_ROOTFS = "rootfs/busybox"
IDLE_COMMAND = ["sleep", "3600"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "minictr_rootfs",
        "root file system (directory or image) for the minictr_* fixtures",
        default="",
    )


@pytest.fixture
def minictr_rootfs(request: pytest.FixtureRequest) -> str:
    """The root file system the container fixtures start from."""
    value = (
        os.environ.get("MINICTR_TEST_ROOTFS")
        or request.config.getini("minictr_rootfs")
        or DEFAULT_ROOTFS
    )
    if os.path.isabs(value) or not os.path.exists(
        os.path.join(str(request.config.rootpath), value)
    ):
        return value
    return os.path.join(str(request.config.rootpath), value)


@pytest.fixture
def minictr_run(minictr_rootfs: str) -> Iterator[Callable[..., Any]]:
    """Return a function that starts containers; all are removed after the test.

    It takes the command (default: an idle ``sleep``) and the settings of
    ``minicontainer.api.run``.
    """
    if os.geteuid() != 0:
        pytest.skip("minicontainer fixtures need root")
    from minicontainer import api

    started: list[api.Container] = []

    def start(command: list[str] | None = None, **settings: Any) -> api.Container:
        container = api.run(minictr_rootfs, command or IDLE_COMMAND, **settings)
        started.append(container)
        return container

    yield start
    for container in reversed(started):
        container.remove(force=True)


@pytest.fixture
def minictr_container(minictr_run: Callable[..., Any]) -> Any:
    """A running container with an idle PID 1, removed after the test."""
    return minictr_run()
