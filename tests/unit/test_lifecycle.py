"""Unit tests of container status, the watcher and the text formats.

They use real processes of the test itself and state under tmp_path; no
root and no namespaces are needed.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from minicontainer import inspection, lifecycle, monitor, state
from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.errors import InvalidArgument, NotFound


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    return tmp_path


def _record(tmp_path, **fields) -> str:
    config = ContainerConfig(
        id=state.new_id(), name="", process=ProcessConfig(args=["sleep", "1"])
    )
    state.reserve(config)
    state.write_state(config.id, fields)
    return config.id


def _zombie() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.monotonic() + 10
    while not lifecycle._stat_fields(pid)[0] == b"Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return pid


def test_process_alive_checks_start_time():
    me = os.getpid()
    start = lifecycle.process_start_time(me)
    assert lifecycle.process_alive(me, start)
    assert not lifecycle.process_alive(me, start + 1)
    assert lifecycle.process_alive(me, None)


def test_zombie_is_not_alive():
    pid = _zombie()
    try:
        assert not lifecycle.process_alive(pid, None)
    finally:
        os.waitpid(pid, 0)


def test_running_with_reused_pid_is_exited(state_root):
    me = os.getpid()
    cid = _record(
        state_root,
        status="running",
        pid=me,
        pid_start_time=lifecycle.process_start_time(me) + 1,
    )
    record = lifecycle.current_state(cid)
    assert record["status"] == "exited"
    assert record["exit_code"] is None
    assert inspection.status_text(record) == "Exited (unknown)"


def test_running_with_live_pid_stays_running(state_root):
    me = os.getpid()
    cid = _record(
        state_root,
        status="running",
        pid=me,
        pid_start_time=lifecycle.process_start_time(me),
        monitor_pid=me,
        monitor_start_time=lifecycle.process_start_time(me),
        started_at="2024-01-01T00:00:00.000000000Z",
    )
    record = lifecycle.current_state(cid)
    assert record["status"] == "running"
    assert record["monitor_alive"]
    assert not lifecycle.is_leftover(record)


def test_exit_file_gives_exit_code(state_root):
    pid = _zombie()
    os.waitpid(pid, 0)
    cid = _record(state_root, status="running", pid=pid, pid_start_time=1)
    monitor.write_exit_file(state.container_dir(cid), 137, time.time())
    record = lifecycle.current_state(cid)
    assert record["status"] == "exited"
    assert record["exit_code"] == 137


def test_dead_monitor_makes_running_leftover(state_root):
    me = os.getpid()
    cid = _record(
        state_root,
        status="running",
        pid=me,
        pid_start_time=lifecycle.process_start_time(me),
        monitor_pid=me,
        monitor_start_time=lifecycle.process_start_time(me) + 1,
    )
    record = lifecycle.current_state(cid)
    assert record["status"] == "running"
    assert not record["monitor_alive"]
    assert lifecycle.is_leftover(record)
    assert "(monitor lost)" in inspection.status_text(record)


def test_clean_exit_is_not_leftover(state_root):
    cid = _record(state_root, status="exited", exit_code=0, monitor_pid=0, cgroup=None)
    assert not lifecycle.is_leftover(lifecycle.current_state(cid))


def test_created_is_not_leftover(state_root):
    cid = _record(state_root, status="created")
    assert not lifecycle.is_leftover(lifecycle.current_state(cid))


def test_recorded_unknown_exit_not_leftover(state_root):
    # stop or kill record an unknown exit code when the monitor was gone.
    cid = _record(state_root, status="exited", exit_code=None, monitor_pid=0)
    record = lifecycle.current_state(cid)
    assert not lifecycle.is_leftover(record)
    assert inspection.status_text(record) == "Exited (unknown)"


def test_unwatched_exit_is_leftover(state_root):
    pid = _zombie()
    os.waitpid(pid, 0)
    cid = _record(state_root, status="running", pid=pid, pid_start_time=1)
    record = lifecycle.current_state(cid)
    assert record["exit_unrecorded"]
    assert lifecycle.is_leftover(record)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff"])
def test_unreadable_state_raises(state_root, content):
    cid = _record(state_root, status="created")
    path = os.path.join(state.container_dir(cid), "state.json")
    with open(path, "wb") as f:
        f.write(content.encode("latin-1"))
    with pytest.raises(state.UnreadableState, match=f"rm -f {cid[:12]}"):
        lifecycle.current_state(cid)
    # Code that skips unparsable containers catches ValueError.
    assert issubclass(state.UnreadableState, ValueError)


def test_unreadable_state_shows_in_ps(state_root):
    cid = _record(state_root, status="running")
    with open(os.path.join(state.container_dir(cid), "state.json"), "w") as f:
        f.write("garbage")
    (row,) = inspection.list_containers(show_all=True)
    assert row["ID"] == cid
    assert row["State"] == "unknown"
    assert row["Status"] == "Unknown (unreadable state)"
    assert inspection.list_containers(show_all=False) == []


def test_unreadable_config_shows_in_ps(state_root):
    cid = _record(state_root, status="created")
    with open(os.path.join(state.container_dir(cid), "config.json"), "w") as f:
        f.write("garbage")
    (row,) = inspection.list_containers(show_all=True)
    assert (row["ID"], row["State"], row["Names"]) == (cid, "unknown", "")


def test_find_for_wait_uses_kept_exit(state_root):
    removed = state.new_id()
    lifecycle._keep_exit_code(removed, "gone", 5)
    assert lifecycle.find_for_wait(removed) == removed
    assert lifecycle.find_for_wait("gone") == removed
    assert lifecycle.find_for_wait(removed[:12]) == removed
    assert lifecycle.wait(removed) == 5
    with pytest.raises(NotFound):
        lifecycle.find_for_wait("other")


def test_find_for_wait_prefers_existing_container(state_root):
    cid = _record(state_root, status="exited", exit_code=0)
    name = state.read_config(cid).name
    lifecycle._keep_exit_code(state.new_id(), name, 5)
    assert lifecycle.find_for_wait(name) == cid


def test_wait_reads_exit_code_kept_as_number(state_root):
    removed = state.new_id()
    directory = os.path.join(state_root, "run", "exited")
    os.makedirs(directory)
    state.write_json_atomic(os.path.join(directory, removed), 3)
    assert lifecycle.wait(removed) == 3


@pytest.mark.parametrize(
    ("value", "number"),
    [("SIGTERM", 15), ("term", 15), ("KILL", 9), ("10", 10), (2, 2)],
)
def test_parse_signal(value, number):
    assert lifecycle.parse_signal(value) == number


@pytest.mark.parametrize("value", ["SIGNOPE", "0", "999", ""])
def test_parse_signal_rejects(value):
    with pytest.raises(InvalidArgument):
        lifecycle.parse_signal(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1.5, "1 second"),
        (42, "42 seconds"),
        (90, "About a minute"),
        (600, "10 minutes"),
        (5400, "About an hour"),
        (3 * 3600, "3 hours"),
        (3 * 86400, "3 days"),
    ],
)
def test_human_duration(seconds, text):
    assert inspection.human_duration(seconds) == text


def test_status_text_of_exit():
    record = {
        "status": "exited",
        "exit_code": 137,
        "finished_at": "2024-01-01T00:00:00.5Z",
    }
    now = inspection.parse_time("2024-01-01T00:00:05.5Z")
    assert inspection.status_text(record, now) == "Exited (137) 5 seconds ago"


def test_status_text_of_paused():
    record = {
        "status": "paused",
        "started_at": "2024-01-01T00:00:00Z",
        "monitor_alive": True,
    }
    now = inspection.parse_time("2024-01-01T00:00:03Z")
    assert inspection.status_text(record, now) == "Up 3 seconds (Paused)"


def test_render_template_and_path():
    document = {"State": {"Pid": 42, "Running": True}, "Config": {"name": "x"}}
    assert inspection.render("{{.State.Pid}}", document) == "42"
    assert inspection.render("{{ .State.Running }}", document) == "true"
    assert inspection.render("{{json .Config}}", document) == '{"name": "x"}'
    assert inspection.render("State.Pid", document) == "42"
    with pytest.raises(InvalidArgument):
        inspection.render("{{.State.Nope}}", document)


def test_log_entry_is_json():
    line = monitor.log_entry("stderr", 'quote " and é\n'.encode(), 0.25)
    entry = json.loads(line)
    assert entry == {
        "log": 'quote " and é\n',
        "stream": "stderr",
        "time": "1970-01-01T00:00:00.250000000Z",
    }


def test_watcher_logs_and_reaps_child(tmp_path):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(out_w, b"one\ntwo")
        os.write(err_w, b"oops\n")
        os.write(out_w, b" halves\nno newline")
        os._exit(3)
    os.close(out_w)
    os.close(err_w)
    exit_code, _ = monitor.watch(str(tmp_path), child, out_r, err_r)
    assert exit_code == 3
    with open(tmp_path / monitor.LOG_FILE) as f:
        entries = [json.loads(line) for line in f]
    stdout = [e["log"] for e in entries if e["stream"] == "stdout"]
    stderr = [e["log"] for e in entries if e["stream"] == "stderr"]
    assert stdout == ["one\n", "two halves\n", "no newline"]
    assert stderr == ["oops\n"]


def test_watcher_reports_signal_as_128_plus_n(tmp_path):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(out_w)
    os.close(err_w)
    exit_code, _ = monitor.watch(str(tmp_path), child, out_r, err_r)
    assert exit_code == 137


def test_read_logs_tail(state_root):
    cid = _record(state_root, status="exited", exit_code=0)
    path = os.path.join(state.container_dir(cid), lifecycle.LOG_FILE)
    with open(path, "wb") as f:
        for i in range(5):
            f.write(monitor.log_entry("stdout", f"{i}\n".encode(), 0))
    assert [e["log"] for e in inspection.read_logs(cid, tail=2)] == ["3\n", "4\n"]
    assert len(list(inspection.read_logs(cid))) == 5
    assert list(inspection.read_logs(cid, tail=0)) == []


def test_render_rejects_actions_other_than_fields():
    document = {"Mounts": [{"Destination": "/data"}]}
    with pytest.raises(InvalidArgument, match=r"unsupported template action \{\{range"):
        inspection.render("{{range .Mounts}}{{.Destination}}{{end}}", document)


def test_network_document_has_docker_keys():
    settings = {
        "mode": "bridge",
        "networks": [
            {
                "network": "lab",
                "address": "10.89.0.2",
                "prefixlen": 24,
                "gateway": "10.89.0.1",
                "mac": "02:42:0a:59:00:02",
            },
        ],
    }
    document = inspection._network_document(settings)
    assert document["IPAddress"] == "10.89.0.2"
    assert document["Networks"]["lab"]["Gateway"] == "10.89.0.1"
    assert document["mode"] == "bridge"


def _row(name: str, state_name: str, labels: str = "") -> dict:
    return {
        "ID": f"{name}0000",
        "Names": name,
        "State": state_name,
        "Labels": labels,
        "Image": "rootfs/busybox",
    }


def test_ps_filters_and_keys_or_values():
    rows = [
        _row("web1", "running", "tier=front"),
        _row("web2", "exited", "tier=back"),
        _row("db", "running"),
    ]

    def names(*values: str) -> list[str]:
        chosen = inspection.filter_rows(rows, inspection.parse_filters(list(values)))
        return [row["Names"] for row in chosen]

    assert names("name=web") == ["web1", "web2"]
    assert names("name=web", "status=running") == ["web1"]
    assert names("status=running", "status=exited") == ["web1", "web2", "db"]
    assert names("label=tier") == ["web1", "web2"]
    assert names("label=tier=back") == ["web2"]
    assert names("id=db00") == ["db"]
    assert names("ancestor=rootfs/busybox") == ["web1", "web2", "db"]
    with pytest.raises(InvalidArgument, match="invalid --filter 'size=1'"):
        inspection.parse_filters(["size=1"])
