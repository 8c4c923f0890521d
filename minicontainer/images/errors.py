"""Errors of the image store, the layer unpacker and the registry client.

They extend the project's hierarchy in ``minicontainer.errors``, so the CLI
prints them as one line and exits with status 125 like any runtime failure.
"""

from __future__ import annotations

from ..errors import MinictrError


class ImageError(MinictrError):
    """An image, manifest, config or archive that is invalid or inconsistent."""


class DigestMismatch(ImageError):
    """A blob whose content does not hash to the digest that names it."""


class LayerError(ImageError):
    """A layer archive that is malformed or tries to write outside its layer."""


class RegistryError(MinictrError):
    """A registry request that failed: network, HTTP status or protocol."""


class AuthenticationError(RegistryError):
    """A registry that rejected the credentials, or asked for missing ones."""


class RegistryTLSError(RegistryError):
    """An HTTPS request whose TLS handshake failed, as against a plain-HTTP registry.

    ``detail`` is the message without ``hint``, so a command whose fix is not
    ``--insecure-registry`` can give its own hint.
    """

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(f"{detail}; {hint}" if hint else detail)
        self.detail = detail
