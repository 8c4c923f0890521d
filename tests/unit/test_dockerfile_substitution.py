"""Variable substitution, quotes and word splitting in Dockerfile arguments."""

from __future__ import annotations

import pytest

from minicontainer.build.lexer import (
    SubstitutionError,
    expand_word,
    expand_words,
    split_words,
)

ENV = {"NAME": "world", "EMPTY": "", "SPACED": "a b"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$NAME", "world"),
        ("${NAME}", "world"),
        ("hello-$NAME!", "hello-world!"),
        ("${NAME}s", "worlds"),
        ("$UNSET", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${NAME:-fallback}", "world"),
        ("${NAME:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-${NAME}}", "world"),
        ("${UNSET:-a b}", "a b"),
        ("'$NAME'", "$NAME"),
        ('"$NAME"', "world"),
        ('"a \\"q\\" b"', 'a "q" b'),
        ('"keep\\n"', "keep\\n"),
        ("\\$NAME", "$NAME"),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("cost: $5", "cost: $5"),
        ("${NAME:?must be set}", "world"),
    ],
)
def test_expand_word(word, expected):
    assert expand_word(word, ENV) == expected


def test_expand_word_required_variable_missing():
    with pytest.raises(SubstitutionError, match="UNSET: must be set"):
        expand_word("${UNSET:?must be set}", ENV)


@pytest.mark.parametrize("word", ["${NAME", "${}", "${NAME/x/y}", "'open", '"open'])
def test_expand_word_malformed(word):
    with pytest.raises(SubstitutionError):
        expand_word(word, ENV)


def test_expand_word_backtick_escape():
    assert expand_word("C:\\dir`$NAME", ENV, escape="`") == "C:\\dir$NAME"


def test_expand_word_without_quote_processing():
    assert expand_word("'$NAME' \\x", ENV, quotes=False) == "'world' \\x"


def test_split_words_keeps_quotes():
    assert split_words("a \"b c\"  d\\ e 'f g'") == ["a", '"b c"', "d\\ e", "'f g'"]


def test_expand_words_does_not_split_values():
    assert expand_words("$SPACED ${NAME}", ENV) == ["a b", "world"]


def test_split_words_keeps_braces_together():
    assert split_words("A=${B:-x y} C=${D:+${E:-1 2}}") == [
        "A=${B:-x y}",
        "C=${D:+${E:-1 2}}",
    ]
