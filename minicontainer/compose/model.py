"""The Compose project as dataclasses: services, networks and volumes.

:func:`build_project` turns the merged document of :mod:`.loader` into a
:class:`Project`. It expands the short syntaxes (``"8080:80/tcp"``,
``"data:/var/lib/db:ro"``), resolves relative paths against the project
directory, reads durations and sizes into seconds and bytes, and gives
networks and volumes their names on the host: ``PROJECT_KEY`` unless the
file sets ``name`` or marks them ``external``. A value that cannot be used
raises ComposeError naming the service and the key.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from .schema import ComposeError

DEFAULT_NETWORK = "default"

_SHORT_PORT = re.compile(
    r"^(?:(?:(?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?P<published>\d+(?:-\d+)?)?:)?"
    r"(?P<target>\d+(?:-\d+)?)(?:/(?P<protocol>tcp|udp|sctp))?$"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass
class PortMapping:
    """A published port: host address and port (or range) to container port."""

    target: str  # a port or a range such as 80-82
    published: str = ""  # empty: the host picks a free port
    host_ip: str = ""
    protocol: str = "tcp"

    def publish_spec(self) -> str:
        """Return the mapping in ``docker run -p`` form."""
        spec = self.target
        if self.published or self.host_ip:
            spec = f"{self.published}:{spec}"
        if self.host_ip:
            spec = f"{self.host_ip}:{spec}"
        return f"{spec}/{self.protocol}"


@dataclass
class VolumeMount:
    """A mount of a service: a host path, a named volume or a tmpfs."""

    type: str  # bind, volume or tmpfs
    target: str
    source: str = ""  # host path (bind), volume key (volume), "" (anonymous, tmpfs)
    read_only: bool = False
    create_host_path: bool = True
    nocopy: bool = False
    tmpfs_size: int | None = None


@dataclass
class Healthcheck:
    """A command run inside the container whose exit status 0 means healthy."""

    test: list[str]  # argv; CMD-SHELL tests become ["/bin/sh", "-c", COMMAND]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0


@dataclass
class Dependency:
    service: str
    condition: str = "service_started"
    required: bool = True


@dataclass
class RestartPolicy:
    name: str = "no"  # no, always, unless-stopped or on-failure
    max_retries: int | None = None  # for on-failure:N


@dataclass
class BuildSpec:
    context: str  # absolute
    dockerfile: str = "Dockerfile"  # relative to the context
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass
class ServiceNetwork:
    key: str  # the key under the top-level networks
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None


@dataclass
class Service:
    name: str
    image: str = ""
    build: BuildSpec | None = None
    pull_policy: str = "missing"  # missing, always, never or build
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    env_files: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    networks: list[ServiceNetwork] = field(default_factory=list)
    depends_on: list[Dependency] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    working_dir: str | None = None
    user: str | None = None
    hostname: str = ""
    container_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    mem_limit: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    read_only: bool = False
    stop_signal: str | None = None
    stop_grace_period: float | None = None  # seconds
    devices: list[str] = field(default_factory=list)
    gpus: str | None = None  # a ``--gpus`` value
    extra_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    def image_name(self, project: str) -> str:
        """Return the image the service runs: ``image``, or ``PROJECT-SERVICE`` if built."""
        return self.image or f"{project}-{self.name}"


@dataclass
class NetworkDefinition:
    key: str
    name: str  # on the host
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    subnet: str | None = None
    gateway: str | None = None


@dataclass
class VolumeDefinition:
    key: str
    name: str  # on the host
    external: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Project:
    name: str
    directory: str
    services: dict[str, Service]
    networks: dict[str, NetworkDefinition]
    volumes: dict[str, VolumeDefinition]


# ---------------------------------------------------------------- values


def parse_duration(value: Any, path: str) -> float:
    """Read ``1m30s``, ``500ms`` or a number of seconds into seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(
            f"invalid {path} {value!r}: expected a duration such as 30s or 1m30s"
        )
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_size(value: Any, path: str) -> int:
    """Read ``64m``, ``1g`` or a number of bytes into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value).strip())
    if match is None:
        raise ComposeError(
            f"invalid {path} {value!r}: expected bytes, or a number with b, k, m or g"
        )
    return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2).lower()])


def parse_short_port(value: Any, path: str) -> PortMapping:
    """Parse ``[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`` with optional ranges."""
    match = _SHORT_PORT.match(str(value).strip())
    if match is None:
        raise ComposeError(
            f"invalid {path} {value!r}: expected [[HOST_IP:]HOST_PORT:]CONTAINER_PORT"
            "[/tcp|udp]"
        )
    mapping = PortMapping(
        target=match["target"],
        published=match["published"] or "",
        host_ip=(match["ip"] or "").strip("[]"),
        protocol=match["protocol"] or "tcp",
    )
    _check_port_ranges(mapping, value, path)
    return mapping


def parse_long_port(value: dict[str, Any], path: str) -> PortMapping:
    if "target" not in value:
        raise ComposeError(f"invalid {path}: a port mapping needs a target")
    mapping = PortMapping(
        target=str(value["target"]),
        published=str(value.get("published") or ""),
        host_ip=str(value.get("host_ip") or ""),
        protocol=str(value.get("protocol") or "tcp"),
    )
    if not re.fullmatch(r"\d+", mapping.target) or not re.fullmatch(
        r"(\d+(-\d+)?)?", mapping.published
    ):
        raise ComposeError(
            f"invalid {path} {value!r}: target is a port and published a port or range"
        )
    _check_port_ranges(mapping, value, path)
    return mapping


def _check_port_ranges(mapping: PortMapping, value: Any, path: str) -> None:
    for text in (mapping.target, mapping.published):
        if not text:
            continue
        low, _, high = text.partition("-")
        numbers = [int(low), int(high or low)]
        if not all(1 <= n <= 65535 for n in numbers) or numbers[0] > numbers[1]:
            raise ComposeError(
                f"invalid {path} {value!r}: ports are 1 to 65535, ranges low-high"
            )
    if mapping.protocol not in ("tcp", "udp"):
        raise ComposeError(
            f"invalid {path} {value!r}: protocol {mapping.protocol} is not supported,"
            " use tcp or udp"
        )


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def volume_target(value: Any) -> str:
    """Return the container path of a short or long volume entry, for merging."""
    if isinstance(value, dict):
        return str(value.get("target", ""))
    parts = str(value).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def parse_short_volume(value: str, directory: str, path: str) -> VolumeMount:
    """Parse ``[SOURCE:]TARGET[:MODE]``: a path source binds, a name is a volume."""
    parts = value.split(":")
    if len(parts) > 3 or not all(parts):
        raise ComposeError(
            f"invalid {path} {value!r}: expected [SOURCE:]TARGET[:ro|rw]"
        )
    if len(parts) == 1:
        return VolumeMount("volume", _absolute_target(parts[0], value, path))
    source, target = parts[0], _absolute_target(parts[1], value, path)
    modes = parts[2].split(",") if len(parts) == 3 else []
    unknown = [m for m in modes if m not in ("ro", "rw", "z", "Z", "nocopy")]
    if unknown:
        raise ComposeError(
            f"invalid {path} {value!r}: unsupported mode {','.join(unknown)}, use ro"
            " or rw"
        )
    read_only = "ro" in modes
    if _is_path(source):
        return VolumeMount("bind", target, _host_path(source, directory), read_only)
    return VolumeMount("volume", target, source, read_only, nocopy="nocopy" in modes)


def parse_long_volume(value: dict[str, Any], directory: str, path: str) -> VolumeMount:
    kind = value.get("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise ComposeError(
            f"invalid {path}.type {kind!r}: minictr supports bind, volume and tmpfs"
        )
    if "target" not in value:
        raise ComposeError(f"invalid {path}: a {kind} mount needs a target")
    mount = VolumeMount(
        kind,
        _absolute_target(str(value["target"]), value, path),
        str(value.get("source") or ""),
        bool(value.get("read_only", False)),
    )
    if kind == "bind":
        if not mount.source:
            raise ComposeError(f"invalid {path}: a bind mount needs a source")
        mount.source = _host_path(mount.source, directory)
        mount.create_host_path = bool(
            (value.get("bind") or {}).get("create_host_path", True)
        )
    elif kind == "volume":
        mount.nocopy = bool((value.get("volume") or {}).get("nocopy", False))
    else:
        size = (value.get("tmpfs") or {}).get("size")
        if size is not None:
            mount.tmpfs_size = parse_size(size, f"{path}.tmpfs.size")
    return mount


def _absolute_target(target: str, value: Any, path: str) -> str:
    if not target.startswith("/"):
        raise ComposeError(
            f"invalid {path} {value!r}: the container path {target!r} must be absolute"
        )
    return target


def _host_path(source: str, directory: str) -> str:
    return os.path.normpath(os.path.join(directory, os.path.expanduser(source)))


def parse_healthcheck(value: dict[str, Any], path: str) -> Healthcheck | None:
    """Return the healthcheck, or None when disabled or ``["NONE"]``."""
    if value.get("disable"):
        return None
    test = value.get("test")
    if test is None:
        raise ComposeError(f"invalid {path}: a healthcheck needs a test")
    if isinstance(test, str):
        argv = ["/bin/sh", "-c", test]
    elif test and test[0] == "NONE":
        return None
    elif test and test[0] == "CMD" and len(test) > 1:
        argv = [str(item) for item in test[1:]]
    elif test and test[0] == "CMD-SHELL" and len(test) == 2:
        argv = ["/bin/sh", "-c", str(test[1])]
    else:
        raise ComposeError(
            f"invalid {path}.test {test!r}: expected [CMD, ARG...], [CMD-SHELL,"
            " COMMAND], [NONE] or a shell command string"
        )
    check = Healthcheck(argv)
    for key in ("interval", "timeout", "start_period"):
        if key in value:
            setattr(check, key, parse_duration(value[key], f"{path}.{key}"))
    if "retries" in value:
        check.retries = int(value["retries"])
    if check.interval <= 0 or check.timeout <= 0 or check.retries < 1:
        raise ComposeError(
            f"invalid {path}: interval and timeout must be positive, retries at least 1"
        )
    return check


def parse_restart(value: Any, path: str) -> RestartPolicy:
    text = "no" if value is False else str(value)
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or (
        count and (name != "on-failure" or not count.isdigit())
    ):
        raise ComposeError(
            f"invalid {path} {value!r}: use no, always, unless-stopped, on-failure or"
            " on-failure:N"
        )
    return RestartPolicy(name, int(count) if count else None)


def gpu_request(requests: list[dict[str, Any]], path: str) -> str | None:
    """Turn ``deploy.resources.reservations.devices`` into one ``--gpus`` value."""
    if not requests:
        return None
    if len(requests) > 1:
        raise ComposeError(
            f"invalid {path}: minictr supports one GPU request per service"
        )
    request = requests[0]
    count = request.get("count")
    ids = request.get("device_ids")
    if ids and count is not None:
        raise ComposeError(f"invalid {path}: give count or device_ids, not both")
    if ids:
        fields = ['"device=' + ",".join(str(i) for i in ids) + '"']
    elif count is None or str(count) == "all":
        fields = ["all"]
    else:
        fields = [f"count={int(count)}"]
    extra = [c for c in request.get("capabilities", []) if c != "gpu"]
    if extra:
        fields.append('"capabilities=' + ",".join(extra) + '"')
    return ",".join(fields)


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def _text_map(value: dict[str, Any] | None) -> dict[str, str]:
    result = {}
    for key, item in (value or {}).items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        result[str(key)] = "" if item is None else str(item)
    return result


# ---------------------------------------------------------------- project


def build_project(
    document: dict[str, Any],
    directory: str,
    variables: dict[str, str] | None = None,
) -> Project:
    """Build the project model from a merged, normalized Compose document.

    ``variables`` supply the values of ``environment`` entries given as a bare
    KEY: the process environment and the ``.env`` file.
    """
    name = document["name"]
    services = {
        key: build_service(key, value or {}, directory, variables)
        for key, value in document["services"].items()
    }
    networks = {
        key: _network(name, key, value or {})
        for key, value in (document.get("networks") or {}).items()
    }
    if any(
        network.key == DEFAULT_NETWORK
        for service in services.values()
        for network in service.networks
    ):
        networks.setdefault(DEFAULT_NETWORK, _network(name, DEFAULT_NETWORK, {}))
    volumes = {
        key: _volume(name, key, value or {})
        for key, value in (document.get("volumes") or {}).items()
    }
    project = Project(name, directory, services, networks, volumes)
    _check_references(project)
    return project


def _network(project: str, key: str, value: dict[str, Any]) -> NetworkDefinition:
    external = bool(value.get("external", False))
    host_name = value.get("name") or (key if external else f"{project}_{key}")
    config = ((value.get("ipam") or {}).get("config") or [{}])[0]
    return NetworkDefinition(
        key,
        host_name,
        external,
        _text_map(value.get("labels")),
        config.get("subnet"),
        config.get("gateway"),
    )


def _volume(project: str, key: str, value: dict[str, Any]) -> VolumeDefinition:
    external = bool(value.get("external", False))
    host_name = value.get("name") or (key if external else f"{project}_{key}")
    return VolumeDefinition(key, host_name, external, _text_map(value.get("labels")))


def build_service(
    name: str,
    value: dict[str, Any],
    directory: str,
    variables: dict[str, str] | None = None,
) -> Service:
    """Build one service from its merged settings."""
    path = f"services.{name}"
    service = Service(name)
    service.image = str(value.get("image") or "")
    if "build" in value:
        build = value["build"]
        service.build = BuildSpec(
            context=_host_path(str(build.get("context", ".")), directory),
            dockerfile=str(build.get("dockerfile") or "Dockerfile"),
            args=_text_map(build.get("args")),
            target=build.get("target"),
        )
    if not service.image and service.build is None:
        raise ComposeError(f"invalid {path}: give image or build")
    if "pull_policy" in value:
        service.pull_policy = parse_pull_policy(
            value["pull_policy"], f"{path}.pull_policy"
        )
    if service.pull_policy == "build" and service.build is None:
        raise ComposeError(
            f"invalid {path}.pull_policy: 'build' needs a build section in the service"
        )
    if service.pull_policy == "always" and not service.image:
        raise ComposeError(
            f"invalid {path}.pull_policy: 'always' needs an image to pull"
        )
    service.command = _command(value.get("command"))
    service.entrypoint = _command(value.get("entrypoint"))
    service.environment = _environment(value.get("environment"), variables)
    service.env_files = [
        _host_path(str(item), directory) for item in value.get("env_file") or []
    ]
    _read_ports(service, value, path)
    _read_mounts(service, value, directory, path)
    _read_networks(service, value)
    service.depends_on = [
        Dependency(
            dependency,
            (settings or {}).get("condition", "service_started"),
            bool((settings or {}).get("required", True)),
        )
        for dependency, settings in (value.get("depends_on") or {}).items()
    ]
    if "healthcheck" in value:
        service.healthcheck = parse_healthcheck(
            value["healthcheck"], f"{path}.healthcheck"
        )
    if "restart" in value:
        service.restart = parse_restart(value["restart"], f"{path}.restart")
    _read_process_settings(service, value, path)
    _read_limits(service, value, path)
    return service


# Compose's pull policies that check the registry on a schedule, by the time
# of the last pull, which minictr does not record.
_TIMED_PULL_POLICIES = ("daily", "weekly", "refresh")


def parse_pull_policy(value: Any, path: str) -> str:
    """Return a Compose ``pull_policy`` as missing, always, never or build.

    ``if_not_present`` is Compose's older name for ``missing``.
    """
    text = str(value).strip().lower()
    if text == "if_not_present":
        return "missing"
    if text in ("missing", "always", "never", "build"):
        return text
    if text in _TIMED_PULL_POLICIES or text.startswith("every_"):
        raise ComposeError(
            f"{path}: pull_policy {value!r} is not supported by minictr: use"
            " missing, always, never or build"
        )
    raise ComposeError(
        f"invalid {path}: {value!r} is not a pull policy: use missing, always,"
        " never, build or if_not_present"
    )


def _environment(
    value: dict[str, Any] | None, variables: dict[str, str] | None
) -> dict[str, str]:
    result = {}
    for key, item in (value or {}).items():
        if item is None:
            # A bare KEY takes its value from the environment Compose runs in,
            # and is left out when that has none.
            if variables is not None and key in variables:
                result[key] = variables[key]
            continue
        result[key] = _text_map({key: item})[key]
    return result


def _read_ports(service: Service, value: dict[str, Any], path: str) -> None:
    for index, item in enumerate(value.get("ports") or []):
        item_path = f"{path}.ports[{index}]"
        if isinstance(item, dict):
            service.ports.append(parse_long_port(item, item_path))
        else:
            service.ports.append(parse_short_port(item, item_path))
    service.expose = [str(item) for item in value.get("expose") or []]


def _read_mounts(
    service: Service, value: dict[str, Any], directory: str, path: str
) -> None:
    for index, item in enumerate(value.get("volumes") or []):
        item_path = f"{path}.volumes[{index}]"
        if isinstance(item, dict):
            service.volumes.append(parse_long_volume(item, directory, item_path))
        else:
            service.volumes.append(parse_short_volume(str(item), directory, item_path))
    service.tmpfs = [str(item) for item in value.get("tmpfs") or []]


def _read_networks(service: Service, value: dict[str, Any]) -> None:
    networks = value.get("networks")
    if not networks:
        service.networks = [ServiceNetwork(DEFAULT_NETWORK)]
        return
    for key, settings in networks.items():
        settings = settings or {}
        service.networks.append(
            ServiceNetwork(
                key,
                [str(alias) for alias in settings.get("aliases") or []],
                settings.get("ipv4_address"),
            )
        )


def _read_process_settings(service: Service, value: dict[str, Any], path: str) -> None:
    service.working_dir = value.get("working_dir")
    if value.get("user") is not None:
        service.user = str(value["user"])
    service.hostname = str(value.get("hostname") or "")
    service.container_name = str(value.get("container_name") or "")
    service.labels = _text_map(value.get("labels"))
    service.cap_add = [str(c) for c in value.get("cap_add") or []]
    service.cap_drop = [str(c) for c in value.get("cap_drop") or []]
    service.privileged = bool(value.get("privileged", False))
    service.read_only = bool(value.get("read_only", False))
    service.stop_signal = value.get("stop_signal")
    if "stop_grace_period" in value:
        service.stop_grace_period = parse_duration(
            value["stop_grace_period"], f"{path}.stop_grace_period"
        )
    service.devices = [str(d) for d in value.get("devices") or []]
    service.extra_hosts = [str(h) for h in value.get("extra_hosts") or []]
    service.dns = [str(d) for d in value.get("dns") or []]
    service.sysctls = _text_map(value.get("sysctls"))


def _read_limits(service: Service, value: dict[str, Any], path: str) -> None:
    resources = (value.get("deploy") or {}).get("resources") or {}
    limits = resources.get("limits") or {}
    memory = value.get("mem_limit", limits.get("memory"))
    if memory is not None:
        service.mem_limit = parse_size(memory, f"{path}.mem_limit")
    cpus = value.get("cpus", limits.get("cpus"))
    if cpus is not None:
        service.cpus = float(cpus)
    pids = value.get("pids_limit", limits.get("pids"))
    if pids is not None:
        service.pids_limit = int(pids)
    requests = (resources.get("reservations") or {}).get("devices") or []
    service.gpus = gpu_request(
        requests, f"{path}.deploy.resources.reservations.devices"
    )


def _check_references(project: Project) -> None:
    for service in project.services.values():
        path = f"services.{service.name}"
        for network in service.networks:
            if network.key not in project.networks:
                raise ComposeError(
                    f"invalid {path}.networks: network {network.key!r} is not"
                    " defined under the top-level networks"
                )
        for mount in service.volumes:
            named = mount.type == "volume" and mount.source
            if named and mount.source not in project.volumes:
                raise ComposeError(
                    f"invalid {path}.volumes: volume {mount.source!r} is not"
                    " defined under the top-level volumes"
                )
