"""Host-side interface names: within 15 bytes, stable, distinct."""

from __future__ import annotations

from minicontainer.network import names


def test_veth_names_fit_and_differ():
    seen = set()
    for i in range(2000):
        container_id = f"{i:064x}"
        name = names.veth_name(container_id, "a-network-name-of-forty-characters-xxxxx")
        assert names.is_valid_ifname(name), name
        assert len(name.encode()) <= 15
        assert names.is_minictr_veth(name)
        seen.add(name)
    assert len(seen) == 2000


def test_veth_name_is_stable_and_salted():
    first = names.veth_name("c" * 64, "lab")
    assert names.veth_name("c" * 64, "lab") == first
    assert names.veth_name("c" * 64, "lab", salt=1) != first
    assert names.veth_name("c" * 64, "other") != first


def test_bridge_names_fit():
    name = names.bridge_name("f" * 64)
    assert names.is_valid_ifname(name)
    assert name.startswith(names.BRIDGE_PREFIX)


def test_default_bridge_depends_on_root(monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", "/var/lib/minictr")
    assert names.default_bridge() == "minictr0"
    monkeypatch.setenv("MINICTR_ROOT", "/tmp/other-root")
    other = names.default_bridge()
    assert other != "minictr0"
    assert names.is_valid_ifname(other)


def test_invalid_ifnames():
    for bad in ("", "x" * 16, "a/b", "a:b", "a b", ".", ".."):
        assert not names.is_valid_ifname(bad), bad
    assert names.is_valid_ifname("x" * 15)
