"""Device rules and GPUs on a pure cgroup v2 kernel, run by scripts/vm.sh.

There is no devices.allow on cgroup v2, so everything here rests on the BPF
device program. The behaviour tests are those of
tests/integration/test_devices.py and test_gpus.py, loaded from those files;
the test below checks the program on a cgroup made by the runtime's own
Cgroup class.

    VM_TIMEOUT=900 scripts/vm.sh '.venv/bin/python -m pytest -q tests/cgroup2/test_devices_v2.py'
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

from minicontainer.cgroups import Cgroup, detect

if detect().mode != "v2":
    pytest.skip(
        "needs a pure cgroup v2 host: run it with scripts/vm.sh",
        allow_module_level=True,
    )

from minicontainer.config import ContainerConfig, ProcessConfig
from minicontainer.devices import apply_rules, bpf

pytestmark = [pytest.mark.root, pytest.mark.cgroup_v2]

_INTEGRATION = Path(__file__).parent.parent / "integration"


def _load(name: str) -> None:
    spec = importlib.util.spec_from_file_location(
        f"v2_{name}", _INTEGRATION / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the file runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    # pytest collects the tests and fixtures found in this module's globals.
    globals().update(
        {
            key: value
            for key, value in vars(module).items()
            if key.startswith("test_")
            or key in ("own_cgroup", "nvidia_host", "glibc_like_rootfs")
        }
    )


_load("test_devices")
_load("test_gpus")


def test_runtime_cgroup_gets_program():
    container_id = uuid.uuid4().hex * 2
    cgroup = Cgroup.create(container_id, parent="minictr-test")
    try:
        config = ContainerConfig(
            id=container_id, name="t", process=ProcessConfig(args=["true"])
        )
        apply_rules(config, cgroup)
        assert cgroup.v1_dir("devices") is None
        assert len(bpf.attached_program_ids(cgroup.unified_dir())) == 1
    finally:
        cgroup.destroy()
