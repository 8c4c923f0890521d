"""Container networking: modes, addresses, bridges, NAT and names.

The runtime uses :func:`prepare`, :func:`attach`, :func:`release`,
:func:`write_etc_files` and :func:`netns_path_for`; the CLI uses
:mod:`.manage` for ``minictr network ...``. Importing this package is cheap:
pyroute2 and the ``nft`` tool are used only once a container joins a bridge
network.
"""

from __future__ import annotations

from .container import (
    attach,
    netns_path_for,
    prepare,
    published_ports,
    release,
    write_etc_files,
)

__all__ = [
    "attach",
    "netns_path_for",
    "prepare",
    "published_ports",
    "release",
    "write_etc_files",
]
