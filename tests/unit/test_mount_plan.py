"""Volume store and mount steps, checked without a kernel."""

from __future__ import annotations

import json
import os

import pytest

from minicontainer import syscalls as sc
from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.errors import Conflict, InvalidArgument, NotFound
from minicontainer.mounts import copyup, plan, spec, volumes
from minicontainer.mounts.plan import UserMount


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    return tmp_path / "state"


def make_config(mounts: list[dict], container_id: str = "c" * 64) -> ContainerConfig:
    return ContainerConfig(
        id=container_id,
        name="test",
        process=ProcessConfig(args=["true"]),
        mounts=mounts,
    )


def store_config(state_root, config: ContainerConfig) -> str:
    directory = state_root / "containers" / config.id
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config.to_dict()))
    return str(directory)


def test_volume_create_is_idempotent(state_root):
    with volumes.locked():
        first, created = volumes.create("data", labels={"team": "ml"})
        second, created_again = volumes.create("data")
    assert created is True
    assert created_again is False
    assert first == second
    assert first["Labels"] == {"team": "ml"}
    assert first["Mountpoint"] == str(state_root / "volumes" / "data" / "_data")
    assert os.path.isdir(first["Mountpoint"])


def test_volume_list_and_inspect(state_root):
    with volumes.locked():
        volumes.create("beta")
        volumes.create("alpha")
    assert [v["Name"] for v in volumes.list_volumes()] == ["alpha", "beta"]
    with pytest.raises(NotFound, match="no such volume: gamma"):
        volumes.inspect("gamma")


def test_volume_remove_rejected_while_in_use(state_root):
    with volumes.locked():
        volumes.create("data")
    config = make_config([spec.volume_entry("data", "/data")])
    directory = store_config(state_root, config)

    with pytest.raises(Conflict, match="in use by container cccccccccccc"):
        volumes.remove("data")
    assert os.path.isdir(volumes.data_path("data"))

    os.unlink(os.path.join(directory, "config.json"))
    volumes.remove("data")
    assert volumes.list_volumes() == []


def test_volume_remove_missing(state_root):
    with pytest.raises(NotFound):
        volumes.remove("absent")
    volumes.remove("absent", force=True)


def test_volume_prune_keeps_named_unless_all(state_root):
    with volumes.locked():
        volumes.create("named")
        volumes.create("a" * 64, anonymous=True)
    assert volumes.prune() == ["a" * 64]
    assert [v["Name"] for v in volumes.list_volumes()] == ["named"]
    assert volumes.prune(all_volumes=True) == ["named"]


def test_prepare_creates_volume_and_records_source(state_root, tmp_path):
    image = tmp_path / "image"
    (image / "etc" / "app").mkdir(parents=True)
    (image / "etc" / "app" / "app.conf").write_text("port=80\n")
    config = make_config([spec.volume_entry("conf", "/etc/app")])
    config.lower_dirs = [str(image)]
    directory = store_config(state_root, config)

    plan.prepare(config, directory)

    source = config.mounts[0]["Source"]
    assert source == volumes.data_path("conf")
    with open(os.path.join(source, "app.conf")) as f:
        assert f.read() == "port=80\n"
    with open(os.path.join(directory, "config.json")) as f:
        assert json.load(f)["mounts"][0]["Source"] == source


def test_prepare_failure_removes_created_volume(state_root, tmp_path):
    config = make_config(
        [
            spec.volume_entry("fresh", "/data"),
            spec.bind_entry(str(tmp_path / "missing"), "/src", create=False),
        ]
    )
    directory = store_config(state_root, config)
    with pytest.raises(InvalidArgument, match="does not exist"):
        plan.prepare(config, directory)
    assert volumes.list_volumes() == []


def test_prepare_creates_missing_bind_source(state_root, tmp_path):
    source = tmp_path / "made" / "here"
    config = make_config([spec.bind_entry(str(source), "/data", create=True)])
    plan.prepare(config, store_config(state_root, config))
    assert source.is_dir()


def test_prepare_expands_volumes_from(state_root, tmp_path):
    other = make_config(
        [
            spec.volume_entry("shared", "/shared"),
            spec.bind_entry(str(tmp_path), "/host"),
            spec.tmpfs_entry("/tmp", []),
        ],
        container_id="d" * 64,
    )
    store_config(state_root, other)
    config = make_config(
        [
            spec.tmpfs_entry("/host", []),
            {"Type": "volumes-from", "Container": "d" * 12, "Mode": "ro"},
        ]
    )
    plan.prepare(config, store_config(state_root, config))

    by_target = {entry["Destination"]: entry for entry in config.mounts}
    assert sorted(by_target) == ["/host", "/shared"]
    assert by_target["/host"]["Type"] == "tmpfs"
    assert by_target["/shared"]["Name"] == "shared"
    assert by_target["/shared"]["RW"] is False
    assert volumes.users("shared") == sorted(["c" * 64, "d" * 64])


def test_volume_steps_order_and_flags(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    single = tmp_path / "file"
    single.write_text("")
    config = make_config(
        [
            spec.bind_entry(str(source), "/a/b", read_only=True),
            spec.bind_entry(str(single), "/etc/single"),
            spec.parse_tmpfs("/a:size=1m"),
        ]
    )
    steps = plan.volume_steps(config, "/unused", "/merged")

    assert steps[0] == UserMount(
        "tmpfs",
        "/a",
        "tmpfs",
        sc.MS_NOEXEC | sc.MS_NOSUID | sc.MS_NODEV,
        "size=1048576",
        root="/merged",
    )
    assert steps[1] == UserMount(
        str(source), "/a/b", None, sc.MS_BIND | sc.MS_REC, root="/merged"
    )
    assert steps[2] == plan.ReadOnlyRemount("/a/b", root="/merged")
    assert steps[3].make == "file"
    assert len(steps) == 4


def test_volume_steps_reject_unresolved_entries():
    config = make_config([{"Type": "volumes-from", "Container": "x", "Mode": ""}])
    with pytest.raises(InvalidArgument, match="not resolved"):
        plan.volume_steps(config, "/unused", "/merged")


@pytest.fixture
def hostile_root(tmp_path):
    """A container root whose symlinks lead onto the runtime's own paths."""
    root = tmp_path / "root"
    for directory in ("proc", "sys/kernel", "dev", "sub", "srv/data"):
        (root / directory).mkdir(parents=True)
    os.symlink("/proc", root / "absolute")
    os.symlink("../..", root / "sub" / "up")
    os.symlink("sub/up/sys", root / "chained")
    os.symlink("../../dev", root / "srv" / "relative")
    return root


@pytest.mark.parametrize(
    ("target", "resolved"),
    [
        ("/absolute", "/proc"),
        ("/absolute/self", "/proc/self"),
        ("/sub/up/proc", "/proc"),
        ("/sub/up", "/"),
        ("/chained/kernel", "/sys/kernel"),
        ("/srv/relative", "/dev"),
    ],
)
def test_symlink_to_reserved_path_rejected(hostile_root, target, resolved):
    message = f"invalid mount target {target}: a symbolic link leads it to {resolved},"
    with pytest.raises(InvalidArgument, match=message):
        plan.check_resolved_target(str(hostile_root), target)


@pytest.mark.parametrize("target", ["/srv/data", "/srv/relative/shm", "/sub/x"])
def test_symlink_elsewhere_is_allowed(hostile_root, target):
    plan.check_resolved_target(str(hostile_root), target)


def test_user_mount_rejects_before_mkdir(hostile_root, monkeypatch):
    calls = []
    monkeypatch.setattr(sc, "mount", lambda *args: calls.append(args))
    step = UserMount("tmpfs", "/absolute/new", "tmpfs", root=str(hostile_root))
    with pytest.raises(InvalidArgument, match="leads it to /proc/new"):
        step.apply()
    assert calls == []
    assert not (hostile_root / "proc" / "new").exists()


def test_prepare_rejects_image_symlink_first(state_root, tmp_path, hostile_root):
    source = tmp_path / "missing-source"
    config = make_config(
        [
            spec.parse_volume(f"{source}:/srv/data"),
            spec.parse_volume("fresh-volume:/sub/up/dev"),
        ]
    )
    config.lower_dirs = [str(hostile_root)]
    directory = store_config(state_root, config)
    with pytest.raises(InvalidArgument, match="/sub/up/dev: a symbolic link leads"):
        plan.prepare(config, directory)
    assert not source.exists()
    assert not (state_root / "volumes").exists()


def test_layers_resolve_as_the_merged_root_shows_them(tmp_path):
    upper, top, bottom = (tmp_path / name for name in ("upper", "top", "bottom"))
    for layer in (upper, top, bottom):
        layer.mkdir()
    os.symlink("/proc", bottom / "hidden")
    (top / "hidden").mkdir()
    (bottom / "deep").mkdir()
    os.symlink("../sys", bottom / "deep" / "link")
    os.symlink("/dev", upper / "new")
    layers = [str(upper), str(top), str(bottom)]

    assert copyup.resolve_in_layers(layers, "/hidden/x") == "/hidden/x"
    assert copyup.resolve_in_layers(layers, "/deep/link/k") == "/sys/k"
    assert copyup.resolve_in_layers(layers, "/new") == "/dev"
    assert copyup.resolve_in_layers(layers, "/missing/../new/pts") == "/dev/pts"


MOUNTINFO = """\
20 1 0:1 / / rw - ext4 /dev/vda rw
30 20 0:2 / /m/data rw - ext4 /dev/vda rw
31 30 0:3 / /m/data/sub rw - tmpfs t rw
40 20 0:4 / /m/data rw - ext4 /dev/vda rw
41 40 0:5 / /m/data/with\\040space rw - tmpfs t rw
42 41 0:6 / /m/data/with\\040space/deep rw - tmpfs t rw
50 20 0:7 / /m/database rw - tmpfs t rw
"""


def test_mounts_under_follows_newest_mount_tree(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    assert plan.mounts_under("/m/data", str(path)) == [
        "/m/data",
        "/m/data/with space",
        "/m/data/with space/deep",
    ]
