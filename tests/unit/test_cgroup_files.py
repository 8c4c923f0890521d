"""The cgroup files planned and written for each layout, on fake cgroupfs trees."""

from __future__ import annotations

import os

import pytest

from minicontainer.cgroups import Cgroup, cgroup, fs, layout, v1, v2
from minicontainer.cgroups.fs import Setting
from minicontainer.errors import CgroupError
from minicontainer.steps import Mount, Symlink

MIB = 1024**2

FULL = {
    "memory": {"limit": 64 * MIB, "swap": 96 * MIB, "reservation": 32 * MIB},
    "cpu": {
        "quota": 57_000,
        "period": 100_000,
        "shares": 512,
        "cpus": "1",
        "mems": "0",
    },
    "pids": {"limit": 20},
    "blockIO": {
        "weight": 500,
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [
            {"major": 8, "minor": 0, "rate": 2097152},
            {"major": 8, "minor": 16, "rate": 4096},
        ],
    },
}

HYBRID_MOUNTINFO = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

HYBRID_PROC_CGROUP = """\
12:pids:/user.slice
6:memory:/user.slice
5:cpuset:/
4:cpu,cpuacct:/user.slice
3:net_cls,net_prio:/
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
"""


def test_v2_settings_full():
    assert v2.settings(FULL) == [
        Setting("memory.max", str(64 * MIB)),
        Setting("memory.swap.max", str(32 * MIB)),
        Setting("memory.low", str(32 * MIB)),
        Setting("cpu.max", "57000 100000"),
        Setting("cpu.weight", "20"),
        Setting("cpuset.cpus", "1"),
        Setting("cpuset.mems", "0"),
        Setting("pids.max", "20"),
        Setting("io.weight", "default 4950"),
        Setting("io.max", "8:0 rbps=1048576 wbps=2097152"),
        Setting("io.max", "8:16 wbps=4096"),
    ]


def test_v2_swap_default_and_unlimited():
    default = v2.settings({"memory": {"limit": 64 * MIB}})
    assert default[1] == Setting("memory.swap.max", str(64 * MIB), required=False)
    unlimited = v2.settings({"memory": {"limit": 64 * MIB, "swap": -1}})
    assert unlimited[1] == Setting("memory.swap.max", "max")


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000)])
def test_shares_to_weight(shares, weight):
    assert v2.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert v2.blkio_weight_to_io_weight(blkio) == io


def test_v1_settings_full():
    assert v1.settings(FULL) == [
        Setting("memory.limit_in_bytes", str(64 * MIB)),
        Setting("memory.memsw.limit_in_bytes", str(96 * MIB)),
        Setting("memory.soft_limit_in_bytes", str(32 * MIB)),
        Setting("cpu.cfs_period_us", "100000"),
        Setting("cpu.cfs_quota_us", "57000"),
        Setting("cpu.shares", "512"),
        Setting("cpuset.cpus", "1"),
        Setting("cpuset.mems", "0"),
        Setting("pids.max", "20"),
        Setting("blkio.weight", "500"),
        Setting("blkio.throttle.read_bps_device", "8:0 1048576"),
        Setting("blkio.throttle.write_bps_device", "8:0 2097152"),
        Setting("blkio.throttle.write_bps_device", "8:16 4096"),
    ]


def test_v1_swap_default_is_twice_memory():
    planned = v1.settings({"memory": {"limit": 64 * MIB}})
    assert planned[1] == Setting(
        "memory.memsw.limit_in_bytes", str(128 * MIB), required=False
    )


def test_detect_hybrid(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(HYBRID_MOUNTINFO)
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text(HYBRID_PROC_CGROUP)
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("\n")
    text = HYBRID_MOUNTINFO.replace("/sys/fs/cgroup/unified", str(unified))
    mountinfo.write_text(text)

    host = layout.detect(str(mountinfo), str(proc_cgroup))

    assert host.mode == "hybrid"
    assert host.unified == layout.Hierarchy(str(unified), version=2)
    points = [h.mount_point for h in host.v1]
    # net_cls,net_prio is active but not mounted, so it cannot be used.
    assert points == [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpuset",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/systemd",
    ]
    assert host.v1_hierarchy("cpuacct").mount_point == "/sys/fs/cgroup/cpu,cpuacct"
    assert host.v1_hierarchy("cpuset").controllers == ("cpuset",)
    assert host.v1_hierarchy("name=systemd").mount_options == "none,name=systemd"
    assert host.v1_hierarchy("cpu").mount_options == "cpu,cpuacct"
    assert host.v1_hierarchy("io") is None
    assert host.controller_available("memory")
    assert not host.controller_available("net_cls")


def test_detect_pure_v2(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"30 1 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "25 1 0:24 / /proc rw - proc proc rw\n"
    )
    proc_cgroup = tmp_path / "proc-cgroup"
    proc_cgroup.write_text("0::/init.scope\n")

    host = layout.detect(str(mountinfo), str(proc_cgroup))

    assert host.mode == "v2"
    assert host.v1 == ()
    assert host.unified_controllers == {"cpuset", "cpu", "io", "memory", "pids"}
    assert host.controller_available("pids")


def test_detect_without_cgroups(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("25 1 0:24 / /proc rw - proc proc rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/\n")
    with pytest.raises(CgroupError, match="no cgroup hierarchy is mounted"):
        layout.detect(str(mountinfo), str(proc_cgroup))


def test_mountinfo_escapes_decoded():
    line = r"41 31 0:38 / /mnt/cgroup\040two rw - cgroup2 cgroup2 rw" + "\n"
    assert layout.parse_mountinfo(line) == [("/mnt/cgroup two", "cgroup2", "rw")]


# ------------------------------------------------------------ fake cgroup v2

V2_FILES = [
    "cgroup.procs",
    "cgroup.subtree_control",
    "cgroup.events",
    "cgroup.freeze",
    "cgroup.kill",
    "cpu.max",
    "cpu.weight",
    "cpu.stat",
    "cpuset.cpus",
    "cpuset.mems",
    "io.max",
    "io.weight",
    "io.stat",
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "memory.current",
    "memory.events",
    "pids.max",
    "pids.current",
]


class FakeV2:
    """A cgroup2 root under tmp_path that behaves like cgroupfs where it matters.

    New directories get the interface files, each write replaces a file's
    content and is recorded in ``writes``, and rmdir removes a directory with
    its interface files.
    """

    def __init__(self, root, monkeypatch):
        self.root = root
        self.writes: list[tuple[str, str]] = []
        root.mkdir()
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (root / "cgroup.subtree_control").write_text("\n")
        self.host = layout.Layout(
            unified=layout.Hierarchy(str(root), version=2),
            unified_controllers=frozenset({"cpuset", "cpu", "io", "memory", "pids"}),
        )
        self._real_make_dir = fs.make_dir
        self._real_rmdir = os.rmdir
        monkeypatch.setattr(fs, "make_dir", self.make_dir)
        monkeypatch.setattr(fs, "write", self.write)
        monkeypatch.setattr(os, "rmdir", self.rmdir)

    def make_dir(self, path: str) -> bool:
        created = self._real_make_dir(path)
        if created:
            for name in V2_FILES:
                open(os.path.join(path, name), "w").close()
        return created

    def write(self, path: str, value: str) -> None:
        self.writes.append((os.path.relpath(path, self.root), value))
        with open(path, "w") as file:
            file.write(value)

    def rmdir(self, path) -> None:
        if str(path).startswith(str(self.root)):
            for name in V2_FILES:
                if os.path.exists(os.path.join(path, name)):
                    os.unlink(os.path.join(path, name))
        self._real_rmdir(path)


@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    return FakeV2(tmp_path / "cgroup", monkeypatch)


def test_v2_create_writes_limits(fake_v2):
    resources = {
        "memory": {"limit": 64 * MIB},
        "cpu": {"quota": 50_000, "period": 100_000, "cpus": "1"},
        "pids": {"limit": 20},
    }

    group = Cgroup.create(
        "c1", parent="lab/minictr", resources=resources, host=fake_v2.host
    )

    leaf = fake_v2.root / "lab" / "minictr" / "c1"
    assert group.paths == {"unified": str(leaf)}
    assert group.path == "/lab/minictr/c1"
    enable = [f"+{c}" for c in ("cpu", "cpuset", "io", "memory", "pids")]
    assert fake_v2.writes == [
        *[("cgroup.subtree_control", value) for value in enable],
        *[("lab/cgroup.subtree_control", value) for value in enable],
        *[("lab/minictr/cgroup.subtree_control", value) for value in enable],
        ("lab/minictr/c1/memory.max", str(64 * MIB)),
        ("lab/minictr/c1/memory.swap.max", str(64 * MIB)),
        ("lab/minictr/c1/cpu.max", "50000 100000"),
        ("lab/minictr/c1/cpuset.cpus", "1"),
        ("lab/minictr/c1/pids.max", "20"),
    ]


def test_v2_enables_only_missing_controllers(fake_v2):
    (fake_v2.root / "cgroup.subtree_control").write_text("cpu io memory pids\n")
    Cgroup.create("c1", host=fake_v2.host)
    root_writes = [w for w in fake_v2.writes if w[0] == "cgroup.subtree_control"]
    assert root_writes == []
    assert ("minictr/cgroup.subtree_control", "+memory") in fake_v2.writes


def test_v2_cpuset_enabled_only_when_requested(fake_v2):
    Cgroup.create("c1", host=fake_v2.host)
    assert ("cgroup.subtree_control", "+cpuset") not in fake_v2.writes
    assert ("cgroup.subtree_control", "+memory") in fake_v2.writes


def test_v2_create_narrates_each_write(fake_v2, caplog):
    caplog.set_level("DEBUG")
    Cgroup.create("c1", resources={"pids": {"limit": 7}}, host=fake_v2.host)
    leaf = fake_v2.root / "minictr" / "c1"
    assert f"write '7' to {leaf}/pids.max" in caplog.text
    assert f"write '+memory' to {fake_v2.root}/cgroup.subtree_control" in caplog.text


def test_v2_missing_controller_creates_nothing(fake_v2):
    host = layout.Layout(
        unified=fake_v2.host.unified, unified_controllers=frozenset({"cpu"})
    )
    with pytest.raises(CgroupError, match="pids controller is not available") as info:
        Cgroup.create("c1", resources={"pids": {"limit": 20}}, host=host)
    assert "--pids-limit" in str(info.value)
    assert not (fake_v2.root / "minictr").exists()
    assert fake_v2.writes == []


def test_v2_failed_write_removes_cgroup(fake_v2, monkeypatch):
    def write(path: str, value: str) -> None:
        if path.endswith("cpuset.cpus"):
            raise CgroupError(f"writing {value!r} to {path} failed: Invalid argument")
        fake_v2.writes.append((path, value))

    monkeypatch.setattr(fs, "write", write)
    with pytest.raises(CgroupError, match="cpuset.cpus"):
        Cgroup.create("c1", resources={"cpu": {"cpus": "9"}}, host=fake_v2.host)
    assert not (fake_v2.root / "minictr").exists()


def test_v2_existing_cgroup_rejected(fake_v2):
    fake_v2.make_dir(str(fake_v2.root / "minictr"))
    fake_v2.make_dir(str(fake_v2.root / "minictr" / "c1"))
    with pytest.raises(CgroupError, match="exists already"):
        Cgroup.create("c1", host=fake_v2.host)
    assert (fake_v2.root / "minictr" / "c1").is_dir()


def test_v2_oom_and_stats(fake_v2):
    group = Cgroup.create("c1", host=fake_v2.host)
    leaf = fake_v2.root / "minictr" / "c1"
    assert not group.oom_killed()
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (leaf / "memory.current").write_text("1048576\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\n")
    (leaf / "pids.current").write_text("3\n")
    (leaf / "pids.max").write_text("20\n")
    (leaf / "io.stat").write_text(
        "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=5 wbytes=0\n"
    )
    assert group.oom_killed()
    assert group.stats() == {
        "memory": {"usage": 1048576, "limit": None},
        "cpu": {"usage_ns": 2_500_000},
        "pids": {"current": 3, "limit": 20},
        "io": {"read_bytes": 105, "write_bytes": 200},
    }


def test_to_dict_round_trip(fake_v2):
    group = Cgroup.create("c1", host=fake_v2.host)
    copy = Cgroup.from_dict(group.to_dict())
    assert copy.to_dict() == group.to_dict()
    assert copy.unified_dir() == group.unified_dir()
    assert copy.exists()


def test_destroy_removes_the_parents_it_created(fake_v2):
    group = Cgroup.create("c1", parent="/lab/class", host=fake_v2.host)
    lab = fake_v2.root / "lab"
    assert group.path == "/lab/class/c1"
    assert group.created_parents == [str(lab), str(lab / "class")]

    Cgroup.from_dict(group.to_dict()).destroy()

    assert not lab.exists()


def test_destroy_keeps_a_created_parent_still_in_use(fake_v2):
    first = Cgroup.create("c1", parent="lab", host=fake_v2.host)
    second = Cgroup.create("c2", parent="lab", host=fake_v2.host)
    assert second.created_parents == []

    first.destroy()
    assert (fake_v2.root / "lab" / "c2").is_dir()
    second.destroy()
    # The second container did not create "lab", so it leaves it in place.
    assert (fake_v2.root / "lab").is_dir()
    assert not (fake_v2.root / "lab" / "c2").exists()


def test_destroy_keeps_a_parent_made_by_someone_else(fake_v2):
    fake_v2.make_dir(str(fake_v2.root / "lab"))
    group = Cgroup.create("c1", parent="lab/class", host=fake_v2.host)
    assert group.created_parents == [str(fake_v2.root / "lab" / "class")]
    group.destroy()
    assert (fake_v2.root / "lab").is_dir()
    assert not (fake_v2.root / "lab" / "class").exists()


def test_default_parent_stays(fake_v2):
    group = Cgroup.create("c1", host=fake_v2.host)
    assert group.created_parents == []
    group.destroy()
    assert (fake_v2.root / "minictr").is_dir()


def test_state_without_created_parents_still_loads():
    data = {"name": "minictr/c1", "mode": "v2", "paths": {"unified": "/x"}}
    assert Cgroup.from_dict(data).created_parents == []


def test_v1_stats_treats_huge_limit_as_none(tmp_path):
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "cpuacct.usage").write_text("123456789\n")
    (tmp_path / "blkio.throttle.io_service_bytes_recursive").write_text(
        "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Total 30\nTotal 30\n"
    )
    directory = str(tmp_path)
    stats = v1.stats({"memory": directory, "cpuacct": directory, "blkio": directory})
    assert stats == {
        "memory": {"usage": 4096, "limit": None},
        "cpu": {"usage_ns": 123456789},
        "pids": {"current": None, "limit": None},
        "io": {"read_bytes": 10, "write_bytes": 20},
    }


def test_v1_oom_kill_count(tmp_path):
    (tmp_path / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    )
    assert v1.oom_kills(str(tmp_path)) == 2
    assert v1.oom_kills(str(tmp_path / "gone")) == 0


def test_mount_steps_v2():
    host = layout.Layout(unified=layout.Hierarchy("/sys/fs/cgroup", version=2))
    group = Cgroup("minictr/c1", "v2", {"unified": "/sys/fs/cgroup/minictr/c1"})
    steps = group.container_mount_steps("/merged/", host=host)
    mounts = [s for s in steps if isinstance(s, Mount)]
    assert len(mounts) == 1
    assert mounts[0].target == "/merged/sys/fs/cgroup"
    assert mounts[0].fstype == "cgroup2"
    assert "MS_RDONLY" in mounts[0].describe()


def test_mount_steps_hybrid():
    host = layout.Layout(
        unified=layout.Hierarchy("/sys/fs/cgroup/unified", version=2),
        v1=(
            layout.Hierarchy("/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct")),
            layout.Hierarchy("/sys/fs/cgroup/systemd", ("name=systemd",)),
        ),
    )
    group = Cgroup("minictr/c1", "hybrid", {})
    steps = group.container_mount_steps("/m", host=host)
    mounts = [(s.target, s.fstype, s.data) for s in steps if isinstance(s, Mount)]
    assert mounts == [
        ("/m/sys/fs/cgroup", "tmpfs", "mode=755"),
        ("/m/sys/fs/cgroup/cpu,cpuacct", "cgroup", "cpu,cpuacct"),
        ("/m/sys/fs/cgroup/systemd", "cgroup", "none,name=systemd"),
        ("/m/sys/fs/cgroup/unified", "cgroup2", None),
        ("/m/sys/fs/cgroup", None, "mode=755"),
    ]
    links = [(s.path, s.target) for s in steps if isinstance(s, Symlink)]
    assert links == [
        ("/m/sys/fs/cgroup/cpu", "cpu,cpuacct"),
        ("/m/sys/fs/cgroup/cpuacct", "cpu,cpuacct"),
    ]
    assert "MS_REMOUNT" in steps[-1].describe()
    assert "MS_RDONLY" in steps[-1].describe()


def test_v1_dir_and_unified_dir():
    group = Cgroup(
        "minictr/c1",
        "hybrid",
        {
            "devices": "/sys/fs/cgroup/devices/minictr/c1",
            "unified": "/sys/fs/cgroup/unified/minictr/c1",
        },
    )
    assert group.v1_dir("devices") == "/sys/fs/cgroup/devices/minictr/c1"
    assert group.v1_dir("memory") is None
    assert group.v1_dir("unified") is None
    assert group.unified_dir() == "/sys/fs/cgroup/unified/minictr/c1"


def test_missing_required_file_is_an_error(tmp_path):
    group = Cgroup("minictr/c1", "v1", {"blkio": str(tmp_path)})
    with pytest.raises(CgroupError, match="BFQ"):
        group._apply([Setting("blkio.weight", "500")])
    group._apply([Setting("blkio.weight", "500", required=False)])
    assert not (tmp_path / "blkio.weight").exists()


def test_remove_tree_removes_only_directories(tmp_path, monkeypatch):
    (tmp_path / "c1" / "nested").mkdir(parents=True)
    removed = []
    monkeypatch.setattr(os, "rmdir", lambda path: removed.append(path))
    fs.remove_tree(str(tmp_path / "c1"))
    assert removed == [str(tmp_path / "c1" / "nested"), str(tmp_path / "c1")]


def test_uses_cgroup_module_names():
    assert cgroup.UNIFIED == "unified"
