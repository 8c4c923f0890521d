"""``minictr volume``: create, list, inspect and remove named volumes."""

from __future__ import annotations

import json
import sys

import click


def _parse_labels(items: tuple[str, ...]) -> dict[str, str]:
    from .errors import InvalidArgument

    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value if sep else ""
    return labels


@click.group("volume")
def volume_group() -> None:
    """Manage named volumes (data kept under minictr's state root)."""


@volume_group.command("create")
@click.argument("name", required=False)
@click.option("-l", "--label", multiple=True, help="Set a label, KEY=VALUE.")
@click.option(
    "-d", "--driver", default="local", help="Volume driver (only 'local' exists)."
)
def create_command(name: str | None, label: tuple[str, ...], driver: str) -> None:
    """Create volume NAME (a random name when omitted) and print its name."""
    import secrets

    from .errors import InvalidArgument
    from .mounts import volumes

    if driver != "local":
        raise InvalidArgument(
            f"volume driver {driver!r} is not supported: only 'local' exists"
        )
    labels = _parse_labels(label)
    with volumes.locked():
        metadata, _ = volumes.create(name or secrets.token_hex(32), labels=labels)
    click.echo(metadata["Name"])


@volume_group.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only the names.")
def ls_command(quiet: bool) -> None:
    """List volumes."""
    from .mounts import volumes

    listed = volumes.list_volumes()
    if quiet:
        for metadata in listed:
            click.echo(metadata["Name"])
        return
    click.echo(f"{'DRIVER':<10}VOLUME NAME")
    for metadata in listed:
        click.echo(f"{metadata['Driver']:<10}{metadata['Name']}")


@volume_group.command("inspect")
@click.argument("names", nargs=-1, required=True)
def inspect_command(names: tuple[str, ...]) -> None:
    """Print the metadata of each volume as a JSON list."""
    from .mounts import volumes

    click.echo(json.dumps([volumes.inspect(name) for name in names], indent=4))


@volume_group.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Ignore volumes that do not exist.")
def rm_command(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes that no container uses, and their data."""
    from .mounts import volumes

    for name in names:
        volumes.remove(name, force=force)
        click.echo(name)


@volume_group.command("prune")
@click.option(
    "-a", "--all", "all_volumes", is_flag=True, help="Remove unused named volumes too."
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune_command(all_volumes: bool, force: bool) -> None:
    """Remove unused anonymous volumes (with --all, every unused volume)."""
    from .mounts import volumes

    if not force:
        what = "all volumes" if all_volumes else "anonymous volumes"
        question = f"This removes {what} that no container uses. Continue?"
        if not _confirmed(question):
            click.echo("Nothing was removed.")
            return
    deleted = volumes.prune(all_volumes)
    click.echo("Deleted Volumes:")
    for name in deleted:
        click.echo(name)


def _confirmed(question: str) -> bool:
    """Ask ``question``; "n", an empty answer and the end of input all mean no.

    The terminal echoes a typed answer with its newline. An answer read from
    a pipe or a file is not echoed, and neither is Ctrl-D, so the line is
    ended here in those cases.
    """
    try:
        answer = click.confirm(question, default=False)
    except click.exceptions.Abort:
        click.echo()
        return False
    if not sys.stdin.isatty():
        click.echo()
    return answer


def register(cli: click.Group) -> None:
    """Add the ``volume`` command group to ``cli``."""
    cli.add_command(volume_group)
