"""`minictr stats` and the API's stats() read the container's own cgroup."""

from __future__ import annotations

import json

from minicontainer import api


def test_stats_reports_limits_and_usage(minictr, busybox_rootfs):
    started = minictr(
        "run",
        "-d",
        "--network",
        "none",
        "-m",
        "64m",
        "--pids-limit",
        "40",
        str(busybox_rootfs),
        "/bin/sh",
        "-c",
        "while true; do :; done",
    )
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    try:
        result = minictr("stats", "--no-stream", "--format", "json", container_id)
        assert result.returncode == 0, result.stderr
        (entry,) = json.loads(result.stdout)
        assert entry["id"] == container_id
        assert entry["memory"]["limit"] == 64 * 1024 * 1024
        assert entry["memory"]["usage"] > 0
        assert entry["pids"]["limit"] == 40
        assert entry["pids"]["current"] >= 1
        assert entry["cpu"]["usage_ns"] > 0
        # A busy loop uses most of a CPU; allow for a loaded machine.
        assert entry["cpu_percent"] > 10

        table = minictr("stats", "--no-stream", container_id)
        assert table.returncode == 0, table.stderr
        assert "MEM USAGE / LIMIT" in table.stdout
        assert container_id[:12] in table.stdout
    finally:
        minictr("rm", "-f", container_id)


def test_api_stats_matches_cgroup(minictr, busybox_rootfs):
    started = minictr(
        "run",
        "-d",
        "--network",
        "none",
        "--pids-limit",
        "25",
        str(busybox_rootfs),
        "sleep",
        "60",
    )
    assert started.returncode == 0, started.stderr
    container = api.Container(started.stdout.strip())
    with container:
        reading = container.stats()
        assert reading["pids"]["limit"] == 25
        assert reading["pids"]["current"] == 1


def test_stats_of_stopped_container_fails(minictr, busybox_rootfs):
    started = minictr("run", "--network", "none", str(busybox_rootfs), "true")
    assert started.returncode == 0, started.stderr
    listed = minictr("ps", "-aq")
    (short_id,) = listed.stdout.split()
    result = minictr("stats", "--no-stream", short_id)
    assert result.returncode != 0
    assert "not running" in result.stderr
