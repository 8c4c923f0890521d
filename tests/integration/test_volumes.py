"""Volumes and mounts on a real kernel: binds, named volumes, tmpfs, symlinks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support import mount_table

EROFS_MESSAGE = "Read-only file system"


@pytest.fixture(autouse=True)
def no_mounts_left_on_host():
    before = mount_table()
    yield
    assert mount_table() == before


@pytest.fixture
def volume_name() -> str:
    return f"minictr-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def host_marker(tmp_path) -> Path:
    """A host directory with files that no container may change or read."""
    directory = tmp_path / "host-marker"
    (directory / "secret").mkdir(parents=True)
    (directory / "marker").write_text("untouched\n")
    (directory / "secret" / "key").write_text("host secret\n")
    return directory


def assert_marker_untouched(directory: Path) -> None:
    assert sorted(os.listdir(directory)) == ["marker", "secret"]
    assert os.listdir(directory / "secret") == ["key"]
    assert (directory / "marker").read_text() == "untouched\n"


@pytest.fixture
def custom_rootfs(tmp_path, busybox_rootfs, host_marker) -> Path:
    """A copy of the sample rootfs with image content and hostile symlinks."""
    root = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    (root / "srv" / "app").mkdir(parents=True)
    (root / "srv" / "app" / "defaults.conf").write_text("workers=4\n")
    os.chown(root / "srv" / "app" / "defaults.conf", 1000, 1000)
    os.symlink(str(host_marker), root / "abs")
    depth = len(root.parts) + 2
    os.symlink("../" * depth + str(host_marker).lstrip("/"), root / "rel")
    os.symlink(str(host_marker / "missing" / "deeper"), root / "dangling")
    return root


@pytest.fixture
def host_tmpfs(tmp_path):
    """A host directory with a tmpfs mounted below it, unmounted afterwards."""
    source = tmp_path / "bind-source"
    submount = source / "sub"
    submount.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "minictr-test", str(submount)],
        check=True,
    )
    try:
        yield source
    finally:
        subprocess.run(["umount", "-l", str(submount)], check=False)


def container_ids(state_dirs) -> list[str]:
    base = Path(state_dirs["root"]) / "containers"
    return sorted(os.listdir(base)) if base.exists() else []


def stored_mounts(state_dirs, container_id: str) -> list[dict]:
    path = Path(state_dirs["root"]) / "containers" / container_id / "config.json"
    return json.loads(path.read_text())["mounts"]


# ---- named volumes ----------------------------------------------------------


def test_named_volume_outlives_container(minictr, busybox_rootfs, volume_name):
    write = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/data",
        str(busybox_rootfs),
        "sh",
        "-c",
        "echo checkpoint-7 > /data/state",
    )
    assert write.returncode == 0, write.stderr

    read = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/data",
        str(busybox_rootfs),
        "cat",
        "/data/state",
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout == "checkpoint-7\n"

    listed = minictr("volume", "ls", "-q")
    assert listed.stdout.split() == [volume_name]


def test_new_volume_filled_from_image(minictr, custom_rootfs, volume_name):
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/srv/app",
        str(custom_rootfs),
        "sh",
        "-c",
        "cat /srv/app/defaults.conf; stat -c %u /srv/app/defaults.conf",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["workers=4", "1000"]

    inspected = json.loads(minictr("volume", "inspect", volume_name).stdout)
    data = Path(inspected[0]["Mountpoint"])
    assert (data / "defaults.conf").read_text() == "workers=4\n"


def test_nonempty_volume_is_not_refilled(minictr, custom_rootfs, volume_name):
    first = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/srv/app",
        str(custom_rootfs),
        "sh",
        "-c",
        "rm /srv/app/defaults.conf; echo mine > /srv/app/own",
    )
    assert first.returncode == 0, first.stderr
    second = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/srv/app",
        str(custom_rootfs),
        "ls",
        "/srv/app",
    )
    assert second.stdout.split() == ["own"]


def test_volume_rm_rejected_while_in_use(minictr, busybox_rootfs, volume_name):
    kept = minictr("run", "-v", f"{volume_name}:/data", str(busybox_rootfs), "true")
    assert kept.returncode == 0, kept.stderr

    removal = minictr("volume", "rm", volume_name)
    # Docker exits 1 when a command other than run, create or exec fails.
    assert removal.returncode == 1
    assert f"volume {volume_name} is in use by container" in removal.stderr
    assert minictr("volume", "ls", "-q").stdout.split() == [volume_name]


def test_volume_rm_deletes_unused(minictr, volume_name, state_dirs):
    assert minictr("volume", "create", volume_name).stdout.strip() == volume_name
    removal = minictr("volume", "rm", volume_name)
    assert removal.returncode == 0, removal.stderr
    assert not (Path(state_dirs["root"]) / "volumes" / volume_name).exists()


def test_anonymous_volume_gets_generated_name(minictr, busybox_rootfs, state_dirs):
    result = minictr(
        "run", "-v", "/scratch", str(busybox_rootfs), "touch", "/scratch/x"
    )
    assert result.returncode == 0, result.stderr
    (container_id,) = container_ids(state_dirs)
    (entry,) = stored_mounts(state_dirs, container_id)
    assert entry["Anonymous"] is True
    assert os.path.exists(os.path.join(entry["Source"], "x"))


# ---- bind mounts ------------------------------------------------------------


def test_bind_mount_shares_host_directory(minictr, busybox_rootfs, tmp_path):
    source = tmp_path / "dataset"
    source.mkdir()
    (source / "train.csv").write_text("a,b\n")
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{source}:/data",
        str(busybox_rootfs),
        "sh",
        "-c",
        "cat /data/train.csv; echo out > /data/result",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a,b\n"
    assert (source / "result").read_text() == "out\n"


def test_volume_option_creates_missing_host_path(minictr, busybox_rootfs, tmp_path):
    source = tmp_path / "new" / "dir"
    result = minictr(
        "run", "--rm", "-v", f"{source}:/data", str(busybox_rootfs), "true"
    )
    assert result.returncode == 0, result.stderr
    assert source.is_dir()


def test_mount_option_rejects_missing_source(
    minictr, busybox_rootfs, tmp_path, state_dirs
):
    source = tmp_path / "missing"
    result = minictr(
        "run",
        "--rm",
        "--mount",
        f"type=bind,source={source},target=/data",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert f"bind source path {source} does not exist" in result.stderr
    assert not source.exists()
    assert container_ids(state_dirs) == []


def test_read_only_bind_rejects_writes(minictr, busybox_rootfs, host_tmpfs):
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{host_tmpfs}:/data:ro",
        str(busybox_rootfs),
        "sh",
        "-c",
        "touch /data/top; touch /data/sub/below; echo done",
    )
    assert result.returncode == 0, result.stderr
    assert "touch: /data/top: " + EROFS_MESSAGE in result.stderr
    assert "touch: /data/sub/below: " + EROFS_MESSAGE in result.stderr
    assert sorted(os.listdir(host_tmpfs)) == ["sub"]
    assert os.listdir(host_tmpfs / "sub") == []
    # The host's own mount stays writable.
    (host_tmpfs / "sub" / "host-write").write_text("ok")


def test_read_only_bind_keeps_source_flags(minictr, busybox_rootfs, tmp_path):
    source = tmp_path / "noexec-source"
    source.mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m,nosuid,nodev,noexec",
            "minictr-test",
            str(source),
        ],
        check=True,
    )
    try:
        result = minictr(
            "run",
            "--rm",
            "--mount",
            f"type=bind,source={source},target=/data,readonly",
            str(busybox_rootfs),
            "grep",
            " /data ",
            "/proc/self/mountinfo",
        )
    finally:
        subprocess.run(["umount", "-l", str(source)], check=False)
    assert result.returncode == 0, result.stderr
    options = result.stdout.split()[5].split(",")
    for flag in ("ro", "nosuid", "nodev", "noexec"):
        assert flag in options


def test_debug_narrates_mount_flags(minictr, busybox_rootfs, tmp_path):
    result = minictr(
        "--debug",
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/data:ro",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 0, result.stderr
    assert f"mount {tmp_path} on " in result.stderr
    assert "flags MS_BIND|MS_REC" in result.stderr
    assert "MS_RDONLY|MS_REMOUNT|MS_BIND" in result.stderr


# ---- tmpfs and read-only roots ----------------------------------------------


def test_read_only_root_with_writable_tmpfs(minictr, busybox_rootfs, volume_name):
    result = minictr(
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp:size=1m,mode=1777",
        "--mount",
        "type=tmpfs,target=/run",
        "-v",
        f"{volume_name}:/data",
        str(busybox_rootfs),
        "sh",
        "-c",
        "echo a > /tmp/a && echo a > /run/a && echo a > /data/a && echo written;"
        " touch /root-file; stat -c %a /tmp",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["written", "1777"]
    assert "touch: /root-file: " + EROFS_MESSAGE in result.stderr


def test_tmpfs_size_is_enforced(minictr, busybox_rootfs):
    result = minictr(
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        str(busybox_rootfs),
        "dd",
        "if=/dev/zero",
        "of=/scratch/big",
        "bs=1024",
        "count=2048",
    )
    assert result.returncode != 0
    assert "No space left on device" in result.stderr


# ---- --volumes-from ---------------------------------------------------------


def test_volumes_from_shares_data(minictr, busybox_rootfs, volume_name, tmp_path):
    name = f"src-{uuid.uuid4().hex[:8]}"
    source = minictr(
        "run",
        "--name",
        name,
        "-v",
        f"{volume_name}:/shared",
        "-v",
        f"{tmp_path}:/host",
        str(busybox_rootfs),
        "sh",
        "-c",
        "echo from-source > /shared/note",
    )
    assert source.returncode == 0, source.stderr

    reader = minictr(
        "run",
        "--rm",
        "--volumes-from",
        name,
        str(busybox_rootfs),
        "sh",
        "-c",
        "cat /shared/note; echo back > /host/reply",
    )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout == "from-source\n"
    assert (tmp_path / "reply").read_text() == "back\n"

    read_only = minictr(
        "run",
        "--rm",
        "--volumes-from",
        f"{name}:ro",
        str(busybox_rootfs),
        "touch",
        "/shared/other",
    )
    assert read_only.returncode == 1
    assert EROFS_MESSAGE in read_only.stderr


def test_volumes_from_unknown_container(minictr, busybox_rootfs, state_dirs):
    result = minictr(
        "run",
        "--rm",
        "--volumes-from",
        "no-such-container",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert "no such container: no-such-container" in result.stderr
    assert container_ids(state_dirs) == []


# ---- symlinks in the image --------------------------------------------------


@pytest.mark.parametrize("link", ["abs", "rel", "dangling"])
def test_symlinked_tmpfs_target_stays_inside(minictr, custom_rootfs, host_marker, link):
    result = minictr(
        "run",
        "--rm",
        "--tmpfs",
        f"/{link}/sub",
        str(custom_rootfs),
        "sh",
        "-c",
        f"echo pwned > /{link}/sub/file; echo pwned > /{link}/marker",
    )
    assert result.returncode == 0, result.stderr
    assert_marker_untouched(host_marker)


@pytest.mark.parametrize("link", ["abs", "rel", "dangling"])
def test_symlinked_volume_target_stays_inside(
    minictr, custom_rootfs, host_marker, link, volume_name
):
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{volume_name}:/{link}/secret",
        str(custom_rootfs),
        "sh",
        "-c",
        f"ls /{link}/secret; echo pwned > /{link}/secret/key",
    )
    assert result.returncode == 0, result.stderr
    # The host's marker directory is neither copied into the volume nor changed.
    assert result.stdout == ""
    assert_marker_untouched(host_marker)


def test_symlinked_file_bind_stays_inside(
    minictr, custom_rootfs, host_marker, tmp_path
):
    replacement = tmp_path / "replacement"
    replacement.write_text("replaced\n")
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{replacement}:/abs/marker",
        str(custom_rootfs),
        "cat",
        "/abs/marker",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "replaced\n"
    assert_marker_untouched(host_marker)


@pytest.mark.parametrize("link", ["abs", "rel", "dangling"])
def test_symlinked_workdir_stays_inside(minictr, custom_rootfs, host_marker, link):
    result = minictr(
        "run",
        "--rm",
        "-w",
        f"/{link}/work",
        str(custom_rootfs),
        "sh",
        "-c",
        "touch here; pwd",
    )
    # The link's target does not exist inside the container, so the runtime
    # may either create it there or fail. It must never create it on the host.
    assert result.returncode in (0, 125), result.stderr
    if result.returncode == 125:
        assert f"/{link}/work" in result.stderr
    assert_marker_untouched(host_marker)


@pytest.fixture
def reserved_links_rootfs(tmp_path, busybox_rootfs) -> Path:
    """A copy of the sample rootfs whose symlinks lead onto /proc, /sys and /dev."""
    root = tmp_path / "reserved-links"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    os.symlink("/proc", root / "data3")
    (root / "sub").mkdir()
    os.symlink("../..", root / "sub" / "up")
    os.symlink("sub/up/sys", root / "chained")
    return root


@pytest.mark.parametrize(
    ("option", "target", "resolved"),
    [
        ("-v", "/data3", "/proc"),
        ("--tmpfs", "/data3", "/proc"),
        ("-v", "/sub/up/proc", "/proc"),
        ("-v", "/chained/kernel", "/sys/kernel"),
        ("--tmpfs", "/sub/up/dev", "/dev"),
        ("-v", "/sub/up", "/"),
    ],
)
def test_symlink_to_reserved_path_rejected(
    minictr, reserved_links_rootfs, state_dirs, tmp_path, option, target, resolved
):
    source = tmp_path / "new-host-dir"
    value = f"{source}:{target}" if option == "-v" else target
    result = minictr(
        "run", "--rm", option, value, str(reserved_links_rootfs), "ls", "/proc"
    )
    assert result.returncode == 125
    assert result.stderr == (
        f"minictr: invalid mount target {target}: a symbolic link leads it to"
        f" {resolved}, which the runtime sets up itself; choose a path that is not"
        " a link to it\n"
    )
    assert not source.exists()
    assert container_ids(state_dirs) == []


def test_symlink_from_bind_rejected_in_pid1(
    minictr, busybox_rootfs, state_dirs, tmp_path
):
    # The link comes from a bind mount, not the image, so only the check that
    # PID 1 makes just before the tmpfs mount can see it.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.symlink("/proc", shared / "p")
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{shared}:/a",
        "--tmpfs",
        "/a/p",
        str(busybox_rootfs),
        "ls",
        "/proc/self",
    )
    assert result.returncode == 125
    assert "invalid mount target /a/p: a symbolic link leads it to /proc," in (
        result.stderr
    )
    assert container_ids(state_dirs) == []
    assert os.listdir(shared) == ["p"]


def test_symlink_elsewhere_still_works(minictr, reserved_links_rootfs, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "file").write_text("inside\n")
    result = minictr(
        "run",
        "--rm",
        "-v",
        f"{source}:/sub/up/srv/data",
        str(reserved_links_rootfs),
        "cat",
        "/srv/data/file",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inside\n"


# ---- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "/tmp:relative"],
        ["-v", "/tmp:/proc"],
        ["-v", ":/x"],
        ["-v", "-x:/data"],
        ["-v", "/tmp:/"],
        ["-v", "/tmp:/data:bogus"],
        ["--mount", "type=volume,source=a/b,target=/data"],
        ["--tmpfs", "/tmp:color=blue"],
    ],
)
def test_bad_mount_rejected_before_anything_exists(
    minictr, busybox_rootfs, state_dirs, args
):
    result = minictr("run", "--rm", *args, str(busybox_rootfs), "true")
    assert result.returncode == 125
    assert result.stderr.startswith("minictr: invalid")
    assert container_ids(state_dirs) == []
    assert not (Path(state_dirs["root"]) / "volumes").exists()


def test_config_records_docker_style_mounts(
    minictr, busybox_rootfs, volume_name, tmp_path, state_dirs
):
    result = minictr(
        "run",
        "-v",
        f"{volume_name}:/data:ro",
        "-v",
        f"{tmp_path}:/host",
        "--tmpfs",
        "/tmp",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 0, result.stderr
    (container_id,) = container_ids(state_dirs)
    by_target = {m["Destination"]: m for m in stored_mounts(state_dirs, container_id)}

    volume = by_target["/data"]
    assert volume["Type"] == "volume"
    assert volume["Name"] == volume_name
    assert volume["Source"].endswith(f"/volumes/{volume_name}/_data")
    assert volume["RW"] is False
    assert volume["Mode"] == "ro"

    bind = by_target["/host"]
    assert bind["Type"] == "bind"
    assert bind["Source"] == str(tmp_path)
    assert bind["Propagation"] == "rprivate"
    assert bind["RW"] is True

    assert by_target["/tmp"]["Type"] == "tmpfs"


@pytest.mark.parametrize("source", ["/etc/hostname", "/tmp"])
def test_target_under_image_file_names_it(minictr, busybox_rootfs, state_dirs, source):
    result = minictr(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        f"{source}:/etc/passwd/x",
        str(busybox_rootfs),
        "true",
    )
    assert result.returncode == 125
    assert result.stderr.strip() == (
        "minictr: mount point /etc/passwd/x cannot be created: /etc/passwd is a"
        " file in the container's root; choose a path under a directory"
    )
    assert not list((Path(state_dirs["root"]) / "containers").glob("*"))
