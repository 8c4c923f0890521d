"""A client for the OCI distribution API, the HTTP protocol of image registries.

A pull is a few GET requests below ``/v2/``: the manifest of a tag or digest
(``/v2/REPO/manifests/REF``), which may be an index listing one manifest per
platform, then the config and each layer (``/v2/REPO/blobs/DIGEST``). Every
blob is named by the sha256 of its content, so the client checks each one
before the store accepts it.

Authentication follows the challenge in a 401 response's
``WWW-Authenticate`` header. ``Basic`` means sending the user and password on
each request. ``Bearer realm=...,service=...,scope=...`` means asking the
realm (a token server) for a token, with the credentials if there are any,
and sending the token instead. Docker Hub and GHCR work that way, even for
anonymous pulls.

Plain HTTP is used only for registries the caller allows, because an
attacker on the path could otherwise swap the manifest and with it every
digest it names.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any, Protocol

from . import oci
from .errors import (
    AuthenticationError,
    DigestMismatch,
    ImageError,
    RegistryError,
    RegistryTLSError,
)
from .reference import Reference
from .store import Image, ImageStore, host_platform

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    [oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_LIST, oci.DOCKER_MANIFEST]
)
MAX_MANIFEST_BYTES = 4 << 20
_CHUNK = 1 << 20
_PARALLEL_DOWNLOADS = 3
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


class Progress(Protocol):
    """A receiver of per-layer download progress, drawn by the CLI.

    A layer that the store already has gets ``finish`` without ``start``.
    """

    def start(self, digest: str, total: int) -> None: ...

    def advance(self, digest: str, count: int) -> None: ...

    def finish(self, digest: str, status: str) -> None: ...


class _NoProgress:
    def start(self, digest: str, total: int) -> None:
        pass

    def advance(self, digest: str, count: int) -> None:
        pass

    def finish(self, digest: str, status: str) -> None:
        pass


# Test hook: when this variable names a file, the client rejects every request
# to a host that is not loopback and appends the rejected URL to that file.
# The test suite sets it for the whole session, so a test that would reach
# Docker Hub fails instead of sending traffic off the machine.
LOOPBACK_ONLY_ENV = "MINICTR_TEST_LOOPBACK_ONLY"


class LoopbackOnlyViolation(RegistryError):
    """A registry request to a host other than loopback while the test hook is set."""


def check_loopback_only(url: str) -> None:
    """Raise ``LoopbackOnlyViolation`` for a non-loopback ``url`` under the test hook.

    The check needs no DNS lookup: only IP literals in 127.0.0.0/8 or ``::1``
    and the name ``localhost`` count as loopback.
    """
    record_path = os.environ.get(LOOPBACK_ONLY_ENV)
    if not record_path:
        return
    import urllib.parse

    host = urllib.parse.urlsplit(url).hostname or ""
    if _is_loopback_host(host):
        return
    try:
        with open(record_path, "a", encoding="utf-8") as record:
            record.write(url + "\n")
    except OSError as exc:
        log.warning("cannot record the rejected URL in %s: %s", record_path, exc)
    raise LoopbackOnlyViolation(
        f"request to {url} rejected: {LOOPBACK_ONLY_ENV} allows only loopback"
        " registries, so give the test a 127.0.0.1 registry or --pull never"
    )


def _is_loopback_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_redirect_handler() -> Any:
    import urllib.request

    class GuardedRedirectHandler(urllib.request.HTTPRedirectHandler):
        """Apply the loopback-only test hook to redirect targets as well."""

        def redirect_request(  # type: ignore[no-untyped-def]
            self, req, fp, code, msg, headers, newurl
        ):
            check_loopback_only(newurl)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return GuardedRedirectHandler()


INSECURE_FLAG_HINT = "if this registry speaks plain HTTP, pass --insecure-registry"


def insecure_registries_from_env() -> set[str]:
    """Return the registries in ``MINICTR_INSECURE_REGISTRIES`` (comma-separated)."""
    value = os.environ.get("MINICTR_INSECURE_REGISTRIES", "")
    return {item.strip() for item in value.split(",") if item.strip()}


class RegistryClient:
    """Requests to one registry host, with its authentication state."""

    def __init__(
        self,
        host: str,
        *,
        credentials: tuple[str, str] | None = None,
        insecure: bool = False,
        timeout: float = 60.0,
    ) -> None:
        import urllib.request

        self.host = host
        self.base_url = f"{'http' if insecure else 'https'}://{host}"
        self.credentials = credentials
        self.timeout = timeout
        self._authorization: dict[str, str] = {}  # scope -> Authorization header
        self._opener = urllib.request.build_opener(_guarded_redirect_handler())

    def ping(self) -> None:
        """Check that the registry serves ``/v2/`` and accepts the credentials."""
        response = self._request(f"{self.base_url}/v2/", scope="")
        response.close()

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """Fetch a manifest or index and return (bytes, media type, digest).

        When ``reference`` is a digest, the content must hash to it. For a
        tag, it must match the ``Docker-Content-Digest`` header if one is sent.
        """
        url = f"{self.base_url}/v2/{repository}/manifests/{reference}"
        response = self._request(
            url, _pull_scope(repository), {"Accept": MANIFEST_ACCEPT}
        )
        with response:
            data = response.read(MAX_MANIFEST_BYTES + 1)
            header_digest = response.headers.get("Docker-Content-Digest", "")
            content_type = (
                response.headers.get("Content-Type", "").split(";")[0].strip()
            )
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(
                f"manifest {repository}:{reference} is larger than 4 MiB"
            )
        digest = oci.sha256_digest(data)
        expected = reference if reference.startswith("sha256:") else header_digest
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(
                f"manifest {repository}@{expected} from {self.host} hashes to {digest}: "
                "it was rejected"
            )
        media_type = _manifest_media_type(data, content_type)
        return data, media_type, digest

    def download_blob(
        self,
        repository: str,
        descriptor: dict[str, Any],
        store: ImageStore,
        progress: Progress,
    ) -> None:
        """Download one blob into the store, rejecting it unless it verifies."""
        digest = descriptor["digest"]
        url = f"{self.base_url}/v2/{repository}/blobs/{digest}"
        writer = store.blob_writer(digest, descriptor.get("size"))
        try:
            response = self._request(url, _pull_scope(repository))
            with response:
                while chunk := response.read(_CHUNK):
                    writer.write(chunk)
                    progress.advance(digest, len(chunk))
            writer.commit()
        except (OSError, http.client.HTTPException) as exc:
            writer.abort()
            raise RegistryError(
                f"download of blob {digest} from {self.host} failed: {exc}"
            ) from None
        except BaseException:
            writer.abort()
            raise

    def _request(
        self, url: str, scope: str, headers: dict[str, str] | None = None
    ) -> Any:
        """Send a GET and handle at most one authentication challenge."""
        import urllib.error

        try:
            return self._send(url, scope, headers or {})
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise _http_error(url, exc) from None
            challenge = exc.headers.get("WWW-Authenticate", "")
            exc.close()
        self._authorization[scope] = self._answer_challenge(challenge, scope)
        try:
            return self._send(url, scope, headers or {})
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise AuthenticationError(
                    f"registry {self.host} rejected the credentials for {url}: "
                    f"check them with 'minictr login {self.host}'"
                ) from None
            raise _http_error(url, exc) from None

    def _send(self, url: str, scope: str, headers: dict[str, str]) -> Any:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, headers=headers)
        authorization = self._authorization.get(scope)
        if authorization:
            # An unredirected header is dropped when a blob request redirects
            # to storage on another host, so the token never leaves the registry.
            request.add_unredirected_header("Authorization", authorization)
        check_loopback_only(url)
        log.debug("GET %s", url)
        try:
            return self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            message = f"cannot reach registry {self.host} ({url}): {reason}"
            if _is_tls_failure(self.base_url, str(reason)):
                raise RegistryTLSError(message, INSECURE_FLAG_HINT) from None
            raise RegistryError(
                f"{message}: check the registry address and that the registry"
                " is running"
            ) from None

    def _answer_challenge(self, challenge: str, scope: str) -> str:
        scheme, _, params_text = challenge.partition(" ")
        params = {
            m[0].lower(): m[1] or m[2] for m in _CHALLENGE_PARAM_RE.findall(params_text)
        }
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise AuthenticationError(
                    f"registry {self.host} requires a login: run 'minictr login {self.host}'"
                )
            return _basic_header(self.credentials)
        if scheme.lower() == "bearer" and "realm" in params:
            return "Bearer " + self._fetch_token(params, scope)
        raise AuthenticationError(
            f"registry {self.host} sent an unsupported authentication challenge {challenge!r}"
        )

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        import urllib.error
        import urllib.parse
        import urllib.request

        query = {"service": params.get("service", "")}
        if scope or params.get("scope"):
            query["scope"] = scope or params["scope"]
        url = (
            params["realm"]
            + "?"
            + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        )
        request = urllib.request.Request(url)
        if self.credentials is not None:
            request.add_unredirected_header(
                "Authorization", _basic_header(self.credentials)
            )
        check_loopback_only(url)
        log.debug("GET token %s", url)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = json.loads(response.read(MAX_MANIFEST_BYTES))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthenticationError(
                    f"token server {params['realm']} rejected the request for {scope or 'access'}: "
                    f"check the credentials with 'minictr login {self.host}'"
                ) from None
            raise _http_error(url, exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(
                f"token request to {params['realm']} failed: {exc}"
            ) from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthenticationError(
                f"token server {params['realm']} returned no token"
            )
        return str(token)


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _basic_header(credentials: tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _http_error(url: str, exc: Any) -> RegistryError:
    detail = ""
    try:
        errors = json.loads(exc.read(65536)).get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, OSError):
        pass
    exc.close()
    if exc.code == 404:
        return RegistryError(
            f"not found in registry: {url}" + (f" ({detail})" if detail else "")
        )
    return RegistryError(
        f"registry request {url} failed: HTTP {exc.code} {detail or exc.reason}"
    )


def _is_tls_failure(base_url: str, reason: str) -> bool:
    return base_url.startswith("https:") and (
        "SSL" in reason or "WRONG_VERSION" in reason
    )


def _manifest_media_type(data: bytes, content_type: str) -> str:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise RegistryError(
            f"registry sent a manifest that is not JSON: {exc}"
        ) from None
    media_type = body.get("mediaType") or content_type
    if not media_type and "manifests" in body:
        media_type = oci.OCI_INDEX
    elif not media_type and "layers" in body:
        media_type = oci.OCI_MANIFEST
    if body.get("schemaVersion") == 1 or "signed" in media_type:
        raise ImageError(
            "Docker schema 1 manifests are not supported: push the image again"
        )
    if media_type not in oci.INDEX_TYPES + oci.MANIFEST_TYPES:
        raise ImageError(f"unsupported manifest media type {media_type!r}")
    return media_type


def select_platform(index: dict[str, Any], reference: str) -> dict[str, Any]:
    """Return the descriptor in ``index`` for linux on this host's architecture."""
    architecture, variant = host_platform()
    candidates = [
        d
        for d in index.get("manifests", [])
        if d.get("platform", {}).get("os") == "linux"
        and d.get("platform", {}).get("architecture") == architecture
    ]
    exact = [d for d in candidates if d["platform"].get("variant", "") in ("", variant)]
    if exact or candidates:
        return (exact or candidates)[0]
    available = sorted(
        "{os}/{architecture}".format(
            **d.get("platform", {"os": "?", "architecture": "?"})
        )
        for d in index.get("manifests", [])
    )
    raise ImageError(
        f"image {reference} has no variant for linux/{architecture}; it has: "
        + (", ".join(available) or "none")
    )


def pull(
    reference: Reference,
    store: ImageStore,
    *,
    insecure: bool = False,
    credentials: tuple[str, str] | None = None,
    progress: Progress | None = None,
    on_manifest: Callable[[str], None] | None = None,
) -> Image:
    """Pull ``reference`` into ``store``: manifest, config and layers, unpacked.

    Blobs the store has are not downloaded again. A tag pull tags the image;
    a digest pull stores it untagged, found again by that digest.
    """
    progress = progress or _NoProgress()
    client = RegistryClient(
        reference.api_host, credentials=credentials, insecure=insecure
    )
    data, media_type, digest = client.get_manifest(
        reference.repository, reference.digest or reference.tag or "latest"
    )
    if media_type in oci.INDEX_TYPES:
        chosen = select_platform(json.loads(data), str(reference))
        data, media_type, digest = client.get_manifest(
            reference.repository, chosen["digest"]
        )
        if media_type not in oci.MANIFEST_TYPES:
            raise ImageError(
                f"{reference}: the platform entry {digest} is not a manifest"
            )
    if on_manifest is not None:
        on_manifest(digest)
    manifest = json.loads(data)

    with store.ingest_lock():
        config_descriptor = manifest["config"]
        if not store.has_blob(config_descriptor["digest"]):
            client.download_blob(
                reference.repository, config_descriptor, store, _NoProgress()
            )
        config = store.read_json(config_descriptor["digest"])
        _fetch_layers(client, reference, manifest, config, store, progress)
        tags = [reference] if reference.digest is None else []
        return store.add_image(data, tags, source_digest=digest)


def _fetch_layers(
    client: RegistryClient,
    reference: Reference,
    manifest: dict[str, Any],
    config: dict[str, Any],
    store: ImageStore,
    progress: Progress,
) -> None:
    """Download and unpack the layers, a few at a time, as Docker does."""
    from concurrent.futures import ThreadPoolExecutor

    layers = manifest.get("layers", [])
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(layers) != len(diff_ids):
        raise ImageError(
            f"image {reference} is invalid: {len(layers)} layers in the manifest, "
            f"{len(diff_ids)} in the config"
        )
    chain_ids = oci.chain_ids(diff_ids)

    def fetch(index: int) -> None:
        descriptor = oci.convert_descriptor(layers[index])
        digest = descriptor["digest"]
        if store.has_blob(digest):
            status = "Already exists"
        else:
            progress.start(digest, int(descriptor.get("size", 0)))
            client.download_blob(reference.repository, descriptor, store, progress)
            status = "Pull complete"
        store.unpack_layer(descriptor, diff_ids[index], chain_ids[index])
        progress.finish(digest, status)

    with ThreadPoolExecutor(max_workers=_PARALLEL_DOWNLOADS) as pool:
        for future in [pool.submit(fetch, i) for i in range(len(layers))]:
            future.result()
