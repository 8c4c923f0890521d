#!/bin/bash
# Run one command inside a throw-away qemu VM whose kernel has pure cgroup v2.
#
#   scripts/vm.sh --setup      install qemu and busybox, fetch the kernel, build the initramfs
#   scripts/vm.sh 'COMMAND'    boot, run COMMAND with bash in the current directory, power off
#
# The guest boots Debian 12's stock kernel with cgroup_no_v1=all and mounts
# cgroup2 on /sys/fs/cgroup with the cpu, cpuset, io, memory and pids
# controllers enabled at the root. It sees the host's whole file system: "/"
# is shared read-only over 9p with a tmpfs overlay on top, so writes vanish
# at power-off. /run, /var/lib/minictr, /tmp and /var/tmp are fresh tmpfs
# mounts (overlayfs refuses an upper directory on an overlay or on 9p), except
# that /tmp or /var/tmp stays the host's when the current directory is below
# it, and TMPDIR then points at the other. The exported environment comes
# along, except that MINICTR_ROOT is set to /var/lib/minictr. COMMAND's
# stdout and stderr arrive merged on this script's stdout, and the script
# exits with COMMAND's status: 124 on timeout, 255 if the VM failed first.
#
# Environment:
#   VM_CACHE    kernel, modules and initramfs (default: REPO/.vm-cache)
#   VM_TIMEOUT  seconds before the VM is killed; 0 means never (default: 0)
#   VM_MEMORY   guest memory (default: 2G)
#   VM_CPUS     guest CPUs (default: the host's, at most 4)
#   VM_ACCEL    tcg or kvm (default: tcg; see below)
#   VM_DEBUG    1 to print the guest's kernel log after the run
#
# Software emulation (TCG) is the default because /dev/kvm on nested cloud
# hosts often belongs to a paravirtual hypervisor that cannot boot a stock
# kernel. Under TCG everything runs 15 to 20 times slower than on the host.
set -euo pipefail

script=$(readlink -f "$0")
repo=$(dirname "$(dirname "$script")")
VM_CACHE=${VM_CACHE:-$repo/.vm-cache}
VM_TIMEOUT=${VM_TIMEOUT:-0}
VM_MEMORY=${VM_MEMORY:-2G}
host_cpus=$(nproc)
VM_CPUS=${VM_CPUS:-$((host_cpus < 4 ? host_cpus : 4))}
VM_ACCEL=${VM_ACCEL:-tcg}
VM_DEBUG=${VM_DEBUG:-0}

# Loaded by the initramfs, in this order, before the root can be mounted.
BOOT_MODULES="virtio_mmio virtio_console 9pnet_virtio 9p overlay"

fail() {
    echo "vm.sh: $*" >&2
    exit 255
}

# ------------------------------------------------------------------ setup

install_tools() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v xz >/dev/null || missing+=(xz-utils)
    # The initramfs needs a statically linked busybox: it runs before any
    # library is reachable.
    [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic"* ]] || missing+=(busybox-static)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "vm.sh: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Unpack the newest Debian 12 kernel package into the cache without installing it.
fetch_kernel() {
    local package version dir
    package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$package" ] || fail "apt-cache cannot resolve linux-image-amd64; run apt-get update"
    version=${package#linux-image-}
    dir=$VM_CACHE/$version
    if [ ! -f "$dir/unpacked" ]; then
        echo "vm.sh: downloading $package" >&2
        rm -rf "$dir"
        mkdir -p "$dir/download"
        (cd "$dir/download" && apt-get download -qq "$package") || fail "apt-get download $package failed"
        dpkg-deb -x "$dir"/download/*.deb "$dir/root"
        rm -rf "$dir/download"
        # The package's postinst would run depmod; without modules.dep neither
        # the initramfs nor the guest's modprobe can find a module.
        /bin/busybox depmod -b "$dir/root" "$version"
        touch "$dir/unpacked"
    fi
    if [ ! -f "$dir/vmlinux" ]; then
        # qemu boots an uncompressed ELF kernel through its PVH entry point,
        # which skips about 2 s of XZ decompression under emulation.
        decompress_kernel "$dir/root/boot/vmlinuz-$version" "$dir/vmlinux.partial" &&
            mv "$dir/vmlinux.partial" "$dir/vmlinux" || rm -f "$dir/vmlinux.partial"
    fi
    ln -sfn "$version" "$VM_CACHE/kernel"
}

decompress_kernel() { # bzImage ELF-output
    local offset
    offset=$(LC_ALL=C grep -abo $'\xfd7zXZ' "$1" | head -n 1 | cut -d: -f1)
    [ -n "$offset" ] || return 1
    tail -c "+$((offset + 1))" "$1" | { xz -dc --single-stream 2>/dev/null || true; } >"$2"
    [ "$(head -c 4 "$2" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]
}

# Print the paths (below the modules directory) of the named modules and of
# everything they depend on, each once, dependencies first.
module_paths() { # modules-dir module...
    local dir=$1 name path
    shift
    declare -A printed=()
    add_module() {
        local line dependency
        [ -n "${printed[$1]:-}" ] && return
        line=$(grep -m 1 "^$1:" "$dir/modules.dep") || fail "$1 is not in modules.dep"
        for dependency in ${line#*:}; do add_module "$dependency"; done
        printed[$1]=1
        echo "$1"
    }
    for name in "$@"; do
        path=$(grep -m 1 -E "(^|/)$name\.ko(\.[a-z]+)?:" "$dir/modules.dep" | cut -d: -f1) ||
            fail "module $name is not in $dir/modules.dep"
        add_module "$path"
    done
}

build_initramfs() {
    local dir version modules work path
    dir=$(readlink -f "$VM_CACHE/kernel")
    version=$(basename "$dir")
    modules=$dir/root/lib/modules/$version
    work=$(mktemp -d)
    mkdir -p "$work"/{bin,modules,proc,sys,dev,host,overlay,newroot}
    cp /bin/busybox "$work/bin/busybox"
    for path in $(module_paths "$modules" $BOOT_MODULES); do
        cp "$modules/$path" "$work/modules/"
        basename "$path" >>"$work/modules/order"
    done
    write_init >"$work/init"
    write_guest_run >"$work/guest-run"
    chmod +x "$work/init"
    (cd "$work" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) >"$dir/initramfs.partial"
    mv "$dir/initramfs.partial" "$dir/initramfs.cpio"
    script_hash >"$dir/initramfs.hash"
    rm -rf "$work"
}

script_hash() { sha256sum "$script" | cut -c1-16; }

# PID 1 in the initramfs: assemble the root and the guest's mounts, then switch.
write_init() {
    cat <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "vm.sh guest: $*" >/dev/ttyS0; reboot -f; }
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do insmod "/modules/$module" 2>/dev/null; done </modules/order

mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose host /host ||
    die "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755 overlay-rw /overlay
mkdir /overlay/upper /overlay/work
mount -t overlay -o lowerdir=/host,upperdir=/overlay/upper,workdir=/overlay/work root /newroot ||
    die "cannot mount the overlay root"

R=/newroot
mount -t tmpfs -o mode=0755,nosuid,nodev run $R/run
mkdir -p $R/run/vm/control
cp /bin/busybox /guest-run $R/run/vm/
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 control $R/run/vm/control ||
    die "cannot mount the control directory"
# Scratch space on tmpfs, because an overlayfs upper directory cannot live on
# the overlay root. A fresh /tmp would hide a checkout that lives under /tmp,
# so each of /tmp and /var/tmp stays the host's when the command runs below it.
. $R/run/vm/control/settings
case "$WORKDIR/" in /tmp/*) ;; *) mount -t tmpfs -o mode=1777,nosuid,nodev tmp $R/tmp ;; esac
case "$WORKDIR/" in /var/tmp/*) ;; *) mount -t tmpfs -o mode=1777,nosuid,nodev var-tmp $R/var/tmp ;; esac
mkdir -p $R/var/lib/minictr
mount -t tmpfs -o mode=0711 minictr-state $R/var/lib/minictr
mount --move /dev $R/dev
mount --move /sys $R/sys
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o nosuid,nodev shm $R/dev/shm

# Pure cgroup v2, with the controllers a container runtime uses enabled at the root.
mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || die "cannot mount cgroup2"
echo "+cpu +cpuset +io +memory +pids" >$R/sys/fs/cgroup/cgroup.subtree_control

# The guest kernel's modules, for modprobe on demand (veth, bridge, ...).
. $R/run/vm/control/settings
mkdir -p "$R/lib/modules/$(uname -r)"
mount --bind "$R$MODULES" "$R/lib/modules/$(uname -r)"
mkdir -p $R/run/vm/bin
ln -s ../busybox $R/run/vm/bin/modprobe
echo /run/vm/bin/modprobe >/proc/sys/kernel/modprobe

mount --move /proc $R/proc
exec switch_root $R /run/vm/busybox sh /run/vm/guest-run
EOF
}

# PID 1 on the real root: run the command, record its status, power off.
write_guest_run() {
    cat <<'EOF'
B=/run/vm/busybox
C=/run/vm/control
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. $C/settings
$B hostname minictr-vm
$B ip link set lo up
$B stty -F /dev/hvc0 raw -echo 2>/dev/null
echo booted >$C/booted
cd "$WORKDIR" || cd /
# The pipe makes the command's stdout a pipe, as on the host, not a terminal.
set -o pipefail
/bin/bash -c '. /run/vm/control/environment; eval "$(cat /run/vm/control/command)"' \
    </dev/null 2>&1 | $B cat >/dev/hvc0
echo $? >$C/status
$B sync
$B reboot -f
EOF
}

setup() {
    mkdir -p "$VM_CACHE"
    exec 9>"$VM_CACHE/lock"
    flock 9
    install_tools
    fetch_kernel
    build_initramfs
    flock -u 9
}

# -------------------------------------------------------------------- run

if [ "${1:-}" = --setup ]; then
    setup
    exit 0
fi
if [ $# -ne 1 ] || [ "${1:0:1}" = - ]; then
    sed -n '2,6p' "$script" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
case "$PWD/" in
/run/*) fail "run from a directory outside /run: the guest mounts an empty tmpfs there" ;;
esac
kernel_dir=$(readlink -f "$VM_CACHE/kernel" 2>/dev/null || true)
if [ -z "$kernel_dir" ] || [ ! -f "$kernel_dir/initramfs.cpio" ] ||
    [ "$(cat "$kernel_dir/initramfs.hash")" != "$(script_hash)" ] ||
    ! command -v qemu-system-x86_64 >/dev/null; then
    setup
    kernel_dir=$(readlink -f "$VM_CACHE/kernel")
fi
version=$(basename "$kernel_dir")
kernel=$kernel_dir/vmlinux
[ -f "$kernel" ] || kernel=$kernel_dir/root/boot/vmlinuz-$version

control=$(mktemp -d "${TMPDIR:-/tmp}/minictr-vm.XXXXXX")
qemu_pid=
cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
    rm -rf "$control"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '%s\n' "$1" >"$control/command"
{
    export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_|HOSTNAME|TMPDIR|MINICTR_ROOT)='
    echo "export MINICTR_ROOT=/var/lib/minictr"
    case "$PWD/" in
    /tmp/*) echo "export TMPDIR=/var/tmp" ;;
    /var/tmp/*) echo "export TMPDIR=/tmp" ;;
    esac
} >"$control/environment"
{
    printf 'WORKDIR=%q\n' "$PWD"
    printf 'MODULES=%q\n' "$kernel_dir/root/lib/modules/$version"
} >"$control/settings"

append="console=ttyS0 rdinit=/init panic=-1 reboot=t quiet loglevel=4 cgroup_no_v1=all"
append+=" systemd.unified_cgroup_hierarchy=1 pci=off nokaslr mitigations=off"
append+=" random.trust_cpu=on i8042.noaux i8042.nokbd i8042.nopnp"
case $VM_ACCEL in
tcg)
    accel=(-accel tcg,thread=multi -cpu max)
    # The emulated TSC ticks at the host's rate. Calibrating it against the
    # emulated PIT fails at random under TCG and then hangs the boot of a
    # microvm (which has no HPET), so the command line gives the kernel the rate.
    khz=$(awk '/^cpu MHz/ {printf "%d", $4 * 1000; exit}' /proc/cpuinfo)
    [ -n "$khz" ] && append+=" tsc_early_khz=$khz tsc=reliable no_timer_check"
    ;;
kvm) accel=(-accel kvm -cpu host) ;;
*) fail "VM_ACCEL must be tcg or kvm, not $VM_ACCEL" ;;
esac

timeout_command=()
[ "$VM_TIMEOUT" != 0 ] && timeout_command=(timeout --foreground -k 5 "$VM_TIMEOUT")

set +e
# pit=on: the kernel needs a timer during early boot; reboot=t with
# -no-reboot makes the guest's reboot end qemu.
"${timeout_command[@]}" qemu-system-x86_64 "${accel[@]}" \
    -M microvm,pit=on,pic=on,rtc=on -m "$VM_MEMORY" -smp "$VM_CPUS" \
    -nodefaults -no-user-config -nographic -no-reboot \
    -kernel "$kernel" -initrd "$kernel_dir/initramfs.cpio" -append "$append" \
    -serial "file:$control/console.log" \
    -device virtio-serial-device -chardev stdio,id=out,signal=off -device virtconsole,chardev=out \
    -fsdev local,id=host,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-device,fsdev=host,mount_tag=host \
    -fsdev "local,id=control,path=$control,security_model=none,multidevs=remap" \
    -device virtio-9p-device,fsdev=control,mount_tag=control \
    </dev/null &
qemu_pid=$!
wait "$qemu_pid"
qemu_status=$?
qemu_pid=
set -e

if [ -f "$control/status" ]; then
    status=$(cat "$control/status")
elif [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
    echo "vm.sh: timed out after ${VM_TIMEOUT} s (VM_TIMEOUT)" >&2
    status=124
else
    echo "vm.sh: the VM stopped before the command finished (qemu exit status $qemu_status)" >&2
    status=255
fi
if [ "$status" = 124 ] || [ "$status" = 255 ] || [ "$VM_DEBUG" = 1 ]; then
    [ -f "$control/booted" ] || echo "vm.sh: the guest did not finish booting" >&2
    echo "---- guest kernel log (last 40 lines) ----" >&2
    tail -n 40 "$control/console.log" >&2
fi
exit "$status"
