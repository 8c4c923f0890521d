"""Variable substitution in Compose files: ``${VAR}``, defaults, errors, ``$$``.

The Compose specification substitutes variables in every string value of
the file (never in keys) before the files are merged. The forms are those of
the POSIX shell's parameter expansion, without the pattern operators:

- ``$VAR`` and ``${VAR}``: the value, or an empty string with a warning when
  the variable is unset,
- ``${VAR:-default}`` / ``${VAR-default}``: the default when the variable is
  unset or empty / only when it is unset,
- ``${VAR:?message}`` / ``${VAR?message}``: an error with the message when
  the variable is unset or empty / only when it is unset,
- ``${VAR:+other}`` / ``${VAR+other}``: ``other`` when the variable is set
  and not empty / set at all, else an empty string,
- ``$$``: a literal ``$``, so a command can still read its own variables.

Defaults and messages may contain further substitutions (``${A:-${B}}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(InvalidArgument):
    """A ``${VAR:?message}`` whose variable is missing, or a malformed ``${``."""


def interpolate(
    text: str,
    variables: Mapping[str, str],
    warn: Callable[[str], None] | None = None,
    where: str = "",
) -> str:
    """Return ``text`` with its variables substituted from ``variables``.

    ``warn`` receives a message for each unset variable that has no default.
    ``where`` names the place of ``text`` in the file for error messages.
    """
    result, _ = _expand(text, 0, variables, warn, where, closing=False)
    return result


def interpolate_tree(
    tree: Any,
    variables: Mapping[str, str],
    warn: Callable[[str], None] | None = None,
    path: str = "",
) -> Any:
    """Substitute variables in every string value of a parsed YAML document."""
    if isinstance(tree, str):
        return interpolate(tree, variables, warn, path)
    if isinstance(tree, dict):
        return {
            key: interpolate_tree(value, variables, warn, _join(path, key))
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [
            interpolate_tree(item, variables, warn, f"{path}[{index}]")
            for index, item in enumerate(tree)
        ]
    return tree


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _expand(
    text: str,
    position: int,
    variables: Mapping[str, str],
    warn: Callable[[str], None] | None,
    where: str,
    closing: bool,
) -> tuple[str, int]:
    """Expand from ``position`` to the end, or to an unmatched ``}`` when ``closing``.

    Returns the expansion and the index just past what was consumed.
    """
    parts: list[str] = []
    index = position
    while index < len(text):
        char = text[index]
        if closing and char == "}":
            return "".join(parts), index
        if char != "$":
            parts.append(char)
            index += 1
            continue
        following = text[index + 1 : index + 2]
        if following == "$":
            parts.append("$")
            index += 2
        elif following == "{":
            value, index = _braced(text, index + 2, variables, warn, where)
            parts.append(value)
        else:
            match = _NAME.match(text, index + 1)
            if match is None:
                # A lone "$" (before a space, a digit, the end) stays as it is.
                parts.append("$")
                index += 1
                continue
            parts.append(_lookup(match.group(), variables, warn, where))
            index = match.end()
    if closing:
        raise InterpolationError(
            f"invalid interpolation in {where or 'the file'}: {text!r} has a '${{'"
            " without its '}': close it, or write '$$' for a literal '$'"
        )
    return "".join(parts), index


def _braced(
    text: str,
    position: int,
    variables: Mapping[str, str],
    warn: Callable[[str], None] | None,
    where: str,
) -> tuple[str, int]:
    """Expand a ``${...}`` whose name starts at ``position``; return it and its end."""
    match = _NAME.match(text, position)
    if match is None:
        raise InterpolationError(
            f"invalid interpolation in {where or 'the file'}: {text!r} has no"
            " variable name after '${': write '$$' for a literal '$'"
        )
    name = match.group()
    index = match.end()
    if text[index : index + 1] == "}":
        return _lookup(name, variables, warn, where), index + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
    if operator is None:
        raise InterpolationError(
            f"invalid interpolation in {where or 'the file'}: {text!r} has an"
            f" unsupported operator after '${{{name}': use :-, -, :?, ?, :+ or +"
        )
    # The argument is expanded only when it is used, as in the shell, so an
    # unused default does not warn about its own unset variables.
    value = variables.get(name)
    is_set = value is not None
    if operator.startswith(":"):
        is_set = bool(value)
    kind = operator[-1]
    use_argument = (kind == "+" and is_set) or (kind in "-?" and not is_set)
    if use_argument:
        argument, end = _expand(
            text, index + len(operator), variables, warn, where, closing=True
        )
    else:
        argument = ""
        end = _skip_argument(text, index + len(operator), where)
    end += 1  # the closing brace
    if kind == "?" and not is_set:
        raise InterpolationError(
            f"required variable {name} is missing a value in {where or 'the file'}:"
            f" {argument or 'set it in the environment or the .env file'}"
        )
    if kind == "+":
        return (argument if is_set else ""), end
    return (argument if not is_set else value or ""), end


def _skip_argument(text: str, position: int, where: str) -> int:
    """Return the index of the ``}`` that closes the argument starting at ``position``."""
    depth = 0
    index = position
    while index < len(text):
        if text.startswith("$$", index):
            index += 2
            continue
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    raise InterpolationError(
        f"invalid interpolation in {where or 'the file'}: {text!r} has a '${{'"
        " without its '}': close it, or write '$$' for a literal '$'"
    )


def _lookup(
    name: str,
    variables: Mapping[str, str],
    warn: Callable[[str], None] | None,
    where: str,
) -> str:
    value = variables.get(name)
    if value is None:
        if warn is not None:
            warn(
                f"variable {name} is not set (in {where or 'the file'}):"
                " substituting an empty string"
            )
        return ""
    return value
