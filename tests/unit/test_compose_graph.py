"""Service start order: dependencies first, cycles and missing services rejected."""

from __future__ import annotations

import textwrap

import pytest

from minicontainer.compose import graph, load_project
from minicontainer.compose.schema import ComposeError


def load(tmp_path, services):
    (tmp_path / "compose.yaml").write_text(
        "services:\n" + textwrap.indent(services, "  ")
    )
    return load_project(working_directory=str(tmp_path), environ={})[0]


def test_dependencies_start_first(tmp_path):
    project = load(
        tmp_path,
        textwrap.dedent(
            """\
            web: {image: x, depends_on: {db: {condition: service_healthy}, cache: {}}}
            cache: {image: x}
            db: {image: x, depends_on: [volume-init]}
            volume-init: {image: x}
            """
        ),
    )
    order = graph.start_order(project)
    assert order.index("db") < order.index("web")
    assert order.index("cache") < order.index("web")
    assert order.index("volume-init") < order.index("db")
    assert graph.stop_order(project) == list(reversed(order))


def test_independent_services_keep_file_order(tmp_path):
    project = load(tmp_path, "b: {image: x}\na: {image: x}\nc: {image: x}\n")
    assert graph.start_order(project) == ["b", "a", "c"]


def test_selected_service_brings_dependencies(tmp_path):
    project = load(
        tmp_path,
        "web: {image: x, depends_on: [db]}\ndb: {image: x}\nother: {image: x}\n",
    )
    assert graph.start_order(project, ["web"]) == ["db", "web"]


def test_cycle_is_an_error(tmp_path):
    with pytest.raises(ComposeError, match="cycle") as caught:
        load(
            tmp_path,
            "a: {image: x, depends_on: [b]}\nb: {image: x, depends_on: [c]}\n"
            "c: {image: x, depends_on: [a]}\nd: {image: x}\n",
        )
    assert "a -> b -> c -> a" in str(caught.value) or "b -> c -> a -> b" in str(
        caught.value
    )


def test_self_dependency_is_a_cycle(tmp_path):
    with pytest.raises(ComposeError, match="cycle"):
        load(tmp_path, "a: {image: x, depends_on: [a]}\n")


def test_missing_dependency_is_an_error(tmp_path):
    with pytest.raises(ComposeError, match="services.web.depends_on.*'db'"):
        load(tmp_path, "web: {image: x, depends_on: [db]}\n")


def test_unknown_selected_service(tmp_path):
    project = load(tmp_path, "web: {image: x}\n")
    with pytest.raises(ComposeError, match="no such service: api"):
        graph.start_order(project, ["api"])
