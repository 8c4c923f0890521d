"""``minictr build`` and ``minictr history``: Dockerfiles to images, and back."""

from __future__ import annotations

import json
from typing import Any

import click

from .errors import InvalidArgument


def register(cli: click.Group) -> None:
    cli.add_command(build)
    cli.add_command(history)


def _build_args(items: tuple[str, ...]) -> dict[str, str]:
    import os

    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not name:
            raise InvalidArgument(f"invalid --build-arg {item!r}: expected NAME=VALUE")
        if sep:
            values[name] = value
        elif name in os.environ:
            # As in Docker, a bare NAME takes its value from the environment.
            values[name] = os.environ[name]
    return values


@click.command()
@click.option(
    "-t", "--tag", "tags", multiple=True, help="Name the image NAME[:TAG] (repeatable)."
)
@click.option(
    "-f",
    "--file",
    "dockerfile",
    default="",
    help="Dockerfile path (default: CONTEXT/Dockerfile).",
)
@click.option(
    "--build-arg", multiple=True, help="Set a build argument, NAME=VALUE (repeatable)."
)
@click.option("--target", default="", help="Build the stage with this name.")
@click.option(
    "--no-cache", is_flag=True, help="Run every step; ignore the build cache."
)
@click.option(
    "--network",
    default="default",
    help="Network of RUN steps: bridge, none, host or a network name "
    "(default: bridge when networking is available).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.argument("context", type=click.Path(file_okay=False))
def build(
    tags: tuple[str, ...],
    dockerfile: str,
    build_arg: tuple[str, ...],
    target: str,
    no_cache: bool,
    network: str,
    quiet: bool,
    context: str,
) -> None:
    """Build an image from the Dockerfile in CONTEXT."""
    import io

    from .build.builder import BuildOptions, Progress
    from .build.builder import build as run_build

    options = BuildOptions(
        context_dir=context,
        dockerfile=dockerfile,
        tags=list(tags),
        build_args=_build_args(build_arg),
        target=target,
        no_cache=no_cache,
        network=network,
    )
    progress = Progress(io.StringIO() if quiet else None)
    image = run_build(options, progress)
    if quiet:
        click.echo(image.id)


@click.command()
@click.option("--no-trunc", is_flag=True, help="Show the full commands.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    help="Output format.",
)
@click.argument("image")
def history(no_trunc: bool, output_format: str, image: str) -> None:
    """Show the steps that made IMAGE, newest first, with the size of each layer."""
    from .images.store import ImageStore

    store = ImageStore()
    found = store.lookup(image)
    rows = _history_rows(store, found)
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'CREATED':<21} {'SIZE':>9}  CREATED BY")
    for row in rows:
        created_by = row["created_by"]
        if not no_trunc and len(created_by) > 60:
            created_by = created_by[:57] + "..."
        size = _human_size(row["size"]) if row["size"] is not None else "0B"
        click.echo(f"{row['created'][:19]:<21} {size:>9}  {created_by}")


def _history_rows(store: Any, image: Any) -> list[dict[str, Any]]:
    """Return history entries newest first, each non-empty one with its layer size."""
    chain_ids = list(image.chain_ids)
    entries = list(image.config.get("history") or [])
    rows = []
    layer_index = 0
    for entry in entries:
        size = None
        if not entry.get("empty_layer") and layer_index < len(chain_ids):
            size = store.layer_size(chain_ids[layer_index])
            layer_index += 1
        rows.append(
            {
                "created": str(entry.get("created", "")),
                "created_by": str(entry.get("created_by", "")),
                "size": size,
                "comment": str(entry.get("comment", "")),
            }
        )
    return list(reversed(rows))


def _human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}GB"
