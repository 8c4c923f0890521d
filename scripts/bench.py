#!/usr/bin/env python3
"""Benchmarks: minictr against runc and crun, measured in the same run.

    sudo .venv/bin/python scripts/bench.py [--runs N]

Start-to-exit latency of ``/bin/true`` in a new container on the sample
busybox root file system, each tool with its own default namespaces, the
commands alternated so that a change in machine load hits all of them.
crun refuses to start on hosts whose cgroup2 mount has no controllers while
v1 controllers are mounted (hybrid hosts): there it runs through ``nsenter``
into a private mount namespace where that cgroup2 mount is unmounted, and
the table shows what the nsenter hop alone costs.

Other benchmark scripts in this folder add their rows when present.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "rootfs" / "busybox"
MINICTR = [str(REPO / ".venv" / "bin" / "minictr")]


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(command)} failed: {result.stderr.decode().strip()}"
        )
    return elapsed


def make_bundle(directory: Path, runtime: str) -> None:
    """Write an OCI bundle whose root is the sample rootfs and whose process is /bin/true."""
    subprocess.run([runtime, "spec"], cwd=directory, check=True)
    config = json.loads((directory / "config.json").read_text())
    config["root"] = {"path": str(ROOTFS), "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    (directory / "config.json").write_text(json.dumps(config))


def hybrid_cgroups() -> bool:
    with open("/proc/self/mountinfo") as f:
        types = [line.split(" - ")[1].split()[0] for line in f if " - " in line]
    return "cgroup" in types and "cgroup2" in types


def private_mount_namespace() -> subprocess.Popen:
    """Start a sleeper in a mount namespace without the empty cgroup2 mount."""
    script = "umount /sys/fs/cgroup/unified && exec sleep 3600"
    sleeper = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    )
    for _ in range(100):
        if (
            os.path.exists(f"/proc/{sleeper.pid}/ns/mnt")
            and _mounts_of(sleeper.pid).find(" /sys/fs/cgroup/unified ") < 0
        ):
            return sleeper
        time.sleep(0.02)
    sleeper.kill()
    raise SystemExit("bench: could not prepare a mount namespace for crun")


def _mounts_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return f.read()
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", default=str(REPO / "bench-results" / "latest.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sudo make bench)")
    if not (ROOTFS / "bin" / "busybox").exists():
        raise SystemExit("bench: build the sample rootfs first: make rootfs")

    work = Path(tempfile.mkdtemp(prefix="minictr-bench-"))
    env = dict(
        os.environ, MINICTR_ROOT=str(work / "state"), MINICTR_RUN=str(work / "run")
    )
    commands: dict[str, list[str]] = {
        "minictr": [
            *MINICTR,
            "run",
            "--rm",
            "--network",
            "none",
            str(ROOTFS),
            "/bin/true",
        ],
    }
    sleeper = None
    counter = iter(range(10**9))
    try:
        for runtime in ("runc", "crun"):
            if shutil.which(runtime) is None:
                print(
                    f"bench: {runtime} not installed, skipped (apt-get install {runtime})"
                )
                continue
            bundle = work / runtime
            bundle.mkdir()
            make_bundle(bundle, runtime)
            commands[runtime] = [runtime, "run", "--bundle", str(bundle)]
        if "crun" in commands and hybrid_cgroups():
            sleeper = private_mount_namespace()
            enter = ["nsenter", f"--mount=/proc/{sleeper.pid}/ns/mnt", "--"]
            commands["crun"] = enter + commands["crun"]
            commands["nsenter hop alone"] = enter + ["/bin/true"]

        samples: dict[str, list[float]] = {name: [] for name in commands}
        for name, command in commands.items():  # warm the page cache once
            timed(_unique(name, command, counter), env)
        for _ in range(args.runs):
            for name, command in commands.items():
                samples[name].append(timed(_unique(name, command, counter), env))
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        shutil.rmtree(work, ignore_errors=True)

    report = _report(samples, args.runs)
    print(report)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report)
    for extra in (
        "bench_network.py",
        "bench_images.py",
        "bench_monitor.py",
        "bench_build.py",
    ):
        script = REPO / "scripts" / extra
        if script.exists():
            print(f"\n## {extra}\n", flush=True)
            subprocess.run([sys.executable, str(script)], check=False)


def _unique(name: str, command: list[str], counter) -> list[str]:
    # runc and crun need a fresh container id on every run.
    if name in ("runc", "crun"):
        return command + [f"bench-{os.getpid()}-{next(counter)}"]
    return command


def _report(samples: dict[str, list[float]], runs: int) -> str:
    medians = {
        name: statistics.median(values) * 1000 for name, values in samples.items()
    }
    lines = [
        f"Start-to-exit latency of /bin/true, median of {runs} alternated runs",
        f"({os.uname().release}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})",
        "",
        "| command | median ms | minictr / this |",
        "|---|---:|---:|",
    ]
    for name, value in medians.items():
        ratio = medians["minictr"] / value if value else float("nan")
        lines.append(f"| {name} | {value:.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
