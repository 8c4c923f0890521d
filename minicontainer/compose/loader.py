"""Read Compose files: find them, substitute variables, validate, merge.

Loading follows the Compose specification, in this order:

1. The files are those given with ``-f``, in order, or else the first of
   ``compose.yaml``, ``compose.yml``, ``docker-compose.yml`` and
   ``docker-compose.yaml`` found in the current directory.
2. The project directory is the directory of the first file. Its ``.env``
   file supplies variables, and the process environment overrides them.
3. Each file is parsed, its string values interpolated (see
   :mod:`.interpolation`), then validated (see :mod:`.schema`).
4. Each later file is merged into the earlier result: mappings key by key,
   ``environment``, ``labels``, ``depends_on`` and a service's ``networks``
   as mappings even when written as lists, ``volumes`` by their target
   path, ``ports``, ``expose``, ``cap_add``, ``cap_drop``, ``dns``,
   ``tmpfs``, ``env_file`` and ``devices`` as the union of both lists, and
   every other list (``command``, ``entrypoint``, ``healthcheck.test``)
   replaced by the later one.
5. The project name is ``-p``, else the ``COMPOSE_PROJECT_NAME`` variable,
   else the top-level ``name``, else the project directory's name,
   lowercased with every character other than ``a-z``, ``0-9``, ``_`` and
   ``-`` removed.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import interpolation, schema
from .schema import ComposeError

DEFAULT_FILES = (
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
)

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=\s*(.*))?$")

# Lists merged as a union of both files, in order, without repeats.
UNION_LISTS = (
    "ports",
    "expose",
    "cap_add",
    "cap_drop",
    "dns",
    "tmpfs",
    "env_file",
    "devices",
    "extra_hosts",
)
# Keys written as a list or a mapping, merged as mappings.
MAPPING_KEYS = ("environment", "labels", "sysctls")


@dataclass
class LoadedFiles:
    """The merged, interpolated and validated content of a project's files."""

    document: dict[str, Any]
    project_name: str
    project_directory: str
    files: list[str]
    variables: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def find_files(directory: str) -> list[str]:
    """Return the default Compose file of ``directory``; NotFound when none."""
    for name in DEFAULT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return [path]
    raise ComposeError(
        f"no Compose file in {directory}: create compose.yaml, or give one with -f"
    )


def normalize_project_name(name: str) -> str:
    """Lowercase ``name`` and drop every character Compose does not allow."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def validate_project_name(name: str) -> None:
    if not _PROJECT_NAME.match(name):
        raise ComposeError(
            f"invalid project name {name!r}: use lowercase letters, digits, '_' and"
            " '-', starting with a letter or digit"
        )


def read_env_file(
    path: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Read a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, quoted values.

    Single quotes keep the value as written. Double quotes allow ``\\n``,
    ``\\t``, ``\\"`` and ``\\\\`` escapes. Unquoted and double-quoted values
    have ``${VAR}`` substituted from the variables above them and
    ``environ``, and an unquoted value ends at `` #``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ComposeError(f"cannot read env file {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ComposeError(
                f"invalid line {number} in env file {path}: {line!r}, expected"
                " KEY=VALUE"
            )
        key, raw = match.group(1), match.group(3)
        if raw is None:
            continue
        known = {**values, **(environ or {})}
        values[key] = _env_value(raw.strip(), known, f"{path} line {number}")
    return values


def _env_value(raw: str, known: Mapping[str, str], where: str) -> str:
    if raw[:1] == "'" and raw.endswith("'") and len(raw) > 1:
        return raw[1:-1]
    if raw[:1] == '"' and raw.endswith('"') and len(raw) > 1:
        text = re.sub(
            r"\\(.)",
            lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
            raw[1:-1],
        )
        return interpolation.interpolate(text, known, where=where)
    text = re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()
    return interpolation.interpolate(text, known, where=where)


def load(
    files: list[str] | None = None,
    project_name: str | None = None,
    working_directory: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedFiles:
    """Find, read, interpolate, validate and merge a project's Compose files."""
    import yaml

    working_directory = working_directory or os.getcwd()
    paths = [os.path.abspath(os.path.join(working_directory, f)) for f in files or []]
    if not paths:
        paths = find_files(working_directory)
    project_directory = os.path.dirname(paths[0])
    environ = dict(os.environ if environ is None else environ)

    variables: dict[str, str] = {}
    env_path = os.path.join(project_directory, ".env")
    if os.path.isfile(env_path):
        variables.update(read_env_file(env_path, environ))
    variables.update(environ)

    warnings: list[str] = []
    merged: dict[str, Any] = {}
    for path in paths:
        document = _read_yaml(path, yaml)
        document = interpolation.interpolate_tree(
            document, variables, lambda message: _add_once(warnings, message)
        )
        for warning in schema.validate(document, os.path.basename(path)):
            _add_once(warnings, warning)
        document.pop("version", None)
        merged = merge(merged, normalize(document))
    if not merged.get("services"):
        raise ComposeError(
            f"no services in {', '.join(paths)}: define at least one under services"
        )

    name = project_name or variables.get("COMPOSE_PROJECT_NAME") or merged.get("name")
    if name is None:
        name = normalize_project_name(os.path.basename(project_directory))
    validate_project_name(name)
    merged["name"] = name
    return LoadedFiles(merged, name, project_directory, paths, variables, warnings)


def _add_once(warnings: list[str], message: str) -> None:
    if message not in warnings:
        warnings.append(message)


def _read_yaml(path: str, yaml: Any) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise ComposeError(f"cannot read Compose file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise ComposeError(f"invalid YAML in {path}: {problem}") from exc
    if document is None:
        return {}
    return document


# ---------------------------------------------------------------- normalize


def normalize(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the list forms of mergeable keys as mappings, and null sections as {}."""
    result = copy.deepcopy(document)
    for section in ("services", "networks", "volumes"):
        result[section] = {
            name: value if value is not None else {}
            for name, value in (result.get(section) or {}).items()
        }
    for service in result["services"].values():
        _normalize_service(service)
    return result


def _normalize_service(service: dict[str, Any]) -> None:
    for key in MAPPING_KEYS + ("extra_hosts",):
        if isinstance(service.get(key), list):
            service[key] = dict(_split_assignment(item, key) for item in service[key])
    if isinstance(service.get("extra_hosts"), dict):
        service["extra_hosts"] = [
            f"{name}:{address}" for name, address in service["extra_hosts"].items()
        ]
    if isinstance(service.get("depends_on"), list):
        service["depends_on"] = {
            name: {"condition": "service_started"} for name in service["depends_on"]
        }
    for settings in (service.get("depends_on") or {}).values():
        settings.setdefault("condition", "service_started")
    if isinstance(service.get("networks"), list):
        service["networks"] = {name: None for name in service["networks"]}
    if isinstance(service.get("build"), str):
        service["build"] = {"context": service["build"]}
    for key in ("env_file", "tmpfs", "dns"):
        if isinstance(service.get(key), str):
            service[key] = [service[key]]
    if isinstance(service.get("build", {}).get("args"), list):
        build = service["build"]
        build["args"] = dict(_split_assignment(item, "args") for item in build["args"])


def _split_assignment(item: str, key: str) -> tuple[str, str | None]:
    if key == "extra_hosts":
        separator = "=" if "=" in item else ":"
        name, _, address = item.partition(separator)
        return name, address
    name, separator, value = item.partition("=")
    return name, value if separator else None


# ---------------------------------------------------------------- merge


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge the normalized ``override`` file into ``base``; return a new document."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if key == "services":
            services = result.setdefault("services", {})
            for name, service in value.items():
                services[name] = merge_service(services.get(name, {}), service)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_mappings(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge one service's settings by the Compose rules of each key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        current = result.get(key)
        if key == "volumes" and isinstance(current, list):
            result[key] = _merge_by_target(current, value)
        elif key in UNION_LISTS and isinstance(current, list):
            result[key] = current + [item for item in value if item not in current]
        elif isinstance(value, dict) and isinstance(current, dict):
            result[key] = _merge_mappings(current, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_mappings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_mappings(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_by_target(base: list[Any], override: list[Any]) -> list[Any]:
    from .model import volume_target

    targets = {volume_target(item): index for index, item in enumerate(base)}
    result = copy.deepcopy(base)
    for item in override:
        target = volume_target(item)
        if target in targets:
            result[targets[target]] = copy.deepcopy(item)
        else:
            targets[target] = len(result)
            result.append(copy.deepcopy(item))
    return result
