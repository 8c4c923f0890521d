"""Containers on disk: ids, names, configs and states.

Each container has a directory ``<state root>/containers/<id>/`` holding
``config.json`` (what was asked), ``state.json`` (what is true now: status,
pid, exit code), the overlay ``upper``/``work``/``merged`` directories, the
generated /etc files and the log. Every JSON write goes to a temporary file
that is fsynced and renamed over the old one, so a reader sees the old or
the new content, never half of one. Changes that read and then write (a new
name must be unique) hold an exclusive lock on ``<run root>/containers.lock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from . import filelock, paths
from .config import ContainerConfig
from .errors import Conflict, InvalidArgument, MinictrError, NotFound

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

_ADJECTIVES = (
    "brave calm eager fancy gentle happy jolly keen lively merry nimble "
    "proud quiet rapid sharp steady swift tender vivid witty"
).split()
_NOUNS = (
    "curie darwin euler fermi gauss hopper knuth lovelace maxwell newton "
    "noether pascal ritchie shannon thompson turing volta wiles yalow zuse"
).split()


class UnreadableState(MinictrError, ValueError):
    """A container's ``config.json`` or ``state.json`` is not valid JSON.

    It is also a ValueError, so that code which skips containers whose files
    cannot be parsed keeps doing so.
    """


def write_json_atomic(path: str, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON: temp file, fsync, rename."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def locked(name: str = "containers") -> Iterator[None]:
    """Hold an exclusive lock on ``<run root>/NAME.lock``."""
    os.makedirs(paths.run_root(), mode=0o700, exist_ok=True)
    with filelock.flocked(os.path.join(paths.run_root(), f"{name}.lock")):
        yield


def new_id() -> str:
    return os.urandom(32).hex()


def random_name() -> str:
    pick = os.urandom(2)
    return f"{_ADJECTIVES[pick[0] % len(_ADJECTIVES)]}_{_NOUNS[pick[1] % len(_NOUNS)]}"


def validate_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InvalidArgument(
            f"invalid container name {name!r}: use letters, digits, '_', '.' and '-',"
            " starting with a letter or digit"
        )


def container_dir(container_id: str) -> str:
    return os.path.join(paths.containers_dir(), container_id)


def list_ids() -> list[str]:
    try:
        return sorted(
            entry
            for entry in os.listdir(paths.containers_dir())
            if os.path.exists(
                os.path.join(paths.containers_dir(), entry, "config.json")
            )
        )
    except FileNotFoundError:
        return []


def _names_in_use() -> dict[str, str]:
    names = {}
    for cid in list_ids():
        try:
            names[read_config(cid).name] = cid
        except (OSError, ValueError):
            continue
    return names


def reserve(config: ContainerConfig) -> str:
    """Create the container's directory and record it as "created".

    Gives the config a random name when it has none; rejects a name that is
    taken. Returns the container's directory.
    """
    os.makedirs(paths.containers_dir(), mode=0o711, exist_ok=True)
    with locked():
        names = _names_in_use()
        if config.name:
            validate_name(config.name)
            if config.name in names:
                raise Conflict(
                    f"the container name {config.name!r} is already in use by container"
                    f" {names[config.name][:12]}: remove it or choose another name"
                )
        else:
            config.name = random_name()
            while config.name in names:
                config.name = f"{random_name()}_{os.urandom(2).hex()}"
        directory = container_dir(config.id)
        os.mkdir(directory, 0o711)
        for sub in ("upper", "work", "merged"):
            os.mkdir(os.path.join(directory, sub), 0o755)
        write_json_atomic(os.path.join(directory, "config.json"), config.to_dict())
        write_json_atomic(os.path.join(directory, "state.json"), {"status": "created"})
    return directory


def read_config(container_id: str) -> ContainerConfig:
    """Return the container's config; FileNotFoundError once it is removed."""
    data = _read_container_file(container_id, "config.json")
    try:
        return ContainerConfig.from_dict(data)
    except (TypeError, KeyError, ValueError) as exc:
        reason = f"not a container config, {type(exc).__name__}: {exc}"
        raise _unreadable(container_id, "config.json", reason) from None


def read_state(container_id: str) -> dict[str, Any]:
    """Return the stored state; ``{"status": "removing"}`` once it is deleted."""
    try:
        record = _read_container_file(container_id, "state.json")
    except FileNotFoundError:
        return {"status": "removing"}
    if not isinstance(record, dict):
        raise _unreadable(container_id, "state.json", "not a JSON object")
    return record


def _read_container_file(container_id: str, name: str) -> Any:
    try:
        return read_json(os.path.join(container_dir(container_id), name))
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON, {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise _unreadable(container_id, name, reason) from None
    except UnicodeDecodeError:
        raise _unreadable(container_id, name, "not UTF-8 text") from None


def _unreadable(container_id: str, name: str, reason: str) -> UnreadableState:
    path = os.path.join(container_dir(container_id), name)
    return UnreadableState(
        f"container {container_id[:12]} has an unreadable {path} ({reason}):"
        f" remove the container with 'minictr rm -f {container_id[:12]}'"
    )


def write_state(container_id: str, state: dict[str, Any]) -> None:
    write_json_atomic(os.path.join(container_dir(container_id), "state.json"), state)


def update_state(container_id: str, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the stored state under the lock; return the result."""
    with locked(f"state-{container_id}"):
        state = read_state(container_id)
        state.update(changes)
        write_state(container_id, state)
    return state


def find(reference: str) -> str:
    """Return the id of the container named, or with id or unique id prefix, ``reference``."""
    ids = list_ids()
    if reference in ids:
        return reference
    for cid in ids:
        try:
            if read_config(cid).name == reference:
                return cid
        except (OSError, ValueError):
            continue
    matches = [cid for cid in ids if cid.startswith(reference)] if reference else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidArgument(
            f"container id prefix {reference!r} matches {len(matches)} containers:"
            " give more characters"
        )
    raise NotFound(f"no such container: {reference}")


def remove_dir(container_id: str) -> None:
    """Delete the container's directory; its mounts must be gone already."""
    import shutil

    with locked(f"state-{container_id}"):
        shutil.rmtree(container_dir(container_id), ignore_errors=True)
    for lock in (f"state-{container_id}", f"start-{container_id}"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(paths.run_root(), f"{lock}.lock"))
