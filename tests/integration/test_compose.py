"""minictr compose on a real kernel: build, start order, names, ports, volumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import MINICTR

PROJECTS = Path(__file__).parent / "compose_projects"


def wait_for(condition, timeout: float = 60.0, interval: float = 0.2):
    """Poll ``condition`` until it returns something true; return that or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {condition.__name__}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def no_firewall_table_left(state_dirs):
    """Delete the nftables table that the private state root's networks used."""
    yield
    subprocess.run(
        [
            *MINICTR[:1],
            "-c",
            "from minicontainer.network import firewall; firewall.delete_table()",
        ],
        check=False,
    )


@pytest.fixture
def base_image(minictr, busybox_rootfs, tmp_path) -> str:
    """The sample busybox root imported as an image with a unique name."""
    name = f"compose-busybox-{uuid.uuid4().hex[:8]}"
    archive = tmp_path / "busybox.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    result = minictr("import", str(archive), name)
    assert result.returncode == 0, result.stderr
    return name


@pytest.fixture
def shop(tmp_path, minictr, base_image, state_dirs):
    """The shop project copied to a temporary directory, removed after the test."""
    directory = tmp_path / "shop"
    shutil.copytree(PROJECTS / "shop", directory)
    project = f"shop{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BASE_IMAGE": base_image,
        "WEB_PORT": str(free_port()),
        "GREETING": "hello from compose",
    }

    def compose(*args: str, timeout: float = 180, **kwargs):
        return minictr(
            "compose",
            "-p",
            project,
            *args,
            cwd=directory,
            env=env,
            timeout=timeout,
            **kwargs,
        )

    compose.project = project
    compose.env = env
    compose.directory = directory
    yield compose
    compose("down", "-v")


def get_page(port: str) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/cgi-bin/index", timeout=10
        ) as response:
            return response.read().decode()
    except OSError:
        return None


def network_record(state_dirs, name: str) -> dict | None:
    path = Path(state_dirs["root"]) / "networks" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def container_dirs(state_dirs) -> list[str]:
    directory = Path(state_dirs["root"]) / "containers"
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_compose_shop_lifecycle(shop, state_dirs):
    result = shop("up", "-d")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    project = shop.project
    db_started = lines.index(f"Container {project}-db-1  Started")
    web_created = lines.index(f"Container {project}-web-1  Creating")
    assert db_started < web_created

    ps = shop("ps")
    assert ps.returncode == 0, ps.stderr
    assert f"{project}-db-1" in ps.stdout
    assert ps.stdout.split()[:2] == ["NAME", "IMAGE"]
    assert shop.env["BASE_IMAGE"] in ps.stdout
    assert "sha256:" not in ps.stdout
    assert "(healthy)" in ps.stdout
    assert f"127.0.0.1:{shop.env['WEB_PORT']}" in ps.stdout

    def page_with_answers():
        page = get_page(shop.env["WEB_PORT"])
        return page if page and "ROWS" in page and "PONG" in page else None

    page = wait_for(page_with_answers)
    assert "hello from compose" in page
    assert "db says: ROWS" in page
    assert "cache says: PONG" in page

    record = network_record(state_dirs, f"{project}_default")
    assert record is not None
    veths = [lease["host_ifname"] for lease in record["leases"].values()]
    assert len(veths) == 3
    bridge = record["bridge"]
    assert os.path.exists(f"/sys/class/net/{bridge}")

    written = shop("exec", "-T", "web", "sh", "-c", "echo kept > /data/marker")
    assert written.returncode == 0, written.stderr

    # The db logs a line once a connection ends, which can trail the page.
    def db_logs_with_query():
        logs = shop("logs", "db").stdout
        return logs if f"{project}-db-1  | served a query" in logs else None

    assert wait_for(db_logs_with_query)

    down = shop("down")
    assert down.returncode == 0, down.stderr
    assert container_dirs(state_dirs) == []
    assert network_record(state_dirs, f"{project}_default") is None
    assert (Path(state_dirs["root"]) / "volumes" / f"{project}_data").is_dir()

    again = shop("up", "-d")
    assert again.returncode == 0, again.stderr
    kept = shop("exec", "-T", "web", "cat", "/data/marker")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == "kept\n"
    record = network_record(state_dirs, f"{project}_default")
    veths += [lease["host_ifname"] for lease in record["leases"].values()]

    gone = shop("down", "-v")
    assert gone.returncode == 0, gone.stderr
    assert container_dirs(state_dirs) == []
    assert network_record(state_dirs, f"{project}_default") is None
    assert not (Path(state_dirs["root"]) / "volumes" / f"{project}_data").exists()
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    for veth in veths:
        assert not os.path.exists(f"/sys/class/net/{veth}"), veth
    assert not (Path(state_dirs["root"]) / "compose" / project).exists()
    assert get_page(shop.env["WEB_PORT"]) is None


def test_compose_foreground_up_stops_on_ctrl_c(shop, state_dirs):
    built = shop("build")
    assert built.returncode == 0, built.stderr
    # A shell runs background jobs with SIGINT ignored, and exec keeps an
    # ignored signal ignored, so `up` would inherit that from a test run
    # started in the background. A handler here becomes the default in the
    # child instead. With the fault handler on, SIGABRT makes a hung `up`
    # print every thread's stack.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [*MINICTR, "compose", "-p", shop.project, "up"],
            cwd=shop.directory,
            env={**shop.env, "PYTHONFAULTHANDLER": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for(lambda: get_page(shop.env["WEB_PORT"]), timeout=120)
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stacks = process.communicate(timeout=60)
            pytest.fail(f"compose up ignored SIGINT; its threads:\n{stacks[-6000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "Gracefully stopping" in stderr
    assert f"{shop.project}-db-1" in stdout + stderr
    ps = shop("ps", "-a")
    assert ps.stdout.count("Exited") == 3, ps.stdout


def test_compose_reports_unhealthy_dependency(tmp_path, minictr, base_image):
    (tmp_path / "compose.yaml").write_text(
        f"""
services:
  web:
    image: {base_image}
    command: ["sleep", "60"]
    depends_on:
      db: {{condition: service_healthy}}
  db:
    image: {base_image}
    command: ["sleep", "60"]
    stop_signal: SIGKILL
    healthcheck: {{test: ["CMD", "false"], interval: 200ms, retries: 2}}
"""
    )
    project = f"sick{uuid.uuid4().hex[:8]}"
    try:
        result = minictr("compose", "-p", project, "up", "-d", cwd=tmp_path)
        assert result.returncode != 0
        assert "service web depends on db" in result.stderr
        assert "unhealthy" in result.stderr
        assert f"{project}-web-1" not in result.stderr
    finally:
        minictr("compose", "-p", project, "down", "-v", cwd=tmp_path)


def test_compose_service_without_command_says_what_to_add(
    tmp_path, minictr, base_image, state_dirs
):
    # The imported busybox image has no Cmd, so the service needs a command.
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  idle: {{image: {base_image}}}\n"
    )
    project = f"idle{uuid.uuid4().hex[:8]}"
    try:
        result = minictr("compose", "-p", project, "up", "-d", cwd=tmp_path)
        assert result.returncode == 1
        assert "service idle has no command" in result.stderr
        assert "add 'command:' to the service" in result.stderr
    finally:
        minictr("compose", "-p", project, "down", "-v", cwd=tmp_path)


def test_compose_cycle_fails_before_anything_starts(tmp_path, minictr, state_dirs):
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  a: {image: busybox, pull_policy: never, depends_on: [b]}\n"
        "  b: {image: busybox, pull_policy: never, depends_on: [a]}\n"
    )
    result = minictr("compose", "up", "-d", cwd=tmp_path)
    assert result.returncode == 1
    assert "dependency cycle" in result.stderr
    assert container_dirs(state_dirs) == []
    assert not (Path(state_dirs["root"]) / "networks").exists() or not any(
        name.startswith(tmp_path.name.lower())
        for name in os.listdir(Path(state_dirs["root"]) / "networks")
    )


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ("image: no-such-image-{tag}:1\n    pull_policy: never", "not found"),
        ("image: {base}\n    volumes: ['/tmp:/proc']", "invalid mount"),
    ],
    ids=["missing-image", "invalid-mount"],
)
def test_failed_up_removes_what_it_created(
    tmp_path, minictr, base_image, state_dirs, service, reason
):
    tag = uuid.uuid4().hex[:8]
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  app:\n"
        f"    {service.format(base=base_image, tag=tag)}\n"
        "    command: ['sleep', '60']\n"
    )
    project = f"fail{tag}"
    try:
        result = minictr("compose", "-p", project, "up", "-d", cwd=tmp_path)
        assert result.returncode != 0
        assert reason.format(tag=tag) in result.stderr
        assert "Traceback" not in result.stderr
        assert container_dirs(state_dirs) == []
        assert network_record(state_dirs, f"{project}_default") is None
        listed = minictr("network", "ls").stdout
        assert f"{project}_default" not in listed
    finally:
        minictr("compose", "-p", project, "down", "-v", cwd=tmp_path)


def _supervisors_of(project: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            continue
        if b"minicontainer.compose.supervisor" in words and project.encode() in words:
            found.append(int(entry))
    return found


def test_background_supervisor_is_found_at_once(state_dirs):
    # The pid file exists when start_background returns, so a second call
    # starts no second supervisor and a stop right away finds the first.
    from minicontainer.compose import supervisor

    project = f"sup{uuid.uuid4().hex[:8]}"
    supervisor.start_background(project)
    pid = supervisor.running_pid(project)
    assert pid is not None
    # Stopped, a supervisor of a project without containers cannot exit early.
    os.kill(pid, signal.SIGSTOP)
    try:
        supervisor.start_background(project)
        assert supervisor.running_pid(project) == pid
        assert _supervisors_of(project) == [pid]
    finally:
        os.kill(pid, signal.SIGCONT)
        supervisor.stop_background(project)
    assert _supervisors_of(project) == []
