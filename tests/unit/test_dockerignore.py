""".dockerignore rules and Go-style wildcard matching."""

from __future__ import annotations

import pytest

from minicontainer.build.ignore import (
    IgnoreMatcher,
    PatternError,
    go_match,
    read_ignore_file,
)


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.pyc"], "a.pyc", True),
        (["*.pyc"], "src/a.pyc", False),  # "*" does not cross "/"
        (["**/*.pyc"], "src/deep/a.pyc", True),
        (["**/*.pyc"], "a.pyc", True),  # "**/" also matches no directory
        (["src/**"], "src/a/b", True),
        (["src/**/test"], "src/test", True),
        (["src/**/test"], "src/x/y/test", True),
        (["build"], "build/out/file", True),  # a directory excludes its content
        (["/build/"], "build/x", True),  # leading and trailing "/" are cleaned
        (["./build"], "build", True),
        (["build"], "src/build", False),  # patterns are anchored at the root
        (["doc?"], "docs", True),
        (["doc?"], "doc/s", False),
        (["[a-c].txt"], "b.txt", True),
        (["[^a-c].txt"], "b.txt", False),
        (["[^a-c].txt"], "d.txt", True),
        (["\\*.txt"], "*.txt", True),
        (["\\*.txt"], "a.txt", False),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "NOTES.md", True),
        (["!README.md", "*.md"], "README.md", True),  # the last match wins
        (["logs", "!logs/keep.log"], "logs/keep.log", False),
        (["logs", "!logs/keep.log"], "logs/other.log", True),
        (["# comment", "", "  secret.txt  "], "secret.txt", True),
        (["# secret.txt"], "secret.txt", False),
        (["*"], "anything/below", True),
    ],
)
def test_ignore_rules(patterns, path, ignored):
    assert IgnoreMatcher(patterns).is_ignored(path) is ignored


def test_context_root_is_never_ignored():
    assert IgnoreMatcher(["*"]).is_ignored(".") is False


def test_has_exceptions():
    assert IgnoreMatcher(["a", "!b"]).has_exceptions
    assert not IgnoreMatcher(["a"]).has_exceptions


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("*.py", "app.py", True),
        ("*.py", "dir/app.py", False),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[abc]x", "bx", True),
        ("[a-z]1", "q1", True),
        ("[^a-z]1", "q1", False),
        ("[]a]", "]", True),
        ("\\[x\\]", "[x]", True),
        ("**", "a", True),  # Go has no "**": it is two "*"
        ("**", "a/b", False),
    ],
)
def test_go_match(pattern, name, matched):
    assert go_match(pattern, name) is matched


@pytest.mark.parametrize("pattern", ["[abc", "a\\", "[a/b]"])
def test_go_match_bad_pattern(pattern):
    with pytest.raises(PatternError):
        go_match(pattern, "x")


def test_read_ignore_file(tmp_path):
    (tmp_path / ".dockerignore").write_text("*.log\n!keep.log\n")
    matcher = read_ignore_file(str(tmp_path))
    assert matcher.is_ignored("debug.log")
    assert not matcher.is_ignored("keep.log")


def test_read_ignore_file_missing(tmp_path):
    assert not read_ignore_file(str(tmp_path)).is_ignored("anything")
