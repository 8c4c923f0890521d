"""Pulling from a real registry on loopback: layers, whiteouts, digests, indexes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from images_layout import changes_layer, deletions_layer, write_blob, write_layout
from registry_support import TEST_REPOSITORY, TEST_TAG, skopeo_push

from minicontainer import syscalls
from minicontainer.images import resolve_for_run
from minicontainer.images.errors import DigestMismatch, RegistryError
from minicontainer.images.reference import parse_reference
from minicontainer.images.registry import pull
from minicontainer.images.store import ImageStore, host_platform
from minicontainer.images.unpack import OPAQUE_XATTR


class RecordingProgress:
    def __init__(self) -> None:
        self.finished: dict[str, str] = {}
        self.advanced = 0

    def start(self, digest: str, total: int) -> None:
        pass

    def advance(self, digest: str, count: int) -> None:
        self.advanced += count

    def finish(self, digest: str, status: str) -> None:
        self.finished[digest] = status


@pytest.fixture
def store(state_dirs) -> ImageStore:
    return ImageStore(state_dirs["root"])


@pytest.fixture
def pulled(store, pushed_image):
    return pull(parse_reference(pushed_image), store, insecure=True)


def leftover_temp_files(store: ImageStore) -> list[str]:
    names = os.listdir(store.blobs_dir) + os.listdir(store.layers_dir)
    return [name for name in names if name.startswith(".tmp-")]


def test_pull_cli_shows_layer_progress(minictr, pushed_image, docker_config):
    result = minictr("pull", "--insecure-registry", pushed_image)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Pull complete") == 3
    assert "Digest: sha256:" in result.stderr

    listing = minictr("images", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(row["Repository"], row["Tag"]) for row in rows] == [
        (pushed_image.rsplit(":", 1)[0], TEST_TAG)
    ]


def test_pull_cli_again_reuses_layers(minictr, pushed_image, docker_config):
    assert minictr("pull", "--insecure-registry", pushed_image).returncode == 0
    again = minictr("pull", "--insecure-registry", pushed_image)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("Already exists") == 3
    assert "Downloading" not in again.stderr


def test_pull_over_http_needs_insecure_flag(minictr, pushed_image, docker_config):
    result = minictr("pull", pushed_image)
    assert result.returncode == 1
    assert "--insecure-registry" in result.stderr


def test_pull_insecure_registry_from_environment(
    minictr, pushed_image, registry, docker_config, monkeypatch
):
    monkeypatch.setenv("MINICTR_INSECURE_REGISTRIES", registry.host)
    result = minictr("pull", "-q", pushed_image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("sha256:")


def test_pull_unknown_tag_is_not_found(store, registry):
    reference = parse_reference(f"{registry.host}/{TEST_REPOSITORY}:missing")
    with pytest.raises(RegistryError, match="not found"):
        pull(reference, store, insecure=True)


def test_pulled_layers_are_overlay_lowerdirs(store, pulled):
    base, changes, deletions = (Path(p) for p in store.layer_dirs(pulled))
    assert (base / "bin" / "busybox").is_file()

    gone = os.lstat(deletions / "data" / "gone")
    assert stat.S_ISCHR(gone.st_mode)
    assert gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(deletions / "data" / "keep", OPAQUE_XATTR) == b"y"
    assert not (deletions / "data" / ".wh.gone").exists()
    assert not (deletions / "data" / "keep" / ".wh..wh..opq").exists()


def test_pulled_layers_keep_file_metadata(store, pulled):
    changes = Path(store.layer_dirs(pulled)[1])
    assert stat.S_IMODE(os.stat(changes / "usr/bin/suid-tool").st_mode) == 0o4755
    owned = os.stat(changes / "data/owned")
    assert (owned.st_uid, owned.st_gid) == (1234, 5678)
    assert os.stat(changes / "data/owned-link").st_ino == owned.st_ino
    assert os.readlink(changes / "usr/local/bin/bb") == "/bin/busybox"
    device = os.lstat(changes / "dev/test-null")
    assert stat.S_ISCHR(device.st_mode)
    assert device.st_rdev == os.makedev(1, 3)
    assert os.getxattr(changes / "data/labelled", "user.course") == b"lab1"


def test_pulled_image_stacks_in_overlayfs(store, pulled, tmp_path):
    lower = resolve_for_run(str(pulled.references[0]), root=store.root).lower_dirs
    target = tmp_path / "merged"
    target.mkdir()
    # With only lowerdirs, overlayfs mounts read-only, which is all this needs.
    syscalls.mount("overlay", str(target), "overlay", 0, "lowerdir=" + ":".join(lower))
    try:
        assert not (target / "data" / "gone").exists()
        assert sorted(os.listdir(target / "data" / "keep")) == ["new"]
        assert (target / "etc" / "motd").read_text() == "layer three\n"
        assert (target / "data" / "owned").read_text() == "owned\n"
        assert (target / "bin" / "busybox").is_file()
    finally:
        syscalls.umount2(str(target), syscalls.MNT_DETACH)


def test_resolve_for_run_returns_image_config(store, pulled):
    image = resolve_for_run(pulled.references[0], root=store.root)
    assert image.image_id == pulled.id
    assert image.config["WorkingDir"] == "/data"
    assert image.config["Entrypoint"] == ["/bin/sh", "-c"]
    assert image.lower_dirs == store.layer_dirs(pulled)[::-1]


def test_pull_by_digest(store, pushed_image, pulled):
    reference = pushed_image.rsplit(":", 1)[0] + "@" + pulled.source_digest
    image = pull(
        parse_reference(reference), ImageStore(store.root + "-2"), insecure=True
    )
    assert image.id == pulled.id
    assert image.references == []
    again = ImageStore(store.root + "-2").lookup(reference)
    assert again.id == pulled.id


def unique_layout(tmp_path: Path, size: int = 64 * 1024) -> tuple[Path, bytes]:
    """A one-layer image with random content, so its blobs are its own."""
    import io
    import tarfile

    content = os.urandom(size)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layout = tmp_path / "unique"
    write_layout(layout, [buffer.getvalue()], "v1", config={"Cmd": ["sh"]})
    layer_blob = gzip.compress(buffer.getvalue(), mtime=0)
    return layout, layer_blob


def registry_blob_data(registry, blob: bytes) -> Path:
    hex_digest = hashlib.sha256(blob).hexdigest()
    return (
        registry.storage
        / "docker/registry/v2/blobs/sha256"
        / hex_digest[:2]
        / hex_digest
        / "data"
    )


def test_pull_rejects_tampered_blob(store, registry, tmp_path):
    layout, layer_blob = unique_layout(tmp_path)
    repository = f"tamper/{uuid.uuid4().hex[:8]}"
    reference = skopeo_push(layout, "v1", registry, repository)
    data_path = registry_blob_data(registry, layer_blob)
    tampered = bytearray(data_path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    data_path.write_bytes(bytes(tampered))

    with pytest.raises(DigestMismatch, match="rejected"):
        pull(parse_reference(reference), store, insecure=True)
    digest = "sha256:" + hashlib.sha256(layer_blob).hexdigest()
    assert not store.has_blob(digest)
    assert store.images() == []
    assert leftover_temp_files(store) == []


def test_interrupted_pull_leaves_no_blob(store, registry, tmp_path):
    layout, layer_blob = unique_layout(tmp_path, size=4 << 20)
    reference = skopeo_push(layout, "v1", registry, f"big/{uuid.uuid4().hex[:8]}")

    class Interrupt(RecordingProgress):
        def advance(self, digest: str, count: int) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(parse_reference(reference), store, insecure=True, progress=Interrupt())
    assert not store.has_blob("sha256:" + hashlib.sha256(layer_blob).hexdigest())
    assert leftover_temp_files(store) == []

    progress = RecordingProgress()
    image = pull(parse_reference(reference), store, insecure=True, progress=progress)
    assert list(progress.finished.values()) == ["Pull complete"]
    assert progress.advanced == len(layer_blob)
    assert image.references == [reference]


def test_pull_index_selects_host_platform(store, registry, tmp_path):
    layout = tmp_path / "multi"
    host_digest = write_layout(
        layout, [changes_layer()], "host", config={"Cmd": ["host"]}
    )
    other_digest = write_layout(
        layout, [deletions_layer()], "other", config={"Cmd": ["other"]}
    )
    architecture, _ = host_platform()
    other_architecture = "s390x" if architecture != "s390x" else "amd64"
    index = json.loads((layout / "index.json").read_text())
    entries = {entry["digest"]: entry for entry in index["manifests"]}
    platforms = {host_digest: architecture, other_digest: other_architecture}
    image_index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": entries[digest]["mediaType"],
                "digest": digest,
                "size": entries[digest]["size"],
                "platform": {"os": "linux", "architecture": arch},
            }
            for digest, arch in sorted(
                platforms.items(), key=lambda item: item[1] != other_architecture
            )
        ],
    }
    index_blob = write_blob(layout, json.dumps(image_index).encode())
    index["manifests"] = [
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            **index_blob,
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    ]
    (layout / "index.json").write_text(json.dumps(index))
    repository = f"multi/{uuid.uuid4().hex[:8]}"
    destination = f"{registry.host}/{repository}:multi"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--all",
            "--dest-tls-verify=false",
            f"oci:{layout}:multi",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )

    image = pull(parse_reference(destination), store, insecure=True)
    assert image.manifest_digest == host_digest
    assert image.config["config"]["Cmd"] == ["host"]
    assert image.source_digest == host_digest
