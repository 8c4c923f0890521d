"""Container images: the store, layer unpacking, registries and archives.

The runtime needs three things from an image, all here: the layer
directories to stack as overlayfs lowerdirs (``resolve_for_run``), the
command to run (``merge_command``) and the environment (``image_env``).
Importing this package is cheap; the store, the registry client and the
archive code load only when a function needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument

if TYPE_CHECKING:
    from .diff import LayerBlob

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class ImageForRun:
    lower_dirs: list[str]  # overlayfs lowerdir order: the top layer first
    config: dict[str, Any]  # the "config" section of the OCI image config
    image_id: str  # sha256:HEX of the image config
    reference: str  # the full reference, or the ID when the image was named by ID


def resolve_for_run(ref: str, root: str | None = None) -> ImageForRun:
    """Find image ``ref`` in the store and return what a container needs from it.

    Raises ``NotFound`` with the command that fetches the image.
    """
    from .store import ImageStore

    store = ImageStore(root)
    image = store.lookup(ref)
    # NOTE: mount(2) copies overlayfs options into one page (4096 bytes on
    # x86_64), and each path here is about 90 bytes under the default root,
    # so an image of more than about 40 layers fails to mount as it is.
    lower_dirs = list(reversed(store.layer_dirs(image)))
    if not lower_dirs:
        # overlayfs needs at least one lowerdir, and an image built FROM
        # scratch with only metadata steps has no layer.
        lower_dirs = [_empty_layer(store.layers_dir)]
    reference = _reference_used(ref, image.references) or image.id
    return ImageForRun(
        lower_dirs=lower_dirs,
        config=dict(image.config.get("config") or {}),
        image_id=image.id,
        reference=reference,
    )


def _reference_used(text: str, references: list[str]) -> str | None:
    from .reference import parse_reference

    try:
        name = str(parse_reference(text))
    except InvalidArgument:
        name = ""  # an image ID
    if name in references or (name and "@" in name):
        return name
    return references[0] if references else None


def _empty_layer(layers_dir: str) -> str:
    path = os.path.join(layers_dir, "empty", "diff")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def merge_command(
    image_config: dict[str, Any],
    entrypoint_override: str | list[str] | None,
    cmd_override: list[str] | None,
) -> list[str]:
    """Combine the image's Entrypoint and Cmd with the user's, as Docker does.

    ``entrypoint_override`` is None when ``--entrypoint`` was not given. A
    string is one executable, as ``--entrypoint`` takes it. A given one,
    even ``""`` which means none, also drops the image's Cmd.
    Arguments after the image name replace the Cmd. Raises
    ``InvalidArgument`` when nothing is left to run.
    """
    if isinstance(entrypoint_override, str):
        entrypoint_override = [entrypoint_override]
    if entrypoint_override is not None:
        entrypoint = [arg for arg in entrypoint_override if arg != ""]
        cmd = list(cmd_override or [])
    else:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = (
            list(cmd_override) if cmd_override else list(image_config.get("Cmd") or [])
        )
    command = entrypoint + cmd
    if not command:
        raise InvalidArgument(
            "no command to run: the image has no Entrypoint or Cmd, so give one "
            "after the image name"
        )
    return command


def image_env(config: dict[str, Any]) -> list[str]:
    """Return the image's Env with a default PATH when the image sets none."""
    env = [str(item) for item in config.get("Env") or []]
    if not any(item.startswith("PATH=") for item in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    return env


def layer_from_upper_dir(upper_dir: str, root: str | None = None) -> LayerBlob:
    """Store an overlayfs upper directory as a gzip layer blob.

    Whiteouts and opaque directories become OCI whiteout entries. Returns a
    ``LayerBlob`` (digest, diff_id, size) for ``ImageStore.commit_image``.
    """
    from .store import ImageStore

    return ImageStore(root).add_layer_from_dir(upper_dir, overlay_upper=True)
