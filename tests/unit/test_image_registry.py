"""Registry client pieces that need no server: platforms, manifests, credentials."""

from __future__ import annotations

import base64
import io
import json
import socket
import tarfile

import pytest

from minicontainer.images import auth
from minicontainer.images.errors import AuthenticationError, ImageError, RegistryError
from minicontainer.images.oci import chain_ids, sha256_digest, to_oci_manifest
from minicontainer.images.registry import (
    RegistryClient,
    _manifest_media_type,
    select_platform,
)
from minicontainer.images.store import host_platform
from minicontainer.images.unpack import unpack_layer_blob


def test_unreachable_registry_names_next_step():
    # A bound socket that does not listen refuses connections, and holding
    # it keeps the port from being reused while the test runs.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{closed.getsockname()[1]}"
        client = RegistryClient(host, insecure=True, timeout=10)
        with pytest.raises(RegistryError) as caught:
            client.ping()
    message = str(caught.value)
    assert f"cannot reach registry {host}" in message
    assert "Connection refused" in message
    assert message.endswith(
        "check the registry address and that the registry is running"
    )


def descriptor(
    architecture, os_name="linux", variant=None, digest="sha256:" + "0" * 64
):
    platform = {"os": os_name, "architecture": architecture}
    if variant:
        platform["variant"] = variant
    return {"digest": digest, "platform": platform}


def test_select_platform_picks_host_architecture():
    host, _ = host_platform()
    wanted = descriptor(host, digest="sha256:" + "1" * 64)
    index = {"manifests": [descriptor("s390x"), descriptor(host, "windows"), wanted]}
    assert select_platform(index, "x") == wanted


def test_select_platform_lists_what_exists():
    index = {"manifests": [descriptor("mips64le"), descriptor("s390x", "windows")]}
    with pytest.raises(ImageError, match="linux/mips64le, windows/s390x"):
        select_platform(index, "x")


def test_manifest_media_type_from_body():
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert _manifest_media_type(body, "") == "application/vnd.oci.image.index.v1+json"


def test_manifest_schema1_rejected():
    body = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    with pytest.raises(ImageError, match="schema 1"):
        _manifest_media_type(
            body, "application/vnd.docker.distribution.manifest.v1+prettyjws"
        )


def test_manifest_not_json_rejected():
    with pytest.raises(RegistryError, match="not JSON"):
        _manifest_media_type(b"<html>", "text/html")


def test_docker_manifest_converted_to_oci():
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json"},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}],
    }
    converted = to_oci_manifest(manifest)
    assert converted["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert (
        converted["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    )
    assert (
        converted["layers"][0]["mediaType"]
        == "application/vnd.oci.image.layer.v1.tar+gzip"
    )


def test_chain_ids_follow_the_spec():
    first, second = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_ids([first, second]) == [
        first,
        sha256_digest(f"{first} {second}".encode()),
    ]


def write_docker_config(directory, auths):
    (directory / "config.json").write_text(json.dumps({"auths": auths}))


def encoded(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_minictr_file_first(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_docker_config(
        tmp_path, {"reg.example:5000": {"auth": encoded("docker", "pw")}}
    )
    assert auth.find_credentials("reg.example:5000", str(tmp_path)) == ("docker", "pw")
    auth.store_credentials("reg.example:5000", "mine", "pw2", str(tmp_path / "root"))
    found = auth.find_credentials("reg.example:5000", str(tmp_path / "root"))
    assert found == ("mine", "pw2")


def test_credentials_docker_hub_legacy_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_docker_config(
        tmp_path, {"https://index.docker.io/v1/": {"auth": encoded("u", "p:x")}}
    )
    assert auth.find_credentials("docker.io", str(tmp_path)) == ("u", "p:x")


def test_credentials_url_key_matches_host(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_docker_config(tmp_path, {"https://ghcr.io": {"auth": encoded("u", "p")}})
    assert auth.find_credentials("ghcr.io", str(tmp_path)) == ("u", "p")
    assert auth.find_credentials("quay.io", str(tmp_path)) is None


def test_credentials_invalid_base64_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_docker_config(tmp_path, {"ghcr.io": {"auth": "%%%"}})
    with pytest.raises(AuthenticationError, match="base64"):
        auth.find_credentials("ghcr.io", str(tmp_path))


def test_logout_removes_only_that_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    root = str(tmp_path)
    auth.store_credentials("a.example", "u", "p", root)
    auth.store_credentials("b.example", "u", "p", root)
    assert auth.remove_credentials("a.example", root)
    assert not auth.remove_credentials("a.example", root)
    assert auth.find_credentials("b.example", root) == ("u", "p")


def test_zstd_layer_unpacks(tmp_path):
    zstandard = pytest.importorskip("zstandard", reason="zstd layers need zstandard")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    blob = tmp_path / "layer.tar.zst"
    blob.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    (tmp_path / "out").mkdir()
    result = unpack_layer_blob(str(blob), str(tmp_path / "out"), preserve_owner=False)
    assert (tmp_path / "out" / "hello").read_bytes() == b"hello"
    assert result.diff_id == sha256_digest(buffer.getvalue())
