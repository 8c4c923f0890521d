"""``--gpus`` on a fake NVIDIA host: nodes, selection, driver mounts, rules.

There is no GPU here, so each test builds a host tree under a temporary
directory and points ``MINICTR_GPU_HOST_ROOT`` at it: real character nodes
(major 195 for the GPUs and nvidiactl, 511 standing in for nvidia-uvm's
dynamic major), /proc/driver/nvidia files, stub driver libraries built with
gcc and indexed by the real ldconfig, a fake nvidia-smi and firmware. The
host kernel has no driver behind major 195, so opening an allowed GPU node
fails with ENXIO ("No such device or address"), while the device rules
answer EPERM for a GPU that was not given.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

VERSION = "535.104.05"
LIB_DIR = "usr/lib/x86_64-linux-gnu"
# (bus, device minor, UUID): bus order makes the minor-2 GPU index 0.
GPUS = [
    ("0000:3b:00.0", 0, "GPU-bbbbbbbb-0000-0000-0000-000000000001"),
    ("0000:1a:00.0", 2, "GPU-aaaaaaaa-0000-0000-0000-000000000002"),
]
UVM_MAJOR = 511
LIBRARIES = ("libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler")

pytestmark = [
    pytest.mark.skipif(
        shutil.which("gcc") is None, reason="gcc builds the stub libraries"
    ),
    pytest.mark.skipif(
        os.uname().machine != "x86_64", reason="the fake tree is x86-64's"
    ),
]


def mknod(path: Path, major: int, minor: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))


def build_stub_library(directory: Path, stem: str) -> None:
    source = directory / f"{stem}.c"
    source.write_text(f"int {stem.replace('-', '_')}_stub(void) {{ return 0; }}\n")
    real = directory / f"{stem}.so.{VERSION}"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            f"-Wl,-soname,{stem}.so.1",
            "-o",
            str(real),
            str(source),
        ],
        check=True,
    )
    source.unlink()
    os.symlink(real.name, directory / f"{stem}.so.1")


def build_host(root: Path, libraries=LIBRARIES, with_nodes=True) -> Path:
    proc = root / "proc/driver/nvidia"
    (proc / "gpus").mkdir(parents=True)
    (proc / "version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  Sat Aug 19 2023\n"
    )
    for bus, minor, uuid in GPUS:
        (proc / "gpus" / bus).mkdir()
        (proc / "gpus" / bus / "information").write_text(
            f"Model: \t\t NVIDIA Fake\nGPU UUID: \t {uuid}\n"
            f"Bus Location: \t {bus}\nDevice Minor: \t {minor}\n"
        )
    if with_nodes:
        for _, minor, _ in GPUS:
            mknod(root / f"dev/nvidia{minor}", 195, minor)
        mknod(root / "dev/nvidiactl", 195, 255)
        mknod(root / "dev/nvidia-uvm", UVM_MAJOR, 0)
        mknod(root / "dev/nvidia-uvm-tools", UVM_MAJOR, 1)
        mknod(root / "dev/nvidia-caps/nvidia-cap1", 508, 1)
    libs = root / LIB_DIR
    libs.mkdir(parents=True)
    for stem in libraries:
        build_stub_library(libs, stem)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld.so.conf").write_text(f"/{LIB_DIR}\n")
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
    (root / "usr/bin").mkdir(parents=True)
    smi = root / "usr/bin/nvidia-smi"
    smi.write_text("#!/bin/sh\necho fake nvidia-smi\n")
    smi.chmod(0o755)
    firmware = root / f"lib/firmware/nvidia/{VERSION}"
    firmware.mkdir(parents=True)
    (firmware / "gsp_ga10x.bin").write_bytes(b"\0" * 16)
    return root


@pytest.fixture
def nvidia_host(tmp_path, monkeypatch) -> Path:
    root = build_host(tmp_path / "host")
    monkeypatch.setenv("MINICTR_GPU_HOST_ROOT", str(root))
    return root


def run_sh(minictr, rootfs, *options: str, script: str):
    return minictr(
        "run",
        "--rm",
        "--network",
        "none",
        *options,
        str(rootfs),
        "/bin/sh",
        "-c",
        script,
    )


LIST_NODES = "for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -e $f ] && stat -c '%n %t %T' $f; done"


def nodes_of(output: str) -> dict[str, str]:
    return {line.split()[0]: " ".join(line.split()[1:]) for line in output.splitlines()}


def test_all_gpus_nodes_and_numbers(minictr, busybox_rootfs, nvidia_host):
    result = run_sh(minictr, busybox_rootfs, "--gpus", "all", script=LIST_NODES)
    assert result.returncode == 0, result.stderr
    nodes = nodes_of(result.stdout)
    assert nodes["/dev/nvidia0"] == "c3 0"  # stat prints hex: 195 is c3
    assert nodes["/dev/nvidia2"] == "c3 2"
    assert nodes["/dev/nvidiactl"] == "c3 ff"
    assert nodes["/dev/nvidia-uvm"] == "1ff 0"
    assert nodes["/dev/nvidia-uvm-tools"] == "1ff 1"
    assert nodes["/dev/nvidia-caps/nvidia-cap1"] == "1fc 1"


def test_select_by_index(minictr, busybox_rootfs, nvidia_host):
    # Index 1 in bus order is the GPU on 0000:3b:00.0, whose minor is 0.
    result = run_sh(minictr, busybox_rootfs, "--gpus", "device=1", script=LIST_NODES)
    assert result.returncode == 0, result.stderr
    nodes = nodes_of(result.stdout)
    assert "/dev/nvidia0" in nodes
    assert "/dev/nvidia2" not in nodes
    assert "/dev/nvidiactl" in nodes


def test_select_by_uuid(minictr, busybox_rootfs, nvidia_host):
    result = run_sh(
        minictr, busybox_rootfs, "--gpus", f"device={GPUS[1][2]}", script=LIST_NODES
    )
    assert result.returncode == 0, result.stderr
    nodes = nodes_of(result.stdout)
    assert "/dev/nvidia2" in nodes
    assert "/dev/nvidia0" not in nodes


def test_no_gpus_option_no_nvidia_node(minictr, busybox_rootfs, nvidia_host):
    result = run_sh(minictr, busybox_rootfs, script="ls /dev; ls /usr/bin")
    assert result.returncode == 0, result.stderr
    assert "nvidia" not in result.stdout


def test_unselected_gpu_denied_selected_allowed(minictr, busybox_rootfs, nvidia_host):
    script = (
        "cat /dev/nvidia0; "  # given: the kernel has no driver for it, so ENXIO
        "mknod /tmp/other c 195 2 && cat /tmp/other"  # not given: EPERM
    )
    result = run_sh(minictr, busybox_rootfs, "--gpus", "device=1", script=script)
    errors = result.stderr.splitlines()
    assert any("/dev/nvidia0': No such device or address" in e for e in errors), (
        result.stderr
    )
    assert any("/tmp/other': Operation not permitted" in e for e in errors), (
        result.stderr
    )


# The busybox rootfs has no multiarch directory, so the libraries go to /usr/lib.
BUSYBOX_LIB_DIR = "/usr/lib"


def test_driver_files_read_only(minictr, busybox_rootfs, nvidia_host):
    lib = f"{BUSYBOX_LIB_DIR}/libcuda.so.{VERSION}"
    script = (
        f"readlink {BUSYBOX_LIB_DIR}/libcuda.so.1;"
        f" readlink {BUSYBOX_LIB_DIR}/libnvidia-ml.so.1;"
        f" nvidia-smi; ls /lib/firmware/nvidia/{VERSION};"
        f" grep -q ' {lib} [^ ]* ro,' /proc/mounts && echo ro;"
        f" echo x >> {lib} || echo write-failed"
    )
    result = run_sh(minictr, busybox_rootfs, "--gpus", "all", script=script)
    lines = result.stdout.splitlines()
    assert lines[0] == f"libcuda.so.{VERSION}"
    assert lines[1] == f"libnvidia-ml.so.{VERSION}"
    assert lines[2] == "fake nvidia-smi"
    assert lines[3] == "gsp_ga10x.bin"
    assert lines[4] == "ro"
    assert lines[5] == "write-failed"
    assert "Read-only file system" in result.stderr


def test_utility_capability_leaves_out_cuda(minictr, busybox_rootfs, nvidia_host):
    script = f"ls {BUSYBOX_LIB_DIR}"
    result = run_sh(
        minictr,
        busybox_rootfs,
        "-e",
        "NVIDIA_DRIVER_CAPABILITIES=utility",
        "--gpus",
        "all",
        script=script,
    )
    assert result.returncode == 0, result.stderr
    assert f"libnvidia-ml.so.{VERSION}" in result.stdout
    assert "libcuda" not in result.stdout


@pytest.fixture
def glibc_like_rootfs(tmp_path, busybox_rootfs) -> Path:
    """The busybox rootfs plus the files of a glibc image's linker setup."""
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / LIB_DIR).mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ld.so.conf.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (rootfs / "etc/ld.so.cache").write_bytes(b"")
    return rootfs


def test_linker_cache_lists_driver(minictr, glibc_like_rootfs, nvidia_host, state_dirs):
    result = minictr(
        "run",
        "--network",
        "none",
        "--gpus",
        "all",
        str(glibc_like_rootfs),
        "cat",
        "/etc/ld.so.conf.d/000-minictr-nvidia.conf",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"/{LIB_DIR}"
    (container,) = (Path(state_dirs["root"]) / "containers").iterdir()
    cache = container / "upper/etc/ld.so.cache"
    listing = subprocess.run(
        ["ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True, check=True
    ).stdout
    assert f"libcuda.so.1 (libc6,x86-64) => /{LIB_DIR}/libcuda.so.1" in listing
    assert (
        f"libnvidia-ml.so.1 (libc6,x86-64) => /{LIB_DIR}/libnvidia-ml.so.1" in listing
    )


def test_inspectable_config_lists_everything(
    minictr, busybox_rootfs, nvidia_host, state_dirs
):
    result = minictr(
        "run", "--network", "none", "--gpus", "device=0", str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    (container,) = (Path(state_dirs["root"]) / "containers").iterdir()
    config = json.loads((container / "config.json").read_text())
    gpu = config["devices"]["gpu"]
    assert [g["uuid"] for g in gpu["gpus"]] == [GPUS[1][2]]
    assert {n["path"] for n in gpu["nodes"]} >= {"/dev/nvidia2", "/dev/nvidiactl"}
    assert any(f.get("soname") == "libcuda.so.1" for f in gpu["files"])
    rules = config["devices"]["rules"]
    assert {
        "type": "c",
        "major": 195,
        "minor": 2,
        "access": "rwm",
        "allow": True,
    } in rules


def test_host_without_driver(
    minictr, busybox_rootfs, tmp_path, monkeypatch, state_dirs
):
    empty = tmp_path / "empty-host"
    empty.mkdir()
    monkeypatch.setenv("MINICTR_GPU_HOST_ROOT", str(empty))
    result = minictr(
        "run", "--rm", "--network", "none", "--gpus", "all", str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert "proc/driver/nvidia/version is missing" in result.stderr
    containers = Path(state_dirs["root"]) / "containers"
    assert not containers.exists() or not list(containers.iterdir())


def test_host_without_libcuda(minictr, busybox_rootfs, tmp_path, monkeypatch):
    root = build_host(tmp_path / "host", libraries=("libnvidia-ml",))
    monkeypatch.setenv("MINICTR_GPU_HOST_ROOT", str(root))
    result = minictr(
        "run", "--rm", "--network", "none", "--gpus", "all", str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert "libcuda.so is not in the linker cache" in result.stderr


def test_host_without_nodes(minictr, busybox_rootfs, tmp_path, monkeypatch):
    root = build_host(tmp_path / "host", with_nodes=False)
    monkeypatch.setenv("MINICTR_GPU_HOST_ROOT", str(root))
    result = minictr(
        "run", "--rm", "--network", "none", "--gpus", "all", str(busybox_rootfs), "true"
    )
    assert result.returncode == 125
    assert "has no device node" in result.stderr


def test_unknown_gpu_index(minictr, busybox_rootfs, nvidia_host):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "--gpus",
        "device=5",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "device=5" in result.stderr
