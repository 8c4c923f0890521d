""".dockerignore patterns and Go's ``filepath.Match``.

A ``.dockerignore`` file lists patterns, one a line, that keep files of the
build context out of COPY and ADD. The rules are Docker's:

- ``#`` starts a comment line; blank lines are skipped.
- A pattern is a path relative to the context root (a leading ``/`` is
  dropped and the path is cleaned, so ``./a//b/`` is ``a/b``).
- ``*`` matches any run of characters except ``/``, ``?`` one character
  except ``/``, ``[a-z]`` and ``[^a-z]`` a class, and ``\\`` escapes the next
  character. ``**`` matches any number of directories, including none.
- A pattern that matches a directory also excludes everything under it.
- A line starting with ``!`` re-includes what it matches, and the last
  pattern that matches a path decides.

COPY source wildcards use the same ``*``, ``?`` and ``[...]`` syntax per
path component, without ``**``: that is Go's ``filepath.Match``.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from ..errors import InvalidArgument

IGNORE_FILE = ".dockerignore"


class PatternError(InvalidArgument):
    """A malformed wildcard pattern, such as an unclosed ``[``."""


def _class_to_regex(pattern: str, start: int) -> tuple[str, int]:
    """Translate the ``[...]`` class at ``start``; returns (regex, next index)."""
    i = start + 1
    parts = ["["]
    if i < len(pattern) and pattern[i] == "^":
        parts.append("^")
        i += 1
    first = True
    while i < len(pattern):
        char = pattern[i]
        if char == "]" and not first:
            parts.append("]")
            return "".join(parts), i + 1
        first = False
        if char == "\\":
            i += 1
            if i >= len(pattern):
                break
            char = pattern[i]
        if char == "/":
            raise PatternError(f"invalid pattern {pattern!r}: '/' inside [...]")
        if char == "-" and parts[-1] not in ("[", "^"):
            parts.append("-")
        else:
            parts.append(re.escape(char))
        i += 1
    raise PatternError(f"invalid pattern {pattern!r}: '[' without a closing ']'")


def _translate(pattern: str, double_star: bool) -> str:
    """Return the regex body for a Go-style pattern (``**`` when allowed)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if double_star and pattern.startswith("**", i):
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    out.append("(?:.*/)?")  # "**/" also matches no directory
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            regex, i = _class_to_regex(pattern, i)
            out.append(regex)
            continue
        elif char == "\\":
            i += 1
            if i >= len(pattern):
                raise PatternError(f"invalid pattern {pattern!r}: trailing '\\'")
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def go_match(pattern: str, name: str) -> bool:
    """Return whether ``name`` matches ``pattern`` as Go's ``filepath.Match`` does."""
    return re.fullmatch(_translate(pattern, double_star=False), name) is not None


def has_wildcards(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


@dataclass
class _Rule:
    text: str
    regex: re.Pattern[str]
    exclude: bool  # False for a "!" exception


class IgnoreMatcher:
    """Decides which context paths ``.dockerignore`` patterns exclude."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in patterns:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            exclude = not text.startswith("!")
            if not exclude:
                text = text[1:].strip()
            cleaned = posixpath.normpath(text).lstrip("/")
            if cleaned in ("", "."):
                cleaned = "."
            regex = re.compile(_translate(cleaned, double_star=True))
            self.rules.append(_Rule(text, regex, exclude))

    @property
    def has_exceptions(self) -> bool:
        """Whether a ``!`` rule can re-include a path inside an excluded directory."""
        return any(not rule.exclude for rule in self.rules)

    def is_ignored(self, path: str) -> bool:
        """Return whether context-relative ``path`` is kept out of the context."""
        path = posixpath.normpath(path).lstrip("/")
        if path in ("", "."):
            return False
        parents = _parents(path)
        ignored = False
        for rule in self.rules:
            if any(rule.regex.fullmatch(candidate) for candidate in parents):
                ignored = rule.exclude
        return ignored


def _parents(path: str) -> list[str]:
    """Return ``a``, ``a/b``, ``a/b/c`` for ``a/b/c``: a rule on a parent applies."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def read_ignore_file(context_dir: str) -> IgnoreMatcher:
    """Read ``.dockerignore`` at the root of the context (none: nothing ignored)."""
    path = os.path.join(context_dir, IGNORE_FILE)
    try:
        with open(path, encoding="utf-8") as ignore_file:
            return IgnoreMatcher(ignore_file.read().splitlines())
    except FileNotFoundError:
        return IgnoreMatcher([])
