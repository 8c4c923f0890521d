"""Image layers under --userns, and images with many layers.

mount(2) copies one page of option text, so about 40 layers under the
state root overflow it. The overlay is mounted from a directory of short
names instead. These tests run containers on an image of 70 layers, and
on an image whose layers delete files, with both ways of mapping owners.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from images_layout import changes_layer, deletions_layer, rootfs_layer, write_layout

LAYER_COUNT = 70


def file_layer(number: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"{number}\n".encode()
        info = tarfile.TarInfo(f"layers/{number:03d}")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def many_layers_archive(tmp_path_factory, busybox_rootfs) -> Path:
    directory = tmp_path_factory.mktemp("many-layers")
    layout = directory / "layout"
    layers = [rootfs_layer(busybox_rootfs)]
    layers += [file_layer(number) for number in range(1, LAYER_COUNT)]
    write_layout(layout, layers, "tall", config={"Cmd": ["sh"]})
    archive = directory / "tall.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    return archive


@pytest.fixture
def tall_image(minictr, many_layers_archive, docker_config) -> str:
    result = minictr("load", "-i", str(many_layers_archive))
    assert result.returncode == 0, result.stderr
    tagged = minictr("tag", result.stdout.split()[-1], "tall:latest")
    assert tagged.returncode == 0, tagged.stderr
    return "tall:latest"


def test_run_image_with_70_layers(minictr, tall_image):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        tall_image,
        "sh",
        "-c",
        "ls /layers | wc -l; cat /layers/069",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(LAYER_COUNT - 1), "69"]


def test_userns_run_maps_every_layer(minictr, tall_image, state_dirs):
    result = minictr(
        "run",
        "--name",
        "tall-userns",
        "--network",
        "none",
        "--userns-map",
        "100000:65536",
        tall_image,
        "sh",
        "-c",
        "stat -c %u /layers/001 /layers/069 /bin/busybox",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "0"]
    inspected = minictr(
        "inspect", "-f", "{{json .UserNamespace.Layers}}", "tall-userns"
    )
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.count("id-mapped mount") == LAYER_COUNT
    removed = minictr("rm", "tall-userns")
    assert removed.returncode == 0, removed.stderr


@pytest.fixture
def deleting_image(minictr, busybox_rootfs, tmp_path, docker_config) -> str:
    layout = tmp_path / "layout"
    layers = [rootfs_layer(busybox_rootfs), changes_layer(), deletions_layer()]
    write_layout(layout, layers, "deleting", config={"Cmd": ["sh"]})
    archive = tmp_path / "deleting.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    result = minictr("load", "-i", str(archive))
    assert result.returncode == 0, result.stderr
    tagged = minictr("tag", result.stdout.split()[-1], "deleting:latest")
    assert tagged.returncode == 0, tagged.stderr
    return "deleting:latest"


@pytest.mark.parametrize("idmap", ["on", "off"])
def test_userns_keeps_whiteouts_and_owners(
    minictr, deleting_image, monkeypatch, idmap, state_dirs
):
    # "off" forces the shifted copy, which must copy whiteouts (character
    # devices 0/0) and keep the opaque marker of a directory.
    monkeypatch.setenv("MINICTR_IDMAP", idmap)
    script = "ls /data; ls /data/keep; stat -c '%u:%g' /data/owned /etc/motd"
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--userns-map",
        "100000:65536",
        deleting_image,
        "sh",
        "-c",
        script,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert "gone" not in lines
    assert "old-a" not in lines
    assert "new" in lines
    assert "1234:5678" in lines
    assert "0:0" in lines
    leftovers = list((Path(state_dirs["root"]) / "userns").glob("*.tmp"))
    assert leftovers == []
