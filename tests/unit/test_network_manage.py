"""Network removal rules that need no kernel: the predefined networks stay."""

from __future__ import annotations

import ipaddress

import pytest

from minicontainer.errors import InvalidArgument
from minicontainer.network import ipam, manage


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    return tmp_path


@pytest.mark.parametrize("name", ["bridge", "host", "none"])
def test_predefined_network_cannot_be_removed(roots, name):
    if name == ipam.DEFAULT_NETWORK:
        ipam.save(ipam.new_record(name, ipaddress.IPv4Network("10.199.0.0/24")))
    with pytest.raises(InvalidArgument, match=f"network '{name}' is predefined"):
        manage.remove(name)
    if name == ipam.DEFAULT_NETWORK:
        assert ipam.load(name)["name"] == name
