#!/bin/sh
# Check --gpus on a real NVIDIA host: nvidia-smi and a CUDA device query
# inside a container whose root is a plain Debian system without the driver.
#
#   sudo scripts/check-nvidia-host.sh            build the rootfs if needed, then check
#   ROOTFS=/path sudo scripts/check-nvidia-host.sh   use an existing glibc rootfs with python3
#
# The root file system is built once with debootstrap (Debian 12, minbase
# variant, plus python3) under /var/tmp/minictr-nvidia-rootfs. It holds no
# NVIDIA file, so everything the checks use from the driver must come from
# `minictr run --gpus`. The CUDA check calls the driver API (libcuda.so.1)
# through Python's ctypes: cuInit, the device count, each device's name,
# memory and compute capability, and a 1 MiB allocation in a context, which
# needs /dev/nvidia-uvm. It prints PASS or FAIL per check and exits 1 if any
# check failed.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${ROOTFS:-/var/tmp/minictr-nvidia-rootfs}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MINICTR=${MINICTR:-$here/.venv/bin/minictr}
state=$(mktemp -d /tmp/minictr-nvidia-check.XXXXXX)
trap 'rm -rf "$state"' EXIT
export MINICTR_ROOT="$state/root" MINICTR_RUN="$state/run"
failures=0

fail() { echo "check-nvidia-host: $*" >&2; exit 2; }
pass() { echo "PASS $1"; }
failed() { echo "FAIL $1"; failures=$((failures + 1)); }

[ "$(id -u)" = 0 ] || fail "run as root"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: install the NVIDIA driver first"
[ -r /proc/driver/nvidia/version ] || fail "the NVIDIA kernel module is not loaded (modprobe nvidia)"
[ -x "$MINICTR" ] || fail "$MINICTR not found: run 'make venv' first"

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null ||
        fail "debootstrap not found: apt-get install debootstrap (or set ROOTFS)"
    echo "check-nvidia-host: building $ROOTFS with debootstrap ($SUITE)"
    debootstrap --variant=minbase --include=python3 "$SUITE" "$ROOTFS.tmp" "$MIRROR"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
if ls "$ROOTFS"/usr/lib/*/libcuda.so* >/dev/null 2>&1; then
    fail "$ROOTFS already contains libcuda: use a root file system without the driver"
fi

run() { "$MINICTR" run --rm "$@"; }

# 1. nvidia-smi inside lists the same GPUs as on the host.
host_list=$(nvidia-smi -L)
if inside_list=$(run --gpus all "$ROOTFS" nvidia-smi -L) && [ "$inside_list" = "$host_list" ]; then
    pass "nvidia-smi -L inside matches the host ($(echo "$host_list" | wc -l) GPUs)"
else
    failed "nvidia-smi -L inside: '$inside_list', on the host: '$host_list'"
fi

# 2. CUDA device query through the driver API.
query='
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
def check(result, call):
    if result != 0:
        sys.exit(f"{call} failed with CUresult {result}")
check(cuda.cuInit(0), "cuInit")
count = ctypes.c_int()
check(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
for index in range(count.value):
    device = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    check(cuda.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
    memory = ctypes.c_size_t()
    check(cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device), "cuDeviceTotalMem")
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device), "major")
    check(cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device), "minor")
    print(f"device {index}: {name.value.decode()}, {memory.value >> 20} MiB,"
          f" compute capability {major.value}.{minor.value}")
context, pointer = ctypes.c_void_p(), ctypes.c_uint64()
check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, 0), "cuCtxCreate")
check(cuda.cuMemAlloc_v2(ctypes.byref(pointer), 1 << 20), "cuMemAlloc")
check(cuda.cuMemFree_v2(pointer), "cuMemFree")
print(f"devices: {count.value}")
'
if output=$(run --gpus all "$ROOTFS" python3 -c "$query"); then
    echo "$output"
    pass "CUDA device query and a 1 MiB allocation inside the container"
else
    failed "CUDA device query: $output"
fi

# 3. One GPU selected by index: the container sees exactly one.
if count=$(run --gpus device=0 "$ROOTFS" nvidia-smi -L | wc -l) && [ "$count" = 1 ]; then
    pass "--gpus device=0 gives one GPU"
else
    failed "--gpus device=0 gives $count GPUs"
fi

# 4. Without --gpus there is no NVIDIA node and the device rules deny one
#    made with mknod.
if run "$ROOTFS" sh -c 'ls /dev/nvidia* 2>/dev/null' | grep -q nvidia; then
    failed "a container without --gpus has NVIDIA nodes"
else
    pass "no NVIDIA node without --gpus"
fi
if run "$ROOTFS" sh -c 'mknod /tmp/gpu c 195 0 && head -c 1 /tmp/gpu' 2>&1 |
    grep -q "Operation not permitted"; then
    pass "the device rules deny /dev/nvidia0 made with mknod"
else
    failed "a GPU node made with mknod could be opened without --gpus"
fi

[ "$failures" = 0 ] || { echo "check-nvidia-host: $failures check(s) failed"; exit 1; }
echo "check-nvidia-host: all checks passed"
