"""Build OCI image layouts for the image tests, with tar layers written here.

The test image has three layers over the sample busybox root file system, so
it exercises what real images contain: a whiteout, an opaque directory, a
hard link, an absolute symlink, a setuid file, a device node and an xattr.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

TEST_CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ['echo "cmd:$GREETING:$(pwd):$(id -u)"'],
    "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
    "WorkingDir": "/data",
    "User": "0",
    "StopSignal": "SIGINT",
    "ExposedPorts": {"8080/tcp": {}},
}


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, **fields: object
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_700_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, **fields: object) -> None:
    tar.addfile(_entry(name, size=len(data), **fields), io.BytesIO(data))


def rootfs_layer(rootfs: Path) -> bytes:
    """Return the busybox root file system as an uncompressed tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(rootfs), arcname=".", filter=_numeric_owner)
    return buffer.getvalue()


def _numeric_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = ""
    return info


def changes_layer() -> bytes:
    """Return layer 2: files that layer 3 deletes or hides, and special files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_entry("data", tarfile.DIRTYPE))
        tar.addfile(_entry("data/keep", tarfile.DIRTYPE))
        _add_file(tar, "data/keep/old-a", b"old a\n")
        _add_file(tar, "data/keep/old-b", b"old b\n")
        _add_file(tar, "data/gone", b"deleted by the next layer\n")
        _add_file(tar, "etc/motd", b"layer two\n")
        _add_file(tar, "usr/bin/suid-tool", b"#!/bin/sh\n", mode=0o4755, uid=0)
        _add_file(tar, "data/owned", b"owned\n", uid=1234, gid=5678)
        tar.addfile(_entry("data/owned-link", tarfile.LNKTYPE, linkname="data/owned"))
        tar.addfile(
            _entry("usr/local/bin/bb", tarfile.SYMTYPE, linkname="/bin/busybox")
        )
        tar.addfile(
            _entry("dev/test-null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        )
        xattr = _entry("data/labelled", size=3)
        xattr.pax_headers = {"SCHILY.xattr.user.course": "lab1"}
        tar.addfile(xattr, io.BytesIO(b"hi\n"))
    return buffer.getvalue()


def deletions_layer() -> bytes:
    """Return layer 3: a whiteout, an opaque directory and changed files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_entry("data", tarfile.DIRTYPE))
        _add_file(tar, "data/.wh.gone", b"")
        tar.addfile(_entry("data/keep", tarfile.DIRTYPE))
        _add_file(tar, "data/keep/.wh..wh..opq", b"")
        _add_file(tar, "data/keep/new", b"new in layer three\n")
        _add_file(tar, "etc/motd", b"layer three\n")
    return buffer.getvalue()


def write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def write_layout(
    layout: Path,
    layers: list[bytes],
    tag: str,
    config: dict[str, object] | None = None,
) -> str:
    """Write an OCI image layout with gzip layers; returns the manifest digest."""
    layer_descriptors = []
    diff_ids = []
    for plain in layers:
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
        blob = write_blob(layout, gzip.compress(plain, mtime=0))
        layer_descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob}
        )
    image_config = {
        "created": "2026-01-01T00:00:00Z",
        "architecture": _goarch(),
        "os": "linux",
        "config": config if config is not None else TEST_CONFIG,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"test layer {i}"} for i in range(len(layers))],
    }
    config_blob = write_blob(layout, json.dumps(image_config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **config_blob,
        },
        "layers": layer_descriptors,
    }
    manifest_blob = write_blob(layout, json.dumps(manifest).encode())
    index_path = layout / "index.json"
    index = {"schemaVersion": 2, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_text())
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **manifest_blob,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return str(manifest_blob["digest"])


def _goarch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
