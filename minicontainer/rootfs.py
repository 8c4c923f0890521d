"""The container's root file system: overlayfs, /proc, /dev, /sys, pivot_root.

A container never writes to its image or ROOTFS directory. overlayfs stacks
the read-only lower directories (the rootfs, or an image's layers, top layer
first) under a per-container upper directory: reads fall through to the
lowers, writes copy the file up first, and deletions leave whiteouts in the
upper directory. The merged view is mounted inside the container's own mount
namespace, so the host's mount table never shows it, and a crash cannot leave
it mounted.

After the file systems the kernel expects are mounted into the merged tree,
``pivot_root`` makes it the root of the mount namespace and the host's root
is detached, so no path inside the container leads back to the host.
"""

from __future__ import annotations

import os

from . import syscalls as sc
from .config import ContainerConfig
from .errors import InvalidArgument
from .steps import MakeDir, MakeNode, Mount, PivotRoot, SetHostname, Step, Symlink

# The device nodes every container gets, as Docker and runc create them.
DEFAULT_DEVICES = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
]

DEV_LINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
]

# The maximum number of lower directories in one overlayfs mount
# (OVL_MAX_STACK in the kernel's fs/overlayfs).
MAX_LOWER_LAYERS = 500

# The directory of a container that contains the short names of its lower
# directories, from which the overlay is mounted.
LOWER_LINKS = "lower"

# /etc files generated per container and bind-mounted over the image's.
ETC_FILES = ("hostname", "hosts", "resolv.conf")


def escape_overlay_path(path: str) -> str:
    r"""Escape ``\``, ``,`` and ``:``, which overlayfs options treat as syntax."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def overlay_options(lower_dirs: list[str], upper: str | None, work: str | None) -> str:
    """Return overlayfs mount data; upper and work may be None for a read-only stack."""
    lower = ":".join(escape_overlay_path(d) for d in lower_dirs)
    if upper is None or work is None:
        return f"lowerdir={lower}"
    return (
        f"lowerdir={lower},upperdir={escape_overlay_path(upper)},"
        f"workdir={escape_overlay_path(work)}"
    )


def lower_link_steps(
    lower_dirs: list[str], link_dir: str
) -> tuple[list[Step], list[str]]:
    """Return the steps that give each lower directory a short name, and the names.

    mount(2) copies at most one page (4096 bytes) of option text, so a few
    dozen layers with full paths do not fit. Each lower directory becomes a
    symbolic link ``link_dir/N``, and the overlay is mounted from
    ``link_dir`` with the relative names. A lower directory that already is
    ``link_dir/N`` (an id-mapped layer's mount point) keeps its place.
    """
    if len(lower_dirs) > MAX_LOWER_LAYERS:
        raise InvalidArgument(
            f"the image has {len(lower_dirs)} layers, more than the"
            f" {MAX_LOWER_LAYERS} that overlayfs can stack: use an image with fewer"
            " layers (combine RUN steps, or 'minictr import' a flattened root"
            " file system)"
        )
    steps: list[Step] = [MakeDir(link_dir, 0o700)]
    names = []
    for index, lower in enumerate(lower_dirs):
        path = os.path.join(link_dir, str(index))
        if lower != path:
            steps.append(Symlink(lower, path))
        names.append(str(index))
    return steps, names


def link_lower_dirs(lower_dirs: list[str], link_dir: str) -> list[str]:
    """Make the short names of ``lower_dirs`` in ``link_dir`` now; return them."""
    steps, names = lower_link_steps(lower_dirs, link_dir)
    for step in steps:
        step.apply()
    return names


def root_steps(
    config: ContainerConfig,
    container_dir: str,
    console: str | None = None,
    layer_steps: list[Step] | None = None,
) -> list[Step]:
    """Return the mounts that build the container's root, up to pivot_root.

    ``console`` is the host path of the pseudo-terminal given to the
    container, bind-mounted on ``/dev/console`` as runc does.
    ``layer_steps`` attach id-mapped layers in ``lower/`` before the overlay.
    """
    merged = os.path.join(container_dir, "merged")
    link_dir = os.path.join(container_dir, LOWER_LINKS)
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC

    steps, names = lower_link_steps(config.lower_dirs, link_dir)
    steps[1:1] = layer_steps or []  # after the mkdir of lower/
    steps += [
        Mount(
            "overlay",
            merged,
            "overlay",
            0,
            overlay_options(names, "../upper", "../work"),
            cwd=link_dir,
        ),
        Mount("proc", "/proc", "proc", nosuid_nodev_noexec, root=merged),
        Mount(
            "tmpfs",
            "/dev",
            "tmpfs",
            sc.MS_NOSUID | sc.MS_STRICTATIME,
            "mode=755,size=65536k",
            root=merged,
        ),
    ]
    for path, major, minor in DEFAULT_DEVICES:
        steps.append(MakeNode(path, "c", major, minor, 0o666, root=merged))
    steps += [
        Mount(
            "devpts",
            "/dev/pts",
            "devpts",
            sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
            root=merged,
        ),
        Mount(
            "shm",
            "/dev/shm",
            "tmpfs",
            nosuid_nodev_noexec,
            "mode=1777,size=65536k",
            root=merged,
        ),
        Mount("mqueue", "/dev/mqueue", "mqueue", nosuid_nodev_noexec, root=merged),
    ]
    for target, path in DEV_LINKS:
        steps.append(Symlink(target, path, root=merged))
    if console:
        steps.append(
            Mount(console, "/dev/console", None, sc.MS_BIND, root=merged, make="file")
        )
    steps.append(
        Mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec | sc.MS_RDONLY, root=merged)
    )
    return steps


def etc_steps(config: ContainerConfig, container_dir: str) -> list[Step]:
    """Bind the generated /etc/hostname, hosts and resolv.conf into the root.

    A file the user mounts at the same path wins, as in Docker.
    """
    merged = os.path.join(container_dir, "merged")
    user_targets = {
        os.path.normpath(str(m.get("Destination", ""))) for m in config.mounts
    }
    steps: list[Step] = []
    for name in ETC_FILES:
        source = os.path.join(container_dir, name)
        target = f"/etc/{name}"
        if os.path.exists(source) and target not in user_targets:
            steps.append(
                Mount(source, target, None, sc.MS_BIND, root=merged, make="file")
            )
    return steps


def container_root_owner(config: ContainerConfig) -> tuple[int, int] | None:
    """Return the host uid and gid of the container's root under --userns, or None.

    Directories that minictr creates for the container (the working
    directory, volumes, tmpfs mounts) get this owner, so that root inside
    can write to them.
    """
    userns = config.security.get("userns")
    if not userns:
        return None
    from .security.userns import map_id

    return map_id(0, userns["uid_map"]), map_id(0, userns["gid_map"])


def pivot_steps(config: ContainerConfig, container_dir: str) -> list[Step]:
    """Return the steps from pivot_root to a finished root (read-only, hostname)."""
    merged = os.path.join(container_dir, "merged")
    steps: list[Step] = []
    if config.process.cwd not in ("", "/"):
        # Created before pivot_root so that it exists under --read-only too;
        # resolved inside the root like every other container path.
        steps.append(
            MakeDir(
                config.process.cwd,
                0o755,
                root=merged,
                what="working directory",
                owner=container_root_owner(config),
            )
        )
    steps.append(PivotRoot(merged))
    if config.readonly_rootfs:
        steps.append(Mount(None, "/", None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY))
    if "uts" in config.namespaces and config.hostname:
        steps.append(SetHostname(config.hostname))
    return steps


def etc_file_contents(config: ContainerConfig) -> dict[str, str]:
    """Return /etc/hostname, /etc/hosts and /etc/resolv.conf for ``none`` mode."""
    hostname = config.hostname
    hosts = (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"127.0.1.1\t{hostname}\n"
    )
    # With only loopback there is no reachable name server.
    return {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": ""}
