"""minicontainer: a container runtime in Python, built on the kernel directly.

The Python API (``run``, ``create``, ``get``, ``Container``) lives in
``minicontainer.api`` and is imported on first use, so ``import
minicontainer`` stays cheap for the command line.
"""

__version__ = "0.1.0"

_API_NAMES = ("Container", "ExecFailed", "ExecResult", "create", "get", "run")

__all__ = ["__version__", *_API_NAMES]


def __getattr__(name: str):
    if name in _API_NAMES:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'minicontainer' has no attribute {name!r}")
