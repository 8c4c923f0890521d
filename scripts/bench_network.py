"""Measure what networking adds to a container's start and teardown.

Two measurements, both under a private state root that is removed at the end:

1. In process: ``network.prepare``, ``network.attach`` and ``network.release``
   for a namespace made by a forked child, split into the first container
   (which also imports pyroute2 and creates the bridge and the nftables
   table) and later containers on the same network (a veth pair and one
   DNAT rule each).
2. End to end: the median wall time of ``minictr run --rm ROOTFS true`` with
   ``--network none``, the default bridge, and a published port.

Run as root: ``.venv/bin/python scripts/bench_network.py [--runs N] [ROOTFS]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _netns_child() -> int:
    from minicontainer import syscalls

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        os.write(ready_w, b"x")
        time.sleep(3600)
        os._exit(0)
    os.read(ready_r, 1)
    os.close(ready_r)
    os.close(ready_w)
    return pid


def in_process(runs: int, root: str) -> None:
    from minicontainer import network

    rows = []
    for index in range(runs):
        container_id = f"{index:064x}"
        directory = os.path.join(root, "containers", container_id)
        os.makedirs(directory)
        config = {
            "id": container_id,
            "name": f"bench{index}",
            "network": {
                "mode": "bridge",
                "ports": [
                    {
                        "proto": "tcp",
                        "host_ip": "127.0.0.1",
                        "host_port": 0,
                        "container_port": 80,
                    }
                ],
            },
        }
        pid = _netns_child()
        try:
            start = time.perf_counter()
            plan = network.prepare(config, directory)
            prepared = time.perf_counter()
            network.attach(plan, pid)
            attached = time.perf_counter()
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        released_start = time.perf_counter()
        # Keep one container leased so that the bridge and table stay,
        # as they do while other containers run.
        if index > 0:
            network.release(container_id)
        released = time.perf_counter()
        rows.append((prepared - start, attached - prepared, released - released_start))
    network.release(f"{0:064x}")
    first, rest = rows[0], rows[1:]
    print("in process (ms)          prepare   attach  release")
    print(
        f"  first container      {first[0] * 1e3:8.1f} {first[1] * 1e3:8.1f}        -"
    )
    for label, column in (("prepare", 0), ("attach", 1), ("release", 2)):
        values = [row[column] * 1e3 for row in rest]
        print(
            f"  later, median {label:<8} {statistics.median(values):8.1f} ms (n={len(values)})"
        )


def end_to_end(runs: int, rootfs: str) -> None:
    minictr = [sys.executable, "-m", "minicontainer"]
    cases = {
        "--network none": ["--network", "none"],
        "default bridge": [],
        "bridge + -p 80": ["-p", "127.0.0.1::80"],
    }
    # One long-lived container keeps the bridge and table up, as on a host
    # where containers are running.
    keeper = subprocess.run(
        [*minictr, "run", "-d", rootfs, "sleep", "600"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        print("end to end: minictr run --rm ROOTFS true, median wall time")
        for label, options in cases.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                subprocess.run(
                    [*minictr, "run", "--rm", *options, rootfs, "true"], check=True
                )
                times.append(time.perf_counter() - start)
            print(f"  {label:<16} {statistics.median(times) * 1e3:8.1f} ms (n={runs})")
    finally:
        subprocess.run([*minictr, "rm", "-f", keeper], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("rootfs", nargs="?", default="rootfs/busybox")
    args = parser.parse_args()
    temp = tempfile.mkdtemp(prefix="minictr-bench-net-")
    os.environ["MINICTR_ROOT"] = os.path.join(temp, "state")
    os.environ["MINICTR_RUN"] = os.path.join(temp, "run")
    try:
        in_process(args.runs, os.environ["MINICTR_ROOT"])
        end_to_end(args.runs, os.path.abspath(args.rootfs))
    finally:
        subprocess.run(
            [sys.executable, "-m", "minicontainer", "network", "prune", "-f"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
