"""The image commands through click's test runner, on a private state root."""

from __future__ import annotations

import io
import json
import os

import click
import pytest
from click.testing import CliRunner

from minicontainer.cli_images import PullProgress, register


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))

    @click.group()
    def group() -> None:
        pass

    register(group)
    return group


@pytest.fixture
def rootfs(tmp_path):
    path = tmp_path / "rootfs"
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "hostname").write_text("lab\n")
    return path


def test_images_empty_store_prints_header(cli):
    result = CliRunner().invoke(cli, ["images"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [
        "REPOSITORY",
        "TAG",
        "IMAGE",
        "ID",
        "CREATED",
        "SIZE",
    ]


def test_import_then_images_quiet_and_json(cli, rootfs):
    runner = CliRunner()
    imported = runner.invoke(cli, ["import", str(rootfs), "lab/site:v1"])
    assert imported.exit_code == 0, imported.output
    image_id = imported.output.strip()

    quiet = runner.invoke(cli, ["images", "-q"])
    assert quiet.output.split() == [image_id.removeprefix("sha256:")[:12]]

    rows = [
        json.loads(line)
        for line in runner.invoke(
            cli, ["images", "--format", "json"]
        ).output.splitlines()
    ]
    assert rows[0]["Repository"] == "lab/site"
    assert rows[0]["Tag"] == "v1"
    assert rows[0]["ID"] == image_id
    assert rows[0]["Size"] == len("lab\n")


def test_image_inspect_lists_layers_and_history(cli, rootfs):
    runner = CliRunner()
    runner.invoke(cli, ["import", str(rootfs), "lab/site:v1"])
    result = runner.invoke(cli, ["image", "inspect", "lab/site:v1"])
    assert result.exit_code == 0, result.output
    [details] = json.loads(result.output)
    assert details["RepoTags"] == ["docker.io/lab/site:v1"]
    assert len(details["Layers"]) == 1
    assert os.path.isdir(details["Layers"][0]["Directory"])
    assert details["History"][0]["created_by"].startswith("minictr import")


def test_logout_without_login(cli):
    result = CliRunner().invoke(cli, ["logout", "registry.example"])
    assert result.exit_code == 0
    assert "Not logged in to registry.example" in result.output


def test_pull_progress_lines_without_terminal():
    stream = io.StringIO()
    progress = PullProgress(stream)
    digest = "sha256:" + "ab" * 32
    progress.start(digest, 2000)
    progress.advance(digest, 1000)
    progress.finish(digest, "Pull complete")
    assert stream.getvalue().splitlines() == [
        "abababababab: Downloading 0B/2kB",
        "abababababab: Pull complete",
    ]


def test_pull_progress_stored_layer_one_line():
    stream = io.StringIO()
    progress = PullProgress(stream)
    progress.finish("sha256:" + "cd" * 32, "Already exists")
    assert stream.getvalue().splitlines() == ["cdcdcdcdcdcd: Already exists"]


@pytest.mark.parametrize("answer", ["n\n", "", "no\n"])
def test_image_prune_declined_removes_nothing(cli, rootfs, answer):
    runner = CliRunner()
    runner.invoke(cli, ["import", str(rootfs), "lab/site:v1"])
    runner.invoke(cli, ["tag", "lab/site:v1", "lab/site:v2"])
    result = runner.invoke(cli, ["image", "prune", "-a"], input=answer)
    assert result.exit_code == 0, result.output
    assert result.output.endswith("Continue? [y/N] \n")
    assert "Total reclaimed space" not in result.output
    listed = runner.invoke(cli, ["images", "-q"]).output.split()
    assert len(listed) == 1


def test_image_prune_yes_removes_unused(cli, rootfs):
    runner = CliRunner()
    runner.invoke(cli, ["import", str(rootfs), "lab/site:v1"])
    result = runner.invoke(cli, ["image", "prune", "-a"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "Deleted: sha256:" in result.output
    assert runner.invoke(cli, ["images", "-q"]).output.split() == []
