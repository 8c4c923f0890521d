"""Media types and identifiers from the OCI image spec, and Docker's equivalents.

An OCI image is a tree of content-addressed JSON and tar blobs. An index (a
list of manifests, one per platform) points to manifests. A manifest points
to one config and an ordered list of layers. The config lists the
``diff_ids`` (digests of the uncompressed layer tars) and the defaults for a
container (Entrypoint, Cmd, Env, ...). Docker's schema 2 manifest and manifest
list have the same shape under other media type names, so they are translated
to the OCI names once, when they enter the store.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import ImageError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

_DOCKER_TO_OCI = {
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
}

LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP)

# Annotations on the descriptors of an OCI layout's index.json.
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    """Return the hex part of ``sha256:HEX``; other algorithms are rejected."""
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256" or len(hex_part) != 64 or not _is_lower_hex(hex_part):
        raise ImageError(f"unsupported or invalid digest {digest!r}: expected sha256")
    return hex_part


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Return the chain ID of each layer: the identity of the stack below it.

    ChainID(L1) = DiffID(L1) and ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
    DiffID(Ln)), as the OCI image spec's config section defines them.
    """
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()))
    return chain


def to_oci_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return ``manifest`` with Docker media types replaced by the OCI ones."""
    converted = dict(manifest)
    converted["mediaType"] = OCI_MANIFEST
    converted["config"] = convert_descriptor(manifest["config"])
    converted["layers"] = [convert_descriptor(layer) for layer in manifest["layers"]]
    return converted


def convert_descriptor(descriptor: dict[str, Any]) -> dict[str, Any]:
    """Return ``descriptor`` with a Docker media type replaced by the OCI one."""
    converted = dict(descriptor)
    media_type = descriptor.get("mediaType", "")
    converted["mediaType"] = _DOCKER_TO_OCI.get(media_type, media_type)
    return converted


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` the way this store writes every JSON blob."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_manifest(config_bytes: bytes, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Return an OCI image manifest for a config blob and layer descriptors."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": layers,
    }
