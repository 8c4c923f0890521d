"""Image references: ``[REGISTRY/]REPOSITORY[:TAG][@DIGEST]``.

The rules are Docker's, so a name means the same here as in ``docker pull``.
The first path component is a registry only when it contains a dot or a
colon or is ``localhost``. Otherwise the registry is Docker Hub
(``docker.io``), where a one-component name lives under ``library/``. Without
a tag or a digest the tag is ``latest``. So ``alpine`` is
``docker.io/library/alpine:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgument

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# The host that serves Docker Hub's registry API; docker.io itself redirects.
DOCKER_HUB_API_HOST = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_REGISTRY_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    @property
    def name(self) -> str:
        """The repository with its registry, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The repository as Docker prints it: ``alpine`` for Docker Hub's library."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        return self.repository.removeprefix("library/")

    @property
    def api_host(self) -> str:
        """The host whose ``/v2/`` API serves this repository."""
        if self.registry == DEFAULT_REGISTRY:
            return DOCKER_HUB_API_HOST
        return self.registry

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)


def parse_reference(text: str) -> Reference:
    """Parse ``text`` into a full reference with Docker's short-name rules."""
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidArgument(
                f"invalid digest {digest!r} in image reference {text!r}: "
                "expected sha256: and 64 lowercase hex digits"
            )

    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(
                f"invalid tag {tag!r} in image reference {text!r}: use up to 128"
                " letters, digits and separators . _ -, not starting with . or -"
            )

    registry, repository = _split_registry(remainder)
    if not _REGISTRY_RE.fullmatch(registry):
        raise InvalidArgument(
            f"invalid registry {registry!r} in image reference {text!r}:"
            " use a host name or IP address, with an optional :PORT"
        )
    if not _REPOSITORY_RE.fullmatch(repository):
        # Name the repository as written, without the library/ added above.
        written = repository if "/" in remainder else remainder
        raise InvalidArgument(
            f"invalid repository name {written!r} in image reference {text!r}: "
            "use lowercase letters, digits and separators . _ - /"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def is_digest(text: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(text))
