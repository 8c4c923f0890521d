"""The loopback-only test hook of the registry client.

Every test here replaces ``socket.getaddrinfo`` with a function that rejects
any host but 127.0.0.1, so a broken guard makes the test fail before a DNS
query or a packet can leave the machine.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from minicontainer.images import registry
from minicontainer.images.reference import parse_reference
from minicontainer.images.registry import (
    LOOPBACK_ONLY_ENV,
    LoopbackOnlyViolation,
    RegistryClient,
    check_loopback_only,
)
from minicontainer.images.store import ImageStore


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Host names resolved during the test; any host but 127.0.0.1 is refused."""
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_getaddrinfo(host, *args, **kwargs):
        resolved.append(str(host))
        if host != "127.0.0.1":
            raise AssertionError(f"the test resolved {host!r}: the guard let it pass")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_getaddrinfo)
    return resolved


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A private record file for the hook, apart from the session's one."""
    path = tmp_path / "rejected"
    monkeypatch.setenv(LOOPBACK_ONLY_ENV, str(path))
    return path


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/v2/",
        "http://127.8.9.10/v2/",
        "http://[::1]:5000/v2/",
        "http://localhost:5000/v2/",
    ],
)
def test_guard_allows_loopback(record, url):
    check_loopback_only(url)
    assert not record.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://registry-1.docker.io/v2/",
        "https://auth.docker.io/token?scope=x",
        "http://10.1.2.3:5000/v2/",
        "http://127.0.0.1.example.com/v2/",
        "http://[2001:db8::1]/v2/",
    ],
)
def test_guard_rejects_other_hosts(record, url):
    with pytest.raises(LoopbackOnlyViolation, match=LOOPBACK_ONLY_ENV):
        check_loopback_only(url)
    assert record.read_text().split() == [url]


def test_guard_off_without_variable(monkeypatch):
    monkeypatch.delenv(LOOPBACK_ONLY_ENV, raising=False)
    check_loopback_only("https://registry-1.docker.io/v2/")


def test_docker_hub_request_rejected_before_lookup(record, lookups):
    client = RegistryClient("registry-1.docker.io")
    with pytest.raises(LoopbackOnlyViolation):
        client.ping()
    assert lookups == []
    assert record.read_text().split() == ["https://registry-1.docker.io/v2/"]


def test_pull_of_short_name_rejected(record, lookups, tmp_path):
    store = ImageStore(str(tmp_path / "store"))
    with pytest.raises(LoopbackOnlyViolation):
        registry.pull(parse_reference("alpine"), store)
    assert lookups == []
    assert store.images() == []
    assert record.read_text().split() == [
        "https://registry-1.docker.io/v2/library/alpine/manifests/latest"
    ]


class _RedirectOffLoopback(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(307)
        self.send_header("Location", "http://storage.example.com/blob")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_redirect_off_loopback_rejected(record, lookups):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RedirectOffLoopback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = RegistryClient(host, insecure=True)
        with pytest.raises(LoopbackOnlyViolation):
            client.ping()
    finally:
        server.shutdown()
        server.server_close()
    assert set(lookups) == {"127.0.0.1"}
    assert record.read_text().split() == ["http://storage.example.com/blob"]
