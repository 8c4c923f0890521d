"""minicontainer: a container runtime in Python, built on the kernel directly."""

__version__ = "0.1.0"
