"""Options of `run` and `create` for capabilities, seccomp, limits and sysctls.

Names and formats follow `docker run`. ``to_config`` rejects a bad value
before anything is created, and reads a seccomp profile file into the
config, so the container keeps the profile it was created with.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import InvalidArgument

OPTIONS = [
    click.option(
        "--cap-add",
        multiple=True,
        help="Add a Linux capability (NET_ADMIN or CAP_NET_ADMIN), or ALL.",
    ),
    click.option(
        "--cap-drop",
        multiple=True,
        help="Drop a Linux capability, or ALL.",
    ),
    click.option(
        "--privileged",
        is_flag=True,
        help="Give all capabilities; no seccomp filter and no masked paths.",
    ),
    click.option(
        "--security-opt",
        multiple=True,
        help="no-new-privileges[:true|false], seccomp=PROFILE.json|unconfined.",
    ),
    click.option(
        "--ulimit",
        multiple=True,
        help="Resource limit NAME=SOFT[:HARD], such as nofile=1024:2048.",
    ),
    click.option(
        "--sysctl",
        multiple=True,
        help="Namespaced kernel parameter KEY=VALUE, such as net.ipv4.ip_forward=1.",
    ),
    click.option(
        "--userns",
        default=None,
        help="'private' maps root to an unprivileged range from /etc/subuid;"
        " 'host' (default) does not.",
    ),
    click.option(
        "--userns-map",
        default=None,
        help="Map container ids 0-(COUNT-1) to host ids HOSTID onwards: HOSTID:COUNT.",
    ),
]


def to_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the security options from ``kwargs`` and return ``config.security``."""
    from ..security import limits

    security: dict[str, Any] = {
        "privileged": bool(kwargs.pop("privileged")),
        "cap_add": _caps(kwargs.pop("cap_add"), "--cap-add"),
        "cap_drop": _caps(kwargs.pop("cap_drop"), "--cap-drop"),
        "no_new_privileges": False,
        "seccomp": "default",
    }
    for option in kwargs.pop("security_opt"):
        _apply_security_opt(security, option)
    ulimits = {}
    for spec in kwargs.pop("ulimit"):
        name, soft, hard = limits.parse_ulimit(spec)
        ulimits[name] = [soft, hard]
    security["ulimits"] = ulimits
    security["sysctls"] = dict(limits.parse_sysctl(s) for s in kwargs.pop("sysctl"))
    userns = _userns(kwargs.pop("userns"), kwargs.pop("userns_map"))
    if userns is not None:
        security["userns"] = userns
    return security


def _caps(names: tuple[str, ...], option: str) -> list[str]:
    from ..security import capabilities

    result = []
    for name in names:
        for part in name.split(","):
            normal = capabilities.normalize(part, option)
            if normal not in result:
                result.append(normal)
    return result


def _apply_security_opt(security: dict[str, Any], option: str) -> None:
    key, _, value = option.partition("=" if "=" in option else ":")
    key = key.strip()
    if key == "no-new-privileges":
        if value in ("", "true"):
            security["no_new_privileges"] = True
            return
        if value == "false":
            security["no_new_privileges"] = False
            return
    elif key == "seccomp" and value:
        if value == "unconfined":
            security["seccomp"] = "unconfined"
            return
        from ..security import seccomp

        security["seccomp"] = {"source": value, "profile": seccomp.load_file(value)}
        return
    elif key in ("apparmor", "label"):
        raise InvalidArgument(
            f"invalid --security-opt {option!r}: minictr does not use AppArmor or"
            " SELinux labels"
        )
    raise InvalidArgument(
        f"invalid --security-opt {option!r}: expected no-new-privileges[:true|false],"
        " seccomp=PROFILE.json or seccomp=unconfined"
    )


def _userns(mode: str | None, mapping: str | None) -> dict[str, Any] | None:
    if mode in (None, "", "host") and mapping is None:
        return None
    from ..security import userns

    return userns.parse(mode, mapping)
