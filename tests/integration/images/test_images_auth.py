"""Registry authentication: HTTP basic, bearer tokens, login and Docker's config.

The bearer tests run docker-registry in token mode with a small token server
in this process. It checks HTTP basic credentials and returns a JWT signed
with a throwaway RSA key (by ``openssl``) whose certificate the registry
trusts, which is the flow Docker Hub and GHCR use.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from registry_support import (
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TEST_TAG,
    Registry,
    free_port,
    skopeo_push,
    start_registry,
    stop_registry,
)

from minicontainer.images.errors import AuthenticationError
from minicontainer.images.reference import parse_reference
from minicontainer.images.registry import pull
from minicontainer.images.store import ImageStore

TOKEN_SERVICE = "minictr-test-registry"
TOKEN_ISSUER = "minictr-test-issuer"


def login(minictr, host: str, password: str = REGISTRY_PASSWORD):
    return minictr(
        "login",
        "--insecure-registry",
        "-u",
        REGISTRY_USER,
        "--password-stdin",
        host,
        input=password + "\n",
    )


# HTTP basic


def test_basic_auth_pull_without_login_fails(minictr, pushed_auth_image, docker_config):
    result = minictr("pull", "--insecure-registry", pushed_auth_image)
    assert result.returncode == 1
    assert "minictr login" in result.stderr


def test_basic_auth_login_then_pull(
    minictr, auth_registry, pushed_auth_image, docker_config, state_dirs
):
    result = login(minictr, auth_registry.host)
    assert result.returncode == 0, result.stderr
    assert "Login Succeeded" in result.stdout
    auth_file = Path(state_dirs["root"]) / "auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600

    pulled = minictr("pull", "--insecure-registry", pushed_auth_image)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr.count("Pull complete") == 3


def test_basic_auth_wrong_password_rejected(
    minictr, auth_registry, docker_config, state_dirs
):
    result = login(minictr, auth_registry.host, password="wrong")
    assert result.returncode == 1
    assert "rejected the credentials" in result.stderr
    assert not (Path(state_dirs["root"]) / "auth.json").exists()


def test_logout_forgets_credentials(
    minictr, auth_registry, pushed_auth_image, docker_config
):
    assert login(minictr, auth_registry.host).returncode == 0
    result = minictr("logout", auth_registry.host)
    assert result.returncode == 0, result.stderr
    pulled = minictr("pull", "--insecure-registry", pushed_auth_image)
    assert pulled.returncode == 1
    assert "minictr login" in pulled.stderr


def test_basic_auth_from_docker_config(
    minictr, auth_registry, pushed_auth_image, docker_config
):
    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    config = {"auths": {f"https://{auth_registry.host}": {"auth": token}}}
    (docker_config / "config.json").write_text(json.dumps(config))
    result = minictr("pull", "--insecure-registry", pushed_auth_image)
    assert result.returncode == 0, result.stderr


# Bearer tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Signs registry tokens with an RSA key whose certificate the registry trusts."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "token.key"
        self.cert = directory / "token.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
                "-days",
                "2",
                "-subj",
                "/CN=minictr-test-token",
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.chain = [base64.b64encode(der).decode()]
        self.requests: list[dict[str, str]] = []

    def token(self, subject: str, scope: str) -> str:
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.chain}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"


def _token_handler(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    expected = (
        "Basic "
        + base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            issuer.requests.append(query)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps(
                {"token": issuer.token(REGISTRY_USER, query.get("scope", ""))}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, test_layout):
    """A registry that accepts only bearer tokens, its token server, and the test image."""
    base = tmp_path_factory.mktemp("token-registry")
    issuer = TokenIssuer(base)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _token_handler(issuer))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (
        f"auth: {{token: {{realm: '{realm}', service: {TOKEN_SERVICE}, "
        f"issuer: {TOKEN_ISSUER}, rootcertbundle: {issuer.cert}}}}}"
    )
    process = None
    try:
        process, registry = start_registry(base / "registry", None, extra_config=[auth])
        registry = Registry(
            registry.host, registry.storage, (REGISTRY_USER, REGISTRY_PASSWORD)
        )
        reference = skopeo_push(test_layout, TEST_TAG, registry, "course/token")
        yield registry, issuer, reference
    finally:
        if process is not None:
            stop_registry(process)
        server.shutdown()
        server.server_close()


def test_bearer_token_pull_with_credentials(token_registry, state_dirs, docker_config):
    registry, issuer, reference = token_registry
    issuer.requests.clear()
    image = pull(
        parse_reference(reference),
        ImageStore(state_dirs["root"]),
        insecure=True,
        credentials=(REGISTRY_USER, REGISTRY_PASSWORD),
    )
    assert image.references == [reference]
    assert {
        "service": TOKEN_SERVICE,
        "scope": "repository:course/token:pull",
    } in issuer.requests


def test_bearer_token_pull_via_cli_login(minictr, token_registry, docker_config):
    registry, _, reference = token_registry
    assert login(minictr, registry.host).returncode == 0
    result = minictr("pull", "--insecure-registry", reference)
    assert result.returncode == 0, result.stderr


def test_bearer_token_refused_without_credentials(
    token_registry, state_dirs, docker_config
):
    _, _, reference = token_registry
    with pytest.raises(AuthenticationError, match="token server"):
        pull(parse_reference(reference), ImageStore(state_dirs["root"]), insecure=True)
