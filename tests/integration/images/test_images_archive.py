"""import, load and save through the CLI, checked with skopeo."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from registry_support import TEST_TAG

SKOPEO_NAME = "course/busybox:1.0"


def skopeo(*args: str) -> subprocess.CompletedProcess:
    if not Path("/usr/bin/skopeo").exists():
        pytest.skip("skopeo is not installed: apt-get install skopeo")
    return subprocess.run(
        ["skopeo", *args], check=True, capture_output=True, text=True, timeout=300
    )


def image_ids(minictr) -> list[str]:
    result = minictr("images", "-q")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def loaded(minictr, test_layout, tmp_path, docker_config):
    """The test image loaded from an OCI archive that skopeo wrote."""
    archive = tmp_path / "skopeo-oci.tar"
    skopeo(
        "copy", f"oci:{test_layout}:{TEST_TAG}", f"oci-archive:{archive}:{SKOPEO_NAME}"
    )
    result = minictr("load", "-i", str(archive))
    assert result.returncode == 0, result.stderr
    return result


def test_load_oci_archive_from_skopeo(loaded, minictr):
    assert "Loaded image: docker.io/course/busybox:1.0" in loaded.stdout
    listing = [
        json.loads(line)
        for line in minictr("images", "--format", "json").stdout.splitlines()
    ]
    assert [(row["Repository"], row["Tag"]) for row in listing] == [
        ("course/busybox", "1.0")
    ]


def test_load_docker_archive_from_skopeo(minictr, test_layout, tmp_path, docker_config):
    archive = tmp_path / "docker-save.tar"
    skopeo(
        "copy",
        f"oci:{test_layout}:{TEST_TAG}",
        f"docker-archive:{archive}:{SKOPEO_NAME}",
    )
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    result = minictr("load", "-i", str(archive))
    assert result.returncode == 0, result.stderr
    assert "docker.io/course/busybox:1.0" in result.stdout

    inspect = minictr("image", "inspect", SKOPEO_NAME)
    assert inspect.returncode == 0, inspect.stderr
    [details] = json.loads(inspect.stdout)
    assert len(details["Layers"]) == 3
    gone = Path(details["Layers"][2]["Directory"]) / "data" / "gone"
    assert os.major(os.lstat(gone).st_rdev) == 0


def test_save_is_readable_by_skopeo(loaded, minictr, tmp_path):
    archive = tmp_path / "saved.tar"
    result = minictr("save", "-o", str(archive), SKOPEO_NAME)
    assert result.returncode == 0, result.stderr

    details = json.loads(skopeo("inspect", f"oci-archive:{archive}").stdout)
    assert len(details["Layers"]) == 3
    assert details["Env"][-1] == "GREETING=hello"
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{archive}").stdout)
    assert config["config"]["WorkingDir"] == "/data"
    copy = tmp_path / "copied"
    skopeo("copy", f"oci-archive:{archive}", f"oci:{copy}:copied")
    assert (copy / "index.json").exists()


def test_save_rmi_load_round_trip(loaded, minictr, tmp_path):
    [image_id] = image_ids(minictr)
    archive = tmp_path / "round-trip.tar"
    assert minictr("save", "-o", str(archive), SKOPEO_NAME).returncode == 0
    removed = minictr("rmi", SKOPEO_NAME)
    assert removed.returncode == 0, removed.stderr
    assert image_ids(minictr) == []

    again = minictr("load", "-i", str(archive))
    assert again.returncode == 0, again.stderr
    assert image_ids(minictr) == [image_id]


def test_import_directory_and_tag(minictr, busybox_rootfs, docker_config):
    result = minictr("import", str(busybox_rootfs), "lab/busybox:imported")
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.strip()
    assert minictr("tag", "lab/busybox:imported", "lab/busybox:copy").returncode == 0
    rows = [
        json.loads(line)
        for line in minictr("images", "--format", "json").stdout.splitlines()
    ]
    assert {row["Tag"] for row in rows} == {"imported", "copy"}
    assert {row["ID"] for row in rows} == {image_id}

    refused = minictr("rmi", image_id)
    assert refused.returncode == 1
    assert "rmi -f" in refused.stderr


def test_import_tar_keeps_ownership(minictr, tmp_path, docker_config, state_dirs):
    rootfs = tmp_path / "rootfs"
    (rootfs / "home" / "student").mkdir(parents=True)
    (rootfs / "home" / "student" / "notes").write_text("x")
    os.chown(rootfs / "home" / "student" / "notes", 1000, 1000)
    os.chmod(rootfs / "home" / "student" / "notes", 0o2640)
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    assert minictr("import", str(archive), "owned").returncode == 0
    [details] = json.loads(minictr("image", "inspect", "owned").stdout)
    notes = Path(details["Layers"][0]["Directory"]) / "home" / "student" / "notes"
    info = notes.stat()
    assert (info.st_uid, info.st_gid) == (1000, 1000)
    assert info.st_mode & 0o7777 == 0o2640


def test_image_prune_removes_untagged(loaded, minictr, busybox_rootfs):
    assert minictr("import", str(busybox_rootfs), SKOPEO_NAME).returncode == 0
    assert len(image_ids(minictr)) == 2
    result = minictr("image", "prune", "-f")
    assert result.returncode == 0, result.stderr
    assert "Deleted: sha256:" in result.stdout
    assert len(image_ids(minictr)) == 1


def test_inspect_falls_back_to_images(minictr, busybox_rootfs, docker_config):
    # docker inspect takes a container or an image; a container name wins.
    imported = minictr("import", str(busybox_rootfs), "lab/inspected:1")
    assert imported.returncode == 0, imported.stderr
    shown = minictr("inspect", "-f", "{{.Id}}", "lab/inspected:1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == imported.stdout.strip()
    missing = minictr("inspect", "lab/inspected:2")
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == "minictr: no such container or image: lab/inspected:2"
    )
