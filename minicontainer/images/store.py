"""The image store: content-addressed blobs, tags, and layers unpacked once.

``<root>/images/`` is an OCI image layout: ``blobs/sha256/HEX`` holds every
manifest, config and layer blob under the sha256 of its bytes, and
``index.json`` lists the stored manifests, one descriptor per tag, with the
full reference (``docker.io/library/alpine:latest``) in the
``org.opencontainers.image.ref.name`` annotation. A descriptor without that
annotation is an untagged ("dangling") image. An image's ID is the digest of
its config, as in Docker.

``<root>/layers/CHAIN_HEX/diff`` is each layer unpacked for overlayfs. The
directory is named by the layer's chain ID, the digest of the layer and of
every layer below it. Images that share a base therefore share its
directories, and a container's root is an overlay of its image's ``diff``
directories.

Blobs are written to a temporary file, checked against their digest, synced
and renamed into place, so a crash leaves no blob that looks complete. Layer
directories are unpacked under a temporary name and renamed the same way.
``index.json`` changes under an exclusive ``flock`` and is replaced
atomically. Writers that add blobs hold a shared lock on ``gc.lock`` while
they work, and garbage collection runs only when it gets that lock
exclusively, so it never deletes the blobs of a pull in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import IO, Any

from .. import filelock
from ..errors import Conflict, InvalidArgument, NotFound
from . import oci
from .diff import LayerBlob, write_layer
from .errors import DigestMismatch, ImageError
from .reference import Reference, parse_reference
from .unpack import unpack_layer_blob

log = logging.getLogger(__name__)

# Annotation recording the digest a registry gave a manifest that was
# converted from Docker's media types to OCI's on the way in.
SOURCE_DIGEST = "io.minictr.source.digest"


def default_state_root() -> str:
    """Return minictr's state root, from ``minicontainer.paths`` when it exists."""
    try:
        from ..paths import state_root  # type: ignore[attr-defined]
    except ImportError:
        return os.environ.get("MINICTR_ROOT", "/var/lib/minictr")
    return str(state_root())


@dataclass
class Image:
    """One stored manifest with its config and the tags that point to it."""

    manifest_digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    references: list[str] = field(default_factory=list)
    source_digest: str = ""

    @property
    def id(self) -> str:
        return str(self.manifest["config"]["digest"])

    @property
    def short_id(self) -> str:
        return oci.digest_hex(self.id)[:12]

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers", []))

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_ids(self) -> list[str]:
        return oci.chain_ids(self.diff_ids)

    @property
    def compressed_size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in self.layers)


class BlobWriter:
    """A blob being written: hashed as it arrives, published only if it verifies."""

    def __init__(
        self, store: ImageStore, expected_digest: str | None, expected_size: int | None
    ):
        self._store = store
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        fd, self.temp_path = tempfile.mkstemp(prefix=".tmp-", dir=store.blobs_dir)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatch(
                f"blob {self.expected_digest} is larger than the {self.expected_size} "
                "bytes its descriptor declares"
            )
        self._file.write(data)
        return len(data)

    def commit(self) -> str:
        """Verify, sync and rename the blob into place; returns its digest."""
        digest = "sha256:" + self._hash.hexdigest()
        if self.expected_digest is not None and digest != self.expected_digest:
            raise DigestMismatch(
                f"blob content hashes to {digest}, not to the expected "
                f"{self.expected_digest}: the blob was rejected"
            )
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(
                f"blob {digest} has {self.size} bytes, not the {self.expected_size} "
                "its descriptor declares"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.rename(self.temp_path, self._store.blob_path(digest))
        _fsync_dir(self._store.blobs_dir)
        return digest

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)


class ImageStore:
    def __init__(self, root: str | None = None) -> None:
        self.root = root or default_state_root()
        self.images_dir = os.path.join(self.root, "images")
        self.blobs_dir = os.path.join(self.images_dir, "blobs", "sha256")
        self.layers_dir = os.path.join(self.root, "layers")
        self.index_path = os.path.join(self.images_dir, "index.json")
        os.makedirs(self.blobs_dir, exist_ok=True)
        os.makedirs(self.layers_dir, exist_ok=True)
        layout = os.path.join(self.images_dir, "oci-layout")
        if not os.path.exists(layout):
            _write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')

    # Locks

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        with filelock.flocked(os.path.join(self.images_dir, name), mode):
            yield

    def index_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("index.lock", fcntl.LOCK_EX)

    def ingest_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold this while adding blobs that no index entry references yet."""
        return self._flock("gc.lock", fcntl.LOCK_SH)

    # Blobs

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs_dir, oci.digest_hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        try:
            with open(self.blob_path(digest), "rb") as blob:
                return blob.read()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the image store") from None

    def read_json(self, digest: str) -> dict[str, Any]:
        data = self.read_blob(digest)
        if oci.sha256_digest(data) != digest:
            raise DigestMismatch(f"stored blob {digest} is corrupt: its digest changed")
        return dict(json.loads(data))

    def blob_writer(
        self, expected_digest: str | None = None, expected_size: int | None = None
    ) -> BlobWriter:
        return BlobWriter(self, expected_digest, expected_size)

    def add_blob(self, data: bytes, expected_digest: str | None = None) -> str:
        writer = self.blob_writer(expected_digest, None)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def add_blob_stream(
        self,
        stream: IO[bytes],
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> str:
        writer = self.blob_writer(expected_digest, expected_size)
        try:
            while chunk := stream.read(1 << 20):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    # Index

    def _read_index(self) -> dict[str, Any]:
        try:
            with open(self.index_path, "rb") as index:
                return dict(json.load(index))
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}

    def _write_index(self, index: dict[str, Any]) -> None:
        _write_atomic(self.index_path, json.dumps(index, indent=2).encode())

    def images(self) -> list[Image]:
        """Return every stored image, tagged ones with all their references."""
        by_digest: dict[str, Image] = {}
        for descriptor in self._read_index()["manifests"]:
            digest = descriptor["digest"]
            image = by_digest.get(digest)
            if image is None:
                image = self._load_image(digest)
                annotations = descriptor.get("annotations", {})
                image.source_digest = annotations.get(SOURCE_DIGEST, "")
                by_digest[digest] = image
            name = descriptor.get("annotations", {}).get(oci.REF_NAME)
            if name and name not in image.references:
                image.references.append(name)
        return list(by_digest.values())

    def _load_image(self, manifest_digest: str) -> Image:
        manifest = self.read_json(manifest_digest)
        config = self.read_json(manifest["config"]["digest"])
        return Image(manifest_digest, manifest, config)

    def lookup(self, text: str) -> Image:
        """Find an image by reference, by ``NAME@DIGEST``, or by (a prefix of) its ID."""
        images = self.images()
        found = self._lookup_reference(images, text) or self._lookup_id(images, text)
        if found is not None:
            return found
        raise NotFound(
            f"image {text!r} not found: run 'minictr pull {text}' or "
            f"'minictr import ROOTFS.tar {text}'"
        )

    def lookup_by_id(self, text: str) -> Image | None:
        """Return the image that ``lookup`` finds by (a prefix of) its ID, or None.

        None also when ``text`` names a stored reference, because ``lookup``
        tries references before IDs. Raises ``Conflict`` for an ambiguous prefix.
        """
        images = self.images()
        if self._lookup_reference(images, text) is not None:
            return None
        return self._lookup_id(images, text)

    def _lookup_id(self, images: list[Image], text: str) -> Image | None:
        candidate = text.removeprefix("sha256:")
        if not 3 <= len(candidate) <= 64:
            return None
        if not all(c in "0123456789abcdef" for c in candidate):
            return None
        matches = [i for i in images if oci.digest_hex(i.id).startswith(candidate)]
        if len({i.id for i in matches}) > 1:
            raise Conflict(f"image ID prefix {text!r} is ambiguous: give more digits")
        return matches[0] if matches else None

    def _lookup_reference(self, images: list[Image], text: str) -> Image | None:
        try:
            reference = parse_reference(text)
        except InvalidArgument:
            return None  # not a reference, maybe an ID
        for image in images:
            if reference.digest:
                if reference.digest in (image.manifest_digest, image.source_digest):
                    return image
            elif str(reference) in image.references:
                return image
        return None

    # Adding images

    def add_image(
        self,
        manifest: dict[str, Any] | bytes,
        references: list[Reference],
        source_digest: str = "",
    ) -> Image:
        """Store ``manifest`` (whose blobs must be stored) and tag it.

        An OCI manifest given as bytes is stored as is, so its digest stays
        the one the registry or archive named it by. A Docker manifest is
        converted to OCI media types first, which changes its digest, so
        ``source_digest`` keeps the original for lookups by digest.

        Layers are unpacked before the tags are written, so a tagged image
        is always ready to run. Tags that pointed to another image move to
        this one, and that image stays as an untagged image until pruned.
        """
        if isinstance(manifest, bytes):
            data = manifest
            manifest = dict(json.loads(data))
        else:
            data = oci.canonical_json(manifest)
        if manifest.get("mediaType") == oci.DOCKER_MANIFEST:
            data = oci.canonical_json(oci.to_oci_manifest(manifest))
        with self.ingest_lock():
            digest = self.add_blob(data)
            image = self._load_image(digest)
            if len(image.diff_ids) != len(image.layers):
                raise ImageError(
                    f"image {digest} is invalid: its config lists "
                    f"{len(image.diff_ids)} layers but its manifest "
                    f"{len(image.layers)}"
                )
            self.layer_dirs(image)
            return self._tag_image(image, data, references, source_digest)

    def _tag_image(
        self, image: Image, data: bytes, references: list[Reference], source_digest: str
    ) -> Image:
        digest = image.manifest_digest
        names = sorted({str(r) for r in references})
        with self.index_lock():
            index = self._read_index()
            before = {d["digest"] for d in index["manifests"]}
            kept = [
                d
                for d in index["manifests"]
                if d["digest"] != digest
                and d.get("annotations", {}).get(oci.REF_NAME) not in names
            ]
            kept += [
                d
                for d in index["manifests"]
                if d["digest"] == digest and oci.REF_NAME in d.get("annotations", {})
            ]
            # An image whose last tag moved here stays, untagged, until pruned:
            # a container may still run on it.
            orphans = before - {d["digest"] for d in kept} - {digest}
            kept += [self._untagged_descriptor(d) for d in sorted(orphans)]
            tags = {d.get("annotations", {}).get(oci.REF_NAME) for d in kept}
            new = [n for n in names if n not in tags]
            kept += [self._descriptor(digest, len(data), n, source_digest) for n in new]
            if not any(d["digest"] == digest for d in kept):
                kept.append(self._descriptor(digest, len(data), None, source_digest))
            index["manifests"] = kept
            self._write_index(index)
        image.references = [
            d["annotations"][oci.REF_NAME]
            for d in kept
            if d["digest"] == digest and oci.REF_NAME in d.get("annotations", {})
        ]
        image.source_digest = source_digest
        return image

    def _untagged_descriptor(self, digest: str) -> dict[str, Any]:
        return {
            "mediaType": oci.OCI_MANIFEST,
            "digest": digest,
            "size": self._blob_size(digest),
        }

    @staticmethod
    def _descriptor(
        digest: str, size: int, name: str | None, source_digest: str
    ) -> dict[str, Any]:
        descriptor: dict[str, Any] = {
            "mediaType": oci.OCI_MANIFEST,
            "digest": digest,
            "size": size,
        }
        annotations = {}
        if name:
            annotations[oci.REF_NAME] = name
        if source_digest and source_digest != digest:
            annotations[SOURCE_DIGEST] = source_digest
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    def layer_dirs(self, image: Image) -> list[str]:
        """Return the unpacked ``diff`` directory of each layer, lowest first.

        A layer missing on disk is unpacked from its blob now.
        """
        directories = []
        for descriptor, diff_id, chain_id in zip(
            image.layers, image.diff_ids, image.chain_ids, strict=True
        ):
            directories.append(self.unpack_layer(descriptor, diff_id, chain_id))
        return directories

    def unpack_layer(
        self, descriptor: dict[str, Any], diff_id: str, chain_id: str
    ) -> str:
        """Unpack a stored layer blob once; returns its ``diff`` directory."""
        final = os.path.join(self.layers_dir, oci.digest_hex(chain_id))
        if os.path.isdir(os.path.join(final, "diff")):
            return os.path.join(final, "diff")
        if descriptor.get("mediaType") not in oci.LAYER_TYPES:
            raise ImageError(
                f"layer {descriptor['digest']} has unsupported media type "
                f"{descriptor.get('mediaType')!r}"
            )
        with self.ingest_lock():
            self._unpack_into(final, descriptor, diff_id, chain_id)
        return os.path.join(final, "diff")

    def _unpack_into(
        self, final: str, descriptor: dict[str, Any], diff_id: str, chain_id: str
    ) -> None:
        temp = tempfile.mkdtemp(prefix=".tmp-", dir=self.layers_dir)
        try:
            diff = os.path.join(temp, "diff")
            os.mkdir(diff, 0o755)
            log.debug("unpack layer %s into %s", descriptor["digest"], final)
            result = unpack_layer_blob(self.blob_path(descriptor["digest"]), diff)
            if result.diff_id != diff_id:
                raise DigestMismatch(
                    f"layer {descriptor['digest']} unpacks to {result.diff_id}, "
                    f"but the image config expects {diff_id}"
                )
            meta = {
                "chain_id": chain_id,
                "diff_id": diff_id,
                "digest": descriptor["digest"],
                "size": result.size,
            }
            _write_atomic(os.path.join(temp, "layer.json"), json.dumps(meta).encode())
            try:
                os.rename(temp, final)
            except OSError:
                if not os.path.isdir(os.path.join(final, "diff")):
                    raise
                log.debug("layer %s was unpacked concurrently", chain_id)
                shutil.rmtree(temp)
            _fsync_dir(self.layers_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise

    def layer_path(self, chain_id: str) -> str:
        """Return the ``diff`` directory of the layer with ``chain_id``."""
        return os.path.join(self.layers_dir, oci.digest_hex(chain_id), "diff")

    def layer_size(self, chain_id: str) -> int:
        path = os.path.join(self.layers_dir, oci.digest_hex(chain_id), "layer.json")
        try:
            with open(path, "rb") as meta:
                return int(json.load(meta).get("size", 0))
        except (FileNotFoundError, ValueError):
            return 0

    def image_size(self, image: Image) -> int:
        """Return the bytes of file content in the image's unpacked layers."""
        return sum(self.layer_size(chain_id) for chain_id in image.chain_ids)

    # Tags and removal

    def tag(self, source: str, target: str) -> Image:
        image = self.lookup(source)
        reference = parse_reference(target)
        if reference.digest:
            raise ImageError(
                f"cannot tag with a digest reference {target!r}: give NAME:TAG"
            )
        manifest = self.read_blob(image.manifest_digest)
        return self.add_image(manifest, [reference], image.source_digest)

    def remove(self, text: str, force: bool = False) -> list[str]:
        """Untag or delete an image as ``rmi`` does; returns the lines to print.

        A reference removes that tag, and the image with it when no tag is
        left. An ID removes the image unless several tags name it. Either is
        a ``Conflict`` while a container uses the image, unless ``force``
        is set: then the tags go and the image stays, untagged, until no
        container uses it.
        """
        try:
            image = self.lookup(text)
        except NotFound:
            # The lookup's hint to pull or import makes no sense for removal.
            raise NotFound(
                f"image {text!r} is not in the store: 'minictr images' lists "
                "the stored images"
            ) from None
        users = containers_using(self.root, image.id)
        tag = self._tag_named(image, text)
        if tag is not None:
            remove_tags = [tag]
        else:
            remove_tags = list(image.references)
            if len(remove_tags) > 1 and not force:
                raise Conflict(
                    f"image {image.short_id} is tagged as {', '.join(remove_tags)}: "
                    "remove the tags one by one or use 'rmi -f'"
                )
        last_tag = set(remove_tags) >= set(image.references)
        if last_tag and users and not force:
            raise Conflict(
                f"image {text!r} is used by container {users[0]}: remove the container "
                "first or use 'rmi -f' to untag the image"
            )

        lines = [f"Untagged: {name}" for name in remove_tags]
        delete = last_tag and not users
        with self.index_lock():
            index = self._read_index()
            kept = []
            for descriptor in index["manifests"]:
                if descriptor["digest"] != image.manifest_digest:
                    kept.append(descriptor)
                    continue
                name = descriptor.get("annotations", {}).get(oci.REF_NAME)
                if name is not None and name not in remove_tags:
                    kept.append(descriptor)
            if last_tag and not delete:
                kept.append(self._untagged_descriptor(image.manifest_digest))
            index["manifests"] = kept
            self._write_index(index)
        if delete:
            lines.append(f"Deleted: {image.id}")
            self.collect_garbage()
        return lines

    @staticmethod
    def _tag_named(image: Image, text: str) -> str | None:
        try:
            reference = parse_reference(text)
        except InvalidArgument:
            return None
        name = str(reference)
        return name if reference.digest is None and name in image.references else None

    def _blob_size(self, digest: str) -> int:
        return os.path.getsize(self.blob_path(digest))

    def prune(self, all_unused: bool = False) -> tuple[list[str], int]:
        """Remove untagged images (every unused one with ``all_unused``).

        Returns the removed image IDs and the bytes of blobs and layers freed.
        """
        in_use = set(images_in_use(self.root))
        removed = []
        with self.index_lock():
            index = self._read_index()
            kept = []
            for descriptor in index["manifests"]:
                tagged = oci.REF_NAME in descriptor.get("annotations", {})
                config_digest = self.read_json(descriptor["digest"])["config"]["digest"]
                if (tagged and not all_unused) or config_digest in in_use:
                    kept.append(descriptor)
                elif config_digest not in removed:
                    removed.append(config_digest)
            index["manifests"] = kept
            self._write_index(index)
        freed = self.collect_garbage()
        return removed, freed

    def collect_garbage(self) -> int:
        """Delete blobs and layer directories that no stored image references.

        Skipped while a pull or load holds the ingest lock; the next removal
        collects what is left. Returns the bytes freed.
        """
        with filelock.try_flocked(os.path.join(self.images_dir, "gc.lock")) as taken:
            if not taken:
                log.debug("garbage collection skipped: a pull or load is in progress")
                return 0
            with self.index_lock():
                return self._collect_unreferenced()

    def _collect_unreferenced(self) -> int:
        blobs: set[str] = set()
        layers: set[str] = set()
        for image in self.images():
            blobs.add(oci.digest_hex(image.manifest_digest))
            blobs.add(oci.digest_hex(image.id))
            blobs.update(oci.digest_hex(layer["digest"]) for layer in image.layers)
            layers.update(oci.digest_hex(chain_id) for chain_id in image.chain_ids)
        freed = 0
        # No ingest holds its lock now, so temporary files are left from a
        # killed pull or load.
        for name in os.listdir(self.blobs_dir):
            if name not in blobs:
                path = os.path.join(self.blobs_dir, name)
                freed += os.path.getsize(path)
                log.debug("delete unreferenced blob %s", name)
                os.unlink(path)
        for name in os.listdir(self.layers_dir):
            if name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(os.path.join(self.layers_dir, name), ignore_errors=True)
            elif name not in layers and name != "empty":
                freed += self.layer_size("sha256:" + name)
                log.debug("delete unreferenced layer %s", name)
                _remove_tree(os.path.join(self.layers_dir, name), self.layers_dir)
        return freed

    # Images made here (the builder, commit)

    def add_layer_from_dir(self, source_dir: str, *, overlay_upper: bool) -> LayerBlob:
        """Archive ``source_dir`` into a gzip layer blob; returns its ``LayerBlob``.

        Call it inside ``ingest_lock()`` until ``commit_image`` has tagged
        the image, so garbage collection does not take the new blob.
        """
        fd, temp_path = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                layer = write_layer(source_dir, out, overlay_upper=overlay_upper)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp_path, self.blob_path(layer.digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
            raise
        return layer

    def commit_image(
        self,
        parent: Image | None,
        new_layers: list[LayerBlob],
        config: dict[str, Any],
        history: list[dict[str, Any]],
        references: list[Reference],
    ) -> Image:
        """Store an image made of ``parent``'s layers plus ``new_layers``.

        ``new_layers`` are ``LayerBlob``s already in the store, ``config`` is
        the container config section (Entrypoint, Cmd, Env, ...), and
        ``history`` entries are appended to the parent's history.
        """
        from datetime import datetime

        base = parent.config if parent is not None else {}
        image_config = {
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "architecture": base.get("architecture", host_platform()[0]),
            "os": "linux",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": (parent.diff_ids if parent else [])
                + [layer.diff_id for layer in new_layers],
            },
            "history": list(base.get("history", [])) + history,
        }
        config_bytes = oci.canonical_json(image_config)
        self.add_blob(config_bytes)
        layers = (parent.layers if parent else []) + [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
            for layer in new_layers
        ]
        manifest = oci.image_manifest(config_bytes, layers)
        return self.add_image(manifest, references)


def host_platform() -> tuple[str, str]:
    """Return this host's (architecture, variant) in OCI's ``GOARCH`` names."""
    machine = os.uname().machine
    names = {
        "x86_64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }
    return names.get(machine, (machine, ""))


def images_in_use(root: str) -> dict[str, list[str]]:
    """Return image ID -> container IDs, from each container's stored config."""
    users: dict[str, list[str]] = {}
    containers_dir = os.path.join(root, "containers")
    try:
        names = sorted(os.listdir(containers_dir))
    except FileNotFoundError:
        return users
    for name in names:
        try:
            with open(
                os.path.join(containers_dir, name, "config.json"), "rb"
            ) as config:
                image_id = json.load(config).get("image") or ""
        except (OSError, ValueError):
            continue
        if image_id:
            if not image_id.startswith("sha256:"):
                image_id = "sha256:" + image_id
            users.setdefault(image_id, []).append(name)
    return users


def containers_using(root: str, image_id: str) -> list[str]:
    return images_in_use(root).get(image_id, [])


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(directory)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: str, parent: str) -> None:
    """Rename ``path`` aside, then delete it, so no half-deleted layer keeps its name."""
    trash = tempfile.mkdtemp(prefix=".trash-", dir=parent)
    os.rename(path, os.path.join(trash, "layer"))
    shutil.rmtree(trash)
