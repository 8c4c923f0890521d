"""Running pulled images: the image config reaches the container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def image(minictr, pushed_image, docker_config) -> str:
    result = minictr("pull", "--insecure-registry", pushed_image)
    assert result.returncode == 0, result.stderr
    return pushed_image


def test_run_image_uses_entrypoint_cmd_env_workdir(minictr, image):
    result = minictr("run", "--rm", image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cmd:hello:/data:0"


def test_run_image_arguments_replace_cmd(minictr, image):
    result = minictr("run", "--rm", image, "echo replaced:$GREETING")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "replaced:hello"


def test_run_image_entrypoint_override_drops_cmd(minictr, image):
    result = minictr("run", "--rm", "--entrypoint", "/bin/echo", image, "plain", "args")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plain args"


def test_run_image_sees_merged_layers(minictr, image):
    script = "cat /etc/motd; ls /data/keep; test -e /data/gone || echo gone-hidden"
    result = minictr("run", "--rm", image, script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["layer", "three", "new", "gone-hidden"]


def test_run_image_writes_stay_in_container(minictr, image, state_dirs):
    first = minictr("run", "--rm", image, "echo changed > /etc/motd; cat /etc/motd")
    assert first.stdout.strip() == "changed"
    second = minictr("run", "--rm", image, "cat /etc/motd")
    assert second.stdout.strip() == "layer three"


def test_rmi_rejected_while_container_exists(minictr, image, state_dirs):
    created = minictr("run", "--name", "uses-image", image, "true")
    assert created.returncode == 0, created.stderr
    try:
        configs = list(Path(state_dirs["root"], "containers").glob("*/config.json"))
        assert [
            json.loads(p.read_text())["image"].startswith("sha256:") for p in configs
        ] == [True]
        refused = minictr("rmi", image)
        assert refused.returncode == 1
        assert "used by container" in refused.stderr
    finally:
        minictr("rm", "-f", "uses-image")
    removed = minictr("rmi", image)
    assert removed.returncode == 0, removed.stderr
