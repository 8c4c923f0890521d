"""Word splitting, quote removal and variable substitution in Dockerfiles.

Dockerfile arguments are not run through a shell, but several instructions
(ENV, LABEL, ARG, COPY, ADD, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL and
FROM) treat their text the way a small subset of POSIX sh would: words are
split on unquoted white space, single quotes keep everything literal, double
quotes allow ``$`` substitution, and the escape character (``\\`` or the one
the ``# escape=`` directive sets) protects the next character. Substitution
knows ``$VAR``, ``${VAR}`` and the forms ``${VAR:-word}``, ``${VAR-word}``,
``${VAR:+word}``, ``${VAR+word}``, ``${VAR:?message}`` and ``${VAR?message}``.
RUN, CMD and ENTRYPOINT in shell form are left alone: the shell in the
container expands them when the command runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidArgument

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SubstitutionError(InvalidArgument):
    """Text that cannot be expanded: unterminated quotes, bad ``${...}``."""


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split ``text`` on white space outside quotes and ``${...}``.

    Quotes and escape characters stay in the words for ``expand_word``.
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    braces = 0  # depth of unquoted ${...}
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == escape and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char == quote:
                quote = ""
        elif char.isspace() and not braces:
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            in_word = True
            current.append(char)
            if char == escape and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char in "'\"":
                quote = char
            elif char == "$" and text.startswith("{", i + 1):
                braces += 1
                current.append("{")
                i += 1
            elif char == "}" and braces:
                braces -= 1
        i += 1
    if quote:
        raise SubstitutionError(f"unterminated {quote} quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return words


def expand_word(
    word: str, env: Mapping[str, str], escape: str = "\\", quotes: bool = True
) -> str:
    """Remove quotes and escapes from ``word`` and substitute variables.

    With ``quotes`` false (elements of a JSON array), quote and escape
    characters are literal and only ``$`` substitution happens.
    """
    return _Expander(word, env, escape, quotes).expand_until("")


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    return [expand_word(word, env, escape) for word in split_words(text, escape)]


class _Expander:
    def __init__(
        self, text: str, env: Mapping[str, str], escape: str, quotes: bool
    ) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.quotes = quotes
        self.pos = 0

    def expand_until(self, stop: str) -> str:
        """Expand up to the unquoted character ``stop`` (or the end when empty)."""
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if stop and char == stop:
                return "".join(out)
            if self.quotes and char == self.escape:
                self.pos += 1
                if self.pos < len(text):
                    out.append(text[self.pos])
                    self.pos += 1
                else:
                    out.append(char)
            elif self.quotes and char == "'":
                out.append(self._single_quoted())
            elif self.quotes and char == '"':
                out.append(self._double_quoted())
            elif char == "$":
                out.append(self._substitution())
            else:
                out.append(char)
                self.pos += 1
        if stop:
            raise SubstitutionError(f"missing {stop!r} in {text!r}")
        return "".join(out)

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise SubstitutionError(f"unterminated ' quote in {self.text!r}")
        literal = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return literal

    def _double_quoted(self) -> str:
        out: list[str] = []
        text = self.text
        self.pos += 1
        while self.pos < len(text):
            char = text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == self.escape and self.pos + 1 < len(text):
                following = text[self.pos + 1]
                # Inside double quotes the escape protects only these, as in sh.
                if following in ('"', "$", self.escape):
                    out.append(following)
                    self.pos += 2
                    continue
                out.append(char)
                self.pos += 1
            elif char == "$":
                out.append(self._substitution())
            else:
                out.append(char)
                self.pos += 1
        raise SubstitutionError(f'unterminated " quote in {text!r}')

    def _substitution(self) -> str:
        text = self.text
        start = self.pos + 1
        if start < len(text) and text[start] == "{":
            return self._braced()
        match = _NAME.match(text, start)
        if match is None:
            self.pos += 1
            return "$"  # a lone "$" is literal, as in sh
        self.pos = match.end()
        return self.env.get(match.group(), "")

    def _braced(self) -> str:
        text = self.text
        match = _NAME.match(text, self.pos + 2)
        if match is None:
            raise SubstitutionError(f"bad substitution in {text!r}: missing name")
        name = match.group()
        self.pos = match.end()
        if self.pos >= len(text):
            raise SubstitutionError(f"missing '}}' in {text!r}")
        if text[self.pos] == "}":
            self.pos += 1
            return self.env.get(name, "")
        colon = text[self.pos] == ":"
        operator_at = self.pos + 1 if colon else self.pos
        operator = text[operator_at] if operator_at < len(text) else ""
        if operator not in ("-", "+", "?"):
            raise SubstitutionError(
                f"unsupported substitution in {text!r}: use ${{{name}}},"
                f" ${{{name}:-word}}, ${{{name}:+word}} or ${{{name}:?message}}"
            )
        self.pos = operator_at + 1
        word = self.expand_until("}")
        self.pos += 1
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if operator == "-":
            return value if is_set and value is not None else word
        if operator == "+":
            return word if is_set else ""
        if not is_set or value is None:
            raise SubstitutionError(
                f"{name}: {word or 'parameter not set or null'}: set it with ARG, "
                "ENV or --build-arg"
            )
        return value
