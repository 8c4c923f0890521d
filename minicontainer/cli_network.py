"""``minictr network ...`` and ``minictr port``: user-defined networks and published ports."""

from __future__ import annotations

import json

import click


@click.group("network")
def network_group() -> None:
    """Manage networks: a bridge and a subnet that containers join by name."""


@network_group.command("create")
@click.argument("name")
@click.option(
    "--subnet", default=None, metavar="CIDR", help="IPv4 subnet, e.g. 10.90.0.0/24."
)
@click.option(
    "--gateway",
    default=None,
    metavar="IP",
    help="Bridge address (default: the first host).",
)
@click.option("-l", "--label", multiple=True, help="Set a label, KEY=VALUE.")
@click.option(
    "-d", "--driver", default="bridge", help="Network driver (only 'bridge' exists)."
)
def create_command(
    name: str,
    subnet: str | None,
    gateway: str | None,
    label: tuple[str, ...],
    driver: str,
) -> None:
    """Create network NAME and print its id."""
    from .errors import InvalidArgument
    from .network import manage

    if driver != "bridge":
        raise InvalidArgument(
            f"network driver {driver!r} is not supported: only 'bridge' exists"
        )
    labels = dict(item.partition("=")[::2] for item in label)
    click.echo(manage.create(name, subnet, gateway, labels)["id"])


@network_group.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names.")
def ls_command(quiet: bool) -> None:
    """List networks."""
    from .network import manage

    records = manage.list_networks()
    if quiet:
        for record in records:
            click.echo(record["name"])
        return
    click.echo(f"{'NETWORK ID':<14}{'NAME':<24}{'SUBNET':<18}{'BRIDGE':<17}CONTAINERS")
    for record in records:
        click.echo(
            f"{record['id'][:12]:<14}{record['name']:<24}{record['subnet']:<18}"
            f"{record['bridge']:<17}{len(record['leases'])}"
        )


@network_group.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect_command(names: tuple[str, ...]) -> None:
    """Print each network's record, with its leases, as a JSON list."""
    from .network import manage

    click.echo(json.dumps([manage.inspect(name) for name in names], indent=4))


@network_group.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm_command(names: tuple[str, ...]) -> None:
    """Remove networks that no container uses: record, bridge and rules."""
    from .network import manage

    for name in names:
        manage.remove(name)
        click.echo(name)


@network_group.command("connect")
@click.argument("network")
@click.argument("container")
@click.option(
    "--alias", multiple=True, help="Another name of the container on NETWORK."
)
@click.option("--ip", default=None, metavar="IPV4", help="Address on NETWORK.")
def connect_command(
    network: str, container: str, alias: tuple[str, ...], ip: str | None
) -> None:
    """Connect a running CONTAINER to NETWORK through a new interface."""
    from .network import manage

    manage.connect(container, network, list(alias), ip)


@network_group.command("disconnect")
@click.argument("network")
@click.argument("container")
def disconnect_command(network: str, container: str) -> None:
    """Disconnect a running CONTAINER from NETWORK."""
    from .network import manage

    manage.disconnect(container, network)


@network_group.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune_command(force: bool) -> None:
    """Remove unused networks and what crashed containers left behind."""
    from .network import manage

    if not force:
        click.confirm(
            "This removes networks that no container uses, and leftover"
            " interfaces, rules and leases. Continue?",
            abort=True,
        )
    removed = manage.prune()
    if removed["networks"]:
        click.echo("Deleted Networks:")
    for name in removed["networks"]:
        click.echo(name)
    for kind in ("leases", "links", "rules"):
        if removed[kind]:
            click.echo(f"Removed {kind}: {', '.join(removed[kind])}")


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False)
def port_command(container: str, private_port: str | None) -> None:
    """List CONTAINER's published ports, or the host side of PRIVATE_PORT[/PROTO]."""
    from . import state
    from .errors import NotFound
    from .network import ports, published_ports

    mappings = published_ports(state.find(container))
    if private_port:
        number, _, proto = private_port.partition("/")
        mappings = [
            m
            for m in mappings
            if str(m["container_port"]) == number and m["proto"] == (proto or "tcp")
        ]
        if not mappings:
            raise NotFound(f"no public port {private_port!r} published for {container}")
        for mapping in mappings:
            click.echo(f"{mapping['host_ip']}:{mapping['host_port']}")
        return
    for mapping in mappings:
        click.echo(ports.format_mapping(mapping))


def register(cli: click.Group) -> None:
    """Add ``network`` and ``port`` to ``cli``."""
    cli.add_command(network_group)
    cli.add_command(port_command)
