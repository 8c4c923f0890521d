"""The ``minictr`` command line: parse options, call the library, exit.

Commands build a config or look up a container and call one library
function. Every failure arrives here as a ``MinictrError`` and is printed
once, as ``minictr: MESSAGE``, with the exit status the error carries.
Subsystem modules are imported inside commands, so ``minictr run`` loads
only what a container with its options needs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import click

from .errors import MinictrError

if TYPE_CHECKING:
    from .config import ContainerConfig

# Subsystems that add options to `run` and `create`, each as a module in
# minicontainer/cliopts/ with OPTIONS and to_config(kwargs).
SUBSYSTEM_OPTIONS = ("cgroups", "network", "mounts", "security", "devices")


def _subsystem_modules() -> list:
    return [
        importlib.import_module(f"minicontainer.cliopts.{name}")
        for name in SUBSYSTEM_OPTIONS
    ]


def container_options(function):
    """Apply the options shared by `run` and `create`."""
    for module in reversed(_subsystem_modules()):
        for option in reversed(module.OPTIONS):
            function = option(function)
    decorators = [
        click.option("--name", default="", help="Container name (unique)."),
        click.option(
            "-h", "--hostname", default="", help="Hostname (default: the short id)."
        ),
        click.option(
            "-e", "--env", multiple=True, help="Set an environment variable, KEY=VALUE."
        ),
        click.option(
            "--env-file", multiple=True, help="Read environment variables from a file."
        ),
        click.option(
            "-w",
            "--workdir",
            default=None,
            help="Working directory, created if missing.",
        ),
        click.option("-u", "--user", default=None, help="User: name|uid[:group|gid]."),
        click.option(
            "--entrypoint", default=None, help="Override the image's entrypoint."
        ),
        click.option("-i", "--interactive", is_flag=True, help="Keep stdin open."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
        click.option(
            "--rm",
            "auto_remove",
            is_flag=True,
            help="Remove the container when it exits.",
        ),
        click.option(
            "--read-only", is_flag=True, help="Mount the root file system read-only."
        ),
        click.option(
            "--stop-signal", default=None, help="Signal that stops the container."
        ),
        click.option(
            "--stop-timeout",
            type=int,
            default=None,
            help="Seconds before SIGKILL on stop.",
        ),
        click.option("-l", "--label", multiple=True, help="Set a label, KEY=VALUE."),
        click.option(
            "--pull",
            default="missing",
            show_default=True,
            help="Pull the image before creating the container: missing (when not"
            " stored), always, or never.",
        ),
        click.option(
            "--insecure-registry",
            is_flag=True,
            help="Pull the image over plain HTTP (also MINICTR_INSECURE_REGISTRIES).",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def make_config(rootfs: str, command: tuple[str, ...], kwargs: dict, detach: bool):
    """Build a ContainerConfig from the options of `run` or `create`."""
    from .containers import build_config

    subsystem_parts = {}
    for module in _subsystem_modules():
        subsystem_parts[module.__name__.rsplit(".", 1)[1]] = module.to_config(kwargs)
    labels = dict(item.partition("=")[::2] for item in kwargs.pop("label"))
    hostname = kwargs.pop("hostname")
    config = build_config(
        rootfs,
        list(command),
        name=kwargs.pop("name"),
        hostname=hostname,
        env=list(kwargs.pop("env")),
        env_files=list(kwargs.pop("env_file")),
        workdir=kwargs.pop("workdir"),
        user=kwargs.pop("user"),
        entrypoint=kwargs.pop("entrypoint"),
        interactive=kwargs.pop("interactive"),
        tty=kwargs.pop("tty"),
        detach=detach,
        auto_remove=kwargs.pop("auto_remove"),
        read_only=kwargs.pop("read_only"),
        stop_signal=kwargs.pop("stop_signal"),
        stop_timeout=kwargs.pop("stop_timeout"),
        labels=labels,
        pull=_pull_settings(
            kwargs.pop("pull"), kwargs.pop("insecure_registry"), rootfs
        ),
    )
    for part, value in subsystem_parts.items():
        _apply_part(config, part, value)
    _hostname_for_network_mode(config, hostname)
    if config.network.get("publish_all") and config.exposed_ports:
        config.network["expose"] = list(config.exposed_ports)
    return config


def _hostname_for_network_mode(config: ContainerConfig, given: str) -> None:
    """Take the hostname of the network's owner, as Docker does.

    With ``--network host`` the container is named like the host. With
    ``container:NAME`` it is named like that container, whose network it
    shares, so a ``--hostname`` of its own is rejected.
    """
    mode = config.network.get("mode", "none")
    if mode == "host" and not given:
        import socket

        config.hostname = socket.gethostname()
    elif mode.startswith("container:"):
        if given:
            raise MinictrError(
                f"--hostname conflicts with --network {mode}: the container shares"
                " that container's network and takes its hostname; drop --hostname"
            )
        from . import state

        try:
            config.hostname = state.read_config(
                state.find(mode.partition(":")[2])
            ).hostname
        except (MinictrError, OSError):
            pass  # the network setup names the missing container


def _pull_settings(policy: str, insecure: bool, rootfs: str):
    """Return the PullSettings of ``--pull``, drawing progress on stderr.

    Stderr keeps a pull's output apart from the container's stdout. A
    directory is never pulled, so its runs skip the progress display's import.
    """
    from .images.pulling import PullSettings, parse_pull_policy

    settings = PullSettings(policy=parse_pull_policy(policy), insecure=insecure)
    if os.path.isdir(rootfs):
        return settings
    from .cli_images import PullProgress

    settings.progress = PullProgress(sys.stderr)
    settings.output = lambda line: click.echo(line, err=True)
    return settings


def _apply_part(config, part: str, value) -> None:
    if part == "cgroups":
        config.resources = (
            value.get("resources", value) if isinstance(value, dict) else value
        )
        if isinstance(value, dict) and "cgroup_parent" in value:
            config.cgroup_parent = value["cgroup_parent"]
    elif part == "network":
        config.network = value
    elif part == "mounts":
        config.mounts = value
    elif part == "security":
        config.security = value
        config.privileged = bool(value.get("privileged", False))
    elif part == "devices":
        config.devices = value


# Commands that other modules add with their register(group) function, so
# that `minictr run` does not import the image, network or compose code.
LAZY_COMMANDS = {
    "lifecycle_cli": (
        "create",
        "exec",
        "inspect",
        "kill",
        "logs",
        "pause",
        "prune",
        "ps",
        "restart",
        "rm",
        "start",
        "stop",
        "top",
        "unpause",
        "wait",
    ),
    "cli_stats": ("stats",),
    "cli_network": ("network", "port"),
    "cli_images": (
        "image",
        "images",
        "import",
        "load",
        "login",
        "logout",
        "pull",
        "rmi",
        "save",
        "tag",
    ),
    "cli_volumes": ("volume",),
    "cli_build": ("build", "history"),
    "cli_compose": ("compose",),
}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time it is used."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def _load(self, module_name: str) -> None:
        if module_name not in self._loaded:
            self._loaded.add(module_name)
            importlib.import_module(f"minicontainer.{module_name}").register(self)

    def get_command(self, ctx: click.Context, name: str):
        if name not in self.commands:
            for module_name, names in LAZY_COMMANDS.items():
                if name in names:
                    self._load(module_name)
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module_name in LAZY_COMMANDS:
            self._load(module_name)
        return super().list_commands(ctx)


def _add_process_role(record: logging.LogRecord) -> bool:
    """Give a narration line the role of the process that wrote it."""
    from .steps import process_role

    record.role = f"[{process_role}]"
    return True


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.option("--debug", is_flag=True, help="Narrate every kernel step on stderr.")
@click.option(
    "--root", default=None, help="State directory (default /var/lib/minictr)."
)
@click.version_option(package_name="minicontainer")
def cli(debug: bool, root: str | None) -> None:
    """minictr: a container runtime built on the Linux kernel, in Python."""
    if debug:
        logging.basicConfig(
            level=logging.DEBUG,
            format="minictr: %(relativeCreated)6.1fms %(role)-8s %(message)s",
            stream=sys.stderr,
        )
        for handler in logging.getLogger().handlers:
            handler.addFilter(_add_process_role)
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    if root:
        os.environ["MINICTR_ROOT"] = os.path.abspath(root)


@cli.command(
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False}
)
@container_options
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background and print the id."
)
@click.argument("rootfs")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(rootfs: str, command: tuple[str, ...], detach: bool, **kwargs) -> None:
    """Run COMMAND in a new container whose root is ROOTFS (a directory or image)."""
    config = make_config(rootfs, command, kwargs, detach)
    if detach:
        from .lifecycle import run_detached

        click.echo(run_detached(config))
        return
    from .runtime import run_foreground

    sys.exit(run_foreground(config))


# Docker's CLI exits 125 when `run` or `create` fails in the runtime itself,
# and 1 when any other command fails.
RUNTIME_EXIT_COMMANDS = ("run", "create", "exec")


def _command_name(argv: list[str]) -> str:
    """Return the subcommand in ``argv``, skipping the group's own options."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--root":
            index += 2
            continue
        if not arg.startswith("-"):
            return arg
        index += 1
    return ""


def _exit_code(exc: MinictrError, command: str) -> int:
    if exc.exit_code == MinictrError.exit_code and command not in RUNTIME_EXIT_COMMANDS:
        return 1
    return exc.exit_code


def main() -> None:
    if (
        os.geteuid() != 0
        and "--help" not in sys.argv[1:]
        and "--version" not in sys.argv[1:]
    ):
        click.echo("minictr: must be run as root (try: sudo minictr ...)", err=True)
        sys.exit(125)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message() if hasattr(exc, "format_message") else str(exc))
        sys.exit(0)
    except click.ClickException as exc:
        click.echo(f"minictr: {exc.format_message()}", err=True)
        sys.exit(125)
    except MinictrError as exc:
        # Prefix every line, because some messages list one failure per line.
        for line in str(exc).splitlines() or [""]:
            click.echo(f"minictr: {line}", err=True)
        sys.exit(_exit_code(exc, _command_name(sys.argv[1:])))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
