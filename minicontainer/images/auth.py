"""Registry credentials: ``minictr login`` and Docker's config file.

Both files use Docker's format: ``{"auths": {"HOST": {"auth": BASE64}}}``
where BASE64 encodes ``USER:PASSWORD``. minictr writes its own file,
``<state root>/auth.json`` with mode 0600, and reads Docker's
(``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) after it, so
a ``docker login`` done earlier works too. Credential helpers
(``credsStore``, ``credHelpers``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
from typing import Any

from .errors import AuthenticationError

log = logging.getLogger(__name__)

# Names under which Docker's config file stores Docker Hub's credentials.
_DOCKER_HUB_KEYS = (
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
)


def minictr_auth_path(root: str) -> str:
    return os.path.join(root, "auth.json")


def docker_config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return os.path.join(directory, "config.json")


def find_credentials(registry: str, root: str) -> tuple[str, str] | None:
    """Return (user, password) for ``registry``, or None for anonymous access."""
    for path in (minictr_auth_path(root), docker_config_path()):
        entry = _find_entry(_read_auths(path), registry)
        if entry is not None:
            return _decode_entry(entry, registry, path)
    return None


def store_credentials(registry: str, user: str, password: str, root: str) -> str:
    """Save credentials for ``registry`` in minictr's file; returns its path."""
    path = minictr_auth_path(root)
    data = _read_file(path)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    data.setdefault("auths", {})[registry] = {"auth": token}
    _write_private(path, data)
    return path


def remove_credentials(registry: str, root: str) -> bool:
    """Forget ``registry``'s credentials; returns whether there were any."""
    path = minictr_auth_path(root)
    data = _read_file(path)
    if registry not in data.get("auths", {}):
        return False
    del data["auths"][registry]
    _write_private(path, data)
    return True


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as config:
            return dict(json.load(config))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise AuthenticationError(
            f"invalid JSON in credentials file {path}: {exc}"
        ) from exc


def _read_auths(path: str) -> dict[str, Any]:
    return dict(_read_file(path).get("auths") or {})


def _find_entry(auths: dict[str, Any], registry: str) -> dict[str, Any] | None:
    keys = _DOCKER_HUB_KEYS if registry in _DOCKER_HUB_KEYS else (registry,)
    for key, entry in auths.items():
        host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if key in keys or host in keys:
            return dict(entry)
    return None


def _decode_entry(
    entry: dict[str, Any], registry: str, path: str
) -> tuple[str, str] | None:
    if "auth" not in entry:
        if entry:
            log.warning(
                "credentials for %s in %s have no 'auth' field: ignored", registry, path
            )
        return None
    try:
        decoded = base64.b64decode(entry["auth"], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    user, colon, password = decoded.partition(":")
    if not colon:
        raise AuthenticationError(
            f"invalid 'auth' value for {registry} in {path}: expected base64 of "
            "USER:PASSWORD; run 'minictr login' again"
        )
    return user, password


def _write_private(path: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-auth-", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        os.rename(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
