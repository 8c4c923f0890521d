"""Compose files: interpolation, .env files, project names, merging, schema."""

from __future__ import annotations

import textwrap

import pytest

from minicontainer.compose import load_project, loader
from minicontainer.compose.interpolation import InterpolationError, interpolate
from minicontainer.compose.schema import ComposeError

VARIABLES = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a-${SET}-b", "a-value-b"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${SET:-fallback}", "value"),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a ${UNSET2:-b} c}", "a b c"),
        ("${SET:+other}", "other"),
        ("${EMPTY:+other}", ""),
        ("${EMPTY+other}", "other"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: 5 $", "cost: 5 $"),
        ("${SET:?needed}", "value"),
    ],
)
def test_interpolation_forms(text, expected):
    assert interpolate(text, VARIABLES) == expected


def test_interpolation_required_variable_error():
    with pytest.raises(InterpolationError, match="UNSET.*set the database"):
        interpolate("${UNSET:?set the database}", VARIABLES, where="services.db")


def test_interpolation_required_empty_only_with_colon():
    assert interpolate("${EMPTY?no}", VARIABLES) == ""
    with pytest.raises(InterpolationError, match="EMPTY"):
        interpolate("${EMPTY:?no}", VARIABLES)


def test_interpolation_unset_warns():
    warnings = []
    assert interpolate("x${NOPE}y", VARIABLES, warnings.append) == "xy"
    assert len(warnings) == 1
    assert "NOPE" in warnings[0]


def test_interpolation_unused_default_does_not_warn():
    warnings = []
    interpolate("${SET:-${NOPE}}", VARIABLES, warnings.append)
    assert warnings == []


@pytest.mark.parametrize("text", ["${SET", "${}", "${SET%%x}", "${1abc}"])
def test_interpolation_malformed(text):
    with pytest.raises(InterpolationError):
        interpolate(text, VARIABLES)


def write(directory, name, text):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_env_file_quotes_comments_and_references(tmp_path):
    path = write(
        tmp_path,
        ".env",
        """\
        # a comment
        PLAIN=abc  # trailing comment
        export EXPORTED=yes
        SINGLE='${PLAIN} stays'
        DOUBLE="line\\nnext ${PLAIN}"
        REF=${PLAIN}-x
        EMPTY=
        """,
    )
    values = loader.read_env_file(str(path), {})
    assert values["PLAIN"] == "abc"
    assert values["EXPORTED"] == "yes"
    assert values["SINGLE"] == "${PLAIN} stays"
    assert values["DOUBLE"] == "line\nnext abc"
    assert values["REF"] == "abc-x"
    assert values["EMPTY"] == ""


def test_env_file_invalid_line(tmp_path):
    path = write(tmp_path, ".env", "not a variable line\n")
    with pytest.raises(ComposeError, match="line 1"):
        loader.read_env_file(str(path), {})


def test_load_uses_env_file_and_environment_overrides(tmp_path):
    write(tmp_path, ".env", "TAG=from-dotenv\nPORT=8080\n")
    write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            image: "web:${TAG}"
            ports: ["127.0.0.1:${PORT}:80"]
            command: echo $$HOME
        """,
    )
    loaded = loader.load(working_directory=str(tmp_path), environ={"PORT": "9090"})
    web = loaded.document["services"]["web"]
    assert web["image"] == "web:from-dotenv"
    assert web["ports"] == ["127.0.0.1:9090:80"]
    assert web["command"] == "echo $HOME"


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("My App", "myapp"), ("shop.v2", "shopv2"), ("a_b-c", "a_b-c")],
)
def test_project_name_from_directory(tmp_path, directory, expected):
    write(tmp_path / directory, "compose.yaml", "services: {a: {image: x}}\n")
    loaded = loader.load(working_directory=str(tmp_path / directory), environ={})
    assert loaded.project_name == expected


def test_project_name_precedence(tmp_path):
    write(tmp_path, "compose.yaml", "name: fromfile\nservices: {a: {image: x}}\n")
    assert loader.load(working_directory=str(tmp_path), environ={}).project_name == (
        "fromfile"
    )
    env = {"COMPOSE_PROJECT_NAME": "fromenv"}
    assert loader.load(working_directory=str(tmp_path), environ=env).project_name == (
        "fromenv"
    )
    loaded = loader.load(None, "fromflag", str(tmp_path), env)
    assert loaded.project_name == "fromflag"


def test_project_name_invalid(tmp_path):
    write(tmp_path, "compose.yaml", "services: {a: {image: x}}\n")
    with pytest.raises(ComposeError, match="invalid project name"):
        loader.load(None, "Bad Name", str(tmp_path), {})


def test_default_file_order(tmp_path):
    write(tmp_path, "docker-compose.yml", "services: {old: {image: x}}\n")
    write(tmp_path, "compose.yaml", "services: {new: {image: x}}\n")
    loaded = loader.load(working_directory=str(tmp_path), environ={})
    assert list(loaded.document["services"]) == ["new"]


def test_missing_compose_file(tmp_path):
    with pytest.raises(ComposeError, match="no Compose file"):
        loader.load(working_directory=str(tmp_path), environ={})


def test_merge_of_two_files(tmp_path):
    write(
        tmp_path,
        "compose.yaml",
        """\
        services:
          web:
            image: web:1
            command: ["serve", "--port", "80"]
            environment:
              - MODE=base
              - KEEP=1
            ports: ["8080:80"]
            volumes:
              - data:/data
              - ./conf:/etc/app:ro
            depends_on: [db]
            labels: {team: a}
          db:
            image: db:1
        volumes:
          data: {}
        """,
    )
    write(
        tmp_path,
        "override.yaml",
        """\
        services:
          web:
            image: web:2
            command: ["serve", "--debug"]
            environment:
              MODE: override
              EXTRA: "2"
            ports: ["8080:80", "9090:90"]
            volumes:
              - ./conf-dev:/etc/app
            depends_on:
              cache: {condition: service_healthy}
          cache:
            image: cache:1
        """,
    )
    loaded = loader.load(
        ["compose.yaml", "override.yaml"], None, str(tmp_path), environ={}
    )
    web = loaded.document["services"]["web"]
    assert web["image"] == "web:2"
    assert web["command"] == ["serve", "--debug"]
    assert web["environment"] == {"MODE": "override", "KEEP": "1", "EXTRA": "2"}
    assert web["ports"] == ["8080:80", "9090:90"]
    assert web["volumes"] == ["data:/data", "./conf-dev:/etc/app"]
    assert web["depends_on"] == {
        "db": {"condition": "service_started"},
        "cache": {"condition": "service_healthy"},
    }
    assert web["labels"] == {"team": "a"}
    assert set(loaded.document["services"]) == {"web", "db", "cache"}


def test_unknown_and_unsupported_keys_warn(tmp_path):
    write(
        tmp_path,
        "compose.yaml",
        """\
        version: "3.8"
        services:
          web:
            image: x
            colour: blue
            logging: {driver: json-file}
            x-notes: fine
        x-common: {a: 1}
        secrets: {}
        """,
    )
    loaded = loader.load(working_directory=str(tmp_path), environ={})
    text = "\n".join(loaded.warnings)
    assert "services.web.colour is not a Compose key" in text
    assert "services.web.logging is not supported" in text
    assert "secrets is not supported" in text
    assert "version is obsolete" in text
    assert "x-" not in text


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("{image: x, mem_limit: lots}", "services.web.mem_limit"),
        ("{image: x, ports: [{published: 80}]}", "services.web.ports"),
        ("{image: x, restart: sometimes}", "services.web.restart"),
        (
            "{image: x, healthcheck: {test: [CMD, 'true'], interval: soon}}",
            "services.web.healthcheck.interval",
        ),
        ("{image: x, environment: 5}", "services.web.environment"),
        ("{image: x, cap_add: NET_ADMIN}", "services.web.cap_add"),
        ("{image: x, read_only: maybe}", "services.web.read_only"),
        (
            "{image: x, depends_on: {db: {condition: service_ready}}}",
            "services.web.depends_on.db.condition",
        ),
        (
            (
                "{image: x, deploy: {resources: {reservations: {devices:"
                " [{driver: amd, capabilities: [gpu]}]}}}}"
            ),
            "driver",
        ),
    ],
)
def test_invalid_values_name_service_and_key(tmp_path, service, message):
    write(
        tmp_path, "compose.yaml", f"services:\n  web: {service}\n  db: {{image: x}}\n"
    )
    with pytest.raises(ComposeError) as caught:
        load_project(working_directory=str(tmp_path), environ={})
    assert message in str(caught.value)


def test_invalid_yaml(tmp_path):
    write(tmp_path, "compose.yaml", "services: [unclosed\n")
    with pytest.raises(ComposeError, match="invalid YAML"):
        loader.load(working_directory=str(tmp_path), environ={})


def test_command_of_wrong_type_spelled_as_in_yaml(tmp_path):
    write(tmp_path, "compose.yaml", "services: {web: {image: x, command: true}}\n")
    with pytest.raises(ComposeError) as caught:
        loader.load(working_directory=str(tmp_path), environ={})
    message = str(caught.value)
    assert "invalid services.web.command" in message
    assert ": true, expected a string or a list" in message
