"""Volumes and mounts: what a container sees at paths outside its image.

Three kinds of mount put data into a container. A bind mount shows a host
directory (or file) at a path inside the container. A named volume is a bind
mount of a directory that minictr keeps under its state root, so data
outlives the containers that wrote it. A tmpfs mount is a fresh file system
in memory that vanishes with the container.

All of them are made inside the container's own mount namespace, after the
overlay root exists and before pivot_root, and every target is resolved
inside the container's root so that a symlink in the image cannot place a
mount on the host. The runtime imports this package only for containers
that have mounts.

- ``spec``: parse ``-v``, ``--mount``, ``--tmpfs`` and ``--volumes-from``,
- ``volumes``: the named volume store,
- ``copyup``: fill a new volume from the image,
- ``plan``: host preparation and the mount steps.
"""

from .plan import prepare, remove_anonymous, volume_steps

__all__ = ["prepare", "remove_anonymous", "volume_steps"]
