"""Moving images in and out of the store as files.

- ``import_rootfs``: a root file system (a directory or a tar, gzip allowed)
  becomes a one-layer image with an empty config.
- ``load``: reads an OCI image layout tarball (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``, what ``skopeo copy ... oci-archive:`` and ``podman
  save --format oci-archive`` write) or a ``docker save`` tarball
  (``manifest.json`` listing each image's config file, layer tars and tags).
- ``save``: writes an OCI image layout tarball that skopeo and podman read.

Every blob read from an archive is stored through the same digest check as a
pull, so a tarball cannot smuggle content under a false digest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import InvalidArgument
from . import oci
from .diff import LayerBlob
from .errors import ImageError
from .reference import Reference, parse_reference
from .registry import select_platform
from .store import Image, ImageStore
from .unpack import HashingReader, open_decompressed

log = logging.getLogger(__name__)


def import_rootfs(store: ImageStore, source: str, reference: Reference) -> Image:
    """Store ``source`` (a directory or a tar file) as a one-layer image."""
    with store.ingest_lock():
        if os.path.isdir(source):
            layer = store.add_layer_from_dir(source, overlay_upper=False)
        elif os.path.isfile(source):
            layer = _add_layer_file(store, source)
        else:
            raise ImageError(
                f"import source {source!r} not found: give a directory or a tar file"
            )
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        history = [
            {
                "created": created,
                "created_by": f"minictr import {os.path.basename(source)}",
            }
        ]
        return store.commit_image(None, [layer], {}, history, [reference])


def _add_layer_file(store: ImageStore, path: str) -> LayerBlob:
    with open(path, "rb") as source:
        stream = open_decompressed(source)
        compressed = stream is not source
        reader = HashingReader(stream)
        reader.drain()
        diff_id = reader.digest()
        source.seek(0)
        digest = store.add_blob_stream(source)
        size = os.fstat(source.fileno()).st_size
    media_type = oci.OCI_LAYER_GZIP if compressed else oci.OCI_LAYER
    if compressed and _magic(path) != b"\x1f\x8b":
        media_type = oci.OCI_LAYER_ZSTD
    return LayerBlob(digest=digest, diff_id=diff_id, size=size, media_type=media_type)


def _magic(path: str) -> bytes:
    with open(path, "rb") as source:
        return source.read(2)


class _Archive:
    """A tar archive read by member name, with ``./`` prefixes ignored."""

    def __init__(self, path: str) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
        except OSError as exc:
            raise ImageError(
                f"cannot read image archive {path}: {exc.strerror}"
            ) from exc
        except tarfile.TarError as exc:
            # tarfile lists why each compression failed, over several lines.
            raise ImageError(
                f"cannot read image archive {path}: not a tar archive "
                "(plain, gzip, bzip2 or xz); give a file written by "
                "'minictr save' or 'docker save'"
            ) from exc
        self.path = path
        self.members = {
            m.name.removeprefix("./"): m for m in self.tar.getmembers() if m.isfile()
        }

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        stream = self.tar.extractfile(member) if member is not None else None
        if stream is None:
            raise ImageError(f"image archive {self.path} has no file {name!r}")
        return stream

    def read_json(self, name: str) -> Any:
        try:
            return json.load(self.open(name))
        except ValueError as exc:
            raise ImageError(
                f"invalid JSON in {name} of image archive {self.path}: {exc}"
            ) from exc


def load(store: ImageStore, path: str) -> list[Image]:
    """Load every image in an OCI layout or ``docker save`` tarball."""
    archive = _Archive(path)
    with archive.tar, store.ingest_lock():
        if archive.has("index.json") and archive.has("oci-layout"):
            return _load_oci(store, archive)
        if archive.has("manifest.json"):
            return _load_docker(store, archive)
    raise ImageError(
        f"{path} is neither an OCI image layout (oci-layout, index.json) nor a "
        "'docker save' archive (manifest.json)"
    )


def _load_oci(store: ImageStore, archive: _Archive) -> list[Image]:
    loaded = []
    for descriptor in archive.read_json("index.json").get("manifests", []):
        names = _names_from_annotations(descriptor.get("annotations") or {})
        if descriptor.get("mediaType") in oci.INDEX_TYPES:
            index = json.loads(_copy_blob(store, archive, descriptor, read=True))
            descriptor = select_platform(index, archive.path)
        manifest = json.loads(_copy_blob(store, archive, descriptor, read=True))
        _copy_blob(store, archive, manifest["config"])
        for layer in manifest.get("layers", []):
            _copy_blob(store, archive, layer)
        loaded.append(
            store.add_image(manifest, names, source_digest=descriptor["digest"])
        )
    return loaded


def _names_from_annotations(annotations: dict[str, str]) -> list[Reference]:
    name = (
        annotations.get(oci.CONTAINERD_IMAGE_NAME)
        or annotations.get(oci.REF_NAME)
        or ""
    )
    if not name:
        return []
    if "/" not in name and ":" not in name:
        # A bare tag such as "latest" names no repository.
        log.warning(
            "image archive names an image only by tag %r: loaded untagged", name
        )
        return []
    return [parse_reference(name)]


def _copy_blob(
    store: ImageStore, archive: _Archive, descriptor: dict[str, Any], read: bool = False
) -> bytes:
    digest = descriptor["digest"]
    if not store.has_blob(digest):
        member = "blobs/sha256/" + oci.digest_hex(digest)
        store.add_blob_stream(archive.open(member), digest, descriptor.get("size"))
    return store.read_blob(digest) if read else b""


def _load_docker(store: ImageStore, archive: _Archive) -> list[Image]:
    loaded = []
    for entry in archive.read_json("manifest.json"):
        config_bytes = archive.open(entry["Config"]).read()
        store.add_blob(config_bytes)
        layers = [
            _copy_docker_layer(store, archive, name) for name in entry.get("Layers", [])
        ]
        manifest = oci.image_manifest(config_bytes, layers)
        names = [parse_reference(tag) for tag in entry.get("RepoTags") or []]
        loaded.append(store.add_image(manifest, names))
    return loaded


def _copy_docker_layer(
    store: ImageStore, archive: _Archive, name: str
) -> dict[str, Any]:
    stream = archive.open(name)
    magic = stream.read(4)
    stream.seek(0)
    digest = store.add_blob_stream(stream)
    media_type = oci.OCI_LAYER
    if magic.startswith(b"\x1f\x8b"):
        media_type = oci.OCI_LAYER_GZIP
    elif magic == b"\x28\xb5\x2f\xfd":
        media_type = oci.OCI_LAYER_ZSTD
    size = os.path.getsize(store.blob_path(digest))
    return {"mediaType": media_type, "digest": digest, "size": size}


def save(store: ImageStore, names: list[str], output: str) -> list[Image]:
    """Write the images ``names`` to ``output`` as an OCI image layout tarball.

    The file appears only when complete: it is written under a temporary
    name in the same directory and renamed.
    """
    images = [store.lookup(name) for name in names]
    descriptors = []
    blobs: list[str] = []
    for name, image in zip(names, images, strict=True):
        descriptors.append(_save_descriptor(store, name, image))
        for digest in [image.manifest_digest, image.id] + [
            layer["digest"] for layer in image.layers
        ]:
            if digest not in blobs:
                blobs.append(digest)
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": descriptors}

    directory = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise InvalidArgument(
            f"cannot save to {output!r}: it is a directory; name a file in it"
        )
    try:
        fd, temp = tempfile.mkstemp(prefix=".tmp-save-", dir=directory)
    except FileNotFoundError:
        raise InvalidArgument(
            f"cannot save to {output!r}: the directory {directory!r} does not "
            "exist; create it or choose another path"
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot save to {output!r}: {exc.strerror} in {directory!r}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
                _add_bytes(tar, "index.json", json.dumps(index, indent=2).encode())
                for digest in blobs:
                    arcname = "blobs/sha256/" + oci.digest_hex(digest)
                    tar.add(store.blob_path(digest), arcname=arcname, filter=_anonymous)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.rename(temp, output)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        where = f" ({exc.filename})" if exc.filename else ""
        raise ImageError(f"cannot save to {output!r}: {exc.strerror}{where}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return images


def _save_descriptor(store: ImageStore, name: str, image: Image) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "mediaType": oci.OCI_MANIFEST,
        "digest": image.manifest_digest,
        "size": os.path.getsize(store.blob_path(image.manifest_digest)),
    }
    reference = _reference_for_save(name, image)
    if reference:
        # The full name in both annotations: skopeo and podman read ref.name,
        # containerd reads its own.
        descriptor["annotations"] = {
            oci.REF_NAME: reference,
            oci.CONTAINERD_IMAGE_NAME: reference,
        }
    return descriptor


def _reference_for_save(name: str, image: Image) -> str:
    with contextlib.suppress(InvalidArgument):
        full = str(parse_reference(name))
        if full in image.references:
            return full
    return image.references[0] if image.references else ""


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    entry = tarfile.TarInfo(name)
    entry.size = len(data)
    entry.mode = 0o644
    tar.addfile(entry, io.BytesIO(data))


def _anonymous(entry: tarfile.TarInfo) -> tarfile.TarInfo:
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    entry.mode = 0o644
    return entry
