"""NVIDIA GPUs: find them, pick the requested ones, list what a container needs.

A CUDA program inside a container needs three things from the host:

- device nodes: ``/dev/nvidiaN`` for each GPU (major 195, minor N), the
  control node ``/dev/nvidiactl``, and, where the modules are loaded,
  ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools`` (unified memory, with a
  major number chosen at load time), ``/dev/nvidia-modeset`` and the
  ``/dev/nvidia-caps/*`` nodes for MIG;
- the user-space half of the driver, which must match the kernel module's
  version exactly, so it comes from the host and not from the image:
  ``libcuda.so``, ``libnvidia-ml.so`` and their siblings, the GSP firmware,
  and tools such as ``nvidia-smi``;
- device rules that let it open those nodes.

The kernel driver describes each GPU in
``/proc/driver/nvidia/gpus/BUS/information`` (model, UUID, bus location and
the minor number of its node), and its version in ``/proc/driver/nvidia/
version``. The libraries are found through the host's linker cache, as
``ldconfig -p`` prints it. ``nvidia-smi`` numbers GPUs in PCI bus order, and
so does ``--gpus device=N`` here.

Every path is read below a host root, ``/`` unless the environment variable
``MINICTR_GPU_HOST_ROOT`` names another directory; tests point it at a fake
host tree.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..paths import resolve_in_root

log = logging.getLogger(__name__)

HOST_ROOT_ENV = "MINICTR_GPU_HOST_ROOT"

# Driver library names (without ".so") and tools, by driver capability, as
# NVIDIA_DRIVER_CAPABILITIES names them.
# NOTE: these lists are not checked against a real driver install by any
# test here; a library missing from them is not given to the container.
LIBRARIES = {
    "utility": ("libnvidia-ml", "libnvidia-cfg"),
    "compute": (
        "libcuda",
        "libcudadebugger",
        "libnvidia-opencl",
        "libnvidia-gpucomp",
        "libnvidia-ptxjitcompiler",
        "libnvidia-fatbinaryloader",
        "libnvidia-allocator",
        "libnvidia-compiler",
        "libnvidia-pkcs11",
        "libnvidia-pkcs11-openssl3",
        "libnvidia-nvvm",
    ),
    "video": (
        "libvdpau_nvidia",
        "libnvidia-encode",
        "libnvidia-opticalflow",
        "libnvcuvid",
    ),
    "graphics": (
        "libnvidia-eglcore",
        "libnvidia-glcore",
        "libnvidia-tls",
        "libnvidia-glsi",
        "libnvidia-fbc",
        "libnvidia-ifr",
        "libnvidia-rtcore",
        "libnvoptix",
        "libGLX_nvidia",
        "libEGL_nvidia",
        "libGLESv2_nvidia",
        "libGLESv1_CM_nvidia",
        "libnvidia-glvkspirv",
    ),
    "ngx": ("libnvidia-ngx",),
}
BINARIES = {
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
}
# A container with a capability cannot work without these.
REQUIRED = {"utility": "libnvidia-ml", "compute": "libcuda"}
CAPABILITIES = tuple(LIBRARIES)
# Used when neither --gpus nor NVIDIA_DRIVER_CAPABILITIES names capabilities,
# as nerdctl's --gpus does; older NVIDIA runtimes gave "utility" alone.
DEFAULT_CAPABILITIES = ("compute", "utility")

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_BINARY_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")
# The marker ldconfig -p prints for libraries of this machine's ABI; other
# entries (32-bit compat libraries) are skipped.
_ABI_MARKERS = {"x86_64": "x86-64", "aarch64": "AArch64", "ppc64le": "64bit"}
_CACHE_LINE = re.compile(r"^\s+(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)$")


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver describes it."""

    index: int
    uuid: str
    minor: int
    bus: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "minor": self.minor,
            "bus": self.bus,
            "model": self.model,
        }


def host_root() -> str:
    return os.environ.get(HOST_ROOT_ENV) or "/"


def _host(root: str, path: str) -> str:
    return resolve_in_root(root, path)


class DriverMissing(InvalidArgument):
    """The host lacks the NVIDIA driver, or a part of it that was requested."""


# ---------------------------------------------------------------- request


def parse_request(value: str) -> dict[str, Any]:
    """Parse a ``--gpus`` value as Docker does.

    ``all``, a count ``N``, or ``device=0,2`` / ``device=GPU-UUID``, optionally
    with ``capabilities=compute,utility``; fields are separated by commas, and
    a field with commas inside is quoted: ``'"device=0,2",capabilities=video'``.
    Returns ``{"count": int | None, "devices": list | None, "capabilities":
    list | None}``; count None with devices None means every GPU.
    """
    import csv

    try:
        (fields,) = list(csv.reader([value]))
    except (ValueError, csv.Error) as exc:
        raise InvalidArgument(f"invalid --gpus {value!r}: {exc}") from exc
    request: dict[str, Any] = {"count": None, "devices": None, "capabilities": None}
    chosen = False
    for field in fields:
        key, sep, rest = field.partition("=")
        if not sep and (field == "all" or field.isdigit()):
            key, rest = "count", field
        if key == "count" and rest == "all":
            chosen = True
        elif key == "count" and rest.isdigit() and int(rest) > 0:
            request["count"] = int(rest)
            chosen = True
        elif key == "device" and rest:
            request["devices"] = [item.strip() for item in rest.split(",") if item]
            chosen = True
        elif key == "capabilities" and rest:
            request["capabilities"] = parse_capabilities(rest, f"--gpus {value!r}")
        else:
            raise InvalidArgument(
                f"invalid --gpus {value!r}: use all, a count such as 2,"
                " device=0,2 or device=GPU-UUID (quoted when it has commas),"
                " optionally with capabilities=compute,utility"
            )
    if not chosen:
        raise InvalidArgument(f"invalid --gpus {value!r}: name all, a count or device=")
    if request["count"] is not None and request["devices"] is not None:
        raise InvalidArgument(
            f"invalid --gpus {value!r}: give a count or device=, not both"
        )
    return request


def parse_capabilities(text: str, what: str) -> list[str]:
    """Parse ``compute,utility`` or ``all`` into capability names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if "all" in names:
        return list(CAPABILITIES)
    unknown = [name for name in names if name not in CAPABILITIES and name != "display"]
    if unknown or not names:
        raise InvalidArgument(
            f"invalid driver capabilities {text!r} in {what}: use all or any of"
            f" {', '.join(CAPABILITIES)}"
        )
    # NOTE: "display" (the X server driver) is accepted and gives nothing here.
    return sorted(set(names) - {"display"})


def capabilities_for(gpu_config: dict[str, Any], env: list[str]) -> list[str]:
    """Return the driver capabilities: from ``--gpus``, else the container's env.

    ``NVIDIA_DRIVER_CAPABILITIES`` (set by NGC images, or with ``-e``) is read
    only when ``--gpus`` did not name capabilities.
    """
    if gpu_config.get("capabilities"):
        return list(gpu_config["capabilities"])
    for item in reversed(env):
        key, _, value = item.partition("=")
        if key == "NVIDIA_DRIVER_CAPABILITIES" and value.strip():
            return parse_capabilities(value, "NVIDIA_DRIVER_CAPABILITIES")
    return list(DEFAULT_CAPABILITIES)


# -------------------------------------------------------------- discovery


def driver_version(root: str) -> str:
    """Read the kernel module's version from ``/proc/driver/nvidia/version``."""
    path = _host(root, "/proc/driver/nvidia/version")
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        raise DriverMissing(
            f"--gpus: the NVIDIA kernel driver is not loaded ({path} is missing):"
            " install the NVIDIA driver and load its module (modprobe nvidia)"
        ) from None
    match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    if not match:
        raise DriverMissing(f"--gpus: no driver version found in {path}")
    return match.group(1)


def parse_information(text: str) -> dict[str, str]:
    """Parse a ``/proc/driver/nvidia/gpus/BUS/information`` file into its fields."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def list_gpus(root: str) -> list[Gpu]:
    """Return the host's GPUs in PCI bus order, numbered as nvidia-smi does."""
    directory = _host(root, "/proc/driver/nvidia/gpus")
    try:
        buses = sorted(os.listdir(directory))
    except FileNotFoundError:
        buses = []
    gpus = []
    for bus in buses:
        path = os.path.join(directory, bus, "information")
        with open(path, encoding="utf-8", errors="replace") as file:
            fields = parse_information(file.read())
        minor = fields.get("Device Minor", "")
        uuid = fields.get("GPU UUID", "")
        if not minor.isdigit() or not uuid:
            raise DriverMissing(f"--gpus: {path} lacks 'Device Minor' or 'GPU UUID'")
        gpus.append(
            Gpu(
                len(gpus),
                uuid,
                int(minor),
                fields.get("Bus Location", bus),
                fields.get("Model", "unknown"),
            )
        )
    return gpus


def select(gpus: list[Gpu], request: dict[str, Any]) -> list[Gpu]:
    """Pick the requested GPUs by count, index or UUID (a unique UUID prefix too)."""
    if not gpus:
        raise DriverMissing(
            "--gpus: the NVIDIA driver lists no GPU in /proc/driver/nvidia/gpus"
        )
    if request["devices"] is None:
        count = request["count"] or len(gpus)
        if count > len(gpus):
            raise InvalidArgument(
                f"--gpus {count}: this host has only {len(gpus)} GPU(s)"
            )
        return gpus[:count]
    chosen: list[Gpu] = []
    for name in request["devices"]:
        if name.isdigit():
            matches = [gpu for gpu in gpus if gpu.index == int(name)]
        else:
            matches = [gpu for gpu in gpus if gpu.uuid.startswith(name)]
        if len(matches) != 1:
            known = ", ".join(f"{gpu.index}={gpu.uuid}" for gpu in gpus)
            raise InvalidArgument(
                f"--gpus device={name}: no single GPU has this index or UUID"
                f" (GPUs: {known})"
            )
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _node(root: str, path: str) -> dict[str, Any] | None:
    from .nodes import stat_node

    host_path = _host(root, path)
    try:
        mode = os.stat(host_path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISCHR(mode):
        return None
    node = stat_node(host_path, path, "rwm")
    return node


def device_nodes(root: str, gpus: list[Gpu]) -> list[dict[str, Any]]:
    """Return the nodes for ``gpus``: one each, the control nodes, MIG caps."""
    nodes = []
    for gpu in gpus:
        node = _node(root, f"/dev/nvidia{gpu.minor}")
        if node is None:
            raise DriverMissing(
                f"--gpus: GPU {gpu.index} ({gpu.uuid}) has no device node"
                f" {_host(root, f'/dev/nvidia{gpu.minor}')}: create the nodes with"
                " nvidia-modprobe or by running nvidia-smi once on the host"
            )
        nodes.append(node)
    for name in CONTROL_NODES:
        node = _node(root, f"/dev/{name}")
        if node is None and name == "nvidiactl":
            raise DriverMissing(
                f"--gpus: {_host(root, '/dev/nvidiactl')} is missing: create it with"
                " nvidia-modprobe or by running nvidia-smi once on the host"
            )
        if node is not None:
            nodes.append(node)
    caps = _host(root, "/dev/nvidia-caps")
    if os.path.isdir(caps):
        for name in sorted(os.listdir(caps)):
            node = _node(root, f"/dev/nvidia-caps/{name}")
            if node is not None:
                nodes.append(node)
    return nodes


def linker_cache(root: str) -> list[tuple[str, str, str]]:
    """Return ``(soname, flags, path)`` for each library in the host's linker cache.

    Runs the host's ``ldconfig -p`` on ``ROOT/etc/ld.so.cache``; the paths it
    prints are relative to ``root``.
    """
    cache = _host(root, "/etc/ld.so.cache")
    if not os.path.exists(cache):
        raise DriverMissing(
            f"--gpus: the linker cache {cache} is missing: run ldconfig"
        )
    try:
        result = subprocess.run(
            ["ldconfig", "-p", "-C", cache],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise DriverMissing("--gpus: ldconfig is not installed on the host") from None
    except subprocess.CalledProcessError as exc:
        raise DriverMissing(
            f"--gpus: ldconfig -p -C {cache} failed: {exc.stderr.strip()}"
        ) from exc
    return parse_linker_cache(result.stdout)


def parse_linker_cache(text: str) -> list[tuple[str, str, str]]:
    """Parse ``ldconfig -p`` output into ``(soname, flags, path)`` tuples."""
    entries = []
    for line in text.splitlines():
        match = _CACHE_LINE.match(line)
        if match:
            entries.append((match.group(1), match.group(2), match.group(3)))
    return entries


def _capability_of_library(soname: str) -> str | None:
    stem = soname.split(".so", 1)[0]
    for capability, names in LIBRARIES.items():
        if stem in names:
            return capability
    return None


def driver_libraries(root: str) -> list[dict[str, Any]]:
    """Find the driver's libraries in the linker cache, one entry per soname.

    Each entry names the real file (``libcuda.so.535.104.05``) to bind-mount
    and the soname link (``libcuda.so.1``) the dynamic linker looks for.
    """
    marker = _ABI_MARKERS.get(os.uname().machine)
    found: dict[str, dict[str, Any]] = {}
    for soname, flags, path in linker_cache(root):
        capability = _capability_of_library(soname)
        if capability is None or soname in found:
            continue
        if marker and marker not in flags:
            continue
        real = os.path.realpath(_host(root, path))
        if not os.path.isfile(real):
            continue
        found[soname] = {
            "kind": "library",
            "capability": capability,
            "source": real,
            "name": os.path.basename(real),
            "soname": soname,
        }
    return list(found.values())


def driver_binaries(root: str) -> list[dict[str, Any]]:
    found = []
    for capability, names in BINARIES.items():
        for name in names:
            for directory in _BINARY_DIRS:
                path = _host(root, f"{directory}/{name}")
                if os.path.isfile(path):
                    found.append(
                        {
                            "kind": "binary",
                            "capability": capability,
                            "source": path,
                            "target": f"/usr/bin/{name}",
                        }
                    )
                    break
    return found


def firmware(root: str, version: str) -> list[dict[str, Any]]:
    """Return the GSP firmware directory of this driver version, if it exists."""
    path = f"/lib/firmware/nvidia/{version}"
    source = _host(root, path)
    if not os.path.isdir(source):
        return []
    return [
        {"kind": "firmware", "capability": "utility", "source": source, "target": path}
    ]


def discover(request: dict[str, Any]) -> dict[str, Any]:
    """Find the requested GPUs and the driver files; the ``gpu`` part of the config.

    Raises DriverMissing (an InvalidArgument) naming what the host lacks.
    """
    root = host_root()
    version = driver_version(root)
    gpus = select(list_gpus(root), request)
    files = driver_libraries(root) + driver_binaries(root) + firmware(root, version)
    result = {
        "request": request,
        "host_root": root,
        "driver_version": version,
        "gpus": [gpu.to_dict() for gpu in gpus],
        "capabilities": request.get("capabilities"),
        "nodes": device_nodes(root, gpus),
        "files": files,
    }
    if request.get("capabilities"):
        files_for(result, request["capabilities"])
    return result


def files_for(
    gpu_config: dict[str, Any], capabilities: list[str]
) -> list[dict[str, Any]]:
    """Return the driver files for ``capabilities``; raise if a required one is missing."""
    files = [f for f in gpu_config["files"] if f["capability"] in capabilities]
    for capability, stem in REQUIRED.items():
        if capability not in capabilities:
            continue
        if not any(f.get("soname", "").startswith(stem + ".so") for f in files):
            raise DriverMissing(
                f"--gpus: the NVIDIA driver library {stem}.so is not in the linker"
                f" cache of {gpu_config['host_root']} (ldconfig -p): install the"
                f" driver's user-space libraries ({capability} capability)"
            )
    return files
