"""Docker's rules for combining an image's Entrypoint and Cmd with the user's."""

from __future__ import annotations

import pytest

from minicontainer.errors import InvalidArgument
from minicontainer.images import DEFAULT_PATH, image_env, merge_command

BOTH = {"Entrypoint": ["/entry", "-x"], "Cmd": ["default", "args"]}


@pytest.mark.parametrize(
    ("config", "entrypoint", "cmd", "expected"),
    [
        (BOTH, None, None, ["/entry", "-x", "default", "args"]),
        (BOTH, None, [], ["/entry", "-x", "default", "args"]),
        (BOTH, None, ["mine"], ["/entry", "-x", "mine"]),
        (BOTH, "/other", None, ["/other"]),
        (BOTH, "/other", ["a"], ["/other", "a"]),
        (BOTH, ["/other", "--flag"], ["a"], ["/other", "--flag", "a"]),
        (BOTH, "", ["sh"], ["sh"]),
        ({"Cmd": ["sh"]}, None, None, ["sh"]),
        ({"Cmd": ["sh"]}, None, ["ls", "/"], ["ls", "/"]),
        ({"Entrypoint": ["/entry"]}, None, None, ["/entry"]),
        ({"Entrypoint": ["/entry"], "Cmd": None}, None, ["x"], ["/entry", "x"]),
        ({}, None, ["echo", "hi"], ["echo", "hi"]),
    ],
)
def test_merge_command_rules(config, entrypoint, cmd, expected):
    assert merge_command(config, entrypoint, cmd) == expected


def test_merge_command_nothing_to_run():
    with pytest.raises(InvalidArgument, match="no command"):
        merge_command({}, None, None)


def test_merge_command_empty_entrypoint_drops_image_cmd():
    with pytest.raises(InvalidArgument):
        merge_command({"Cmd": ["sh"]}, "", None)


def test_image_env_adds_default_path():
    assert image_env({"Env": ["A=1"]}) == [f"PATH={DEFAULT_PATH}", "A=1"]


def test_image_env_keeps_image_path():
    assert image_env({"Env": ["PATH=/opt/bin", "A=1"]}) == ["PATH=/opt/bin", "A=1"]


def test_image_env_without_env():
    assert image_env({}) == [f"PATH={DEFAULT_PATH}"]
