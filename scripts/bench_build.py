#!/usr/bin/env python3
"""Benchmark ``minictr build``: a full build and a cached rebuild.

    sudo .venv/bin/python scripts/bench_build.py [--runs N]

The Dockerfile has ten steps on the sample busybox root file system: the
FROM import, two COPY steps, three RUN steps and four config steps. Each
run measures the whole command line, Python start-up included:

- full: ``--no-cache``, so every RUN and COPY step executes;
- cached: the same build again, every step a cache hit;
- one file changed: the last copied file is rewritten, so its COPY step and
  the steps after it run again.

RUN steps use ``--network none`` so that the numbers measure the builder,
not bridge setup. State lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "rootfs" / "busybox"
MINICTR = [str(REPO / ".venv" / "bin" / "minictr")]

DOCKERFILE = """\
FROM {rootfs}
WORKDIR /app
ENV APP_HOME=/app
COPY requirements.txt .
RUN mkdir -p /opt/site && cp requirements.txt /opt/site/
RUN echo compiled > /opt/site/compiled
COPY app.sh .
RUN chmod +x app.sh
LABEL purpose=benchmark
CMD ["./app.sh"]
"""


def timed_build(context: Path, env: dict[str, str], *extra: str) -> float:
    command = [*MINICTR, "build", "--network", "none", "-t", "bench-build:1"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, *extra, str(context)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench_build: build failed: {result.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Builds of each kind.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_build: run as root")
    if not (ROOTFS / "bin" / "busybox").exists():
        subprocess.run(["sh", str(REPO / "rootfs" / "build-busybox.sh")], check=True)

    work = Path(tempfile.mkdtemp(prefix="minictr-bench-build-"))
    env = dict(
        os.environ, MINICTR_ROOT=str(work / "state"), MINICTR_RUN=str(work / "run")
    )
    context = work / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(rootfs=ROOTFS))
    (context / "requirements.txt").write_text("flask\nrequests\n")
    (context / "app.sh").write_text("#!/bin/sh\necho hello\n")
    samples: dict[str, list[float]] = {"full": [], "cached": [], "one file changed": []}
    try:
        timed_build(context, env)  # imports the base directory once
        for run in range(args.runs):
            samples["full"].append(timed_build(context, env, "--no-cache"))
            samples["cached"].append(timed_build(context, env))
            (context / "app.sh").write_text(f"#!/bin/sh\necho hello {run}\n")
            samples["one file changed"].append(timed_build(context, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    full = statistics.median(samples["full"])
    print(f"minictr build of a ten-step Dockerfile, median of {args.runs} runs")
    print(f"({os.uname().release}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')})")
    print()
    print("| build | median s | full / this |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {full / median:.1f} |")


if __name__ == "__main__":
    main()
