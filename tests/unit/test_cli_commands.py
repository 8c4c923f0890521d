"""The lazily loaded command table matches what each module registers."""

from __future__ import annotations

import importlib

import click

from minicontainer.cli import LAZY_COMMANDS, cli


def test_lazy_table_matches_registered_commands():
    for module_name, names in LAZY_COMMANDS.items():
        group = click.Group()
        importlib.import_module(f"minicontainer.{module_name}").register(group)
        assert sorted(group.commands) == sorted(names), module_name


def test_every_command_is_listed():
    context = click.Context(cli)
    listed = cli.list_commands(context)
    assert "run" in listed
    for names in LAZY_COMMANDS.values():
        for name in names:
            assert name in listed


def test_command_name_skips_group_options():
    from minicontainer.cli import _command_name

    assert _command_name(["--debug", "--root", "/x", "rm", "-f", "c"]) == "rm"
    assert _command_name(["run", "img"]) == "run"
    assert _command_name(["--debug"]) == ""


def test_exit_code_follows_docker_cli():
    from minicontainer.cli import _exit_code
    from minicontainer.errors import CommandNotFound, MinictrError

    assert _exit_code(MinictrError("x"), "run") == 125
    assert _exit_code(MinictrError("x"), "create") == 125
    assert _exit_code(MinictrError("x"), "rm") == 1
    assert _exit_code(MinictrError("x"), "volume") == 1
    assert _exit_code(CommandNotFound("x"), "exec") == 127
