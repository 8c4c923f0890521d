"""The state of a build stage, and the instructions that change only its config.

A stage is an image in the making: its layers so far, the container config
(``Env``, ``Cmd``, ``Entrypoint``, ``WorkingDir``, ...) that the OCI image
config carries, its history, and the ARG values in scope. ARG values are
visible to substitution and to RUN commands but are not stored in the
image. ENV values override ARG values of the same name.
"""

from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from ..images.diff import LayerBlob
from .lexer import SubstitutionError, expand_word, expand_words
from .parser import Instruction, parse_instruction

DEFAULT_SHELL = ["/bin/sh", "-c"]

# "ENTRYPOINT []" clears the base image's entrypoint, so an empty list stays.
_LISTS_KEPT_EMPTY = ("Entrypoint", "Cmd")

_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_HEALTHCHECK_DURATIONS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}


@dataclass
class StageState:
    layers: list[LayerBlob] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)
    created: str = ""
    author: str = ""
    cmd_set: bool = False  # CMD given in this stage, so ENTRYPOINT keeps it
    escape: str = "\\"

    def inherit(self) -> StageState:
        """Return a copy for a stage built FROM this one: no ARG values carry over."""
        child = copy.deepcopy(self)
        child.args = {}
        child.cmd_set = False
        return child

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def env(self) -> dict[str, str]:
        values = {}
        for item in self.config.get("Env") or []:
            name, _, value = item.partition("=")
            values[name] = value
        return values

    def substitution_env(self) -> dict[str, str]:
        return {**self.args, **self.env()}

    def run_env(self) -> list[str]:
        """Return the environment of a RUN command: ENV, then ARG values not shadowed."""
        env = list(self.config.get("Env") or [])
        names = set(self.env())
        env += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in names]
        return env

    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def expand(self, instruction: Instruction, word: str) -> str:
        try:
            return expand_word(word, self.substitution_env(), self.escape)
        except SubstitutionError as exc:
            raise instruction.error(str(exc)) from None

    def expand_all(self, instruction: Instruction, text: str) -> list[str]:
        try:
            return expand_words(text, self.substitution_env(), self.escape)
        except SubstitutionError as exc:
            raise instruction.error(str(exc)) from None

    def command_form(self, instruction: Instruction) -> list[str] | None:
        """Return RUN/CMD/ENTRYPOINT arguments: exec form as is, shell form wrapped."""
        if instruction.exec_form is not None:
            return list(instruction.exec_form)
        if not instruction.arguments:
            return None
        return self.shell() + [instruction.arguments]


def apply_metadata(state: StageState, instruction: Instruction) -> None:
    """Apply an instruction that changes only the config (not ARG, RUN, COPY)."""
    handler = _HANDLERS[instruction.keyword]
    handler(state, instruction)
    for key, value in list(state.config.items()):
        if value is None or (value in ({}, [], "") and key not in _LISTS_KEPT_EMPTY):
            del state.config[key]


def _env(state: StageState, instruction: Instruction) -> None:
    values = state.env()
    # Every value is expanded with the variables as they were before this
    # line, so "ENV A=1 B=$A" gives B the old A, as in Docker.
    for raw_name, raw_value in instruction.pairs:
        name = state.expand(instruction, raw_name)
        values[name] = state.expand(instruction, raw_value)
    state.config["Env"] = [f"{k}={v}" for k, v in values.items()]


def _label(state: StageState, instruction: Instruction) -> None:
    labels = dict(state.config.get("Labels") or {})
    for raw_name, raw_value in instruction.pairs:
        labels[state.expand(instruction, raw_name)] = state.expand(
            instruction, raw_value
        )
    state.config["Labels"] = labels


def _cmd(state: StageState, instruction: Instruction) -> None:
    state.config["Cmd"] = state.command_form(instruction)
    state.cmd_set = True


def _entrypoint(state: StageState, instruction: Instruction) -> None:
    state.config["Entrypoint"] = state.command_form(instruction)
    if not state.cmd_set:
        # A CMD inherited from the base image was written for its entrypoint.
        state.config["Cmd"] = None


def _workdir(state: StageState, instruction: Instruction) -> None:
    path = state.expand(instruction, instruction.arguments)
    current = state.config.get("WorkingDir") or "/"
    state.config["WorkingDir"] = posixpath.normpath(posixpath.join(current, path))


def _user(state: StageState, instruction: Instruction) -> None:
    state.config["User"] = state.expand(instruction, instruction.arguments)


def _expose(state: StageState, instruction: Instruction) -> None:
    ports = dict(state.config.get("ExposedPorts") or {})
    for word in state.expand_all(instruction, instruction.arguments):
        match = _PORT.match(word)
        if match is None:
            raise instruction.error(
                f"invalid port {word!r}: use PORT, PORT/PROTOCOL or FIRST-LAST"
            )
        first = int(match.group(1))
        last = int(match.group(2) or first)
        protocol = (match.group(3) or "tcp").lower()
        if not 0 < first <= last <= 65535:
            raise instruction.error(f"invalid port {word!r}: ports are 1 to 65535")
        for port in range(first, last + 1):
            ports[f"{port}/{protocol}"] = {}
    state.config["ExposedPorts"] = ports


def _volume(state: StageState, instruction: Instruction) -> None:
    if instruction.exec_form is not None:
        paths = [
            expand_word(p, state.substitution_env(), state.escape, quotes=False)
            for p in instruction.exec_form
        ]
    else:
        paths = state.expand_all(instruction, instruction.arguments)
    volumes = dict(state.config.get("Volumes") or {})
    for path in paths:
        if not path:
            raise instruction.error("a volume path is empty")
        volumes[path] = {}
    state.config["Volumes"] = volumes


def _stopsignal(state: StageState, instruction: Instruction) -> None:
    import signal

    value = state.expand(instruction, instruction.arguments)
    name = value.upper()
    known = name.isdigit() or hasattr(signal, name) or hasattr(signal, "SIG" + name)
    if not known or name in ("SIG_DFL", "SIG_IGN"):
        raise instruction.error(f"invalid signal {value!r}: use a name like SIGTERM")
    state.config["StopSignal"] = value


def _shell(state: StageState, instruction: Instruction) -> None:
    if not instruction.exec_form:
        raise instruction.error("SHELL needs a non-empty JSON array")
    state.config["Shell"] = list(instruction.exec_form)


def _healthcheck(state: StageState, instruction: Instruction) -> None:
    kind, _, command = instruction.arguments.partition(" ")
    if kind.upper() == "NONE":
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return
    command = command.strip()
    trigger = parse_instruction("CMD " + command, instruction.line, state.escape)
    if trigger.exec_form is not None:
        test = ["CMD", *trigger.exec_form]
    else:
        test = ["CMD-SHELL", command]
    check: dict[str, Any] = {"Test": test}
    for flag, key in _HEALTHCHECK_DURATIONS.items():
        if flag in instruction.flags:
            check[key] = _duration(instruction, flag, instruction.flags[flag])
    if "retries" in instruction.flags:
        retries = instruction.flags["retries"]
        if not retries.isdigit() or int(retries) < 1:
            raise instruction.error(f"invalid --retries {retries!r}: use 1 or more")
        check["Retries"] = int(retries)
    state.config["Healthcheck"] = check


def _duration(instruction: Instruction, flag: str, text: str) -> int:
    """Parse a Go duration (``30s``, ``1m30s``, ``500ms``) into nanoseconds."""
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise instruction.error(
            f"invalid --{flag} {text!r}: use a duration such as 30s or 1m30s"
        )
    return int(total)


def _maintainer(state: StageState, instruction: Instruction) -> None:
    state.author = instruction.arguments


def _onbuild(state: StageState, instruction: Instruction) -> None:
    trigger = parse_instruction(instruction.arguments, instruction.line, state.escape)
    if trigger.keyword in ("ONBUILD", "FROM", "MAINTAINER"):
        raise instruction.error(f"ONBUILD cannot trigger {trigger.keyword}")
    state.config["OnBuild"] = list(state.config.get("OnBuild") or []) + [
        instruction.arguments
    ]


_HANDLERS = {
    "ENV": _env,
    "LABEL": _label,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "WORKDIR": _workdir,
    "USER": _user,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "SHELL": _shell,
    "HEALTHCHECK": _healthcheck,
    "MAINTAINER": _maintainer,
    "ONBUILD": _onbuild,
}
