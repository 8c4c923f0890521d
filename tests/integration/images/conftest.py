"""Fixtures for the image tests: local registries and a pushed test image.

The registries are Debian's ``docker-registry`` (the reference distribution
server) listening on 127.0.0.1 on a free port, with storage in a temporary
directory. One allows anonymous access, the other requires HTTP basic auth
from an htpasswd file. Images reach them through ``skopeo copy``, so minictr
pulls what a real client pushed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from images_layout import changes_layer, deletions_layer, rootfs_layer, write_layout

REGISTRY_USER = "student"
REGISTRY_PASSWORD = "s3cret-pass"
TEST_REPOSITORY = "course/busybox"
TEST_TAG = "1.0"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    credentials: tuple[str, str] | None


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed: apt-get install the package that has it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(host: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # 401 from the authenticated one: it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry on {host} did not answer within 30 s")


def start_registry(
    base: Path, htpasswd: Path | None, extra_config: list[str] | None = None
) -> tuple[subprocess.Popen, Registry]:
    """Start docker-registry on a free loopback port; the caller stops it."""
    _require("docker-registry")
    port = free_port()
    storage = base / "storage"
    storage.mkdir(parents=True)
    config = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}'}}",
    ]
    if htpasswd is not None:
        config.append(f"auth: {{htpasswd: {{realm: minictr-test, path: {htpasswd}}}}}")
    config += extra_config or []
    config_path = base / "config.yml"
    config_path.write_text("\n".join(config) + "\n")
    log = base / "registry.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    host = f"127.0.0.1:{port}"
    try:
        _wait_until_serving(host, process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    credentials = (REGISTRY_USER, REGISTRY_PASSWORD) if htpasswd else None
    return process, Registry(host, storage, credentials)


def stop_registry(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def skopeo_push(layout: Path, tag: str, server: Registry, repository: str) -> str:
    """Push ``layout:tag`` to ``server``; returns the pushed reference."""
    _require("skopeo")
    destination = f"{server.host}/{repository}:{tag}"
    command = [
        "skopeo",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"oci:{layout}:{tag}",
        f"docker://{destination}",
    ]
    if server.credentials:
        command[2:2] = ["--dest-creds", ":".join(server.credentials)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return destination


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
