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
