"""The container lifecycle commands: create, start, ps, logs, exec, stop, rm ...

Each command looks a container up, calls one function of ``lifecycle``,
``exec`` or ``inspection``, and prints the result the way Docker's command
of the same name does. As in Docker, these commands exit with 1 when they
fail (``create`` with 125, like ``run``), and ``exec`` exits with the
command's status, or 126 and 127 when it cannot be executed or found.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from .errors import MinictrError, NotFound


def _docker_exit_codes(function):
    """Print a MinictrError once and exit 1 unless it carries 126 or 127."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MinictrError as exc:
            click.echo(f"minictr: {exc}", err=True)
            sys.exit(exc.exit_code if exc.exit_code in (126, 127) else 1)

    return wrapper


def _for_each(references: tuple[str, ...], action, parallel: bool = False) -> None:
    """Apply ``action`` to each container, printing the reference on success.

    Like Docker, go on after a failure, print it, and exit 1 at the end.
    With ``parallel``, the containers are handled at the same time (stop
    waits up to its timeout for each), and the results print in the order
    given.
    """
    from . import state

    def apply(reference: str) -> str | None:
        try:
            action(state.find(reference))
        except MinictrError as exc:
            return str(exc)
        return None

    if parallel and len(references) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(references), 16)) as pool:
            errors = list(pool.map(apply, references))
    else:
        errors = [apply(reference) for reference in references]
    failed = False
    for reference, error in zip(references, errors, strict=True):
        if error is None:
            click.echo(reference)
        else:
            click.echo(f"minictr: {error}", err=True)
            failed = True
    if failed:
        sys.exit(1)


def register(cli: click.Group) -> None:
    """Add the lifecycle commands to the ``minictr`` group."""
    from .cli import container_options, make_config

    @cli.command(
        context_settings={"allow_interspersed_args": False},
    )
    @container_options
    @click.argument("rootfs")
    @click.argument("command", nargs=-1, type=click.UNPROCESSED)
    def create(rootfs: str, command: tuple[str, ...], **kwargs) -> None:
        """Create a container from ROOTFS without starting it; print its id."""
        from . import lifecycle

        config = make_config(rootfs, command, kwargs, detach=True)
        click.echo(lifecycle.create(config))

    for command in (
        start,
        ps,
        logs,
        exec_command,
        stop,
        kill,
        wait,
        restart,
        pause,
        unpause,
        rm,
        inspect,
        top,
        prune,
    ):
        cli.add_command(command)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def start(containers: tuple[str, ...]) -> None:
    """Start one or more created or exited containers in the background."""
    from . import lifecycle

    _for_each(containers, lifecycle.start)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every container.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the short ids.")
@click.option(
    "--format", "output_format", default="", help="'json' for one JSON line each."
)
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and commands.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    help="KEY=VALUE: id, name, status, label or ancestor (repeatable).",
)
@_docker_exit_codes
def ps(
    show_all: bool,
    quiet: bool,
    output_format: str,
    no_trunc: bool,
    filters: tuple[str, ...],
) -> None:
    """List containers (running ones unless -a)."""
    from . import inspection

    wanted = inspection.parse_filters(list(filters))
    # As in Docker, a status filter looks at stopped containers too.
    rows = inspection.list_containers(show_all or "status" in wanted)
    rows = inspection.filter_rows(rows, wanted)
    if quiet:
        for row in rows:
            click.echo(row["ID"] if no_trunc else row["ID"][:12])
        return
    if output_format == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    if output_format:
        raise MinictrError(
            f"unsupported --format {output_format!r}: use 'json' or no --format"
        )
    click.echo(inspection.format_table(rows, truncate=not no_trunc), nl=False)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Follow output until the exit.")
@click.option("-n", "--tail", default="all", help="Lines from the end ('all').")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line's time.")
@click.argument("container")
@_docker_exit_codes
def logs(container: str, follow: bool, tail: str, timestamps: bool) -> None:
    """Print the stdout and stderr of a detached container."""
    from . import inspection, state

    if tail != "all" and not (tail.isdigit()):
        raise MinictrError(f"invalid --tail {tail!r}: give a number of lines or 'all'")
    lines = None if tail == "all" else int(tail)
    outputs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for entry in inspection.read_logs(state.find(container), lines, follow):
        text = entry["log"].encode()
        if timestamps:
            text = entry["time"].encode() + b" " + text
        output = outputs.get(entry["stream"], sys.stdout.buffer)
        output.write(text)
        output.flush()


@click.command(
    "exec",
    context_settings={"allow_interspersed_args": False},
)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-e", "--env", multiple=True, help="Set an environment variable.")
@click.option("-w", "--workdir", default=None, help="Working directory inside.")
@click.option("-u", "--user", default=None, help="User: name|uid[:group|gid].")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_docker_exit_codes
def exec_command(
    container: str,
    command: tuple[str, ...],
    interactive: bool,
    tty: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
) -> None:
    """Run COMMAND inside a running container; exit with its status."""
    from . import exec as container_exec
    from . import state
    from .containers import parse_env, validate_workdir

    if workdir is not None:
        validate_workdir(workdir)
    code = container_exec.exec_in(
        state.find(container),
        list(command),
        env=parse_env(list(env)),
        workdir=workdir,
        user=user,
        interactive=interactive,
        tty=tty,
        detach=detach,
        forward_signals=True,
    )
    sys.exit(code)


@click.command()
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds before SIGKILL."
)
@click.argument("containers", nargs=-1, required=True)
def stop(containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop containers: the stop signal, then SIGKILL after the timeout."""
    from . import lifecycle

    _for_each(containers, lambda cid: lifecycle.stop(cid, timeout), parallel=True)


@click.command()
@click.option("-s", "--signal", "sig", default="SIGKILL", help="Signal to send.")
@click.argument("containers", nargs=-1, required=True)
def kill(containers: tuple[str, ...], sig: str) -> None:
    """Send a signal (SIGKILL by default) to each container's PID 1."""
    from . import lifecycle

    try:
        lifecycle.parse_signal(sig)
    except MinictrError as exc:
        click.echo(f"minictr: {exc}", err=True)
        sys.exit(1)
    _for_each(containers, lambda cid: lifecycle.kill(cid, sig))


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> None:
    """Block until containers exit; print each exit code.

    An auto-removed (--rm) container that already exited is gone, but its
    exit code is still printed.
    """
    from . import lifecycle

    failed = False
    for reference in containers:
        try:
            click.echo(lifecycle.wait(lifecycle.find_for_wait(reference)))
        except MinictrError as exc:
            click.echo(f"minictr: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@click.command()
@click.option(
    "-t", "--time", "timeout", type=int, default=None, help="Seconds before SIGKILL."
)
@click.argument("containers", nargs=-1, required=True)
def restart(containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop and start containers again."""
    from . import lifecycle

    _for_each(containers, lambda cid: lifecycle.restart(cid, timeout), parallel=True)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def pause(containers: tuple[str, ...]) -> None:
    """Freeze every process of the containers (cgroup freezer)."""
    from . import lifecycle

    _for_each(containers, lifecycle.pause)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def unpause(containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    from . import lifecycle

    _for_each(containers, lifecycle.unpause)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
def rm(containers: tuple[str, ...], force: bool) -> None:
    """Remove containers with their directories, cgroups and network."""
    from . import lifecycle

    _for_each(containers, lambda cid: lifecycle.remove(cid, force), parallel=True)


@click.command()
@click.option(
    "-f", "--format", "template", default="", help="Go-style template or JSON path."
)
@click.argument("containers", nargs=-1, required=True)
def inspect(containers: tuple[str, ...], template: str) -> None:
    """Print what minictr knows about containers, as JSON."""
    from . import inspection, state

    results = []
    failed = False
    for reference in containers:
        try:
            results.append(inspection.inspect(state.find(reference)))
        except NotFound:
            # As docker inspect does, a name that is no container may be an image.
            image = _image_document(reference)
            if image is None:
                click.echo(
                    f"minictr: no such container or image: {reference}", err=True
                )
                failed = True
            else:
                results.append(image)
        except MinictrError as exc:
            click.echo(f"minictr: {exc}", err=True)
            failed = True
    if template:
        try:
            for result in results:
                click.echo(inspection.render(template, result))
        except MinictrError as exc:
            click.echo(f"minictr: {exc}", err=True)
            sys.exit(1)
    elif results or not failed:
        click.echo(json.dumps(results, indent=4))
    if failed:
        sys.exit(1)


def _image_document(reference: str) -> dict | None:
    import os

    from . import paths
    from .cli_images import _store, image_document

    # Opening the store creates it; a host without images has nothing to show.
    if not os.path.isdir(os.path.join(paths.state_root(), "images")):
        return None
    try:
        return image_document(_store(), reference)
    except MinictrError:
        return None


@click.command()
@click.argument("container")
@_docker_exit_codes
def top(container: str) -> None:
    """List the processes of a container with host and container pids."""
    from . import inspection, state

    rows = inspection.top(state.find(container))
    header = ("PID", "CONTAINER PID", "PPID", "UID", "STAT", "COMMAND")
    table = [header] + [tuple(str(row[k]) for k in header) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        click.echo("   ".join(cells + [row[-1]]))


@click.command()
@_docker_exit_codes
def prune() -> None:
    """Clean up containers, cgroups and mounts left by a crash of minictr."""
    from . import lifecycle

    for container_id in lifecycle.prune():
        click.echo(container_id)
