"""`minictr volume prune` asks first; a "no" or no answer removes nothing."""

from __future__ import annotations

import subprocess

import pytest
from support import MINICTR

from minicontainer.mounts import volumes

QUESTION = "This removes anonymous volumes that no container uses. Continue? [y/N]: "


@pytest.fixture
def anonymous_volume(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    name = "a" * 64
    with volumes.locked():
        volumes.create(name, anonymous=True)
    return name


def prune(*args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    # A real pipe on stdin, as in `echo n | minictr volume prune`: the answer
    # is not echoed, which is what the line ending depends on.
    return subprocess.run(
        [*MINICTR, "volume", "prune", *args],
        check=False,
        input=answer,
        stdin=subprocess.DEVNULL if answer is None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def volume_names() -> list[str]:
    return [metadata["Name"] for metadata in volumes.list_volumes()]


@pytest.mark.parametrize("answer", ["n\n", "\n", "", None])
def test_prune_without_yes_removes_nothing_and_succeeds(anonymous_volume, answer):
    result = prune(answer=answer)
    assert result.returncode == 0, result.stderr
    assert result.stdout == QUESTION + "\nNothing was removed.\n"
    assert volume_names() == [anonymous_volume]


def test_prune_with_yes_removes_anonymous_volume(anonymous_volume):
    result = prune(answer="y\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == QUESTION + f"\nDeleted Volumes:\n{anonymous_volume}\n"
    assert volume_names() == []


def test_prune_force_does_not_ask(anonymous_volume):
    result = prune("-f")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Deleted Volumes:\n{anonymous_volume}\n"
    assert volume_names() == []
