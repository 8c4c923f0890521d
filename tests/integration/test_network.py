"""Container networking end to end, through the ``minictr`` command line.

Every test uses a private state root, so its bridges and its nftables table
(``ip minictr_<hash>``) are its own. Traffic goes only to loopback, to the
host's own address and to namespaces that the tests create.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import free_subnet

from minicontainer.network import firewall, names

SERVE = "mkdir -p /srv && echo hello-from-{name} > /srv/index.html && exec httpd -f -p 80 -h /srv"


@pytest.fixture
def net(minictr, state_dirs):
    """The ``minictr`` runner, with cleanup of every container and network it made."""
    yield minictr
    listed = minictr("ps", "-a", "-q", "--no-trunc").stdout.split()
    if listed:
        minictr("rm", "-f", *listed, timeout=120)
    minictr("network", "prune", "-f", timeout=60)
    for record in _records(state_dirs):
        minictr("network", "rm", record["name"])
    os.environ["MINICTR_ROOT"] = state_dirs["root"]
    table = firewall.table()
    subprocess.run(
        ["nft", "delete", "table", "ip", table], check=False, capture_output=True
    )


def _records(state_dirs) -> list[dict]:
    directory = os.path.join(state_dirs["root"], "networks")
    if not os.path.isdir(directory):
        return []
    return [
        json.load(open(os.path.join(directory, entry)))
        for entry in os.listdir(directory)
        if entry.endswith(".json")
    ]


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"rc={result.returncode} stderr={result.stderr}"
    return result.stdout.strip()


def _create_network(net, name: str) -> dict:
    _ok(net("network", "create", "--subnet", free_subnet(), name))
    return json.loads(_ok(net("network", "inspect", name)))[0]


def _address_of(net, network: str, container: str) -> str:
    record = json.loads(_ok(net("network", "inspect", network)))[0]
    for address, lease in record["leases"].items():
        if lease["name"] == container:
            return address
    raise AssertionError(f"{container} has no lease on {network}: {record['leases']}")


def _wget(
    net, rootfs, network: str, url: str, timeout: int = 10
) -> subprocess.CompletedProcess:
    # busybox 1.35's wget crashes on -T, so timeout(1) bounds the attempt.
    # timeout(1) runs under sh, and "; exit $?" keeps sh from exec'ing it,
    # because the kernel ignores signals sent to a PID 1 from inside its own
    # namespace when it has no handler for them, and timeout(1) would become
    # PID 1 and never stop. A name that
    # is not in /etc/hosts is looked up at the container's own loopback
    # (--dns 127.0.0.1), so no query leaves the machine.
    return net(
        "run",
        "--rm",
        "--dns",
        "127.0.0.1",
        "--network",
        network,
        str(rootfs),
        "sh",
        "-c",
        f"timeout {timeout} wget -q -O - {url}; exit $?",
        timeout=120,
    )


def _wait_for_http(url: str, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    while True:
        result = subprocess.run(
            ["curl", "-s", "--max-time", "5", url],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode == 0 and result.stdout:
            return result.stdout.strip()
        if time.monotonic() > end:
            raise AssertionError(f"{url} did not answer: {result.stderr}")
        time.sleep(0.3)


def _host_address() -> str:
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    if not route.split():
        pytest.skip("the host has no default route, so no address to test with")
    device = route.split("dev ")[1].split()[0]
    addr = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", device],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    return addr.split("inet ")[1].split("/")[0]


def _minictr_links() -> list[str]:
    output = subprocess.run(
        ["ip", "-o", "link"], check=False, capture_output=True, text=True
    ).stdout
    return [line.split(": ")[1].split("@")[0] for line in output.splitlines()]


def _table_listing(state_dirs) -> str:
    os.environ["MINICTR_ROOT"] = state_dirs["root"]
    result = subprocess.run(
        ["nft", "list", "table", "ip", firewall.table()],
        check=False,
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode == 0 else ""


def test_containers_resolve_each_other_by_name(net, busybox_rootfs):
    network = f"lab{secrets.token_hex(3)}"
    _create_network(net, network)
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            network,
            "--network-alias",
            "www",
            str(busybox_rootfs),
            "sh",
            "-c",
            SERVE.format(name="web"),
        )
    )
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "client",
            "--network",
            network,
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )

    by_name = _wget(net, busybox_rootfs, network, "http://web/")
    by_alias = _wget(net, busybox_rootfs, network, "http://www/")

    assert _ok(by_name) == "hello-from-web"
    assert _ok(by_alias) == "hello-from-web"

    # A container that joins later is added to the hosts file of the others.
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "late",
            "--network",
            network,
            str(busybox_rootfs),
            "sh",
            "-c",
            SERVE.format(name="late"),
        )
    )
    hosts = _ok(net("exec", "client", "cat", "/etc/hosts"))
    assert "late" in hosts.split()
    fetched = net(
        "exec",
        "client",
        "sh",
        "-c",
        "timeout 10 wget -q -O - http://late/; exit $?",
        timeout=60,
    )
    assert _ok(fetched) == "hello-from-late"


def test_other_network_cannot_reach(net, busybox_rootfs):
    first = f"one{secrets.token_hex(3)}"
    second = f"two{secrets.token_hex(3)}"
    _create_network(net, first)
    _create_network(net, second)
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            first,
            str(busybox_rootfs),
            "sh",
            "-c",
            SERVE.format(name="web"),
        )
    )
    address = _address_of(net, first, "web")

    same = _wget(net, busybox_rootfs, first, f"http://{address}/")
    other = _wget(net, busybox_rootfs, second, f"http://{address}/", timeout=5)
    by_name = _wget(net, busybox_rootfs, second, "http://web/", timeout=5)

    assert _ok(same) == "hello-from-web"
    assert other.returncode != 0
    assert "hello" not in other.stdout
    assert by_name.returncode != 0


def test_published_port_answers_everywhere(net, busybox_rootfs):
    host = _host_address()
    other = f"other{secrets.token_hex(3)}"
    _create_network(net, other)
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "80",
            str(busybox_rootfs),
            "sh",
            "-c",
            SERVE.format(name="web"),
        )
    )
    mapping = _ok(net("port", "web"))
    assert mapping.startswith("80/tcp -> 0.0.0.0:")
    port = mapping.rsplit(":", 1)[1]

    assert _wait_for_http(f"http://127.0.0.1:{port}/") == "hello-from-web"
    assert _wait_for_http(f"http://{host}:{port}/") == "hello-from-web"
    from_default = _wget(net, busybox_rootfs, "bridge", f"http://{host}:{port}/")
    assert _ok(from_default) == "hello-from-web"
    from_other = _wget(net, busybox_rootfs, other, f"http://{host}:{port}/")
    assert _ok(from_other) == "hello-from-web"
    from_itself = net(
        "exec",
        "web",
        "sh",
        "-c",
        f"timeout 10 wget -q -O - http://{host}:{port}/; exit $?",
        timeout=60,
    )
    assert _ok(from_itself) == "hello-from-web"


def test_port_in_use_fails_before_start(net, busybox_rootfs, state_dirs):
    import socket

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = net(
            "run",
            "-d",
            "--name",
            "clash",
            "-p",
            f"{port}:80",
            str(busybox_rootfs),
            "sleep",
            "30",
        )

    assert result.returncode == 125
    assert f"{port}" in result.stderr
    assert "in use" in result.stderr
    for record in _records(state_dirs):
        assert record["leases"] == {}
    assert "ctr:" not in _table_listing(state_dirs)


@pytest.fixture
def outside():
    """A namespace acting as "outside", linked to the host by a veth pair."""
    token = secrets.token_hex(3)
    namespace, host_end = f"mctout{token}", f"mcto{token}"
    # `ip netns add` turns /run/netns into a mount point the first time it runs
    # and never undoes it; undo it here when this fixture made it.
    netns_was_mounted = _is_mount_point("/run/netns")
    subnet = free_subnet().rsplit(".", 1)[0]
    host_ip, outside_ip = f"{subnet}.1", f"{subnet}.2"
    commands = [
        ["ip", "netns", "add", namespace],
        [
            "ip",
            "link",
            "add",
            host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            namespace,
        ],
        ["ip", "addr", "add", f"{host_ip}/24", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{outside_ip}/24", "dev", "eth0"],
        ["ip", "-n", namespace, "link", "set", "eth0", "up"],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield namespace, host_ip, outside_ip
    finally:
        subprocess.run(
            ["ip", "link", "del", host_end], check=False, capture_output=True
        )
        subprocess.run(
            ["ip", "netns", "del", namespace], check=False, capture_output=True
        )
        if not netns_was_mounted and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], check=False, capture_output=True)


def _is_mount_point(path: str) -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == path for line in mountinfo)


def test_outbound_nat_to_outside(net, busybox_rootfs, outside):
    namespace, host_ip, outside_ip = outside
    # The server replies with the address the connection came from.
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            "python3",
            "-c",
            (
                "import socket\n"
                "s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen()\n"
                "c, peer = s.accept(); c.recv(1024)\n"
                "c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n' + peer[0].encode())\n"
                "c.close()\n"
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        result = _wget(net, busybox_rootfs, "bridge", f"http://{outside_ip}:8080/")
    finally:
        server.kill()
        server.wait()

    assert _ok(result) == host_ip


def test_parallel_starts_get_distinct_addresses(net, busybox_rootfs, state_dirs):
    network = f"par{secrets.token_hex(3)}"
    record = _create_network(net, network)

    def start(index: int) -> subprocess.CompletedProcess:
        return net(
            "run",
            "-d",
            "--name",
            f"p{index}",
            "--network",
            network,
            str(busybox_rootfs),
            "sleep",
            "300",
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(start, range(30)))

    for result in results:
        _ok(result)
    leases = json.loads(_ok(net("network", "inspect", network)))[0]["leases"]
    assert len(leases) == 30
    reserved = {record["gateway"], record["subnet"].split("/")[0]}
    assert not reserved & set(leases)
    on_bridge = subprocess.run(
        ["ip", "-o", "link", "show", "master", record["bridge"]],
        check=False,
        capture_output=True,
        text=True,
    ).stdout
    assert len(on_bridge.splitlines()) == 30
    inside = _ok(net("exec", "p7", "ip", "-o", "-4", "addr", "show", "eth0"))
    assert _address_of(net, network, "p7") in inside


def test_long_names_give_valid_interfaces(net, busybox_rootfs):
    network = ("n" + secrets.token_hex(20))[:40]
    container = ("c" + secrets.token_hex(20))[:40]
    record = _create_network(net, network)

    _ok(
        net(
            "run",
            "-d",
            "--name",
            container,
            "--network",
            network,
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )

    lease = next(
        iter(json.loads(_ok(net("network", "inspect", network)))[0]["leases"].values())
    )
    assert names.is_valid_ifname(lease["host_ifname"])
    assert names.is_valid_ifname(record["bridge"])
    assert lease["host_ifname"] in _minictr_links()
    assert record["bridge"] in _minictr_links()
    inside = _ok(net("exec", container, "ip", "-o", "link", "show", "eth0"))
    assert "LOWER_UP" in inside


def test_rm_leaves_no_veth_rule_or_lease(net, busybox_rootfs, state_dirs):
    network = f"rm{secrets.token_hex(3)}"
    record = _create_network(net, network)
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "gone",
            "--network",
            network,
            "-p",
            "80",
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )
    lease = next(
        iter(json.loads(_ok(net("network", "inspect", network)))[0]["leases"].values())
    )
    container_id = lease["container_id"]
    assert lease["host_ifname"] in _minictr_links()
    assert f"ctr:{container_id}" in _table_listing(state_dirs)

    _ok(net("rm", "-f", "gone", timeout=120))

    assert lease["host_ifname"] not in _minictr_links()
    assert record["bridge"] not in _minictr_links()
    assert container_id not in _table_listing(state_dirs)
    assert json.loads(_ok(net("network", "inspect", network)))[0]["leases"] == {}


def test_crash_then_prune_leaves_nothing(net, busybox_rootfs, state_dirs):
    network = f"crash{secrets.token_hex(3)}"
    record = _create_network(net, network)
    container_id = _ok(
        net(
            "run",
            "-d",
            "--name",
            "victim",
            "--network",
            network,
            "-p",
            "80",
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )
    state_file = os.path.join(
        state_dirs["root"], "containers", container_id, "state.json"
    )
    with open(state_file) as f:
        saved = json.load(f)
    lease = next(
        iter(json.loads(_ok(net("network", "inspect", network)))[0]["leases"].values())
    )

    # A crash: the monitor dies first, so no teardown runs, then PID 1.
    os.kill(saved["monitor_pid"], 9)
    os.kill(saved["pid"], 9)
    time.sleep(0.5)
    assert f"ctr:{container_id}" in _table_listing(state_dirs)

    _ok(net("prune", timeout=120))
    _ok(net("network", "prune", "-f", timeout=60))

    assert lease["host_ifname"] not in _minictr_links()
    assert record["bridge"] not in _minictr_links()
    assert container_id not in _table_listing(state_dirs)
    assert not os.path.exists(
        os.path.join(state_dirs["root"], "networks", f"{network}.json")
    )
    # With nothing left to prune, as with Docker, nothing is printed.
    assert _ok(net("network", "prune", "-f", timeout=60)) == ""


def test_connect_disconnect_and_rm_in_use(net, busybox_rootfs):
    first = f"ca{secrets.token_hex(3)}"
    second = f"cb{secrets.token_hex(3)}"
    _create_network(net, first)
    _create_network(net, second)
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            second,
            str(busybox_rootfs),
            "sh",
            "-c",
            SERVE.format(name="web"),
        )
    )
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "roamer",
            "--network",
            first,
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )

    _ok(net("network", "connect", "--alias", "rover", second, "roamer"))

    links = _ok(net("exec", "roamer", "ip", "-o", "-4", "addr"))
    assert _address_of(net, second, "roamer") in links
    assert "eth1" in links
    fetched = net(
        "exec",
        "roamer",
        "sh",
        "-c",
        "timeout 10 wget -q -O - http://web/; exit $?",
        timeout=60,
    )
    assert _ok(fetched) == "hello-from-web"
    web_hosts = _ok(net("exec", "web", "cat", "/etc/hosts")).split()
    assert "roamer" in web_hosts
    assert "rover" in web_hosts
    in_use = net("network", "rm", second)
    assert in_use.returncode != 0
    assert "in use" in in_use.stderr

    _ok(net("network", "disconnect", second, "roamer"))

    links = _ok(net("exec", "roamer", "ip", "-o", "link"))
    assert "eth1" not in links
    assert "roamer" not in _ok(net("exec", "web", "cat", "/etc/hosts")).split()


def test_address_options_reach_etc_files(net, busybox_rootfs):
    network = f"opt{secrets.token_hex(3)}"
    record = _create_network(net, network)
    address = record["subnet"].rsplit(".", 1)[0] + ".77"
    script = "ip -o -4 addr show eth0; ip -o link show eth0; cat /etc/hosts /etc/resolv.conf /etc/hostname"

    output = _ok(
        net(
            "run",
            "--rm",
            "--network",
            network,
            "--ip",
            address,
            "--mac-address",
            "02:42:aa:bb:cc:dd",
            "--hostname",
            "box",
            "--dns",
            "192.0.2.53",
            "--add-host",
            "db.test:10.1.2.3",
            str(busybox_rootfs),
            "sh",
            "-c",
            script,
        )
    )

    assert f"inet {address}/24" in output
    assert "02:42:aa:bb:cc:dd" in output
    assert f"{address}\tbox" in output
    assert "10.1.2.3\tdb.test" in output
    assert "nameserver 192.0.2.53" in output
    assert output.splitlines()[-1] == "box"


def test_full_subnet_leaves_nothing(net, busybox_rootfs, state_dirs):
    network = f"full{secrets.token_hex(3)}"
    subnet = free_subnet().replace("/24", "/30")
    _ok(net("network", "create", "--subnet", subnet, network))
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "only",
            "--network",
            network,
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )

    refused = net(
        "run",
        "-d",
        "--name",
        "extra",
        "--network",
        network,
        "-p",
        "80",
        str(busybox_rootfs),
        "sleep",
        "300",
    )

    assert refused.returncode == 125
    assert "no free address" in refused.stderr
    leases = json.loads(_ok(net("network", "inspect", network)))[0]["leases"]
    assert [lease["name"] for lease in leases.values()] == ["only"]
    assert "ctr:" not in _table_listing(state_dirs)


def test_sysctl_of_the_container_interface(net, busybox_rootfs):
    # eth0 exists only once the monitor has attached the network, so the
    # sysctls are written after PID 1 is released.
    record = _create_network(net, f"sc{secrets.token_hex(3)}")
    shown = _ok(
        net(
            "run",
            "--rm",
            "--network",
            record["name"],
            "--sysctl",
            "net.ipv4.conf.eth0.rp_filter=2",
            str(busybox_rootfs),
            "cat",
            "/proc/sys/net/ipv4/conf/eth0/rp_filter",
        )
    )
    assert shown == "2"


def test_add_host_gateway_names_the_network_gateway(net, busybox_rootfs):
    record = _create_network(net, f"hg{secrets.token_hex(3)}")
    hosts = _ok(
        net(
            "run",
            "--rm",
            "--network",
            record["name"],
            "--add-host",
            "host.docker.internal:host-gateway",
            str(busybox_rootfs),
            "cat",
            "/etc/hosts",
        )
    )
    assert f"{record['gateway']}\thost.docker.internal" in hosts.splitlines()


def test_host_and_container_modes(net, busybox_rootfs):
    host_links = subprocess.run(
        ["ip", "-o", "link"], check=False, capture_output=True, text=True
    ).stdout
    in_host = _ok(
        net("run", "--rm", "--network", "host", str(busybox_rootfs), "ip", "-o", "link")
    )
    assert len(in_host.splitlines()) == len(host_links.splitlines())

    _ok(net("run", "-d", "--name", "owner", str(busybox_rootfs), "sleep", "300"))
    owner = _ok(net("exec", "owner", "ip", "-o", "-4", "addr", "show", "eth0"))
    joined = _ok(
        net(
            "run",
            "--rm",
            "--network",
            "container:owner",
            str(busybox_rootfs),
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        )
    )
    assert joined.split()[3] == owner.split()[3]


def test_host_and_container_modes_take_hostname(net, busybox_rootfs):
    # As in Docker: the host's name with --network host, the owner's name
    # with container:NAME, where a --hostname of its own conflicts.
    in_host = _ok(
        net("run", "--rm", "--network", "host", str(busybox_rootfs), "hostname")
    )
    assert in_host == socket.gethostname()
    _ok(
        net(
            "run",
            "-d",
            "--name",
            "named",
            "-h",
            "ownbox",
            str(busybox_rootfs),
            "sleep",
            "300",
        )
    )
    joined = _ok(
        net(
            "run",
            "--rm",
            "--network",
            "container:named",
            str(busybox_rootfs),
            "hostname",
        )
    )
    assert joined == "ownbox"
    conflict = net(
        "run",
        "--rm",
        "--network",
        "container:named",
        "-h",
        "other",
        str(busybox_rootfs),
        "true",
    )
    assert conflict.returncode == 125
    assert "--hostname conflicts with --network container:named" in conflict.stderr


@pytest.fixture
def spare_link():
    """An empty host bridge with a unique name, removed afterwards.

    A bridge rather than a dummy device, because a kernel may lack the
    dummy driver. Either gives the host a route to the addresses put on it.
    """
    name = f"mctest{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_idle_picked_subnet_moves_off_a_new_route(net, busybox_rootfs, spare_link):
    # A route that appears while a network is idle (a VPN, another runtime)
    # covers its subnet. A subnet minictr picked moves; one the user gave fails.
    _ok(net("network", "create", "picked"))
    picked_subnet = json.loads(_ok(net("network", "inspect", "picked")))[0]["subnet"]
    user_subnet = free_subnet()
    _ok(net("network", "create", "--subnet", user_subnet, "given"))
    for subnet in (picked_subnet, user_subnet):
        gateway = str(next(ipaddress.IPv4Network(subnet).hosts()))
        prefix = subnet.split("/")[1]
        subprocess.run(
            ["ip", "addr", "add", f"{gateway}/{prefix}", "dev", spare_link], check=True
        )
    subprocess.run(["ip", "link", "set", spare_link, "up"], check=True)

    moved = net("run", "--rm", "--network", "picked", str(busybox_rootfs), "true")
    assert moved.returncode == 0, moved.stderr
    record = json.loads(_ok(net("network", "inspect", "picked")))[0]
    assert record["subnet"] != picked_subnet
    assert not ipaddress.IPv4Network(record["subnet"]).overlaps(
        ipaddress.IPv4Network(picked_subnet)
    )
    failed = net("run", "--rm", "--network", "given", str(busybox_rootfs), "true")
    assert failed.returncode == 125
    assert f"subnet {user_subnet} overlaps the host route" in failed.stderr
