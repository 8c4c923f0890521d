"""Fixtures for the image tests: local registries and a pushed test image.

The registries are Debian's ``docker-registry`` (the reference distribution
server) listening on 127.0.0.1 on a free port, with storage in a temporary
directory. One allows anonymous access, the other requires HTTP basic auth
from an htpasswd file. Images reach them through ``skopeo copy``, so minictr
pulls what a real client pushed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from images_layout import changes_layer, deletions_layer, rootfs_layer, write_layout
from registry_support import (
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TEST_REPOSITORY,
    TEST_TAG,
    _require,
    skopeo_push,
    start_registry,
    stop_registry,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """An anonymous registry on loopback."""
    process, server = start_registry(tmp_path_factory.mktemp("registry"), None)
    yield server
    stop_registry(process)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory):
    """A registry on loopback that requires HTTP basic auth."""
    _require("htpasswd")
    base = tmp_path_factory.mktemp("auth-registry")
    htpasswd = base / "htpasswd"
    output = subprocess.run(
        ["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    htpasswd.write_text(output)
    process, server = start_registry(base, htpasswd)
    yield server
    stop_registry(process)


@pytest.fixture(scope="session")
def test_layout(tmp_path_factory, busybox_rootfs) -> Path:
    """The three-layer test image as an OCI image layout directory."""
    layout = tmp_path_factory.mktemp("layout") / "oci"
    layers = [rootfs_layer(busybox_rootfs), changes_layer(), deletions_layer()]
    write_layout(layout, layers, TEST_TAG)
    return layout


@pytest.fixture(scope="session")
def pushed_image(registry, test_layout) -> str:
    """The test image in the anonymous registry; returns its reference."""
    return skopeo_push(test_layout, TEST_TAG, registry, TEST_REPOSITORY)


@pytest.fixture(scope="session")
def pushed_auth_image(auth_registry, test_layout) -> str:
    """The test image in the authenticated registry; returns its reference."""
    return skopeo_push(test_layout, TEST_TAG, auth_registry, TEST_REPOSITORY)


@pytest.fixture
def docker_config(tmp_path, monkeypatch) -> Path:
    """A private, empty Docker config directory, so no real login is read."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory
