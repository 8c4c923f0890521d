"""Build cache keys, COPY source matching and digests, and config instructions."""

from __future__ import annotations

import os

import pytest

from minicontainer.build import cache
from minicontainer.build.files import CopyError, digest_sources, match_sources
from minicontainer.build.ignore import IgnoreMatcher
from minicontainer.build.parser import DockerfileError, parse
from minicontainer.build.stage import StageState, apply_metadata
from minicontainer.images.diff import LayerBlob


def make_tree(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_parent_identity_depends_on_layers_and_config():
    base = cache.parent_identity(["sha256:a"], {"Env": ["A=1"]})
    assert base == cache.parent_identity(["sha256:a"], {"Env": ["A=1"]})
    assert base != cache.parent_identity(["sha256:b"], {"Env": ["A=1"]})
    assert base != cache.parent_identity(["sha256:a"], {"Env": ["A=2"]})
    assert base != cache.parent_identity(["sha256:a", "sha256:c"], {"Env": ["A=1"]})


def test_step_key_depends_on_parent_and_step():
    key = cache.step_key("p1", {"text": "RUN true"})
    assert key == cache.step_key("p1", {"text": "RUN true"})
    assert key != cache.step_key("p2", {"text": "RUN true"})
    assert key != cache.step_key("p1", {"text": "RUN false"})


def test_cache_entries_round_trip(tmp_path):
    build_cache = cache.BuildCache(str(tmp_path))
    layer = LayerBlob("sha256:" + "1" * 64, "sha256:" + "2" * 64, 42)
    build_cache.put("sha256:" + "f" * 64, layer, "2024-01-01T00:00:00Z")
    entry = build_cache.get("sha256:" + "f" * 64)
    assert cache.layer_from_json(entry["layer"]) == layer
    assert entry["created"] == "2024-01-01T00:00:00Z"
    assert build_cache.get("sha256:" + "0" * 64) is None


def test_unreadable_cache_entry_is_a_miss(tmp_path):
    build_cache = cache.BuildCache(str(tmp_path))
    (tmp_path / "build-cache" / ("e" * 64 + ".json")).write_text("{broken")
    assert build_cache.get("sha256:" + "e" * 64) is None


def test_source_digest_ignores_timestamps(tmp_path):
    make_tree(tmp_path, {"a.txt": "a", "dir/b.txt": "b"})
    before = digest_sources(str(tmp_path), ["a.txt", "dir"], None, archives=False)
    os.utime(tmp_path / "a.txt", (1, 1))
    os.utime(tmp_path / "dir" / "b.txt", (2, 2))
    after = digest_sources(str(tmp_path), ["a.txt", "dir"], None, archives=False)
    assert before == after


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "a.txt").write_text("changed"),
        lambda root: os.chmod(root / "a.txt", 0o755),
        lambda root: (root / "dir" / "new.txt").write_text("new"),
        lambda root: (root / "dir" / "b.txt").rename(root / "dir" / "c.txt"),
    ],
    ids=["content", "mode", "added", "renamed"],
)
def test_source_digest_changes(tmp_path, change):
    make_tree(tmp_path, {"a.txt": "a", "dir/b.txt": "b"})
    before = digest_sources(str(tmp_path), ["a.txt", "dir"], None, archives=False)
    change(tmp_path)
    assert (
        digest_sources(str(tmp_path), ["a.txt", "dir"], None, archives=False) != before
    )


def test_source_digest_skips_ignored_files(tmp_path):
    make_tree(tmp_path, {"dir/b.txt": "b", "dir/debug.log": "1"})
    ignore = IgnoreMatcher(["**/*.log"])
    before = digest_sources(str(tmp_path), ["dir"], ignore, archives=False)
    (tmp_path / "dir" / "debug.log").write_text("2")
    assert digest_sources(str(tmp_path), ["dir"], ignore, archives=False) == before


def test_match_sources_wildcards(tmp_path):
    make_tree(tmp_path, {"src/a.py": "", "src/b.py": "", "src/c.txt": "", "x.py": ""})
    root = str(tmp_path)
    assert match_sources(root, ["src/*.py"], None) == ["src/a.py", "src/b.py"]
    assert match_sources(root, ["*/?.txt"], None) == ["src/c.txt"]
    assert match_sources(root, ["/x.py", "x.py"], None) == ["x.py"]
    assert match_sources(root, ["."], None) == ["."]


def test_match_sources_respects_ignore(tmp_path):
    make_tree(tmp_path, {"a.py": "", "b.py": ""})
    ignore = IgnoreMatcher(["b.py"])
    assert match_sources(str(tmp_path), ["*.py"], ignore) == ["a.py"]
    with pytest.raises(CopyError, match="matches no file"):
        match_sources(str(tmp_path), ["b.py"], ignore)


def test_match_sources_rejects_paths_outside(tmp_path):
    with pytest.raises(CopyError, match="outside the build context"):
        match_sources(str(tmp_path), ["../etc/passwd"], None)


def test_tree_fingerprint_follows_metadata(tmp_path):
    make_tree(tmp_path, {"bin/sh": "x"})
    before = cache.tree_fingerprint(str(tmp_path))
    assert cache.tree_fingerprint(str(tmp_path)) == before
    os.utime(tmp_path / "bin" / "sh", (5, 5))
    assert cache.tree_fingerprint(str(tmp_path)) != before


def apply_all(text: str, state: StageState | None = None) -> StageState:
    state = state or StageState()
    (stage,) = parse("FROM scratch\n" + text).stages
    for instruction in stage.instructions:
        apply_metadata(state, instruction)
    return state


def test_entrypoint_resets_inherited_cmd():
    parent = apply_all('CMD ["from-base"]')
    child = apply_all('ENTRYPOINT ["run"]', parent.inherit())
    assert child.config["Entrypoint"] == ["run"]
    assert "Cmd" not in child.config


def test_entrypoint_keeps_cmd_of_same_stage():
    state = apply_all('CMD ["arg"]\nENTRYPOINT ["run"]')
    assert state.config["Cmd"] == ["arg"]


def test_shell_forms_use_shell_instruction():
    state = apply_all('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\nCMD echo hi')
    assert state.config["Cmd"] == ["/bin/bash", "-o", "pipefail", "-c", "echo hi"]
    assert state.config["Shell"] == ["/bin/bash", "-o", "pipefail", "-c"]


def test_empty_exec_entrypoint_clears_it():
    state = apply_all('ENTRYPOINT ["a"]\nENTRYPOINT []')
    assert state.config["Entrypoint"] == []


def test_workdir_relative_to_previous():
    state = apply_all("WORKDIR /a\nWORKDIR b\nWORKDIR ../c")
    assert state.config["WorkingDir"] == "/a/c"


def test_env_values_use_previous_values():
    state = apply_all("ENV A=old\nENV A=new B=$A C=${A}-x")
    assert state.config["Env"] == ["A=new", "B=old", "C=old-x"]


def test_env_overrides_arg_in_substitution():
    state = StageState(args={"NAME": "from-arg", "ONLY_ARG": "arg"})
    apply_all("ENV NAME=from-env\nENV BOTH=$NAME/$ONLY_ARG", state)
    assert "BOTH=from-env/arg" in state.config["Env"]
    assert state.run_env() == ["NAME=from-env", "BOTH=from-env/arg", "ONLY_ARG=arg"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("EXPOSE 70000", "ports are 1 to 65535"),
        ("EXPOSE http", "invalid port"),
        ("STOPSIGNAL SIGNOPE", "invalid signal"),
        ("HEALTHCHECK --interval=5 CMD true", "invalid --interval"),
        ("HEALTHCHECK --retries=0 CMD true", "invalid --retries"),
        ("ENV A=${B:?needs B}", "needs B"),
        ("ONBUILD FROM x", "cannot trigger FROM"),
    ],
)
def test_invalid_metadata_names_line(line, message):
    with pytest.raises(DockerfileError) as caught:
        apply_all(line)
    assert "line 2" in str(caught.value)
    assert message in str(caught.value)


def test_healthcheck_exec_form_and_durations():
    state = apply_all(
        'HEALTHCHECK --interval=500ms --timeout=1h --start-period=1.5s CMD ["probe", "-q"]'
    )
    assert state.config["Healthcheck"] == {
        "Test": ["CMD", "probe", "-q"],
        "Interval": 500 * 10**6,
        "Timeout": 3600 * 10**9,
        "StartPeriod": 1500 * 10**6,
    }


def test_healthcheck_none():
    assert apply_all("HEALTHCHECK NONE").config["Healthcheck"] == {"Test": ["NONE"]}


def test_onbuild_is_stored():
    state = apply_all("ONBUILD RUN make")
    assert state.config["OnBuild"] == ["RUN make"]
