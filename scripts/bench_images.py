#!/usr/bin/env python3
"""Time `minictr pull` against `skopeo copy` plus `umoci unpack` of the same image.

Both sides fetch the three-layer busybox test image from one docker-registry
on 127.0.0.1 and unpack every layer: minictr into its layer directories,
umoci into a runtime bundle. Each run starts from an empty store, so nothing
is cached. The minictr side runs the CLI in a new Python process, so its time
includes interpreter start-up and imports (about 0.2 s of it on a 2-core
test VM). Prints the median wall time of each side and their ratio.

Usage: sudo .venv/bin/python scripts/bench_images.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "rootfs" / "busybox"
# The test suite's layout builder, so the benchmark measures the tested image.
sys.path.insert(0, str(REPO / "tests" / "integration" / "images"))

from images_layout import (  # noqa: E402 - found through the path set above
    changes_layer,
    deletions_layer,
    rootfs_layer,
    write_layout,
)


def start_registry(base: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {base / 'storage'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
            return process, host
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"bench_images: docker-registry on {host} did not start in 30 s")


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def bench_minictr(reference: str, work: Path) -> float:
    state = Path(tempfile.mkdtemp(dir=work, prefix="minictr-"))
    env = dict(os.environ, MINICTR_ROOT=str(state))
    command = [
        sys.executable,
        "-m",
        "minicontainer",
        "pull",
        "-q",
        "--insecure-registry",
    ]
    try:
        return timed([*command, reference], env)
    finally:
        shutil.rmtree(state)


def bench_skopeo_umoci(reference: str, work: Path) -> float:
    base = Path(tempfile.mkdtemp(dir=work, prefix="skopeo-"))
    copy = [
        "skopeo",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{reference}",
        f"oci:{base / 'layout'}:bench",
    ]
    unpack = [
        "umoci",
        "unpack",
        "--image",
        f"{base / 'layout'}:bench",
        str(base / "bundle"),
    ]
    try:
        start = time.perf_counter()
        subprocess.run(copy, check=True, capture_output=True)
        subprocess.run(unpack, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=5, help="Runs per tool (default 5)."
    )
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"bench_images: {tool} is not installed: run 'make packages'"
            )
    if not (ROOTFS / "bin" / "busybox").exists():
        raise SystemExit(f"bench_images: {ROOTFS} is missing: run 'make rootfs'")

    work = Path(tempfile.mkdtemp(prefix="minictr-bench-images-"))
    process = None
    try:
        process, host = start_registry(work)
        layout = work / "layout"
        layers = [rootfs_layer(ROOTFS), changes_layer(), deletions_layer()]
        write_layout(layout, layers, "bench")
        reference = f"{host}/bench/busybox:bench"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{layout}:bench",
                f"docker://{reference}",
            ],
            check=True,
            capture_output=True,
        )
        # Alternating the tools spreads changes in machine load over both.
        minictr_times, skopeo_times = [], []
        for _ in range(args.runs):
            minictr_times.append(bench_minictr(reference, work))
            skopeo_times.append(bench_skopeo_umoci(reference, work))
    finally:
        if process is not None:
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)

    minictr_median = statistics.median(minictr_times)
    skopeo_median = statistics.median(skopeo_times)
    print(f"image pull + unpack, busybox test image, 3 layers, {args.runs} runs each")
    print(f"  minictr pull                 median {minictr_median * 1000:8.1f} ms")
    print(f"  skopeo copy + umoci unpack   median {skopeo_median * 1000:8.1f} ms")
    print(
        f"  ratio minictr / skopeo+umoci        {minictr_median / skopeo_median:8.2f}"
    )


if __name__ == "__main__":
    main()
