"""NVIDIA GPU requests, discovery from /proc/driver/nvidia, and the mount plan."""

from __future__ import annotations

import pytest

from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.devices import gpu, plan
from minicontainer.errors import InvalidArgument
from minicontainer.steps import Mount, Symlink

INFORMATION = """Model: \t\t NVIDIA H100 80GB HBM3
IRQ:   \t\t 0
GPU UUID: \t GPU-{uuid}
Video BIOS: \t 96.00.74.00.01
Bus Type: \t PCIe
DMA Size: \t 52 bits
DMA Mask: \t 0xfffffffffffff
Bus Location: \t {bus}
Device Minor: \t {minor}
GPU Excluded:\t No
"""

VERSION = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)


def fake_proc(root, gpus):
    """Write /proc/driver/nvidia under ``root`` for (bus, minor, uuid) triples."""
    base = root / "proc" / "driver" / "nvidia"
    (base / "gpus").mkdir(parents=True)
    (base / "version").write_text(VERSION)
    for bus, minor, uuid in gpus:
        (base / "gpus" / bus).mkdir()
        (base / "gpus" / bus / "information").write_text(
            INFORMATION.format(bus=bus, minor=minor, uuid=uuid)
        )


def request(value):
    return gpu.parse_request(value)


# ------------------------------------------------------------------ --gpus


@pytest.mark.parametrize(
    ("value", "count", "devices", "capabilities"),
    [
        ("all", None, None, None),
        ("2", 2, None, None),
        ("count=1", 1, None, None),
        ('"device=0,2"', None, ["0", "2"], None),
        ("device=GPU-3a1c", None, ["GPU-3a1c"], None),
        ("all,capabilities=utility", None, None, ["utility"]),
        ('"capabilities=compute,video",device=1', None, ["1"], ["compute", "video"]),
    ],
)
def test_parse_request(value, count, devices, capabilities):
    parsed = request(value)
    assert parsed["count"] == count
    assert parsed["devices"] == devices
    assert parsed["capabilities"] == capabilities


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "-1",
        "devices=0",
        "gpu",
        "capabilities=compute",
        "2,device=0",
        "all,capabilities=ray",
    ],
)
def test_parse_request_rejects(value):
    with pytest.raises(InvalidArgument, match="--gpus|capabilities"):
        request(value)


def test_capabilities_from_gpus_option_win_over_env():
    config = {"capabilities": ["utility"]}
    assert gpu.capabilities_for(config, ["NVIDIA_DRIVER_CAPABILITIES=all"]) == [
        "utility"
    ]


def test_capabilities_from_image_env():
    env = ["PATH=/bin", "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"]
    assert gpu.capabilities_for({"capabilities": None}, env) == [
        "compute",
        "utility",
        "video",
    ]


def test_capabilities_default():
    assert gpu.capabilities_for({"capabilities": None}, []) == ["compute", "utility"]


def test_capabilities_all():
    assert gpu.parse_capabilities("all", "x") == list(gpu.CAPABILITIES)


# ------------------------------------------------------------------ discovery


def test_driver_version(tmp_path):
    fake_proc(tmp_path, [])
    assert gpu.driver_version(str(tmp_path)) == "535.104.05"


def test_open_kernel_module_version(tmp_path):
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build\n"
    )
    assert gpu.driver_version(str(tmp_path)) == "550.54.14"


def test_missing_driver_names_the_file(tmp_path):
    with pytest.raises(
        gpu.DriverMissing, match="proc/driver/nvidia/version is missing"
    ):
        gpu.driver_version(str(tmp_path))


def test_gpus_numbered_in_bus_order(tmp_path):
    fake_proc(tmp_path, [("0000:3b:00.0", 0, "bbbb"), ("0000:1a:00.0", 2, "aaaa")])
    gpus = gpu.list_gpus(str(tmp_path))
    assert [(g.index, g.minor, g.uuid) for g in gpus] == [
        (0, 2, "GPU-aaaa"),
        (1, 0, "GPU-bbbb"),
    ]
    assert gpus[0].model == "NVIDIA H100 80GB HBM3"


@pytest.fixture
def two_gpus(tmp_path):
    fake_proc(
        tmp_path, [("0000:1a:00.0", 2, "aaaa-1111"), ("0000:3b:00.0", 0, "bbbb-2222")]
    )
    return gpu.list_gpus(str(tmp_path))


def test_select_by_index(two_gpus):
    assert [g.minor for g in gpu.select(two_gpus, request("device=1"))] == [0]


def test_select_by_uuid_and_prefix(two_gpus):
    assert [g.index for g in gpu.select(two_gpus, request("device=GPU-aaaa-1111"))] == [
        0
    ]
    assert [g.index for g in gpu.select(two_gpus, request("device=GPU-bbbb"))] == [1]


def test_select_count_and_all(two_gpus):
    assert [g.index for g in gpu.select(two_gpus, request("1"))] == [0]
    assert [g.index for g in gpu.select(two_gpus, request("all"))] == [0, 1]


def test_select_unknown_lists_known(two_gpus):
    with pytest.raises(InvalidArgument, match="device=7.*GPU-aaaa-1111"):
        gpu.select(two_gpus, request("device=7"))


def test_select_too_many(two_gpus):
    with pytest.raises(InvalidArgument, match="only 2 GPU"):
        gpu.select(two_gpus, request("3"))


def test_select_without_gpus():
    with pytest.raises(gpu.DriverMissing, match="lists no GPU"):
        gpu.select([], request("all"))


LDCONFIG_OUTPUT = """4 libs found in cache `/etc/ld.so.cache'
\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1
\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6
"""


def test_parse_linker_cache():
    entries = gpu.parse_linker_cache(LDCONFIG_OUTPUT)
    assert entries[1] == (
        "libcuda.so.1",
        "libc6,x86-64",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
    )
    assert len(entries) == 4


def test_required_library_missing_names_it():
    config = {
        "host_root": "/fake",
        "files": [
            {"kind": "library", "capability": "utility", "soname": "libnvidia-ml.so.1"}
        ],
    }
    assert len(gpu.files_for(config, ["utility"])) == 1
    with pytest.raises(
        gpu.DriverMissing, match="libcuda.so is not in the linker cache"
    ):
        gpu.files_for(config, ["compute", "utility"])


# ------------------------------------------------------------------ plan


def gpu_config():
    return {
        "capabilities": None,
        "host_root": "/",
        "nodes": [],
        "files": [
            {
                "kind": "library",
                "capability": "compute",
                "source": "/h/libcuda.so.535.1",
                "name": "libcuda.so.535.1",
                "soname": "libcuda.so.1",
            },
            {
                "kind": "library",
                "capability": "utility",
                "source": "/h/libnvidia-ml.so.535.1",
                "name": "libnvidia-ml.so.535.1",
                "soname": "libnvidia-ml.so.1",
            },
            {
                "kind": "library",
                "capability": "video",
                "source": "/h/libnvcuvid.so.535.1",
                "name": "libnvcuvid.so.535.1",
                "soname": "libnvcuvid.so.1",
            },
            {
                "kind": "binary",
                "capability": "utility",
                "source": "/h/nvidia-smi",
                "target": "/usr/bin/nvidia-smi",
            },
        ],
    }


def container(tmp_path, env=()):
    lower = tmp_path / "lower"
    (lower / "usr/lib64").mkdir(parents=True)
    return ContainerConfig(
        id="c" * 64,
        name="n",
        process=ProcessConfig(args=["sh"], env=list(env)),
        lower_dirs=[str(lower)],
    )


def test_library_dir_prefers_multiarch(tmp_path):
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib64").mkdir(parents=True)
    if plan._MULTIARCH.get(__import__("os").uname().machine) != "x86_64-linux-gnu":
        pytest.skip("the multiarch name checked here is x86-64's")
    assert plan.library_dir([str(tmp_path)]) == "/usr/lib/x86_64-linux-gnu"


def test_library_dir_fallback(tmp_path):
    assert plan.library_dir([str(tmp_path)]) == "/usr/lib"


def test_driver_steps_read_only_with_soname_links(tmp_path):
    steps = plan.driver_steps(container(tmp_path), gpu_config(), "/m")
    mounts = [s for s in steps if isinstance(s, Mount)]
    targets = {s.target for s in mounts}
    assert "/usr/lib64/libcuda.so.535.1" in targets
    assert "/usr/bin/nvidia-smi" in targets
    assert "/usr/lib64/libnvcuvid.so.535.1" not in targets  # video not requested
    for target in targets:
        flags = [s.flags for s in mounts if s.target == target]
        assert any(f & 1 for f in flags), f"{target} is not remounted read-only"
    links = {(s.path, s.target) for s in steps if isinstance(s, Symlink)}
    assert ("/usr/lib64/libcuda.so.1", "libcuda.so.535.1") in links
    assert ("/usr/lib64/libcuda.so", "libcuda.so.1") in links


def test_driver_steps_follow_image_capabilities(tmp_path):
    config = container(tmp_path, env=["NVIDIA_DRIVER_CAPABILITIES=utility"])
    steps = plan.driver_steps(config, gpu_config(), "/m")
    targets = {s.target for s in steps if isinstance(s, Mount)}
    assert "/usr/lib64/libnvidia-ml.so.535.1" in targets
    assert "/usr/lib64/libcuda.so.535.1" not in targets


def test_no_gpu_no_nvidia_steps(tmp_path):
    steps = plan.node_steps(container(tmp_path), "/m")
    assert steps == []
