"""Pull policies: whether ``run``, ``create`` and Compose fetch an image first.

Docker's ``--pull`` option takes three policies. ``missing``, the default,
pulls only when the local store has no image by that name. ``always``
requests the manifest from the registry every time and downloads the blobs
the store lacks. ``never`` uses the store alone and fails when the image is
not there.
Compose's ``pull_policy`` adds ``build`` and the alias ``if_not_present``;
the Compose code maps those onto these three.

Only a name that a registry could serve is pulled. An image ID, a prefix of
a stored image's ID (unless a stored reference has that name), or a name that
is not a valid reference, is looked up in the store and never sent to a
registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from .reference import Reference
    from .registry import Progress
    from .store import Image, ImageStore

PULL_MISSING = "missing"
PULL_ALWAYS = "always"
PULL_NEVER = "never"
PULL_POLICIES = (PULL_MISSING, PULL_ALWAYS, PULL_NEVER)

# Docker rejects a 64-digit hexadecimal repository name for the same reason:
# it is an image ID, and pulling it by name would fetch something else.
_IMAGE_ID_RE = re.compile(r"(sha256:)?[0-9a-f]{64}")


@dataclass
class PullSettings:
    """Pull policy and progress display of a command that starts containers."""

    policy: str = PULL_MISSING
    insecure: bool = False  # plain HTTP, as ``minictr pull --insecure-registry``
    progress: Progress | None = None  # per-layer progress of a download
    output: Callable[[str], None] | None = None  # status lines, without newline
    option: str = "--pull"  # the option name that error messages tell to change
    # False for commands without --insecure-registry, such as Compose, whose
    # hints name MINICTR_INSECURE_REGISTRIES instead.
    has_insecure_flag: bool = True


def parse_pull_policy(value: str, option: str = "--pull") -> str:
    """Return ``value`` as one of ``PULL_POLICIES``, or raise ``InvalidArgument``."""
    policy = value.strip().lower()
    if policy not in PULL_POLICIES:
        raise InvalidArgument(
            f"invalid {option} value {value!r}: use missing, always or never"
        )
    return policy


def is_insecure(registry: str, flag: bool) -> bool:
    """Return True when ``registry`` is reached over plain HTTP.

    The flag is ``--insecure-registry``; ``MINICTR_INSECURE_REGISTRIES``
    names registries that always use plain HTTP.
    """
    from .registry import insecure_registries_from_env

    return flag or registry in insecure_registries_from_env()


def credentials_for(registry: str) -> tuple[str, str] | None:
    """Return the saved login of ``registry`` (minictr's or Docker's), or None."""
    from .auth import find_credentials
    from .store import default_state_root

    return find_credentials(registry, default_state_root())


def pull_reference(
    reference: Reference,
    store: ImageStore,
    *,
    insecure: bool = False,
    progress: Progress | None = None,
    on_manifest: Callable[[str], None] | None = None,
) -> Image:
    """Pull ``reference`` with the saved login and the insecure-registry settings."""
    from .registry import pull

    return pull(
        reference,
        store,
        insecure=is_insecure(reference.registry, insecure),
        credentials=credentials_for(reference.registry),
        progress=progress,
        on_manifest=on_manifest,
    )


def pullable_reference(name: str) -> Reference | None:
    """Return the reference a registry would serve ``name`` as, or None.

    None means the name is an image ID or not a valid reference.
    """
    from .reference import parse_reference

    if _IMAGE_ID_RE.fullmatch(name):
        return None
    try:
        return parse_reference(name)
    except InvalidArgument:
        return None


def ensure_image(
    name: str, settings: PullSettings, root: str | None = None
) -> Image | None:
    """Pull image ``name`` if ``settings.policy`` requires it; return what was pulled.

    Returns None when no pull was needed. Raises ``NotFound`` for a missing
    image under ``never`` or a missing image ID, ``InvalidArgument`` for a
    name that is not a valid reference or an image ID under ``always``, and
    ``RegistryError`` with the image name when the pull fails.
    """
    from .reference import parse_reference
    from .store import ImageStore

    store = ImageStore(root)
    if settings.policy == PULL_ALWAYS:
        # A short ID such as b31ab38cdf48 is also a valid repository name, so
        # only the store can tell that it means an image ID.
        if _IMAGE_ID_RE.fullmatch(name) or store.lookup_by_id(name) is not None:
            raise InvalidArgument(
                f"cannot pull {name!r} because it is an image ID, which no registry"
                f" serves: set {settings.option} to missing or never"
            )
        # parse_reference raises InvalidArgument naming the rule that failed.
        return _pull_for_run(name, parse_reference(name), store, settings)

    try:
        store.lookup(name)
        return None
    except NotFound:
        pass
    if _IMAGE_ID_RE.fullmatch(name):
        raise NotFound(
            f"image ID {name!r} not found in the store:"
            " list the stored images with 'minictr images'"
        )
    # The store cannot hold an invalid name, so a pull hint would only lead
    # to the same error from 'minictr pull'.
    reference = parse_reference(name)
    if settings.policy == PULL_NEVER:
        pull_command = "minictr pull"
        if is_insecure(reference.registry, settings.insecure):
            pull_command += " --insecure-registry"
        raise NotFound(
            f"image {name!r} not found locally and {settings.option} is never:"
            f" run '{pull_command} {name}' first, or set {settings.option} to missing"
        )
    _emit(settings, f"Unable to find image '{name}' locally")
    return _pull_for_run(name, reference, store, settings)


def _pull_for_run(
    name: str, reference: Reference, store: ImageStore, settings: PullSettings
) -> Image:
    from .errors import ImageError, RegistryError, RegistryTLSError
    from .registry import INSECURE_FLAG_HINT

    _emit(settings, f"Pulling {reference}")
    try:
        image = pull_reference(
            reference,
            store,
            insecure=settings.insecure,
            progress=settings.progress,
            on_manifest=lambda digest: _emit(settings, f"Digest: {digest}"),
        )
    except RegistryTLSError as exc:
        hint = INSECURE_FLAG_HINT
        if not settings.has_insecure_flag:
            hint = (
                "if this registry speaks plain HTTP, add"
                f" {reference.registry} to MINICTR_INSECURE_REGISTRIES"
            )
        detail = f"cannot pull image {name!r}: {exc.detail}"
        raise RegistryTLSError(detail, hint) from exc
    except (RegistryError, ImageError) as exc:
        raise type(exc)(f"cannot pull image {name!r}: {exc}") from exc
    _emit(settings, f"Pulled {reference} ({image.short_id})")
    return image


def _emit(settings: PullSettings, line: str) -> None:
    if settings.output is not None:
        settings.output(line)
