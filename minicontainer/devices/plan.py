"""The setup steps that put devices and GPU driver files into a container.

PID 1 runs them in its own mount namespace before pivot_root, after the
runtime's default /dev nodes exist: mknod for each node (``--device``, the
selected GPUs), then read-only bind mounts of the host's NVIDIA driver files.

The libraries go into the container's system library directory (the Debian
multiarch one, /usr/lib64 or /usr/lib, whichever the image has), each under
its real file name with the soname link beside it, as the driver's installer
lays them out. The dynamic linker searches that directory even without a
cache entry. When the image has a glibc linker cache (/etc/ld.so.cache), the
host's ldconfig then rebuilds it inside the container's root (``ldconfig
-r``), so ``ldconfig -p`` inside lists the driver too; that is what tools
such as PyTorch's compiler use to find libcuda.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .. import syscalls as sc
from ..config import ContainerConfig
from ..errors import MinictrError
from ..paths import resolve_in_root
from ..steps import Callback, MakeDir, MakeNode, Mount, Step, Symlink, WriteFile
from . import is_privileged

log = logging.getLogger(__name__)

_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# Names the runtime makes itself in /dev (see rootfs); a privileged
# container keeps those rather than copies of the host's.
_RUNTIME_DEV_NAMES = {"/dev/ptmx", "/dev/console", "/dev/tty", "/dev/fd"}
_LD_CONF = "/etc/ld.so.conf.d/000-minictr-nvidia.conf"


def node_steps(config: ContainerConfig, merged: str) -> list[Step]:
    """Plan the mknod, mount and linker steps for ``config.devices``."""
    devices = config.devices or {}
    nodes = list(devices.get("nodes", []))
    if is_privileged(config):
        from .nodes import host_nodes

        nodes = [n for n in host_nodes() if n["path"] not in _RUNTIME_DEV_NAMES] + nodes
    gpu = devices.get("gpu")
    if gpu:
        nodes += gpu["nodes"]
    steps = _mknod_steps(nodes, merged)
    if gpu:
        steps += driver_steps(config, gpu, merged)
    return steps


def _mknod_steps(nodes: list[dict[str, Any]], merged: str) -> list[Step]:
    steps: list[Step] = []
    made_dirs: set[str] = {"/dev"}
    for node in nodes:
        parent = os.path.dirname(node["path"])
        if parent not in made_dirs:
            steps.append(MakeDir(parent, root=merged))
            made_dirs.add(parent)
        steps.append(
            MakeNode(
                node["path"],
                node["type"],
                node["major"],
                node["minor"],
                node["mode"],
                node["uid"],
                node["gid"],
                root=merged,
            )
        )
    return steps


def library_dir(lower_dirs: list[str]) -> str:
    """Pick the image's system library directory, searching the top layer first."""
    candidates = []
    triplet = _MULTIARCH.get(os.uname().machine)
    if triplet:
        candidates.append(f"/usr/lib/{triplet}")
    candidates += ["/usr/lib64", "/usr/lib"]
    for candidate in candidates:
        for lower in lower_dirs:
            if os.path.isdir(resolve_in_root(lower, candidate)):
                return candidate
    return "/usr/lib"


def _has_file(lower_dirs: list[str], path: str) -> bool:
    return any(os.path.exists(resolve_in_root(lower, path)) for lower in lower_dirs)


def _read_only_bind(source: str, target: str, merged: str, make: str) -> list[Step]:
    # A bind mount ignores MS_RDONLY; a second, remounting call applies it.
    return [
        Mount(source, target, None, sc.MS_BIND, root=merged, make=make),
        Mount(
            None,
            target,
            None,
            sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID,
            root=merged,
            make=None,
        ),
    ]


def driver_steps(
    config: ContainerConfig, gpu: dict[str, Any], merged: str
) -> list[Step]:
    """Plan the read-only driver mounts and the linker setup for the GPU files."""
    from .gpu import capabilities_for, files_for

    capabilities = capabilities_for(gpu, config.process.env)
    log.debug("NVIDIA driver capabilities: %s", ",".join(capabilities))
    files = files_for(gpu, capabilities)
    lib_dir = library_dir(config.lower_dirs)
    steps: list[Step] = []
    for item in files:
        if item["kind"] == "library":
            target = f"{lib_dir}/{item['name']}"
            steps += _read_only_bind(item["source"], target, merged, "file")
            if item["soname"] != item["name"]:
                steps.append(
                    Symlink(item["name"], f"{lib_dir}/{item['soname']}", root=merged)
                )
            if item["soname"].startswith("libcuda.so."):
                # Programs that link or dlopen "libcuda.so" (Triton, nvcc's
                # output) find it through the development link.
                steps.append(
                    Symlink(item["soname"], f"{lib_dir}/libcuda.so", root=merged)
                )
        elif item["kind"] == "binary":
            steps += _read_only_bind(item["source"], item["target"], merged, "file")
        else:
            steps += _read_only_bind(item["source"], item["target"], merged, "dir")
    if _has_file(config.lower_dirs, "/etc/ld.so.cache"):
        if _has_file(config.lower_dirs, "/etc/ld.so.conf.d"):
            steps.append(WriteFile(_LD_CONF, lib_dir + "\n", root=merged))
        steps.append(_ldconfig_step(merged))
    else:
        log.debug("no /etc/ld.so.cache in the image: the linker cache is left alone")
    return steps


def _ldconfig_step(merged: str) -> Step:
    command = ["ldconfig", "-r", merged, "-X"]

    def run() -> None:
        # -X leaves the image's other library links as they are; the cache is
        # written into the container's overlay upper directory.
        import subprocess

        result = subprocess.run(
            command,
            check=False,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL": "C"},
        )
        if result.returncode != 0:
            raise MinictrError(
                f"{' '.join(command)} failed (exit status {result.returncode}):"
                f" {result.stderr.strip()[:500]}"
            )

    return Callback(f"{' '.join(command)} (rebuild the container's linker cache)", run)
