"""Parse a Dockerfile into stages of instructions.

A Dockerfile is read in three passes over its lines. Parser directives
(``# escape=`` and ``# syntax=``) are only recognized at the very top,
before any comment, blank line or instruction. Physical lines are then
joined into logical ones: a line ending in the escape character (``\\`` or
a backtick) continues on the next, and comment lines and blank lines inside
a continuation are dropped. Finally each logical line becomes an
``Instruction``: its keyword, leading ``--flag=value`` options, and its
arguments, which are kept raw because variable substitution depends on the
ENV and ARG values in force when the builder reaches that line.

Arguments that look like a JSON array of strings (``["a", "b"]``) are the
exec form; anything else, including a malformed array, is the shell form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..errors import InvalidArgument
from .lexer import SubstitutionError, split_words

KEYWORDS = frozenset(
    [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ]
)

# The flags each instruction accepts; True when the flag takes a value.
FLAGS: dict[str, dict[str, bool]] = {
    "FROM": {"platform": True},
    "COPY": {"from": True, "chown": True, "chmod": True, "link": False},
    "ADD": {"chown": True, "chmod": True, "link": False},
    "HEALTHCHECK": {
        "interval": True,
        "timeout": True,
        "start-period": True,
        "start-interval": True,
        "retries": True,
    },
}

# Flags that Docker accepts but this builder cannot honor: rejected by name.
UNSUPPORTED_FLAGS = {
    "RUN": ("mount", "network", "security"),
    "ADD": ("checksum", "keep-git-dir"),
    "COPY": ("parents", "exclude"),
}

_DIRECTIVE = re.compile(r"^#[ \t]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*(.*?)[ \t]*$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed or built; names the line and keyword."""

    def __init__(self, message: str, line: int = 0, keyword: str = "") -> None:
        where = f"line {line}" if line else ""
        if keyword:
            where = f"{where} {keyword}".strip()
        super().__init__(f"Dockerfile {where}: {message}" if where else message)
        self.line = line
        self.keyword = keyword


@dataclass
class Instruction:
    keyword: str  # upper case: "RUN"
    arguments: str  # text after the keyword and its flags, continuations joined
    line: int  # number of the first physical line
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # the JSON array, when the arguments are one
    pairs: list[tuple[str, str]] = field(default_factory=list)  # ENV, LABEL, ARG

    @property
    def text(self) -> str:
        """The instruction as written, on one line, for history and progress."""
        flags = " ".join(
            f"--{name}={value}" if value else f"--{name}"
            for name, value in self.flags.items()
        )
        return " ".join(part for part in (self.keyword, flags, self.arguments) if part)

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(message, self.line, self.keyword)


@dataclass
class Stage:
    index: int
    base: str  # image, "scratch", rootfs directory or earlier stage, unexpanded
    name: str  # lower case, "" when the FROM line has no "AS name"
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    stages: list[Stage]
    global_args: list[Instruction]  # ARG lines before the first FROM
    escape: str = "\\"


def parse(text: str) -> Dockerfile:
    """Parse Dockerfile ``text``; raises ``DockerfileError`` naming the line."""
    lines = text.splitlines()
    escape, first = _read_directives(lines)
    dockerfile = Dockerfile(stages=[], global_args=[], escape=escape)
    for number, logical in _logical_lines(lines, first, escape):
        instruction = parse_instruction(logical, number, escape)
        _add(dockerfile, instruction)
    if not dockerfile.stages:
        raise DockerfileError("the Dockerfile has no FROM instruction")
    return dockerfile


def _read_directives(lines: list[str]) -> tuple[str, int]:
    """Return the escape character and the index of the first line after them."""
    escape = "\\"
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match is None:
            return escape, index
        name, value = match.group(1).lower(), match.group(2)
        if name in seen:
            raise DockerfileError(f"the {name} directive is given twice", index + 1)
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"invalid escape directive {value!r}: use \\ or `", index + 1
                )
            escape = value
        elif name not in ("syntax", "check"):
            # Docker reads an unknown directive as a comment that ends the
            # directives, so later "# escape=" lines are comments too.
            return escape, index + 1
    return escape, len(lines)


def _logical_lines(lines: list[str], first: int, escape: str):
    """Yield (first line number, text) of each instruction, continuations joined."""
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    pending: list[str] = []
    start = 0
    for index in range(first, len(lines)):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continuation
        if not pending:
            start = index + 1
            line = line.lstrip()
        match = continuation.search(line)
        if match is not None:
            pending.append(line[: match.start()])
            continue
        pending.append(line)
        yield start, "".join(pending)
        pending = []
    if pending:
        yield start, "".join(pending)


def parse_instruction(text: str, line: int, escape: str = "\\") -> Instruction:
    """Parse one logical line (also used for ONBUILD triggers)."""
    match = re.match(r"(\S+)\s*(.*)", text.strip(), re.DOTALL)
    keyword, rest = (match.group(1).upper(), match.group(2)) if match else ("", "")
    if keyword not in KEYWORDS:
        raise DockerfileError(f"unknown instruction {keyword!r}", line)
    instruction = Instruction(keyword=keyword, arguments=rest, line=line)
    _take_flags(instruction)
    try:
        _check_arguments(instruction, escape)
    except SubstitutionError as exc:
        raise instruction.error(str(exc)) from None
    return instruction


def _take_flags(instruction: Instruction) -> None:
    accepted = FLAGS.get(instruction.keyword, {})
    rest = instruction.arguments
    while rest.startswith("--"):
        token, _, remainder = rest.partition(" ")
        name, has_value, value = token[2:].partition("=")
        if name in UNSUPPORTED_FLAGS.get(instruction.keyword, ()):
            raise instruction.error(f"the --{name} flag is not supported by minictr")
        if name not in accepted:
            raise instruction.error(f"unknown flag --{name}")
        if accepted[name] and not (has_value and value):
            raise instruction.error(f"the --{name} flag needs a value: --{name}=VALUE")
        if not accepted[name] and has_value:
            raise instruction.error(f"the --{name} flag takes no value")
        if name in instruction.flags:
            raise instruction.error(f"the --{name} flag is given twice")
        instruction.flags[name] = value
        rest = remainder.lstrip()
    instruction.arguments = rest


def parse_exec_form(arguments: str) -> list[str] | None:
    """Return the JSON array of strings in ``arguments``, or None for shell form."""
    if not arguments.startswith("["):
        return None
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _check_arguments(instruction: Instruction, escape: str) -> None:
    keyword = instruction.keyword
    arguments = instruction.arguments
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"):
        instruction.exec_form = parse_exec_form(arguments)
    if not arguments and keyword not in ("CMD", "ENTRYPOINT"):
        raise instruction.error("missing arguments")
    if keyword == "SHELL" and not instruction.exec_form:
        raise instruction.error('SHELL needs a JSON array, as in ["/bin/sh", "-c"]')
    if keyword in ("COPY", "ADD"):
        sources = instruction.exec_form or split_words(arguments, escape)
        if len(sources) < 2:
            raise instruction.error("needs at least one source and a destination")
    elif keyword in ("ENV", "LABEL"):
        instruction.pairs = _name_value_pairs(instruction, escape)
    elif keyword == "ARG":
        instruction.pairs = _arg_pairs(instruction, escape)
    elif keyword == "FROM":
        words = split_words(arguments, escape)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise instruction.error("expected FROM IMAGE [AS NAME]")
    elif keyword == "HEALTHCHECK":
        kind, _, command = arguments.partition(" ")
        if kind.upper() not in ("NONE", "CMD"):
            raise instruction.error("expected HEALTHCHECK NONE or HEALTHCHECK CMD ...")
        if kind.upper() == "NONE" and (command.strip() or instruction.flags):
            raise instruction.error("HEALTHCHECK NONE takes no other arguments")
        if kind.upper() == "CMD" and not command.strip():
            raise instruction.error("HEALTHCHECK CMD needs a command")
    elif keyword in ("WORKDIR", "USER", "STOPSIGNAL") and (
        len(split_words(arguments, escape)) != 1
    ):
        raise instruction.error("expects exactly one argument")


def _name_value_pairs(instruction: Instruction, escape: str) -> list[tuple[str, str]]:
    """Split ENV or LABEL arguments into raw (name, value) pairs.

    ``NAME=VALUE ...`` may hold several pairs. The older form ``NAME VALUE``
    sets one name to the rest of the line.
    """
    words = split_words(instruction.arguments, escape)
    if "=" not in words[0]:
        if len(words) < 2:
            raise instruction.error(
                f"{words[0]!r} has no value: use {instruction.keyword} NAME=VALUE"
            )
        name = words[0]
        value = instruction.arguments[len(name) :].strip()
        return [(name, value)]
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            raise instruction.error(
                f"missing '=' in {word!r}: use NAME=VALUE for every pair"
            )
        if not name:
            raise instruction.error(f"empty name in {word!r}")
        pairs.append((name, value))
    return pairs


def _arg_pairs(instruction: Instruction, escape: str) -> list[tuple[str, str]]:
    """Split ARG arguments into (name, default); a missing default is "\\0"."""
    pairs = []
    for word in split_words(instruction.arguments, escape):
        name, sep, default = word.partition("=")
        if not _ARG_NAME.match(name):
            raise instruction.error(f"invalid ARG name {name!r}")
        pairs.append((name, default if sep else NO_DEFAULT))
    return pairs


NO_DEFAULT = "\0"  # ARG NAME without "=": the value comes from --build-arg


def _add(dockerfile: Dockerfile, instruction: Instruction) -> None:
    if instruction.keyword == "FROM":
        words = split_words(instruction.arguments, dockerfile.escape)
        name = words[2].lower() if len(words) == 3 else ""
        if name and not _STAGE_NAME.match(name):
            raise instruction.error(
                f"invalid stage name {words[2]!r}: start with a letter, then use "
                "letters, digits, '-', '_' and '.'"
            )
        if name and any(stage.name == name for stage in dockerfile.stages):
            raise instruction.error(f"the stage name {name!r} is used twice")
        stage = Stage(len(dockerfile.stages), words[0], name, instruction)
        dockerfile.stages.append(stage)
    elif not dockerfile.stages:
        if instruction.keyword != "ARG":
            raise instruction.error(
                "only ARG may come before the first FROM: add a FROM line first"
            )
        dockerfile.global_args.append(instruction)
    else:
        dockerfile.stages[-1].instructions.append(instruction)
