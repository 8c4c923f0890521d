"""``minictr compose``: run multi-container projects from Compose files.

Each command loads the project (``-f`` files, ``-p`` name), prints the
loader's warnings on stderr, and calls one function of
:mod:`minicontainer.compose.project`.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add the ``compose`` group to ``cli``."""
    cli.add_command(compose)


def _echo(text: str) -> None:
    click.echo(text, err=True)


@click.group()
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    help="Compose file; repeat to merge several, later ones overriding earlier ones"
    " (default: compose.yaml in the current directory).",
)
@click.option(
    "-p",
    "--project-name",
    default=None,
    help="Project name (default: the name of the first file's directory).",
)
@click.pass_context
def compose(
    ctx: click.Context, files: tuple[str, ...], project_name: str | None
) -> None:
    """Run multi-container applications described by Compose files."""
    ctx.obj = {"files": list(files), "project_name": project_name}


def _load(ctx: click.Context) -> tuple[Any, Any]:
    from .compose import load_project, loader

    options = ctx.find_object(dict)
    name = options["project_name"]
    if name is not None:
        loader.validate_project_name(name)
    project, loaded = load_project(options["files"], name)
    for warning in loaded.warnings:
        click.echo(f"minictr: warning: {warning}", err=True)
    return project, loaded


@compose.command()
@click.option(
    "-d", "--detach", is_flag=True, help="Start in the background and return."
)
@click.option(
    "--build", "build_images", is_flag=True, help="Build images before starting."
)
@click.argument("services", nargs=-1)
@click.pass_context
def up(
    ctx: click.Context, detach: bool, build_images: bool, services: tuple[str, ...]
) -> None:
    """Create and start the services, dependencies first, and follow their logs.

    Without -d, Ctrl-C stops the services and returns.
    """
    from .compose import project as compose_project
    from .compose import supervisor

    project, _ = _load(ctx)
    selected = list(services) or None
    if detach:
        compose_project.up(project, selected, build_images, output=_echo)
        if _needs_supervisor(project):
            supervisor.start_background(project.name)
        return
    supervisor.stop_background(project.name)
    stop_logs = threading.Event()
    try:
        compose_project.up(project, selected, build_images, output=_echo)
        _follow_in_foreground(project, stop_logs)
    except KeyboardInterrupt:
        _echo("Gracefully stopping...")
        stop_logs.set()
        compose_project.stop(project, selected, output=_echo)
        sys.exit(130)
    finally:
        stop_logs.set()


def _needs_supervisor(project: Any) -> bool:
    return any(
        service.restart.name != "no" or service.healthcheck is not None
        for service in project.services.values()
    )


def _follow_in_foreground(project: Any, stop_logs: threading.Event) -> None:
    """Print the services' logs and supervise them until every container has exited."""
    from .compose import project as compose_project
    from .compose import supervisor

    logs = threading.Thread(
        target=compose_project.log_lines,
        kwargs={
            "project": project,
            "follow": True,
            "write": _write_log,
            "stop_event": stop_logs,
        },
        daemon=True,
    )
    logs.start()
    watcher = supervisor.Supervisor(project.name)
    watcher.run(until_idle=True)
    logs.join(timeout=5)


def _write_log(prefix: str, stream: str, text: str) -> None:
    output = sys.stderr if stream == "stderr" else sys.stdout
    if not text.endswith("\n"):
        text += "\n"
    output.write(prefix + text)
    output.flush()


@compose.command()
@click.option(
    "-v", "--volumes", is_flag=True, help="Also remove the project's named volumes."
)
@click.pass_context
def down(ctx: click.Context, volumes: bool) -> None:
    """Stop and remove the containers and networks (and volumes with -v)."""
    from .compose import project as compose_project

    project, _ = _load(ctx)
    compose_project.down(project, remove_volumes=volumes, output=_echo)


@compose.command()
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Include stopped containers."
)
@click.pass_context
def ps(ctx: click.Context, show_all: bool) -> None:
    """List the project's containers."""
    from .compose import project as compose_project

    project, _ = _load(ctx)
    rows = compose_project.ps_rows(project)
    if not show_all:
        rows = [row for row in rows if row["STATUS"].startswith("Up")]
    columns = ("NAME", "IMAGE", "SERVICE", "STATUS", "PORTS")
    widths = {c: max([len(c)] + [len(row[c]) for row in rows]) for c in columns}
    for row in [dict(zip(columns, columns, strict=True))] + rows:
        click.echo("   ".join(row[c].ljust(widths[c]) for c in columns).rstrip())


@compose.command()
@click.option("-f", "--follow", is_flag=True, help="Follow the output until the exit.")
@click.option(
    "-n", "--tail", default="all", help="Lines from the end of each log ('all')."
)
@click.argument("services", nargs=-1)
@click.pass_context
def logs(
    ctx: click.Context, follow: bool, tail: str, services: tuple[str, ...]
) -> None:
    """Print the services' output, each line prefixed with its container's name."""
    from .compose import project as compose_project
    from .errors import InvalidArgument

    if tail != "all" and not tail.isdigit():
        raise InvalidArgument(
            f"invalid --tail {tail!r}: give a number of lines or 'all'"
        )
    project, _ = _load(ctx)
    for service in services:
        compose_project.container_for(project, service)
    compose_project.log_lines(
        project,
        list(services) or None,
        follow=follow,
        tail=None if tail == "all" else int(tail),
        write=_write_log,
    )


@compose.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-T", "no_tty", is_flag=True, help="Do not allocate a pseudo-terminal.")
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option(
    "-e", "--env", multiple=True, help="Set an environment variable, KEY=VALUE."
)
@click.option("-w", "--workdir", default=None, help="Working directory inside.")
@click.option("-u", "--user", default=None, help="User: name|uid[:group|gid].")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(
    ctx: click.Context,
    no_tty: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in the running container of SERVICE; exit with its status."""
    from . import exec as container_exec
    from .compose import project as compose_project
    from .containers import parse_env, validate_workdir

    if workdir is not None:
        validate_workdir(workdir)
    project, _ = _load(ctx)
    container = compose_project.container_for(project, service)
    tty = not no_tty and not detach and sys.stdin.isatty()
    code = container_exec.exec_in(
        container.id,
        list(command),
        env=parse_env(list(env)),
        workdir=workdir,
        user=user,
        interactive=tty,
        tty=tty,
        detach=detach,
        forward_signals=True,
    )
    sys.exit(code)


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def build(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Build the images of the services that have a build section."""
    from .compose import graph
    from .compose import project as compose_project

    project, _ = _load(ctx)
    selected = graph.start_order(project, list(services) or None)
    if services:
        selected = [name for name in selected if name in services]
    compose_project.build_images(project, selected, _echo, force=True)


@compose.command()
@click.option(
    "--policy",
    type=click.Choice(["always", "missing"]),
    default="always",
    show_default=True,
    help="Pull every image, or only images that are not stored.",
)
@click.option(
    "--ignore-buildable", is_flag=True, help="Skip services that have a build section."
)
@click.option(
    "--ignore-pull-failures",
    is_flag=True,
    help="Report failed pulls as warnings and exit 0.",
)
@click.option(
    "--include-deps", is_flag=True, help="Also pull the services' dependencies."
)
@click.option("-q", "--quiet", is_flag=True, help="Print no progress.")
@click.argument("services", nargs=-1)
@click.pass_context
def pull(
    ctx: click.Context,
    policy: str,
    ignore_buildable: bool,
    ignore_pull_failures: bool,
    include_deps: bool,
    quiet: bool,
    services: tuple[str, ...],
) -> None:
    """Pull the images of the services (all by default) without starting them.

    Registries named in MINICTR_INSECURE_REGISTRIES are reached over plain HTTP.
    """
    from .compose import graph
    from .compose import project as compose_project

    project, _ = _load(ctx)
    selected = graph.start_order(project, list(services) or None)
    if services and not include_deps:
        selected = [name for name in selected if name in services]
    compose_project.pull_images(
        project,
        selected,
        _echo,
        policy=policy,
        ignore_buildable=ignore_buildable,
        ignore_failures=ignore_pull_failures,
        quiet=quiet,
    )


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def stop(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Stop the services' containers without removing them."""
    from .compose import project as compose_project

    project, _ = _load(ctx)
    compose_project.stop(project, list(services) or None, output=_echo)


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def start(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Start the services' existing containers again."""
    from .compose import project as compose_project
    from .compose import supervisor

    project, _ = _load(ctx)
    compose_project.start(project, list(services) or None, output=_echo)
    if _needs_supervisor(project):
        supervisor.start_background(project.name)


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def restart(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Stop and start the services' containers."""
    from .compose import project as compose_project
    from .compose import supervisor

    project, _ = _load(ctx)
    compose_project.restart(project, list(services) or None, output=_echo)
    if _needs_supervisor(project):
        supervisor.start_background(project.name)


@compose.command()
@click.option(
    "--services", "list_services", is_flag=True, help="Print only the service names."
)
@click.pass_context
def config(ctx: click.Context, list_services: bool) -> None:
    """Print the resolved project: files merged, variables substituted."""
    import yaml

    _, loaded = _load(ctx)
    if list_services:
        for name in loaded.document["services"]:
            click.echo(name)
        return
    document = {"name": loaded.document["name"]}
    document.update((k, v) for k, v in loaded.document.items() if k != "name")
    click.echo(
        yaml.safe_dump(document, sort_keys=False, default_flow_style=False), nl=False
    )
