"""Cgroup tests on a pure cgroup v2 kernel, run by scripts/vm.sh.

This module loads the tests of tests/integration/test_cgroups.py and
test_cgroups_run.py, so one set of tests covers both layouts. The host runs them on its own
layout, which is cgroup v1 on a hybrid CI machine, and this module runs them
on cgroup v2. The tests below add checks of the v2 files themselves.

    VM_TIMEOUT=900 scripts/vm.sh '.venv/bin/python -m pytest -q tests/cgroup2'
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from minicontainer.cgroups import Cgroup, detect, parse_resources

if os.geteuid() != 0 or detect().mode != "v2":
    pytest.skip(
        "needs root on a pure cgroup v2 host: run it with scripts/vm.sh",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.root, pytest.mark.cgroup_v2]


def _load(name: str):
    """Import tests/integration/NAME.py under its own module name."""
    path = Path(__file__).parent.parent / "integration" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cgroup_v2_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_behaviour = _load("test_cgroups")
_through_run = _load("test_cgroups_run")


def _is_fixture(value: object) -> bool:
    # pytest 8 wraps fixtures in FixtureFunctionDefinition; older versions
    # mark the function with _pytestfixturefunction.
    return type(value).__name__ == "FixtureFunctionDefinition" or hasattr(
        value, "_pytestfixturefunction"
    )


# pytest collects the test functions and fixtures found in this module.
for _module in (_behaviour, _through_run):
    globals().update(
        {
            name: value
            for name, value in vars(_module).items()
            if name.startswith("test_") or _is_fixture(value)
        }
    )
start_in = _behaviour.start_in


def read(path: str) -> str:
    with open(path) as file:
        return file.read().strip()


def test_v2_controllers_enabled_top_down(make_cgroup):
    group = make_cgroup(
        parse_resources({"memory": "64m", "cpus": "0.5", "pids_limit": 9})
    )
    leaf = group.unified_dir()
    assert group.paths == {"unified": leaf}
    parent = os.path.dirname(leaf)
    root = detect().unified.mount_point
    for directory in (root, parent):
        enabled = read(os.path.join(directory, "cgroup.subtree_control")).split()
        for controller in ("cpu", "memory", "pids"):
            assert controller in enabled, directory
    assert read(os.path.join(leaf, "memory.max")) == str(64 * 1024**2)
    assert read(os.path.join(leaf, "cpu.max")) == "50000 100000"
    assert read(os.path.join(leaf, "pids.max")) == "9"


def test_v2_process_only_in_leaf(make_cgroup):
    group = make_cgroup()
    process = start_in(group, "sleep", "30")
    try:
        leaf = group.unified_dir()
        assert read(os.path.join(leaf, "cgroup.procs")) == str(process.pid)
        # No internal processes: the parent only delegates controllers.
        assert read(os.path.join(os.path.dirname(leaf), "cgroup.procs")) == ""
        assert read(f"/proc/{process.pid}/cgroup") == f"0::{group.path}"
    finally:
        process.kill()
        process.wait()


def test_v2_oom_counted_in_memory_events(make_cgroup):
    group = make_cgroup(parse_resources({"memory": "16m"}))
    hog = start_in(group, "python3", "-c", "data = b'x' * (128 * 1024 * 1024)")
    assert hog.wait(timeout=120) != 0
    events = dict(
        line.split()
        for line in read(
            os.path.join(group.unified_dir(), "memory.events")
        ).splitlines()
    )
    assert int(events["oom_kill"]) >= 1


def test_v2_destroy_with_cgroup_kill(parent):
    group = Cgroup.create("killed", parent)
    process = start_in(group, "sleep", "300")
    assert os.path.exists(os.path.join(group.unified_dir(), "cgroup.kill"))
    group.destroy()
    assert process.wait(timeout=30) == -9
    assert not group.exists()


def test_v2_freeze_reported_in_events(make_cgroup):
    group = make_cgroup()
    process = start_in(group, "sleep", "30")
    try:
        group.freeze()
        assert "frozen 1" in read(os.path.join(group.unified_dir(), "cgroup.events"))
        group.thaw()
        assert "frozen 0" in read(os.path.join(group.unified_dir(), "cgroup.events"))
    finally:
        process.kill()
        process.wait()
