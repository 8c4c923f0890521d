"""Pulls made by run, create, the Python API and Compose, from a loopback registry.

Every image here lives in the session's ``docker-registry`` on 127.0.0.1, so
the pulls never leave the machine. The last test proves that the
loopback-only guard stops a pull of a Docker Hub name before any lookup.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from images_layout import rootfs_layer, write_layout
from registry_support import TEST_REPOSITORY, skopeo_push
from support import MINICTR

import minicontainer
from minicontainer.images.registry import LOOPBACK_ONLY_ENV

IMAGE_OUTPUT = "cmd:hello:/data:0"  # what the test image's Entrypoint and Cmd print


def container_dirs(state_dirs) -> list[str]:
    path = Path(state_dirs["root"]) / "containers"
    return sorted(os.listdir(path)) if path.is_dir() else []


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("minictr:")]


@pytest.fixture
def insecure_env(registry, monkeypatch):
    """Reach the session registry over plain HTTP, as a lab's own registry would."""
    monkeypatch.setenv("MINICTR_INSECURE_REGISTRIES", registry.host)


@pytest.fixture(scope="session")
def busybox_layer(busybox_rootfs) -> bytes:
    return rootfs_layer(busybox_rootfs)


def push_version(tmp_path, registry, busybox_layer, repository, version: str) -> str:
    """Push busybox with /version containing ``version`` under tag v; return it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"{version}\n".encode()
        info = tarfile.TarInfo("version")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    layout = tmp_path / f"layout-{version}"
    write_layout(
        layout,
        [busybox_layer, buffer.getvalue()],
        "v",
        config={"Cmd": ["cat", "/version"]},
    )
    return skopeo_push(layout, "v", registry, repository)


# ---------------------------------------------------------------- run, create


def test_run_pulls_missing_image_once(minictr, pushed_image, docker_config):
    first = minictr(
        "run", "--rm", "--network", "none", "--insecure-registry", pushed_image
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == IMAGE_OUTPUT
    assert f"Unable to find image '{pushed_image}' locally" in first.stderr
    assert first.stderr.count("Pull complete") == 3
    assert "Digest: sha256:" in first.stderr

    # Without --insecure-registry a pull would fail on the plain-HTTP registry,
    # so this run succeeds only because it uses the stored image.
    second = minictr("run", "--rm", "--network", "none", pushed_image)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == IMAGE_OUTPUT
    assert "Unable to find image" not in second.stderr
    assert "Pulling" not in second.stderr


def test_run_pull_always_fetches_new_manifest(
    minictr, registry, busybox_layer, insecure_env, docker_config, tmp_path
):
    repository = f"always/{uuid.uuid4().hex[:8]}"
    reference = push_version(tmp_path, registry, busybox_layer, repository, "one")
    first = minictr("run", "--rm", "--network", "none", reference)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "one\n"

    push_version(tmp_path, registry, busybox_layer, repository, "two")
    kept = minictr("run", "--rm", "--network", "none", reference)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == "one\n"
    assert "Pulling" not in kept.stderr

    fresh = minictr("run", "--rm", "--network", "none", "--pull", "always", reference)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == "two\n"
    assert "Unable to find image" not in fresh.stderr
    assert "Digest: sha256:" in fresh.stderr
    assert "Already exists" in fresh.stderr  # the busybox layer is shared


def test_run_pull_never_missing_image(minictr, pushed_image, state_dirs):
    result = minictr("run", "--rm", "--pull", "never", pushed_image, "true")
    assert result.returncode == 125
    expected = (
        f"minictr: image '{pushed_image}' not found locally and --pull is never:"
        f" run 'minictr pull {pushed_image}' first, or set --pull to missing"
    )
    assert error_lines(result.stderr) == [expected]
    assert "Pulling" not in result.stderr
    assert container_dirs(state_dirs) == []


def test_run_pull_always_short_id(minictr, pushed_image, insecure_env, docker_config):
    assert minictr("pull", "-q", pushed_image).returncode == 0
    listed = minictr("images", "-q")
    assert listed.returncode == 0, listed.stderr
    short_id = listed.stdout.split()[0].removeprefix("sha256:")[:12]

    result = minictr("run", "--rm", "--pull", "always", short_id, "true")
    assert result.returncode == 125
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "because it is an image ID" in errors[0]
    assert "Pulling" not in result.stderr


def test_run_unknown_tag_fails_cleanly(
    minictr, registry, insecure_env, docker_config, state_dirs
):
    reference = f"{registry.host}/{TEST_REPOSITORY}:no-such-tag"
    result = minictr("run", "--rm", "--network", "none", reference, "true")
    assert result.returncode == 125
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"minictr: cannot pull image '{reference}':")
    assert "not found in registry" in errors[0]
    assert "Traceback" not in result.stderr
    assert container_dirs(state_dirs) == []


def test_run_unreachable_registry_fails_cleanly(minictr, state_dirs, docker_config):
    from registry_support import free_port

    reference = f"127.0.0.1:{free_port()}/lab/app:1"
    result = minictr("run", "--rm", "--insecure-registry", reference, "true")
    assert result.returncode == 125
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "cannot reach registry" in errors[0]
    assert "check the registry address" in errors[0]
    assert container_dirs(state_dirs) == []


def test_create_pulls_missing_image(minictr, pushed_image, insecure_env, docker_config):
    created = minictr("create", "--network", "none", "--name", "pulled", pushed_image)
    assert created.returncode == 0, created.stderr
    assert "Unable to find image" in created.stderr
    try:
        started = minictr("start", "pulled")
        assert started.returncode == 0, started.stderr
        waited = minictr("wait", "pulled")
        assert waited.stdout.strip() == "0", waited.stderr
        logs = minictr("logs", "pulled")
        assert logs.stdout.strip() == IMAGE_OUTPUT
    finally:
        minictr("rm", "-f", "pulled")


def test_api_run_pull_policy(pushed_image, insecure_env, docker_config, state_dirs):
    with pytest.raises(minicontainer.errors.NotFound, match="--pull is never"):
        minicontainer.run(pushed_image, ["sleep", "60"], network="none", pull="never")
    assert container_dirs(state_dirs) == []

    with minicontainer.run(
        pushed_image, ["sleep 60"], network="none", pull="missing"
    ) as container:
        assert container.status == "running"
        assert container.exec(["cat", "/etc/motd"]).output == "layer three\n"


# ---------------------------------------------------------------- compose


@pytest.fixture
def compose_project(tmp_path, minictr, state_dirs):
    """Write a compose.yaml and run compose commands on it; downs it afterwards."""
    name = f"pull{uuid.uuid4().hex[:8]}"

    def write(text: str) -> None:
        (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))

    def compose(*args: str, timeout: float = 180):
        return minictr("compose", "-p", name, *args, cwd=tmp_path, timeout=timeout)

    compose.write = write
    yield compose
    compose("down", "-v")
    subprocess.run(
        [
            *MINICTR[:1],
            "-c",
            "from minicontainer.network import firewall; firewall.delete_table()",
        ],
        check=False,
    )


def test_compose_up_pulls_missing_image(
    compose_project, pushed_image, insecure_env, docker_config
):
    compose_project.write(
        f"""
        services:
          app:
            image: {pushed_image}
            command: ["sleep 60"]
            stop_signal: SIGKILL
        """
    )
    result = compose_project("up", "-d")
    assert result.returncode == 0, result.stderr
    assert f"app  | Unable to find image '{pushed_image}' locally" in result.stderr
    assert result.stderr.count("Pull complete") == 3
    listed = compose_project("ps")
    assert "app" in listed.stdout
    assert "Up" in listed.stdout


def test_compose_pull_command(
    compose_project, minictr, pushed_image, insecure_env, docker_config
):
    compose_project.write(
        f"""
        services:
          app: {{image: {pushed_image}}}
          pinned: {{image: {pushed_image}, pull_policy: never}}
        """
    )
    result = compose_project("pull")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Pull complete") == 3
    assert "pinned  Skipped: pull_policy is never" in result.stderr
    images = minictr("images", "--format", "json")
    assert pushed_image.rsplit(":", 1)[0] in images.stdout

    again = compose_project("pull", "--policy", "missing", "app")
    assert again.returncode == 0, again.stderr
    assert "Pulling" not in again.stderr
    assert "app  Skipped: image is already stored locally" in again.stderr

    forced = compose_project("pull", "app")
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.count("Already exists") == 3


def test_compose_pull_reports_failed_service(
    compose_project, registry, insecure_env, docker_config
):
    reference = f"{registry.host}/{TEST_REPOSITORY}:no-such-tag"
    compose_project.write(f"services:\n  web: {{image: '{reference}'}}\n")
    result = compose_project("pull")
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"minictr: service web: cannot pull image '{reference}'"
    )
    assert "not found in registry" in errors[0]


def test_compose_pull_plain_http_hints(compose_project, pushed_image, registry):
    # Without MINICTR_INSECURE_REGISTRIES the client speaks HTTPS to the
    # plain-HTTP registry, and the TLS handshake fails.
    compose_project.write(
        f"""
        services:
          web: {{image: '{pushed_image}'}}
          worker: {{image: '{pushed_image}'}}
        """
    )
    result = compose_project("pull")
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 2, result.stderr
    for service, line in zip(["web", "worker"], errors):
        assert line.startswith(f"minictr: service {service}: cannot pull image")
        assert f"add {registry.host} to MINICTR_INSECURE_REGISTRIES" in line
        assert "--insecure-registry" not in line

    up = compose_project("up", "-d", "web")
    assert up.returncode == 1
    errors = error_lines(up.stderr)
    assert len(errors) == 1, up.stderr
    assert f"add {registry.host} to MINICTR_INSECURE_REGISTRIES" in errors[0]
    assert "--insecure-registry" not in errors[0]


def test_compose_never_policy_names_service(compose_project, pushed_image, state_dirs):
    compose_project.write(
        f"""
        services:
          cache:
            image: {pushed_image}
            pull_policy: never
        """
    )
    result = compose_project("up", "-d")
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"minictr: service cache: image '{pushed_image}' not found locally"
    )
    assert "services.cache.pull_policy is never" in errors[0]
    assert container_dirs(state_dirs) == []


# ---------------------------------------------------------------- the guard

# Run minictr with name resolution and connect() replaced, so that even a
# broken guard cannot send anything off the machine.
_OFFLINE_MINICTR = """
import socket, sys

def offline(*args, **kwargs):
    raise OSError("the guard let a request pass")

socket.getaddrinfo = offline
socket.create_connection = offline
socket.socket.connect = offline
from minicontainer.cli import main
sys.argv[0] = "minictr"
main()
"""


def test_guard_stops_docker_hub_pull(state_dirs, busybox_rootfs, tmp_path):
    record = tmp_path / "rejected"
    env = dict(os.environ, **{LOOPBACK_ONLY_ENV: str(record)})
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _OFFLINE_MINICTR,
            "run",
            "--pull",
            "always",
            "alpine:3",
            "true",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 125
    assert LOOPBACK_ONLY_ENV in result.stderr
    assert "the guard let a request pass" not in result.stderr
    assert record.read_text().split() == [
        "https://registry-1.docker.io/v2/library/alpine/manifests/3"
    ]
    assert container_dirs(state_dirs) == []
