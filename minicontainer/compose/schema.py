"""Validation of a Compose file against the rules of the keys minictr supports.

Each supported key has a check of its value's type and form, taken from the
Compose specification's JSON schema (compose-spec/compose-go,
``schema/compose-spec.json``). A value of the wrong shape is an error that
names the key path (``services.web.ports[0]``), and so the service and the
key. A key that Compose defines but minictr does not implement, and a key
that Compose does not define at all, give a warning naming the key, because
silently ignoring a setting would run something other than what the file
describes. Extension keys (``x-...``) are allowed everywhere without a warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgument


class ComposeError(InvalidArgument):
    """A Compose file that cannot be used as it is."""


Check = Callable[[Any, str, "Validator"], None]

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_BYTE_SIZE = re.compile(r"^\d+(\.\d+)?\s*([bkmg]b?)?$", re.IGNORECASE)
_RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


class Validator:
    """Collects warnings while checking one parsed Compose file."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.warnings: list[str] = []

    def error(self, path: str, value: Any, expected: str) -> None:
        where = f" in {self.source}" if self.source else ""
        raise ComposeError(
            f"invalid {path}{where}: {_as_yaml(value)}, expected {expected}"
        )

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _as_yaml(value: Any) -> str:
    """Show a value as the compose file spells it: true, null, "text"."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------- checks


def string(value: Any, path: str, validator: Validator) -> None:
    if not isinstance(value, str):
        validator.error(path, value, "a string")


def boolean(value: Any, path: str, validator: Validator) -> None:
    if not isinstance(value, bool):
        validator.error(path, value, "true or false")


def integer(value: Any, path: str, validator: Validator) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, str) and value.lstrip("-").isdigit()):
            validator.error(path, value, "an integer")


def number(value: Any, path: str, validator: Validator) -> None:
    if isinstance(value, bool):
        validator.error(path, value, "a number")
    if isinstance(value, (int, float)):
        return
    try:
        float(value)
    except (TypeError, ValueError):
        validator.error(path, value, "a number such as 0.5")


def duration(value: Any, path: str, validator: Validator) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if not (isinstance(value, str) and _DURATION.match(value)):
        validator.error(path, value, "a duration such as 30s, 1m30s or 500ms")


def byte_size(value: Any, path: str, validator: Validator) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        return
    if not (isinstance(value, str) and _BYTE_SIZE.match(value.strip())):
        validator.error(path, value, "a size in bytes, or with a unit b, k, m or g")


def restart_policy(value: Any, path: str, validator: Validator) -> None:
    if value is False:
        return  # YAML 1.1 reads an unquoted "no" as false
    if not (isinstance(value, str) and _RESTART.match(value)):
        validator.error(
            path, value, "no, always, unless-stopped, on-failure or on-failure:N"
        )


def scalar(value: Any, path: str, validator: Validator) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        validator.error(path, value, "a string, a number or a boolean")


def string_or_list(value: Any, path: str, validator: Validator) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        validator.error(path, value, "a string or a list")
    list_of(scalar)(value, path, validator)


def list_or_dict(value: Any, path: str, validator: Validator) -> None:
    """Check the form of ``environment`` and ``labels``: a list of KEY=VALUE, or a map."""
    if isinstance(value, dict):
        for key, item in value.items():
            scalar(item, f"{path}.{key}", validator)
        return
    list_of(string)(value, path, validator)


def list_of(check: Check) -> Check:
    def check_list(value: Any, path: str, validator: Validator) -> None:
        if not isinstance(value, list):
            validator.error(path, value, "a list")
        for index, item in enumerate(value):
            check(item, f"{path}[{index}]", validator)

    return check_list


def one_of(*checks: Check, expected: str) -> Check:
    def check_any(value: Any, path: str, validator: Validator) -> None:
        for check in checks:
            try:
                check(value, path, Validator())
            except ComposeError:
                continue
            check(value, path, validator)  # once more, to keep its warnings
            return
        validator.error(path, value, expected)

    return check_any


def mapping(
    keys: dict[str, Check],
    unsupported: tuple[str, ...] = (),
    values: Check | None = None,
) -> Check:
    """Check a mapping: known ``keys``, or any key with ``values`` checked."""

    def check_mapping(value: Any, path: str, validator: Validator) -> None:
        if not isinstance(value, dict):
            validator.error(path, value, "a mapping")
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                validator.error(item_path, key, "a string key")
            if key.startswith("x-"):
                continue
            if values is not None:
                values(item, item_path, validator)
            elif key in keys:
                keys[key](item, item_path, validator)
            elif key in unsupported:
                validator.warn(f"{item_path} is not supported by minictr: ignored")
            else:
                validator.warn(f"{item_path} is not a Compose key: ignored")

    return check_mapping


def nullable(check: Check) -> Check:
    def check_nullable(value: Any, path: str, validator: Validator) -> None:
        if value is not None:
            check(value, path, validator)

    return check_nullable


# ---------------------------------------------------------------- service keys

PORT = one_of(
    integer,
    string,
    mapping(
        {
            "target": integer,
            "published": one_of(integer, string, expected="a port or range"),
            "host_ip": string,
            "protocol": string,
            "mode": string,
            "name": string,
            "app_protocol": string,
        }
    ),
    expected="a port such as 8080:80, or a mapping with target and published",
)

VOLUME = one_of(
    string,
    mapping(
        {
            "type": string,
            "source": string,
            "target": string,
            "read_only": boolean,
            "bind": mapping(
                {"create_host_path": boolean, "propagation": string},
                unsupported=("selinux",),
            ),
            "volume": mapping({"nocopy": boolean}, unsupported=("subpath",)),
            "tmpfs": mapping({"size": byte_size, "mode": integer}),
        },
        unsupported=("consistency",),
    ),
    expected="SOURCE:TARGET[:ro], or a mapping with type, source and target",
)

HEALTHCHECK = mapping(
    {
        "test": string_or_list,
        "interval": duration,
        "timeout": duration,
        "retries": integer,
        "start_period": duration,
        "start_interval": duration,
        "disable": boolean,
    }
)

BUILD = one_of(
    string,
    mapping(
        {
            "context": string,
            "dockerfile": string,
            "args": list_or_dict,
            "target": string,
        },
        unsupported=(
            "cache_from",
            "cache_to",
            "labels",
            "network",
            "shm_size",
            "extra_hosts",
            "isolation",
            "platforms",
            "secrets",
            "ssh",
            "tags",
            "pull",
            "no_cache",
            "additional_contexts",
            "dockerfile_inline",
            "privileged",
        ),
    ),
    expected="a context directory, or a mapping with context and dockerfile",
)

DEPENDS_ON = one_of(
    list_of(string),
    mapping(
        {},
        values=mapping({"condition": string, "restart": boolean, "required": boolean}),
    ),
    expected="a list of services, or a mapping of services to conditions",
)

SERVICE_NETWORKS = one_of(
    list_of(string),
    mapping(
        {},
        values=nullable(
            mapping(
                {"aliases": list_of(string), "ipv4_address": string},
                unsupported=(
                    "ipv6_address",
                    "link_local_ips",
                    "priority",
                    "mac_address",
                    "driver_opts",
                ),
            )
        ),
    ),
    expected="a list of networks, or a mapping of networks to settings",
)

DEVICE_REQUEST = mapping(
    {
        "driver": string,
        "count": one_of(integer, string, expected="a number or all"),
        "device_ids": list_of(string),
        "capabilities": list_of(string),
    },
    unsupported=("options",),
)

DEPLOY = mapping(
    {
        "resources": mapping(
            {
                "limits": mapping(
                    {"cpus": number, "memory": byte_size, "pids": integer}
                ),
                "reservations": mapping(
                    {"devices": list_of(DEVICE_REQUEST)},
                    unsupported=("cpus", "memory", "generic_resources"),
                ),
            }
        ),
    },
    unsupported=(
        "mode",
        "replicas",
        "labels",
        "placement",
        "restart_policy",
        "rollback_config",
        "update_config",
        "endpoint_mode",
    ),
)

SERVICE_KEYS: dict[str, Check] = {
    "image": string,
    "build": BUILD,
    "pull_policy": string,
    "command": nullable(string_or_list),
    "entrypoint": nullable(string_or_list),
    "environment": list_or_dict,
    "env_file": string_or_list,
    "ports": list_of(PORT),
    "expose": list_of(one_of(integer, string, expected="a port")),
    "volumes": list_of(VOLUME),
    "tmpfs": string_or_list,
    "networks": SERVICE_NETWORKS,
    "depends_on": DEPENDS_ON,
    "healthcheck": HEALTHCHECK,
    "restart": restart_policy,
    "working_dir": string,
    "user": one_of(string, integer, expected="a user name or id"),
    "hostname": string,
    "container_name": string,
    "labels": list_or_dict,
    "mem_limit": byte_size,
    "cpus": number,
    "pids_limit": integer,
    "deploy": DEPLOY,
    "cap_add": list_of(string),
    "cap_drop": list_of(string),
    "privileged": boolean,
    "read_only": boolean,
    "stop_signal": string,
    "stop_grace_period": duration,
    "devices": list_of(string),
    "extra_hosts": list_or_dict,
    "dns": string_or_list,
    "sysctls": list_or_dict,
}

# Keys of the Compose specification that minictr does not implement.
UNSUPPORTED_SERVICE_KEYS = (
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "dns_opt",
    "dns_search",
    "domainname",
    "external_links",
    "extends",
    "gpus",
    "group_add",
    "init",
    "ipc",
    "isolation",
    "links",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "profiles",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "tty",
    "ulimits",
    "userns_mode",
    "uts",
    "volumes_from",
)

SERVICE = mapping(SERVICE_KEYS, unsupported=UNSUPPORTED_SERVICE_KEYS)

NETWORK = nullable(
    mapping(
        {
            "name": string,
            "external": boolean,
            "labels": list_or_dict,
            "driver": string,
            "ipam": mapping(
                {
                    "config": list_of(
                        mapping({"subnet": string, "gateway": string}, ("ip_range",))
                    )
                },
                unsupported=("driver", "options"),
            ),
        },
        unsupported=("driver_opts", "attachable", "enable_ipv6", "internal"),
    )
)

VOLUME_DEFINITION = nullable(
    mapping(
        {"name": string, "external": boolean, "labels": list_or_dict, "driver": string},
        unsupported=("driver_opts",),
    )
)

TOP_LEVEL = mapping(
    {
        "name": string,
        "services": mapping({}, values=nullable(SERVICE)),
        "networks": mapping({}, values=NETWORK),
        "volumes": mapping({}, values=VOLUME_DEFINITION),
    },
    unsupported=("secrets", "configs", "include"),
)


def validate(document: Any, source: str = "") -> list[str]:
    """Check one parsed Compose file; return the warnings, raise ComposeError.

    ``source`` names the file in messages.
    """
    validator = Validator(source)
    if not isinstance(document, dict):
        raise ComposeError(
            f"invalid Compose file {source}: expected a mapping with a services key,"
            f" found {type(document).__name__}"
        )
    document = dict(document)
    if "version" in document:
        document.pop("version")
        validator.warn("version is obsolete and ignored")
    TOP_LEVEL(document, "", validator)
    for name in document.get("services") or {}:
        if not _SERVICE_NAME.match(str(name)):
            raise ComposeError(
                f"invalid service name {name!r}: use letters, digits, '.', '_' and '-'"
            )
    _check_semantics(document, validator)
    return validator.warnings


def _check_semantics(document: dict[str, Any], validator: Validator) -> None:
    """Check the values whose form JSON schema types cannot express."""
    for name, service in (document.get("services") or {}).items():
        for index, request in enumerate(_device_requests(service or {})):
            driver = request.get("driver")
            path = f"services.{name}.deploy.resources.reservations.devices[{index}]"
            if driver not in (None, "nvidia"):
                validator.error(f"{path}.driver", driver, "nvidia")
            capabilities = request.get("capabilities") or []
            if "gpu" not in capabilities:
                validator.error(
                    f"{path}.capabilities", capabilities, "a list that contains gpu"
                )
        for key in ("depends_on",):
            value = (service or {}).get(key)
            if isinstance(value, dict):
                for dependency, settings in value.items():
                    condition = (settings or {}).get("condition", "service_started")
                    if condition not in CONDITIONS:
                        validator.error(
                            f"services.{name}.depends_on.{dependency}.condition",
                            condition,
                            " or ".join(CONDITIONS),
                        )


CONDITIONS = (
    "service_started",
    "service_healthy",
    "service_completed_successfully",
)


def _device_requests(service: dict[str, Any]) -> list[dict[str, Any]]:
    resources = (service.get("deploy") or {}).get("resources") or {}
    return list((resources.get("reservations") or {}).get("devices") or [])
