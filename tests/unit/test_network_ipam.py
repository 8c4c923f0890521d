"""Address leases: allocation under concurrency, reserved addresses, full subnets."""

from __future__ import annotations

import ipaddress
import multiprocessing

import pytest

from minicontainer.errors import Conflict, InvalidArgument, NotFound
from minicontainer.network import ipam


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICTR_ROOT", str(tmp_path / "state"))
    monkeypatch.setenv("MINICTR_RUN", str(tmp_path / "run"))
    return tmp_path


def _save_network(name: str, subnet: str) -> dict:
    record = ipam.new_record(name, ipaddress.IPv4Network(subnet))
    ipam.save(record)
    return record


def _allocate_one(args: tuple[str, str, str, str]) -> str:
    root, run, network, container_id = args
    import os

    os.environ["MINICTR_ROOT"] = root
    os.environ["MINICTR_RUN"] = run
    with ipam.locked():
        record = ipam.load(network)
        address = ipam.allocate(record, {"container_id": container_id})
        ipam.save(record)
    return address


def test_parallel_allocations_are_distinct(roots):
    record = _save_network("par", "10.201.0.0/24")
    jobs = [
        (str(roots / "state"), str(roots / "run"), "par", f"c{i:02d}")
        for i in range(30)
    ]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        addresses = pool.map(_allocate_one, jobs)

    assert len(set(addresses)) == 30
    subnet = ipaddress.IPv4Network(record["subnet"])
    reserved = {
        str(subnet.network_address),
        str(subnet.broadcast_address),
        record["gateway"],
    }
    assert not reserved & set(addresses)
    assert sorted(ipam.load("par")["leases"]) == sorted(addresses)


def test_allocation_skips_gateway_and_network(roots):
    record = _save_network("small", "10.202.0.0/29")
    addresses = [ipam.allocate(record, {"container_id": str(i)}) for i in range(5)]

    assert addresses == [f"10.202.0.{n}" for n in range(2, 7)]


def test_full_subnet_is_conflict(roots):
    record = _save_network("tiny", "10.203.0.0/30")
    ipam.allocate(record, {"container_id": "a"})

    with pytest.raises(Conflict, match="no free address"):
        ipam.allocate(record, {"container_id": "b"})
    assert list(record["leases"]) == ["10.203.0.2"]


def test_requested_address_checks(roots):
    record = _save_network("req", "10.204.0.0/24")
    assert ipam.allocate(record, {"container_id": "a"}, "10.204.0.50") == "10.204.0.50"

    with pytest.raises(Conflict, match="already in use"):
        ipam.allocate(record, {"container_id": "b"}, "10.204.0.50")
    with pytest.raises(InvalidArgument, match="outside subnet"):
        ipam.allocate(record, {"container_id": "b"}, "10.99.0.5")
    with pytest.raises(InvalidArgument, match="gateway"):
        ipam.allocate(record, {"container_id": "b"}, "10.204.0.1")
    with pytest.raises(InvalidArgument, match="broadcast"):
        ipam.allocate(record, {"container_id": "b"}, "10.204.0.255")
    with pytest.raises(InvalidArgument, match="invalid --ip"):
        ipam.allocate(record, {"container_id": "b"}, "10.204.0")


def test_subnet_parsing():
    assert str(ipam.parse_subnet("10.90.0.0/24")) == "10.90.0.0/24"
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        ipam.parse_subnet("10.90.0.1/24")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        ipam.parse_subnet("banana")
    with pytest.raises(InvalidArgument, match="too small"):
        ipam.parse_subnet("10.90.0.0/31")


def test_gateway_must_be_in_subnet():
    subnet = ipaddress.IPv4Network("10.91.0.0/24")
    assert ipam.new_record("n", subnet, "10.91.0.254")["gateway"] == "10.91.0.254"
    with pytest.raises(InvalidArgument, match="not a host address"):
        ipam.new_record("n", subnet, "10.92.0.1")


def test_pick_subnet_skips_taken(roots):
    _save_network("first", "10.89.0.0/24")
    picked = ipam.pick_subnet(["10.89.0.0/16"], 24)

    assert str(picked) == "10.89.1.0/24"


def test_network_names():
    ipam.validate_network_name("lab-net_1.a")
    for bad in ("", "-x", "a/b", "none", "host", "x" * 65):
        with pytest.raises(InvalidArgument):
            ipam.validate_network_name(bad)


def test_unknown_network_is_not_found(roots):
    with pytest.raises(NotFound, match="network create nope"):
        ipam.load("nope")
