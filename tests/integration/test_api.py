"""The Python API and the pytest fixtures, on real containers."""

from __future__ import annotations

import os
import signal

import pytest

import minicontainer
from minicontainer.errors import NotFound

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOTFS = os.path.join(REPO, "rootfs", "busybox")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not os.path.isdir(ROOTFS), reason="no sample rootfs: run 'make rootfs'"
    ),
]


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    monkeypatch.setenv("MINICTR_TEST_ROOTFS", ROOTFS)


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def test_context_manager_removes_container():
    with minicontainer.run(ROOTFS, ["sleep", "60"], network="none") as container:
        pid = container.pid
        cgroup_dirs = container.cgroup.directories
        assert container.status == "running"
        assert _alive(pid)
    assert not _alive(pid)
    assert not any(os.path.exists(d) for d in cgroup_dirs)
    with pytest.raises(NotFound):
        minicontainer.get(container.id)


def test_context_manager_cleans_up_on_error():
    with pytest.raises(RuntimeError):
        with minicontainer.run(ROOTFS, ["sleep", "60"], network="none") as container:
            pid = container.pid
            raise RuntimeError("test body failed")
    assert not _alive(pid)
    assert not os.path.isdir(
        os.path.join(os.environ["MINICTR_ROOT"], "containers", container.id)
    )


def test_exec_captures_output_and_code():
    with minicontainer.run(
        ROOTFS, ["sleep", "60"], network="none", env={"GREETING": "hi"}
    ) as container:
        result = container.exec(["sh", "-c", "echo $GREETING; echo oops >&2; exit 4"])
        assert result.exit_code == 4
        assert result.stdout == b"hi\n"
        assert result.stderr == b"oops\n"
        echoed = container.exec(["cat"], input=b"x" * 200000)
        assert echoed.stdout == b"x" * 200000
        with pytest.raises(minicontainer.ExecFailed):
            container.exec(["false"], check=True)


def test_namespaces_differ_from_host():
    with minicontainer.run(ROOTFS, ["sleep", "60"], network="none") as container:
        namespaces = container.namespaces
        for name in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
            assert namespaces[name] != os.stat(f"/proc/self/ns/{name}").st_ino
        inside = container.exec(["readlink", "/proc/self/ns/pid"]).output.strip()
        assert inside == f"pid:[{namespaces['pid']}]"


def test_logs_stop_and_state():
    script = (
        "echo started; trap 'echo bye; exit 9' TERM; while true; do sleep 0.1; done"
    )
    with minicontainer.run(ROOTFS, ["sh", "-c", script], network="none") as container:
        container.exec(["true"])  # the trap is set once the shell runs commands
        container.stop(timeout=30)
        assert container.status == "exited"
        assert container.state["exit_code"] == 9
        assert container.logs() == "started\nbye\n"
        assert container.pid == 0


def test_kill_and_wait():
    with minicontainer.run(ROOTFS, ["sleep", "60"], network="none") as container:
        container.kill(signal.SIGKILL)
        assert container.wait(timeout=30) == 137


def test_create_then_start():
    container = minicontainer.create(
        ROOTFS, ["sh", "-c", "echo made"], network="none", name="api-created"
    )
    with container:
        assert container.status == "created"
        assert container.name == "api-created"
        container.start()
        assert container.wait(timeout=30) == 0
        assert container.logs("stdout") == "made\n"


def test_fixture_gives_running_container(minictr_container):
    assert minictr_container.status == "running"
    result = minictr_container.exec(["cat", "/proc/1/cmdline"])
    assert result.stdout.split(b"\0")[0] == b"sleep"


def test_fixture_factory_takes_settings(minictr_run):
    container = minictr_run(["sleep", "60"], network="none", hostname="fixture-host")
    assert container.exec(["hostname"]).output.strip() == "fixture-host"
