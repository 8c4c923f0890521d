"""Looking at containers: ps rows, logs, inspect documents and top.

A container's namespaces are the files in ``/proc/PID/ns/`` of its PID 1.
Each is a symlink such as ``pid:[4026532450]``: two processes share a
namespace exactly when the inode numbers match, so ``inspect`` compares the
inodes of PID 1 with those of PID 1 of the host. ``top`` uses the ``NSpid``
line of ``/proc/PID/status``, which lists a process's pid in each nested
PID namespace, outermost first.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shlex
import time
from collections.abc import Iterator
from typing import Any

from . import lifecycle, state
from .errors import InvalidArgument, NotFound

NAMESPACE_FILES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


# ---------------------------------------------------------------- ps


def list_containers(show_all: bool = False) -> list[dict[str, Any]]:
    """Return one ``ps`` row per container, newest first; running ones unless ``show_all``."""
    rows = []
    for container_id in state.list_ids():
        try:
            row = _ps_row(container_id)
        except state.UnreadableState:
            row = None
        except OSError:
            continue  # removed while listing
        if row is None:
            try:
                row = _unreadable_row(container_id)
            except OSError:
                continue
        if show_all or row["State"] in ("running", "paused"):
            rows.append(row)
    rows.sort(key=lambda row: row["CreatedAt"], reverse=True)
    return rows


def _ps_row(container_id: str) -> dict[str, Any]:
    config = state.read_config(container_id)
    record = lifecycle.current_state(container_id)
    return {
        "ID": container_id,
        "Image": config.rootfs or config.image[:19],
        "Command": shlex.join(config.process.args),
        "CreatedAt": config.created or _created_fallback(container_id),
        "Status": status_text(record),
        "State": record["status"],
        "Pid": record.get("pid") or 0,
        "Names": config.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(config.labels.items())),
    }


# The keys of `ps --filter`, as Docker names them.
FILTER_KEYS = ("id", "name", "status", "label", "ancestor")


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    """Parse ``--filter KEY=VALUE`` options into {key: [values]}."""
    filters: dict[str, list[str]] = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise InvalidArgument(
                f"invalid --filter {value!r}: use KEY=VALUE with KEY one of"
                f" {', '.join(FILTER_KEYS)}"
            )
        filters.setdefault(key, []).append(wanted)
    return filters


def filter_rows(
    rows: list[dict[str, Any]], filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Keep the rows that match every key of ``filters`` and any value of each.

    As in Docker: ``name`` matches part of the name, ``id`` the start of the
    id, ``label`` a key or KEY=VALUE, ``ancestor`` the image or root as given.
    """

    def matches(row: dict[str, Any], key: str, wanted: str) -> bool:
        if key == "id":
            return row["ID"].startswith(wanted)
        if key == "name":
            return wanted in row["Names"]
        if key == "status":
            return row["State"] == wanted
        if key == "label":
            labels = dict(
                item.partition("=")[::2] for item in row["Labels"].split(",") if item
            )
            name, sep, value = wanted.partition("=")
            return name in labels and (not sep or labels[name] == value)
        return row["Image"] == wanted or row["ID"] == wanted

    return [
        row
        for row in rows
        if all(
            any(matches(row, key, wanted) for wanted in values)
            for key, values in filters.items()
        )
    ]


def _unreadable_row(container_id: str) -> dict[str, Any]:
    """Return the row of a container whose config.json or state.json is not JSON.

    Such a container must stay visible, because ``rm -f`` removes it.
    """
    try:
        config = state.read_config(container_id)
    except state.UnreadableState:
        config = None
    return {
        "ID": container_id,
        "Image": (config.rootfs or config.image[:19]) if config else "",
        "Command": shlex.join(config.process.args) if config else "",
        "CreatedAt": (config and config.created) or _created_fallback(container_id),
        "Status": "Unknown (unreadable state)",
        "State": "unknown",
        "Pid": 0,
        "Names": config.name if config else "",
    }


def _created_fallback(container_id: str) -> str:
    mtime = os.stat(os.path.join(state.container_dir(container_id), "config.json"))
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime.st_mtime))


def status_text(record: dict[str, Any], now: float | None = None) -> str:
    """Return Docker's STATUS column: ``Up 3 seconds``, ``Exited (137) 5 seconds ago``."""
    now = time.time() if now is None else now
    status = record.get("status")
    if status in ("running", "paused"):
        text = f"Up {human_duration(now - parse_time(record.get('started_at')))}"
        if status == "paused":
            text += " (Paused)"
        if not record.get("monitor_alive", True):
            text += " (monitor lost)"
        return text
    if status == "exited":
        code = record.get("exit_code")
        if code is None and record.get("monitor_alive"):
            return "Exiting"  # the monitor is recording the exit
        if code is None:
            return "Exited (unknown)"
        finished = parse_time(record.get("finished_at"))
        return f"Exited ({code}) {human_duration(now - finished)} ago"
    return "Created"


def parse_time(stamp: str | None) -> float:
    """Parse the RFC 3339 UTC times minictr writes; 0 for a missing one."""
    if not stamp:
        return 0.0
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S"))
    return whole + float(f"0.{fraction or 0}")


def human_duration(seconds: float) -> str:
    """Describe a duration the way ``docker ps`` does."""
    seconds = max(seconds, 0)
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 2:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days"
    if days < 60:
        return f"{int(days / 7)} weeks"
    if days < 730:
        return f"{int(days / 30)} months"
    return f"{int(days / 365)} years"


def format_table(rows: list[dict[str, Any]], truncate: bool = True) -> str:
    """Lay out ``ps`` rows in columns, with Docker's headers plus PID."""
    now = time.time()
    header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PID", "NAMES")
    table = [header]
    for row in rows:
        command = row["Command"]
        if truncate and len(command) > 20:
            command = command[:19] + "…"
        created = human_duration(now - parse_time(row["CreatedAt"])) + " ago"
        table.append(
            (
                row["ID"][:12] if truncate else row["ID"],
                row["Image"],
                f'"{command}"',
                created,
                row["Status"],
                str(row["Pid"] or ""),
                row["Names"],
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths)]
        lines.append("   ".join(cells).rstrip() + "\n")
    return "".join(lines)


# ---------------------------------------------------------------- logs


def read_logs(
    container_id: str, tail: int | None = None, follow: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield the log entries (``log``, ``stream``, ``time``), then new ones with ``follow``.

    Following stops once the container has exited and its watcher has
    closed the log, which happens before the exit file is written.
    """
    path = os.path.join(state.container_dir(container_id), lifecycle.LOG_FILE)
    try:
        logfile = open(path, "rb")
    except FileNotFoundError:
        if not follow:
            return
        logfile = _wait_for_log(container_id, path)
        if logfile is None:
            return
    with logfile:
        lines = logfile.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail else []
        partial = b""
        if lines and not lines[-1].endswith(b"\n"):
            partial = lines.pop()
        for line in lines:
            yield json.loads(line)
        if not follow:
            return
        while True:
            chunk = logfile.readline()
            if chunk:
                partial += chunk
                if partial.endswith(b"\n"):
                    yield json.loads(partial)
                    partial = b""
                continue
            if _exited(container_id):
                rest = logfile.read()
                for line in (partial + rest).splitlines():
                    yield json.loads(line)
                return
            time.sleep(0.1)


def _exited(container_id: str) -> bool:
    if not os.path.isdir(state.container_dir(container_id)):
        return True
    record = lifecycle.current_state(container_id)
    if record["status"] == "created":
        return not record["monitor_alive"]
    return record["status"] == "exited"


def _wait_for_log(container_id: str, path: str):
    while not _exited(container_id):
        try:
            return open(path, "rb")
        except FileNotFoundError:
            time.sleep(0.1)
    return None


# ---------------------------------------------------------------- inspect


def namespaces_of(pid: int) -> dict[str, dict[str, Any]]:
    """Return each namespace inode of ``pid`` and whether the host's PID 1 shares it."""
    result = {}
    for name in NAMESPACE_FILES:
        try:
            inode = os.stat(f"/proc/{pid}/ns/{name}").st_ino
        except OSError:
            continue
        try:
            host = os.stat(f"/proc/1/ns/{name}").st_ino
        except OSError:
            host = None
        result[name] = {"inode": inode, "host_inode": host, "shared": inode == host}
    return result


def inspect(container_id: str) -> dict[str, Any]:
    """Return Docker-style inspect data, with minictr's namespace and cgroup details."""
    config = state.read_config(container_id)
    record = lifecycle.current_state(container_id)
    directory = state.container_dir(container_id)
    running = record["status"] in ("running", "paused")
    pid = record.get("pid") or 0 if running else 0
    cgroup = record.get("cgroup") or {}
    return {
        "Id": container_id,
        "Name": config.name,
        "Created": config.created,
        "Path": config.process.args[0],
        "Args": config.process.args[1:],
        "State": {
            "Status": record["status"],
            "Running": record["status"] == "running",
            "Paused": record["status"] == "paused",
            "Pid": pid,
            # 0 until the container exits, as in Docker; null only when the
            # container exited unwatched and its status is unknown.
            "ExitCode": _exit_code(record),
            "OOMKilled": bool(record.get("oom_killed")),
            "StartedAt": record.get("started_at", ""),
            "FinishedAt": record.get("finished_at", ""),
            "MonitorPid": record.get("monitor_pid") or 0,
            "MonitorAlive": record["monitor_alive"],
        },
        "Rootfs": config.rootfs,
        "Image": config.image,
        "LogPath": os.path.join(directory, lifecycle.LOG_FILE),
        "Config": _config_document(config),
        "Namespaces": namespaces_of(pid) if pid else {},
        "Cgroup": {
            "Path": ("/" + cgroup["name"]) if cgroup else "",
            "Mode": cgroup.get("mode", ""),
            "Directories": cgroup.get("paths", {}),
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(config.lower_dirs),
                "UpperDir": os.path.join(directory, "upper"),
                "WorkDir": os.path.join(directory, "work"),
                "MergedDir": os.path.join(directory, "merged"),
            },
        },
        "Mounts": config.mounts,
        "UserNamespace": _user_namespace(record),
        "NetworkSettings": _network_document(record.get("network") or config.network),
        "Devices": config.devices,
    }


def _config_document(config: Any) -> dict[str, Any]:
    """Return minictr's config, plus the keys Docker's Config has, for templates.

    ``Cmd`` is the whole command the container runs, the image's Entrypoint
    included, since minictr stores the two merged.
    """
    document = config.to_dict()
    document.update(
        {
            "Cmd": config.process.args,
            "Env": config.process.env,
            "WorkingDir": config.process.cwd,
            "User": config.process.user,
            "Hostname": config.hostname,
            "Image": config.image or config.rootfs,
            "Labels": config.labels,
            "StopSignal": config.stop_signal,
        }
    )
    return document


def _network_document(settings: dict[str, Any]) -> dict[str, Any]:
    """Return the network settings, plus Docker's IPAddress and Networks keys."""
    document = dict(settings)
    networks = {}
    for attached in settings.get("networks") or []:
        networks[attached.get("network", "")] = {
            "IPAddress": attached.get("address", ""),
            "IPPrefixLen": attached.get("prefixlen", 0),
            "Gateway": attached.get("gateway", ""),
            "MacAddress": attached.get("mac", ""),
        }
    first = next(iter(networks.values()), {})
    document.update(
        {
            "IPAddress": first.get("IPAddress", ""),
            "IPPrefixLen": first.get("IPPrefixLen", 0),
            "Gateway": first.get("Gateway", ""),
            "MacAddress": first.get("MacAddress", ""),
            "Networks": networks,
        }
    )
    return document


def _exit_code(record: dict[str, Any]) -> int | None:
    if record.get("status") in ("created", "running", "paused"):
        return 0
    return record.get("exit_code")


def _user_namespace(record: dict[str, Any]) -> dict[str, Any]:
    """Return the maps of a ``--userns`` container, and how each layer was mapped."""
    if not record.get("uid_map"):
        return {}
    return {
        "UidMap": record["uid_map"],
        "GidMap": record.get("gid_map", []),
        "Layers": record.get("userns_layers", []),
    }


_ANY_ACTION = re.compile(r"\{\{.*?\}\}")
_TEMPLATE_ACTION = re.compile(r"\{\{\s*(json\s+)?\.([^}\s]*)\s*\}\}")


def render(template: str, document: dict[str, Any]) -> str:
    """Fill ``{{.State.Pid}}`` or ``{{json .Config}}`` fields, or follow a dotted path.

    Only field paths and the ``json`` function of Go templates are supported.
    """
    if "{{" not in template:
        return _to_text(_lookup(document, template.lstrip(".")), as_json=True)
    for action in _ANY_ACTION.findall(template):
        if not _TEMPLATE_ACTION.fullmatch(action):
            raise InvalidArgument(
                f"unsupported template action {action} in --format: only field"
                " paths such as {{.State.Pid}} and {{json .Config}} are supported"
            )

    def replace(match: re.Match) -> str:
        value = _lookup(document, match.group(2))
        return _to_text(value, as_json=bool(match.group(1)))

    result = _TEMPLATE_ACTION.sub(replace, template)
    if "{{" in result:
        raise InvalidArgument(
            f"unsupported --format {template!r}: use {{{{.Field.Sub}}}} or"
            " {{json .Field}}"
        )
    return result


def _lookup(document: Any, path: str) -> Any:
    value = document
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise InvalidArgument(f"no field {part!r} in path {path!r}")
    return value


def _to_text(value: Any, as_json: bool) -> str:
    if as_json or isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return "<no value>" if value is None else str(value)


# ---------------------------------------------------------------- top


def top(container_id: str) -> list[dict[str, Any]]:
    """Return the container's processes with host and container pids."""
    record = lifecycle.current_state(container_id)
    if record["status"] not in ("running", "paused"):
        raise lifecycle.NotRunning(f"container {container_id[:12]} is not running")
    pid_ns = os.stat(f"/proc/{record['pid']}/ns/pid").st_ino
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino != pid_ns:
                continue
            rows.append(_process_row(int(entry)))
        except (OSError, NotFound):
            continue  # exited while listing
    return sorted(rows, key=lambda row: row["CONTAINER PID"])


def _process_row(pid: int) -> dict[str, Any]:
    status: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    return {
        "PID": pid,
        "CONTAINER PID": int(status["NSpid"].split()[-1]),
        "PPID": int(status["PPid"]),
        "UID": int(status["Uid"].split()[0]),
        "STAT": status["State"].split()[0],
        "COMMAND": shlex.join(args) if args else f"[{status['Name']}]",
    }
