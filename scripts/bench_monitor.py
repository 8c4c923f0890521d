"""Measure the host memory each idle detached container costs, as PSS.

Starts N detached containers (default 50) running ``sleep``, sums the PSS
from ``/proc/PID/smaps_rollup`` of their monitors, and prints the total and
the mean per container. PSS (proportional set size) divides each shared
page among the processes that map it, so the sum over N monitors is what
they cost together. When podman is installed, the same number of
``podman run -d`` containers are measured in the same run, summing PSS of
their ``conmon`` processes; when podman cannot start them, its error is
printed instead of a number. Run as root:

    .venv/bin/python scripts/bench_monitor.py [--count 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTFS = os.path.join(REPO, "rootfs", "busybox")
MINICTR = os.path.join(os.path.dirname(sys.executable), "minictr")


def pss_kib(pid: int) -> int:
    """Return the PSS of ``pid`` in KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss line for pid {pid}")


def measure_minictr(count: int) -> dict:
    workdir = tempfile.mkdtemp(prefix="bench-monitor-")
    env = dict(
        os.environ,
        MINICTR_ROOT=os.path.join(workdir, "root"),
        MINICTR_RUN=os.path.join(workdir, "run"),
    )

    def minictr(*args: str) -> str:
        return subprocess.run(
            [MINICTR, *args], env=env, check=True, capture_output=True, text=True
        ).stdout

    ids = []
    try:
        for _ in range(count):
            ids.append(
                minictr(
                    "run", "-d", "--network", "none", ROOTFS, "sleep", "3600"
                ).strip()
            )
        time.sleep(1)  # let every monitor reach its idle loop
        monitors = [
            int(minictr("inspect", "-f", "{{.State.MonitorPid}}", cid)) for cid in ids
        ]
        total = sum(pss_kib(pid) for pid in monitors)
        return {
            "containers": count,
            "pss_kib_total": total,
            "pss_kib_each": total / count,
        }
    finally:
        if ids:
            subprocess.run([MINICTR, "rm", "-f", *ids], env=env, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def measure_podman(count: int) -> dict | None:
    podman = shutil.which("podman")
    if podman is None:
        return None
    image = "localhost/bench-busybox"
    subprocess.run(
        [podman, "import", "-q", "-"],
        input=subprocess.run(
            ["tar", "-C", ROOTFS, "-c", "."], check=True, capture_output=True
        ).stdout,
        check=True,
        capture_output=True,
    )
    imported = subprocess.run(
        [podman, "images", "-q", "--sort", "created"], capture_output=True, text=True
    ).stdout.split()[0]
    subprocess.run([podman, "tag", imported, image], check=True)
    names = [f"bench-monitor-{os.getpid()}-{i}" for i in range(count)]
    try:
        for name in names:
            subprocess.run(
                [
                    podman,
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "none",
                    image,
                    "sleep",
                    "3600",
                ],
                check=True,
                capture_output=True,
            )
        time.sleep(1)
        conmons = []
        for name in names:
            pid = subprocess.run(
                [podman, "inspect", "-f", "{{.State.ConmonPid}}", name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            conmons.append(int(pid))
        total = sum(pss_kib(pid) for pid in conmons)
        version = subprocess.run(
            ["conmon", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        return {
            "containers": count,
            "pss_kib_total": total,
            "pss_kib_each": total / count,
            "conmon": version,
        }
    finally:
        subprocess.run([podman, "rm", "-f", "-t", "0", *names], capture_output=True)
        subprocess.run([podman, "rmi", "-f", image], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    options = parser.parse_args()
    results = {"minictr": measure_minictr(options.count)}
    try:
        results["podman"] = measure_podman(options.count)
    except subprocess.CalledProcessError as exc:
        results["podman"] = {"error": f"{exc.cmd[:3]} failed: {exc.stderr}"}
    if options.json:
        print(json.dumps(results))
        return
    for name, result in results.items():
        if result is None:
            print(f"{name}: not installed")
        elif "error" in result:
            print(f"{name}: {result['error']}")
        else:
            print(
                f"{name}: {result['containers']} idle containers,"
                f" monitor PSS {result['pss_kib_total'] / 1024:.1f} MiB in total,"
                f" {result['pss_kib_each'] / 1024:.2f} MiB each"
            )


if __name__ == "__main__":
    main()
