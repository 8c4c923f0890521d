"""Pull policies: ``--pull`` of run and create, and Compose's ``pull_policy``."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from minicontainer.compose import load_project, model
from minicontainer.compose import project as compose_project
from minicontainer.compose.schema import ComposeError
from minicontainer.errors import InvalidArgument, NotFound
from minicontainer.images.pulling import (
    PullSettings,
    ensure_image,
    parse_pull_policy,
    pullable_reference,
)

IMAGE_ID = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("missing", "missing"),
        ("always", "always"),
        ("never", "never"),
        ("Always", "always"),
        (" never ", "never"),
    ],
)
def test_parse_pull_policy(value, policy):
    assert parse_pull_policy(value) == policy


@pytest.mark.parametrize("value", ["", "if_not_present", "build", "sometimes"])
def test_parse_pull_policy_rejects_others(value):
    with pytest.raises(InvalidArgument, match="use missing, always or never"):
        parse_pull_policy(value)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("127.0.0.1:5000/lab/app:1", "127.0.0.1:5000/lab/app:1"),
        (IMAGE_ID, None),
        (f"sha256:{IMAGE_ID}", None),
        ("Not A Reference", None),
    ],
)
def test_pullable_reference(name, reference):
    result = pullable_reference(name)
    assert (str(result) if result else None) == reference


def test_never_with_missing_image_names_fix(tmp_path):
    settings = PullSettings(policy="never")
    with pytest.raises(NotFound) as caught:
        ensure_image("lab/app:1", settings, root=str(tmp_path))
    message = str(caught.value)
    assert "'lab/app:1' not found locally" in message
    assert "--pull is never" in message
    assert "minictr pull lab/app:1" in message
    assert "\n" not in message


def test_never_hint_for_insecure_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICTR_INSECURE_REGISTRIES", raising=False)
    name = "127.0.0.1:5000/lab/app:1"
    settings = PullSettings(policy="never", insecure=True)
    with pytest.raises(NotFound) as caught:
        ensure_image(name, settings, root=str(tmp_path))
    assert f"run 'minictr pull --insecure-registry {name}' first" in str(caught.value)

    monkeypatch.setenv("MINICTR_INSECURE_REGISTRIES", "127.0.0.1:5000")
    settings = PullSettings(policy="never")
    with pytest.raises(NotFound) as caught:
        ensure_image(name, settings, root=str(tmp_path))
    assert f"run 'minictr pull --insecure-registry {name}' first" in str(caught.value)

    other = "127.0.0.1:5001/lab/app:1"
    with pytest.raises(NotFound) as caught:
        ensure_image(other, settings, root=str(tmp_path))
    assert f"run 'minictr pull {other}' first" in str(caught.value)


@pytest.mark.parametrize("policy", ["missing", "always", "never"])
@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Bad:Name", "invalid repository name 'Bad'"),
        ("lab/app:-1", "invalid tag '-1'"),
        ("bad_host:5000/app:1", "invalid registry 'bad_host:5000'"),
    ],
)
def test_invalid_reference_gets_no_pull_hint(tmp_path, policy, name, rule):
    lines: list[str] = []
    settings = PullSettings(policy=policy, output=lines.append)
    with pytest.raises(InvalidArgument) as caught:
        ensure_image(name, settings, root=str(tmp_path))
    message = str(caught.value)
    assert rule in message
    assert f"in image reference {name!r}: use " in message
    assert "minictr pull" not in message
    assert lines == []


def test_missing_image_id_gets_no_pull_hint(tmp_path):
    settings = PullSettings(policy="never")
    with pytest.raises(NotFound) as caught:
        ensure_image(IMAGE_ID, settings, root=str(tmp_path))
    assert "minictr pull" not in str(caught.value)
    assert "minictr images" in str(caught.value)


def test_missing_never_pulls_an_image_id(tmp_path):
    lines: list[str] = []
    settings = PullSettings(policy="missing", output=lines.append)
    with pytest.raises(NotFound, match="not found"):
        ensure_image(IMAGE_ID, settings, root=str(tmp_path))
    assert lines == []


def test_always_rejects_an_image_id(tmp_path):
    settings = PullSettings(policy="always")
    with pytest.raises(InvalidArgument, match="image ID"):
        ensure_image(IMAGE_ID, settings, root=str(tmp_path))


@pytest.fixture
def stored_image(tmp_path):
    from minicontainer.images.archive import import_rootfs
    from minicontainer.images.reference import parse_reference
    from minicontainer.images.store import ImageStore

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "marker").write_text("stored\n")
    store = ImageStore(str(tmp_path / "state"))
    return import_rootfs(store, str(rootfs), parse_reference("lab/stored:1"))


@pytest.mark.parametrize("form", ["short", "sha256-short", "twenty-digits"])
def test_always_rejects_a_stored_id_prefix(tmp_path, stored_image, form):
    hex_id = stored_image.id.removeprefix("sha256:")
    name = {
        "short": hex_id[:12],
        "sha256-short": f"sha256:{hex_id[:12]}",
        "twenty-digits": hex_id[:20],
    }[form]
    lines: list[str] = []
    settings = PullSettings(policy="always", output=lines.append)
    with pytest.raises(InvalidArgument, match="image ID"):
        ensure_image(name, settings, root=str(tmp_path / "state"))
    assert lines == []


def test_missing_uses_a_stored_id_prefix(tmp_path, stored_image):
    lines: list[str] = []
    settings = PullSettings(policy="missing", output=lines.append)
    name = stored_image.short_id
    assert ensure_image(name, settings, root=str(tmp_path / "state")) is None
    assert lines == []


def test_cli_rejects_invalid_pull_value(tmp_path, monkeypatch):
    from minicontainer.cli import cli

    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    result = CliRunner().invoke(cli, ["run", "--pull", "often", "lab/app:1", "true"])
    assert isinstance(result.exception, InvalidArgument)
    assert "invalid --pull value 'often'" in str(result.exception)


def load(tmp_path, text):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    project, _ = load_project(working_directory=str(tmp_path), environ={})
    return project


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("missing", "missing"),
        ("if_not_present", "missing"),
        ("always", "always"),
        ("never", "never"),
        ("build", "build"),
    ],
)
def test_compose_pull_policy_values(value, policy):
    assert model.parse_pull_policy(value, "services.a.pull_policy") == policy


@pytest.mark.parametrize("value", ["daily", "weekly", "every_12h", "refresh"])
def test_compose_timed_pull_policy_unsupported(value):
    with pytest.raises(ComposeError, match="not supported by minictr"):
        model.parse_pull_policy(value, "services.a.pull_policy")


def test_compose_pull_policy_invalid_named(tmp_path):
    with pytest.raises(ComposeError, match="services.a.pull_policy"):
        load(tmp_path, "services: {a: {image: x, pull_policy: sometimes}}\n")


def test_compose_pull_policy_default_missing(tmp_path):
    project = load(tmp_path, "services: {a: {image: x}}\n")
    assert project.services["a"].pull_policy == "missing"


def test_compose_build_policy_needs_build(tmp_path):
    with pytest.raises(ComposeError, match="needs a build section"):
        load(tmp_path, "services: {a: {image: x, pull_policy: build}}\n")


def test_compose_always_policy_needs_image(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ComposeError, match="needs an image"):
        load(tmp_path, "services: {a: {build: ., pull_policy: always}}\n")


def test_compose_pull_policy_not_in_config_hash(tmp_path):
    first = load(tmp_path, "services: {a: {image: x}}\n")
    second = load(tmp_path, "services: {a: {image: x, pull_policy: always}}\n")
    assert compose_project.config_hash(
        first, first.services["a"]
    ) == compose_project.config_hash(second, second.services["a"])


def test_compose_pull_skips_build_only_and_never(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    project = load(
        tmp_path,
        """
        services:
          built: {build: .}
          pinned: {image: x, pull_policy: never}
          both: {image: x, build: .}
        """,
    )
    lines: list[str] = []
    compose_project.pull_images(
        project, ["built", "pinned", "both"], lines.append, ignore_buildable=True
    )
    assert lines == [
        "built  Skipped: no image to pull, it is built",
        "pinned  Skipped: pull_policy is never",
        "both  Skipped: it can be built",
    ]


def test_compose_pull_missing_reports_stored(tmp_path, stored_image, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    project = load(
        tmp_path,
        """
        services:
          app: {image: lab/stored:1}
          by_id: {image: %s}
        """
        % stored_image.short_id,
    )
    lines: list[str] = []
    compose_project.pull_images(
        project, ["app", "by_id"], lines.append, policy="missing", quiet=True
    )
    assert lines == [
        "app  Skipped: image is already stored locally",
        "by_id  Skipped: image is already stored locally",
    ]
