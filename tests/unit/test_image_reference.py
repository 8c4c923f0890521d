"""Image reference parsing with Docker's short-name rules."""

from __future__ import annotations

import pytest

from minicontainer.errors import InvalidArgument
from minicontainer.images.reference import parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("docker.io/alpine", "docker.io/library/alpine:latest"),
        ("index.docker.io/library/alpine:1", "docker.io/library/alpine:1"),
        ("user/app", "docker.io/user/app:latest"),
        ("ghcr.io/org/team/app:v2", "ghcr.io/org/team/app:v2"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:dev", "localhost:5000/app:dev"),
        ("127.0.0.1:5000/course/busybox:1.0", "127.0.0.1:5000/course/busybox:1.0"),
        (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
        (f"alpine:3@{DIGEST}", f"docker.io/library/alpine:3@{DIGEST}"),
    ],
)
def test_reference_full_form(text, expected):
    assert str(parse_reference(text)) == expected


def test_reference_port_is_not_a_tag():
    reference = parse_reference("registry.local:5000/app")
    assert reference.registry == "registry.local:5000"
    assert reference.repository == "app"
    assert reference.tag == "latest"


def test_reference_digest_has_no_default_tag():
    reference = parse_reference(f"alpine@{DIGEST}")
    assert reference.tag is None
    assert reference.digest == DIGEST


def test_reference_familiar_name():
    assert parse_reference("alpine").familiar_name == "alpine"
    assert parse_reference("user/app").familiar_name == "user/app"
    assert parse_reference("ghcr.io/a/b").familiar_name == "ghcr.io/a/b"


def test_reference_docker_hub_api_host():
    assert parse_reference("alpine").api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    "text",
    [
        "Alpine",
        "alpine:",
        "alpine:bad/tag",
        "alpine@sha256:short",
        "alpine@md5:" + "a" * 32,
        "/alpine",
        "a//b",
        "ghcr.io/",
        "alpine:" + "t" * 129,
    ],
)
def test_reference_invalid_rejected(text):
    with pytest.raises(InvalidArgument):
        parse_reference(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [("BAD NAME", "'BAD NAME'"), ("lab/BAD", "'lab/BAD'"), ("ghcr.io/A/b", "'A/b'")],
)
def test_reference_error_shows_name_as_written(text, shown):
    with pytest.raises(InvalidArgument) as raised:
        parse_reference(text)
    message = str(raised.value)
    assert f"invalid repository name {shown}" in message
    assert "library/" not in message
