"""`minictr stats`: live resource usage of running containers."""

from __future__ import annotations

import json
import time

import click


def _size(value: int | None) -> str:
    if value is None:
        return "--"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{value}B"
        value /= 1024
    return str(value)


def _row(entry: dict) -> list[str]:
    memory = entry["memory"]
    pids = entry["pids"]
    io = entry["io"]
    cpu = entry.get("cpu_percent")
    limit = memory.get("limit")
    mem_percent = (
        f"{memory['usage'] / limit * 100:.2f}%"
        if limit and memory.get("usage") is not None
        else "--"
    )
    return [
        entry["id"][:12],
        entry["name"],
        f"{cpu:.2f}%" if cpu is not None else "--",
        f"{_size(memory.get('usage'))} / {_size(limit) if limit else 'unlimited'}",
        mem_percent,
        f"{pids.get('current', '--')} / {pids.get('limit') or 'unlimited'}",
        f"{_size(io.get('read_bytes'))} / {_size(io.get('write_bytes'))}",
    ]


HEADER = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "PIDS",
    "BLOCK I/O",
]


def _print_table(entries: list[dict]) -> None:
    rows = [HEADER] + [_row(e) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    for row in rows:
        click.echo(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        )


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--no-stream", is_flag=True, help="Print one reading and exit.")
    @click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        help="Output format.",
    )
    @click.argument("containers", nargs=-1)
    def stats(containers: tuple[str, ...], no_stream: bool, output_format: str) -> None:
        """Show memory, CPU, pids and block I/O of running containers."""
        from . import state
        from . import stats as stats_module
        from .lifecycle import current_state

        references = list(containers) or [
            cid
            for cid in state.list_ids()
            if current_state(cid).get("status") == "running"
        ]
        while True:
            entries = stats_module.measure(references) if references else []
            if output_format == "json":
                click.echo(json.dumps(entries, indent=1))
            else:
                if not no_stream:
                    click.echo("\033[2J\033[H", nl=False)
                _print_table(entries)
            if no_stream:
                return
            time.sleep(0.5)
