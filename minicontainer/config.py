"""The configuration of one container, shaped after the OCI runtime spec.

The CLI (and the Python API) turn Docker-style options into a
``ContainerConfig``; the runtime turns that config into setup steps. Each
kernel subsystem owns one field and the format of its content:

- ``resources``: cgroup limits (``minicontainer.cgroups``),
- ``network``: network mode, addresses, ports (``minicontainer.network``),
- ``mounts``: volumes, bind mounts and tmpfs mounts,
- ``security``: capabilities, seccomp, masked paths, no_new_privs,
- ``devices``: device nodes, device rules and GPUs.

Everything here is plain data that round-trips through JSON, because the
config is stored with the container's state and read back by ``inspect``,
``exec`` and ``start``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Every namespace a container gets by default. "user" is added by --userns.
DEFAULT_NAMESPACES = ["pid", "mount", "uts", "ipc", "net", "cgroup"]


@dataclass
class ProcessConfig:
    """The container's first process: what runs, as whom, where."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""  # as given: "name", "uid", "uid:gid"; resolved inside the root
    terminal: bool = False
    interactive: bool = False


@dataclass
class ContainerConfig:
    id: str
    name: str
    process: ProcessConfig
    rootfs: str = ""  # the directory, or the image reference, as the user gave it
    lower_dirs: list[str] = field(default_factory=list)  # overlay lowers, top first
    image: str = ""
    hostname: str = ""
    namespaces: list[str] = field(default_factory=lambda: list(DEFAULT_NAMESPACES))
    readonly_rootfs: bool = False
    privileged: bool = False
    auto_remove: bool = False
    detach: bool = False
    stop_signal: str = "SIGTERM"
    stop_timeout: int = 10
    cgroup_parent: str = "minictr"
    resources: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=lambda: {"mode": "none"})
    mounts: list[dict[str, Any]] = field(default_factory=list)
    security: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp", from the image
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        process = ProcessConfig(**data.pop("process"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(process=process, **{k: v for k, v in data.items() if k in known})
