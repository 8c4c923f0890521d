"""Run a Compose project: networks, volumes, images, then containers in order.

Every object a project makes carries the label ``com.docker.compose.project``
with the project's name, and a container also ``com.docker.compose.service``
and ``com.docker.compose.container-number``, the labels Docker Compose uses.
Commands find what belongs to a project by these labels, not by names, so
``down`` also removes containers of services deleted from the file since.

- Containers are named ``PROJECT-SERVICE-N`` (N = 1, one per service).
- Networks are named ``PROJECT_KEY``; services without ``networks`` join
  ``PROJECT_default``. On each network a container is reachable by its
  service name (an alias) and by its container name, through the hosts
  files that minictr's network layer keeps up to date.
- Named volumes are named ``PROJECT_KEY`` and survive ``down``; ``down -v``
  removes them.

A container's config is built from the service with the options of
``minictr run`` (see :func:`run_options`), so a service behaves like the
same ``run`` command would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .. import errors
from . import graph, supervisor
from .model import Project, Service, VolumeMount
from .schema import ComposeError

log = logging.getLogger(__name__)

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_NETWORK = "com.docker.compose.network"

# How long `up` waits for a dependency to exit with service_completed_successfully.
COMPLETION_TIMEOUT = 600.0

Output = Callable[[str], None]


@dataclass
class ProjectContainer:
    """A container that belongs to a project, as found by its labels."""

    id: str
    name: str
    service: str
    number: int
    labels: dict[str, str]


class ServiceFailed(errors.MinictrError):
    """A service could not start, or a dependency's condition was not met."""


# ---------------------------------------------------------------- finding


def containers_of(
    project: str, services: list[str] | None = None
) -> list[ProjectContainer]:
    """Return the containers labelled with ``project``, by service then number."""
    from .. import state

    found = []
    for container_id in state.list_ids():
        try:
            config = state.read_config(container_id)
        except (OSError, ValueError):
            continue
        labels = config.labels
        if labels.get(LABEL_PROJECT) != project:
            continue
        service = labels.get(LABEL_SERVICE, "")
        if services and service not in services:
            continue
        number = int(labels.get(LABEL_NUMBER, "1"))
        found.append(
            ProjectContainer(container_id, config.name, service, number, labels)
        )
    found.sort(key=lambda c: (c.service, c.number))
    return found


def container_for(project: Project, service: str) -> ProjectContainer:
    """Return the container of ``service``; ServiceFailed when it has none."""
    if service not in project.services:
        raise ComposeError(
            f"no such service: {service} (the project defines"
            f" {', '.join(project.services)})"
        )
    for container in containers_of(project.name, [service]):
        return container
    raise errors.NotFound(
        f"service {service} has no container: start it with 'minictr compose up'"
    )


def container_name(project: Project, service: Service, number: int = 1) -> str:
    return service.container_name or f"{project.name}-{service.name}-{number}"


# ---------------------------------------------------------------- options


def run_options(project: Project, service: Service) -> list[str]:
    """Return the ``minictr run`` options that give a container of ``service``."""
    options = ["--name", container_name(project, service)]
    if service.hostname:
        options += ["--hostname", service.hostname]
    for path in service.env_files:
        options += ["--env-file", path]
    for key, value in service.environment.items():
        options += ["--env", f"{key}={value}"]
    if service.working_dir:
        options += ["--workdir", service.working_dir]
    if service.user is not None:
        options += ["--user", service.user]
    if service.entrypoint is not None:
        options += ["--entrypoint", ""]
    if service.read_only:
        options.append("--read-only")
    if service.stop_signal:
        options += ["--stop-signal", service.stop_signal]
    if service.stop_grace_period is not None:
        options += ["--stop-timeout", str(int(-(-service.stop_grace_period // 1)))]
    options += _resource_options(service)
    options += _security_options(service)
    options += _mount_options(project, service)
    options += _network_options(project, service)
    for key, value in _labels(project, service).items():
        options += ["--label", f"{key}={value}"]
    return options


def command_of(service: Service) -> list[str]:
    """Return the arguments after the image: the entrypoint, if set, then the command.

    An ``entrypoint`` replaces the image's Entrypoint and Cmd, as in Compose,
    which ``--entrypoint ""`` in :func:`run_options` requests.
    """
    if service.entrypoint is not None:
        return service.entrypoint + (service.command or [])
    return list(service.command or [])


def _resource_options(service: Service) -> list[str]:
    options = []
    if service.mem_limit is not None:
        options += ["--memory", str(service.mem_limit)]
    if service.cpus is not None:
        options += ["--cpus", f"{service.cpus:g}"]
    if service.pids_limit is not None:
        options += ["--pids-limit", str(service.pids_limit)]
    for device in service.devices:
        options += ["--device", device]
    if service.gpus:
        options += ["--gpus", service.gpus]
    return options


def _security_options(service: Service) -> list[str]:
    options = []
    for capability in service.cap_add:
        options += ["--cap-add", capability]
    for capability in service.cap_drop:
        options += ["--cap-drop", capability]
    if service.privileged:
        options.append("--privileged")
    for key, value in service.sysctls.items():
        options += ["--sysctl", f"{key}={value}"]
    return options


def _mount_options(project: Project, service: Service) -> list[str]:
    options = []
    for mount in service.volumes:
        if mount.type == "bind" and mount.create_host_path and ":" not in mount.source:
            # -v creates a missing host directory, as Compose's short syntax does.
            mode = ":ro" if mount.read_only else ""
            options += ["--volume", f"{mount.source}:{mount.target}{mode}"]
        else:
            options += ["--mount", _mount_spec(project, mount)]
    for spec in service.tmpfs:
        options += ["--tmpfs", spec]
    return options


def _mount_spec(project: Project, mount: VolumeMount) -> str:
    fields = [f"type={mount.type}", f"target={mount.target}"]
    if mount.type == "bind":
        fields.append(f"source={mount.source}")
    elif mount.type == "volume" and mount.source:
        fields.append(f"source={project.volumes[mount.source].name}")
    if mount.read_only:
        fields.append("readonly")
    if mount.nocopy:
        fields.append("volume-nocopy=true")
    if mount.tmpfs_size is not None:
        fields.append(f"tmpfs-size={mount.tmpfs_size}")
    # The CSV quoting of --mount keeps commas inside paths in one field.
    return ",".join(f'"{field}"' if "," in field else field for field in fields)


def _network_options(project: Project, service: Service) -> list[str]:
    first = service.networks[0]
    options = ["--network", project.networks[first.key].name]
    for alias in [service.name, *first.aliases]:
        options += ["--network-alias", alias]
    if first.ipv4_address:
        options += ["--ip", first.ipv4_address]
    for port in service.ports:
        options += ["--publish", port.publish_spec()]
    for server in service.dns:
        options += ["--dns", server]
    for host in service.extra_hosts:
        options += ["--add-host", host]
    return options


def _labels(project: Project, service: Service) -> dict[str, str]:
    labels = dict(service.labels)
    labels.update(supervisor.labels_for(service.restart, service.healthcheck))
    labels[LABEL_PROJECT] = project.name
    labels[LABEL_SERVICE] = service.name
    labels[LABEL_NUMBER] = "1"
    labels[LABEL_CONFIG_HASH] = config_hash(project, service)
    return labels


def config_hash(project: Project, service: Service) -> str:
    """Return a digest of the service's settings, to tell when to recreate it.

    As in Compose, ``pull_policy`` is left out: it changes how the image is
    fetched, not the container.
    """
    # NOTE: the image ID is not part of the digest either, so a container is
    # kept after a pull or a build brought a newer image under the same name.
    settings = asdict(service)
    settings.pop("pull_policy")
    document = {
        "service": settings,
        "networks": {k: asdict(v) for k, v in project.networks.items()},
        "volumes": {k: asdict(v) for k, v in project.volumes.items()},
    }
    data = json.dumps(document, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- networks, volumes


def ensure_networks(
    project: Project, services: list[str], created: list[str] | None = None
) -> None:
    """Create the networks that ``services`` use and that do not exist yet.

    Appends the name of each network it creates to ``created``.
    """
    from ..network import ipam, manage

    keys = {n.key for name in services for n in project.services[name].networks}
    for key in sorted(keys):
        definition = project.networks[key]
        try:
            ipam.load(definition.name)
            continue
        except errors.NotFound:
            if definition.external:
                raise ComposeError(
                    f"external network {definition.name} not found: create it with"
                    f" 'minictr network create {definition.name}'"
                ) from None
        labels = {**definition.labels, LABEL_PROJECT: project.name, LABEL_NETWORK: key}
        log.debug("create network %s", definition.name)
        manage.create(definition.name, definition.subnet, definition.gateway, labels)
        if created is not None:
            created.append(definition.name)


def ensure_volumes(
    project: Project, services: list[str], created: list[str] | None = None
) -> None:
    """Create the named volumes that ``services`` mount and that do not exist yet.

    Appends the name of each volume it creates to ``created``.
    """
    from ..mounts import volumes

    keys = {
        mount.source
        for name in services
        for mount in project.services[name].volumes
        if mount.type == "volume" and mount.source
    }
    for key in sorted(keys):
        definition = project.volumes[key]
        with volumes.locked():
            if os.path.isdir(volumes.volume_dir(definition.name)):
                continue
            if definition.external:
                raise ComposeError(
                    f"external volume {definition.name} not found: create it with"
                    f" 'minictr volume create {definition.name}'"
                )
            labels = {
                **definition.labels,
                LABEL_PROJECT: project.name,
                LABEL_VOLUME: key,
            }
            volumes.create(definition.name, labels)
            if created is not None:
                created.append(definition.name)


def _project_networks(project_name: str) -> list[str]:
    from ..network import ipam

    return [
        record["name"]
        for record in ipam.list_records()
        if (record.get("labels") or {}).get(LABEL_PROJECT) == project_name
    ]


def _project_volumes(project_name: str) -> list[str]:
    from ..mounts import volumes

    return [
        metadata["Name"]
        for metadata in volumes.list_volumes()
        if (metadata.get("Labels") or {}).get(LABEL_PROJECT) == project_name
    ]


# ---------------------------------------------------------------- images


def build_images(
    project: Project, services: list[str], output: Output, force: bool = True
) -> None:
    """Build the images of ``services`` that have ``build``; all when ``force``."""
    for name in services:
        service = project.services[name]
        if service.build is None:
            continue
        if not force and _image_exists(service.image_name(project.name)):
            continue
        build_image(project, service, output)


def build_image(project: Project, service: Service, output: Output) -> str:
    """Build the image of ``service`` and return its id."""
    from ..build.builder import BuildOptions, Progress, build

    assert service.build is not None
    spec = service.build
    options = BuildOptions(
        context_dir=spec.context,
        dockerfile=os.path.join(spec.context, spec.dockerfile),
        tags=[service.image_name(project.name)],
        build_args=dict(spec.args),
        target=spec.target or "",
    )
    output(f"Building {service.name}")
    image = build(options, Progress(_LineWriter(output, f"{service.name}  | ")))
    return image.id


class _LineWriter:
    """A text stream that passes whole lines, with a prefix, to an output function."""

    def __init__(self, output: Output, prefix: str) -> None:
        self.output = output
        self.prefix = prefix
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.output(self.prefix + line)
        return len(text)

    def flush(self) -> None:
        pass


def prepare_images(
    project: Project, services: list[str], output: Output, build: bool = False
) -> None:
    """Build or pull the image of each service, as its ``pull_policy`` sets.

    A service with ``build`` is built when its image is missing, and on
    every ``up`` with ``pull_policy: build`` or with ``build`` true
    (``up --build``). With ``pull_policy: always`` it is pulled instead.
    A service with only ``image`` is pulled as ``minictr run --pull`` would
    with the same policy. Raises ServiceFailed naming the service when a pull
    fails.
    """
    for name in services:
        service = project.services[name]
        if service.build is not None and (build or service.pull_policy == "build"):
            build_image(project, service, output)
        elif service.build is not None and service.pull_policy != "always":
            if not _image_exists(service.image_name(project.name)):
                build_image(project, service, output)
        else:
            pull_image(project, service, output, service.pull_policy)


def pull_image(
    project: Project,
    service: Service,
    output: Output,
    policy: str,
    quiet: bool = False,
) -> bool:
    """Pull the image of ``service`` as ``policy`` sets; return True if it pulled.

    Registries in ``MINICTR_INSECURE_REGISTRIES`` are reached over plain
    HTTP. Raises ServiceFailed with the service's name and the reason.
    """
    from ..cli_images import PullProgress
    from ..images.pulling import PullSettings, ensure_image

    prefix = f"{service.name}  | "
    writer = _LineWriter(output, prefix)
    settings = PullSettings(
        policy=policy,
        progress=None if quiet else PullProgress(writer),
        output=None if quiet else (lambda line: output(prefix + line)),
        option=f"services.{service.name}.pull_policy",
        has_insecure_flag=False,
    )
    try:
        return ensure_image(service.image_name(project.name), settings) is not None
    except errors.MinictrError as exc:
        raise ServiceFailed(f"service {service.name}: {exc}") from exc


def pull_images(
    project: Project,
    services: list[str],
    output: Output,
    *,
    policy: str = "always",
    ignore_buildable: bool = False,
    ignore_failures: bool = False,
    quiet: bool = False,
) -> None:
    """Pull the images of ``services`` for ``compose pull``.

    ``policy`` is always (pull every image) or missing. Services without
    ``image``, and those with ``pull_policy`` never or build, are skipped,
    and so under missing are those whose image is stored.
    A failed pull of a service that has ``build`` is only reported, because
    ``up`` can build its image. Raises ServiceFailed with one line per
    service that failed, after trying all of them, unless ``ignore_failures``.
    """
    failures: list[str] = []
    for name in services:
        service = project.services[name]
        skip_reason = _pull_skip_reason(service, ignore_buildable)
        if skip_reason:
            output(f"{name}  Skipped: {skip_reason}")
            continue
        try:
            pulled = pull_image(project, service, output, policy, quiet=quiet)
        except ServiceFailed as exc:
            if service.build is not None or ignore_failures:
                output(f"{name}  Warning: {exc}")
                continue
            failures.append(str(exc))
            continue
        if not pulled:
            output(f"{name}  Skipped: image is already stored locally")
    if failures:
        raise ServiceFailed("\n".join(failures))


def _pull_skip_reason(service: Service, ignore_buildable: bool) -> str:
    if not service.image:
        return "no image to pull, it is built"
    if service.pull_policy in ("never", "build"):
        return f"pull_policy is {service.pull_policy}"
    if ignore_buildable and service.build is not None:
        return "it can be built"
    return ""


def _image_exists(reference: str) -> bool:
    from ..images import resolve_for_run

    try:
        resolve_for_run(reference)
    except errors.NotFound:
        return False
    return True


# ---------------------------------------------------------------- up


def up(
    project: Project,
    services: list[str] | None = None,
    build: bool = False,
    output: Output = print,
) -> list[ProjectContainer]:
    """Start ``services`` (all by default) and their dependencies, in order.

    Waits for each dependency's condition before starting a service. Raises
    ServiceFailed naming the service and the reason when one cannot start.
    Returns the project's containers.
    """
    order = graph.start_order(project, services)
    existing = {container.id for container in containers_of(project.name)}
    networks: list[str] = []
    volumes: list[str] = []
    try:
        ensure_networks(project, order, networks)
        ensure_volumes(project, order, volumes)
        prepare_images(project, order, output, build=build)
        for name in order:
            service = project.services[name]
            for dependency in service.depends_on:
                wait_for_condition(
                    project, name, dependency.service, dependency.condition
                )
            ensure_container(project, service, output)
    except errors.MinictrError:
        if {c.id for c in containers_of(project.name)} <= existing:
            _remove_created(networks, volumes)
        raise
    return containers_of(project.name)


def _remove_created(networks: list[str], volumes: list[str]) -> None:
    """Undo a failed ``up`` that created no container: its networks and volumes.

    Once a container exists, the networks and volumes stay for ``down``, as
    in Compose, because the container refers to them.
    """
    from ..mounts import volumes as volume_store
    from ..network import manage

    for name in networks:
        try:
            manage.remove(name)
        except errors.MinictrError as exc:
            log.warning("cannot remove network %s after the failed up: %s", name, exc)
    for name in volumes:
        try:
            volume_store.remove(name)
        except errors.MinictrError as exc:
            log.warning("cannot remove volume %s after the failed up: %s", name, exc)


def ensure_container(project: Project, service: Service, output: Output) -> str:
    """Start the service's container: keep, start again, or recreate it."""
    from .. import lifecycle, state

    wanted_hash = config_hash(project, service)
    for container in containers_of(project.name, [service.name]):
        if container.labels.get(LABEL_CONFIG_HASH) == wanted_hash:
            record = lifecycle.current_state(container.id)
            if record["status"] in ("running", "paused"):
                output(f"Container {container.name}  Running")
                return container.id
            output(f"Container {container.name}  Starting")
            _start(container.id, service.name)
            state.update_state(container.id, stopped_by_user=False)
            output(f"Container {container.name}  Started")
            return container.id
        output(f"Container {container.name}  Recreate")
        remove_container(container.id)
    return _create_and_start(project, service, output)


def _create_and_start(project: Project, service: Service, output: Output) -> str:
    from .. import api, lifecycle, state
    from ..containers import NoCommand

    name = container_name(project, service)
    image = service.image_name(project.name)
    try:
        # prepare_images pulled what the pull policy asked for already.
        config = api.build_config(
            image,
            command_of(service),
            options=[*run_options(project, service), "--pull", "never"],
        )
    except NoCommand as exc:
        raise ServiceFailed(
            f"service {service.name} has no command: its image has no Entrypoint or"
            " Cmd, so add 'command:' to the service"
        ) from exc
    except errors.MinictrError as exc:
        raise ServiceFailed(f"service {service.name} cannot be created: {exc}") from exc
    output(f"Container {name}  Creating")
    lifecycle.create(config)
    _start(config.id, service.name)
    state.update_state(config.id, stopped_by_user=False)
    _connect_other_networks(project, service, name)
    output(f"Container {name}  Started")
    return config.id


def _start(container_id: str, service: str) -> None:
    from .. import lifecycle

    try:
        lifecycle.start(container_id)
    except errors.MinictrError as exc:
        raise ServiceFailed(f"service {service} failed to start: {exc}") from exc


def _connect_other_networks(project: Project, service: Service, name: str) -> None:
    from ..network import manage

    for network in service.networks[1:]:
        try:
            manage.connect(
                name,
                project.networks[network.key].name,
                aliases=[service.name, *network.aliases],
                ip=network.ipv4_address,
            )
        except errors.MinictrError as exc:
            raise ServiceFailed(
                f"service {service.name} cannot join network {network.key}: {exc}"
            ) from exc


def wait_for_condition(
    project: Project, dependent: str, dependency: str, condition: str
) -> None:
    """Block until ``dependency`` meets ``condition``; ServiceFailed if it cannot."""
    from .. import lifecycle

    container = container_for(project, dependency)
    prefix = f"service {dependent} depends on {dependency}"
    if condition == "service_started":
        return
    if condition == "service_completed_successfully":
        code = lifecycle.wait(container.id, COMPLETION_TIMEOUT)
        if code != 0:
            raise ServiceFailed(f"{prefix}, which exited with code {code}, not 0")
        return
    check = project.services[dependency].healthcheck
    if check is None:
        raise ServiceFailed(
            f"{prefix} being healthy, but {dependency} has no healthcheck: add one,"
            " or use condition service_started"
        )
    wait_healthy(project.name, container.id, check, prefix)


def wait_healthy(project_name: str, container_id: str, check: Any, prefix: str) -> None:
    """Run the healthcheck until it passes; ServiceFailed when unhealthy or exited."""
    from .. import lifecycle

    tracker = supervisor.HealthTracker(project_name, container_id, check)
    while True:
        record = lifecycle.current_state(container_id)
        if record["status"] != "running":
            raise ServiceFailed(
                f"{prefix}, which is {record['status']} (exit code"
                f" {record.get('exit_code')}) instead of healthy"
            )
        tracker.due_check(time.monotonic())
        if tracker.status == "healthy":
            return
        if tracker.status == "unhealthy":
            output = _last_health_output(project_name, container_id)
            raise ServiceFailed(
                f"{prefix}, which is unhealthy after {check.retries} failed checks:"
                f" {output or 'the check printed nothing'}"
            )
        time.sleep(min(0.2, check.interval))


def _last_health_output(project_name: str, container_id: str) -> str:
    try:
        with open(supervisor.health_path(project_name, container_id)) as f:
            return json.load(f).get("output", "").strip()
    except (OSError, ValueError):
        return ""


# ---------------------------------------------------------------- stop, down


def stop(
    project: Project, services: list[str] | None = None, output: Output = print
) -> None:
    """Stop the containers of ``services`` (all by default), dependents first.

    Services that no remaining service depends on stop together, in threads,
    so a project takes about one stop timeout per level of its graph.
    """
    import threading

    from .. import lifecycle

    containers = {c.service: c for c in containers_of(project.name)}
    remaining = [name for name in _stop_order(project, services) if name in containers]
    failures: list[str] = []

    def stop_one(container: ProjectContainer) -> None:
        try:
            lifecycle.stop(container.id)
        except errors.MinictrError as exc:
            failures.append(f"{container.name}: {exc}")
            return
        output(f"Container {container.name}  Stopped")

    while remaining:
        needed = {
            d.service
            for name in remaining
            if name in project.services
            for d in project.services[name].depends_on
        }
        wave = [name for name in remaining if name not in needed] or remaining[:1]
        threads = []
        for name in wave:
            output(f"Container {containers[name].name}  Stopping")
            thread = threading.Thread(target=stop_one, args=(containers[name],))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        remaining = [name for name in remaining if name not in wave]
    if failures:
        raise errors.MinictrError("cannot stop " + "; ".join(failures))


def _stop_order(project: Project, services: list[str] | None) -> list[str]:
    """Return the services to stop, dependents first, including ones gone from the file."""
    if services:
        return [s for s in reversed(graph.start_order(project)) if s in services]
    known = graph.stop_order(project)
    others = sorted({c.service for c in containers_of(project.name)} - set(known))
    return others + known


def start(
    project: Project, services: list[str] | None = None, output: Output = print
) -> None:
    """Start the existing containers of ``services`` again, dependencies first."""
    from .. import state

    containers = {c.service: c for c in containers_of(project.name)}
    for name in graph.start_order(project, services):
        container = containers.get(name)
        if container is None:
            continue
        for dependency in project.services[name].depends_on:
            wait_for_condition(project, name, dependency.service, dependency.condition)
        output(f"Container {container.name}  Starting")
        _start(container.id, name)
        state.update_state(container.id, stopped_by_user=False)
        output(f"Container {container.name}  Started")


def restart(
    project: Project, services: list[str] | None = None, output: Output = print
) -> None:
    stop(project, services, output)
    start(project, services, output)


def remove_container(container_id: str) -> None:
    """Remove a container, with its anonymous volumes."""
    from .. import lifecycle, state

    config = state.read_config(container_id)
    lifecycle.remove(container_id, force=True)
    _remove_anonymous_volumes(config)


def _remove_anonymous_volumes(config: Any) -> None:
    from ..mounts import volumes

    with volumes.locked():
        for entry in config.mounts:
            if entry.get("Type") != "volume" or not entry.get("Name"):
                continue
            with contextlib.suppress(errors.NotFound, ValueError, OSError):
                if volumes.inspect(entry["Name"]).get("Anonymous"):
                    volumes.delete_unused(entry["Name"])


def down(
    project: Project, remove_volumes: bool = False, output: Output = print
) -> None:
    """Stop and remove the project's containers and networks; volumes with ``remove_volumes``."""
    from ..network import manage

    supervisor.stop_background(project.name)
    stop(project, output=output)
    for container in containers_of(project.name):
        output(f"Container {container.name}  Removing")
        remove_container(container.id)
        output(f"Container {container.name}  Removed")
    for name in _project_networks(project.name):
        output(f"Network {name}  Removing")
        manage.remove(name)
        output(f"Network {name}  Removed")
    if remove_volumes:
        from ..mounts import volumes

        for name in _project_volumes(project.name):
            output(f"Volume {name}  Removing")
            volumes.remove(name)
            output(f"Volume {name}  Removed")
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(supervisor.project_dir(project.name))


# ---------------------------------------------------------------- ps, logs, exec


def ps_rows(project: Project) -> list[dict[str, str]]:
    """Return one row per container: NAME, IMAGE, SERVICE, STATUS and PORTS.

    IMAGE is the reference the service named, not the image ID it resolved to.
    """
    from .. import inspection, lifecycle, state
    from ..network import published_ports
    from ..network.ports import format_mapping

    rows = []
    for container in containers_of(project.name):
        record = lifecycle.current_state(container.id)
        status = inspection.status_text(record)
        health = supervisor.read_health(project.name, container.id)
        if health and record["status"] == "running":
            status += f" ({health})"
        ports = ", ".join(format_mapping(p) for p in published_ports(container.id))
        try:
            image = state.read_config(container.id).rootfs
        except (OSError, ValueError):
            image = ""  # removed while listing
        rows.append(
            {
                "NAME": container.name,
                "IMAGE": image,
                "SERVICE": container.service,
                "STATUS": status,
                "PORTS": ports,
            }
        )
    return rows


def log_lines(
    project: Project,
    services: list[str] | None = None,
    follow: bool = False,
    tail: int | None = None,
    write: Callable[[str, str, str], None] | None = None,
    stop_event: Any = None,
) -> None:
    """Pass each log line of the project's containers to ``write(prefix, stream, text)``.

    Without ``follow``, the lines of all containers are merged by time. With
    ``follow``, one thread per container passes lines as they come, until the
    containers exit or ``stop_event`` is set.
    """
    import threading

    from .. import inspection

    containers = containers_of(project.name, services)
    width = max((len(c.name) for c in containers), default=0)
    write = write or (lambda prefix, stream, text: print(prefix + text, end=""))
    if not follow:
        entries = []
        for container in containers:
            prefix = f"{container.name.ljust(width)}  | "
            for entry in inspection.read_logs(container.id, tail):
                entries.append((entry["time"], prefix, entry))
        for _, prefix, entry in sorted(entries, key=lambda item: item[0]):
            write(prefix, entry["stream"], entry["log"])
        return
    lock = threading.Lock()

    def follow_one(container: ProjectContainer) -> None:
        prefix = f"{container.name.ljust(width)}  | "
        for entry in inspection.read_logs(container.id, tail, follow=True):
            if stop_event is not None and stop_event.is_set():
                return
            with lock:
                write(prefix, entry["stream"], entry["log"])

    threads = [
        threading.Thread(target=follow_one, args=(c,), daemon=True) for c in containers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
            if stop_event is not None and stop_event.is_set():
                return
