"""Registry helpers for the image tests: start, stop, push with skopeo."""

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
