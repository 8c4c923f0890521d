"""Images with more layers than mount(2) can name by full path, with and without --userns.

mount(2) copies one page of option text, so about 40 layers under the
state root overflow it. The overlay is mounted from a directory of short
names instead. These tests run containers on an image of 70 layers.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from images_layout import rootfs_layer, write_layout

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
        "run", "--rm", "--network", "none", tall_image,
        "sh", "-c", "ls /layers | wc -l; cat /layers/069",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(LAYER_COUNT - 1), "69"]


def test_userns_run_maps_every_layer(minictr, tall_image, state_dirs):
    result = minictr(
        "run", "--name", "tall-userns", "--network", "none",
        "--userns-map", "100000:65536", tall_image,
        "sh", "-c", "stat -c %u /layers/001 /layers/069 /bin/busybox",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "0"]
    inspected = minictr("inspect", "-f", "{{json .UserNamespace.Layers}}", "tall-userns")
    assert inspected.returncode == 0, inspected.stderr
    assert inspected.stdout.count("id-mapped mount") == LAYER_COUNT
    removed = minictr("rm", "tall-userns")
    assert removed.returncode == 0, removed.stderr
