"""Container networking: modes, addresses, bridges, NAT and names.

The runtime uses :func:`prepare`, :func:`attach`, :func:`release`,
:func:`write_etc_files` and :func:`netns_path_for`; the CLI uses
:mod:`.manage` for ``minictr network ...``. Importing this package is cheap:
pyroute2 and the ``nft`` tool are used only once a container joins a bridge
network.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "attach",
    "netns_path_for",
    "prepare",
    "published_ports",
    "release",
    "write_etc_files",
]


def __getattr__(name: str) -> Any:
    # The runtime functions live in .container, which imports addresses,
    # hashing and DNS helpers: load it on first use, so that importing a
    # submodule such as .ports for option parsing stays cheap.
    if name in __all__:
        return getattr(importlib.import_module(".container", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
