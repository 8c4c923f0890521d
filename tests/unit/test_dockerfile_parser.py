"""Dockerfile parsing: directives, continuations, forms, flags and errors."""

from __future__ import annotations

import pytest

from minicontainer.build.parser import NO_DEFAULT, DockerfileError, parse


def only_stage(text: str):
    (stage,) = parse(text).stages
    return stage


def test_continuation_skips_comment_lines():
    stage = only_stage(
        "FROM scratch\n"
        "RUN echo one \\\n"
        "# a comment inside the continuation\n"
        "    && echo two \\\n"
        "\n"
        "    && echo three\n"
    )
    (run,) = stage.instructions
    assert run.keyword == "RUN"
    assert run.line == 2
    assert run.arguments == "echo one     && echo two     && echo three"


def test_continuation_allows_trailing_blanks():
    stage = only_stage("FROM scratch\nRUN a \\  \n  b\n")
    assert stage.instructions[0].arguments == "a   b"


def test_continuation_at_end_of_file():
    stage = only_stage("FROM scratch\nRUN echo a \\\n")
    assert stage.instructions[0].arguments == "echo a"


def test_hash_inside_instruction_is_not_a_comment():
    stage = only_stage("FROM scratch\nRUN echo a # b\n")
    assert stage.instructions[0].arguments == "echo a # b"


def test_escape_directive_backtick():
    dockerfile = parse("# escape=`\nFROM scratch\nRUN echo C:\\path `\n    done\n")
    assert dockerfile.escape == "`"
    (run,) = dockerfile.stages[0].instructions
    assert run.arguments == "echo C:\\path     done"


def test_escape_directive_after_comment_is_a_comment():
    dockerfile = parse("# hello\n# escape=`\nFROM scratch\n")
    assert dockerfile.escape == "\\"


def test_escape_directive_rejects_other_characters():
    with pytest.raises(DockerfileError, match="invalid escape directive"):
        parse("# escape=x\nFROM scratch\n")


def test_syntax_directive_is_skipped():
    dockerfile = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\n")
    assert dockerfile.escape == "`"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('["echo", "a b"]', ["echo", "a b"]),
        ("[]", []),
        ('["echo", 1]', None),  # not all strings: shell form
        ("[echo, hi]", None),  # invalid JSON: shell form
        ("['echo', 'hi']", None),  # single quotes are not JSON
        ("echo [1]", None),
    ],
)
def test_exec_form_or_shell_fallback(arguments, expected):
    stage = only_stage(f"FROM scratch\nCMD {arguments}\n")
    cmd = stage.instructions[0]
    assert cmd.exec_form == expected
    assert cmd.arguments == arguments


def test_keywords_are_case_insensitive():
    stage = only_stage("from scratch\nrun true\n")
    assert stage.instructions[0].keyword == "RUN"


def test_arg_before_from_is_global():
    dockerfile = parse("ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest}\n")
    names = [arg.pairs for arg in dockerfile.global_args]
    assert names == [[("BASE", "busybox")], [("TAG", NO_DEFAULT)]]
    assert dockerfile.stages[0].base == "${BASE}:${TAG:-latest}"


def test_instruction_before_from_is_rejected():
    with pytest.raises(DockerfileError, match="line 1 RUN") as caught:
        parse("RUN true\nFROM scratch\n")
    assert "before the first FROM" in str(caught.value)


def test_env_both_forms():
    stage = only_stage(
        'FROM scratch\nENV A=1 B="two words" C=x\\ y\nENV LEGACY value with spaces\n'
    )
    new_form, legacy = stage.instructions
    assert new_form.pairs == [("A", "1"), ("B", '"two words"'), ("C", "x\\ y")]
    assert legacy.pairs == [("LEGACY", "value with spaces")]


def test_env_without_value_is_rejected():
    with pytest.raises(DockerfileError, match="line 2 ENV"):
        parse("FROM scratch\nENV LONELY\n")


def test_env_pair_without_equals_is_rejected():
    with pytest.raises(DockerfileError, match="missing '='"):
        parse("FROM scratch\nENV A=1 B\n")


def test_stage_names_and_bases():
    dockerfile = parse(
        "FROM rootfs/busybox AS Builder\nRUN true\nFROM builder\nFROM scratch as out\n"
    )
    assert [s.name for s in dockerfile.stages] == ["builder", "", "out"]
    assert [s.base for s in dockerfile.stages] == [
        "rootfs/busybox",
        "builder",
        "scratch",
    ]
    assert [s.label for s in dockerfile.stages] == ["builder", "1", "out"]


def test_duplicate_stage_name_is_rejected():
    with pytest.raises(DockerfileError, match="used twice"):
        parse("FROM scratch AS a\nFROM scratch AS a\n")


def test_from_with_bad_words_is_rejected():
    with pytest.raises(DockerfileError, match="line 1 FROM"):
        parse("FROM a b\n")


def test_copy_flags():
    stage = only_stage("FROM scratch\nCOPY --from=build --chown=1:2 a b /dst/\n")
    copy = stage.instructions[0]
    assert copy.flags == {"from": "build", "chown": "1:2"}
    assert copy.arguments == "a b /dst/"
    assert copy.text == "COPY --from=build --chown=1:2 a b /dst/"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --bogus=1 a b", "unknown flag --bogus"),
        ("COPY --from a b", "needs a value"),
        ("COPY --link=yes a b", "takes no value"),
        ("RUN --mount=type=cache,target=/x true", "not supported"),
        ("COPY onlyone", "at least one source"),
        ("ADD --from=x a b", "unknown flag --from"),
        ("SHELL /bin/bash -c", "JSON array"),
        ("HEALTHCHECK --interval=5s", "missing arguments"),
        ("HEALTHCHECK EXEC true", "HEALTHCHECK NONE or"),
        ("HEALTHCHECK --retries=3 NONE", "takes no other"),
        ("WORKDIR /a /b", "exactly one"),
        ("FROBNICATE x", "unknown instruction 'FROBNICATE'"),
        ("ARG 1BAD=x", "invalid ARG name"),
        ("RUN", "missing arguments"),
    ],
)
def test_errors_name_line_and_instruction(line, message):
    with pytest.raises(DockerfileError) as caught:
        parse(f"FROM scratch\n\n{line}\n")
    assert "line 3" in str(caught.value)
    assert message in str(caught.value)


def test_unterminated_quote_is_rejected():
    with pytest.raises(DockerfileError, match="line 2 ENV.*unterminated"):
        parse('FROM scratch\nENV A="open\n')


def test_line_numbers_count_physical_lines():
    stage = only_stage("FROM scratch\n\n# c\nRUN a \\\n b\n\nCMD x\n")
    assert [i.line for i in stage.instructions] == [4, 7]


def test_no_from_is_rejected():
    with pytest.raises(DockerfileError, match="no FROM"):
        parse("# only a comment\n")


def test_arg_pairs_in_stage():
    stage = only_stage("FROM scratch\nARG A=1 B\n")
    assert stage.instructions[0].pairs == [("A", "1"), ("B", NO_DEFAULT)]


def test_healthcheck_flags():
    stage = only_stage("FROM scratch\nHEALTHCHECK --interval=5s --retries=2 CMD true\n")
    assert stage.instructions[0].flags == {"interval": "5s", "retries": "2"}
