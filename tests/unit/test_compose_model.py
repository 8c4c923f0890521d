"""The Compose model: ports, volumes, healthchecks, limits, GPUs, run options."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from minicontainer.compose import load_project, model
from minicontainer.compose import project as compose_project
from minicontainer.compose.schema import ComposeError


def load(tmp_path, text, environ=None):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    project, _ = load_project(working_directory=str(tmp_path), environ=environ or {})
    return project


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (80, "80/tcp"),
        ("8080:80", "8080:80/tcp"),
        ("127.0.0.1:8080:80", "127.0.0.1:8080:80/tcp"),
        ("127.0.0.1::80", "127.0.0.1::80/tcp"),
        ("53:53/udp", "53:53/udp"),
        ("8000-8002:80-82", "8000-8002:80-82/tcp"),
    ],
)
def test_short_port_syntax(value, spec):
    assert model.parse_short_port(value, "ports[0]").publish_spec() == spec


@pytest.mark.parametrize("value", ["http", "1:2:3:4", "70000:80", "80/sctp", "9-1:1"])
def test_short_port_syntax_invalid(value):
    with pytest.raises(ComposeError, match="ports"):
        model.parse_short_port(value, "services.web.ports[0]")


def test_long_port_syntax():
    mapping = model.parse_long_port(
        {"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "udp"},
        "p",
    )
    assert mapping == model.PortMapping("80", "8080", "127.0.0.1", "udp")
    assert mapping.publish_spec() == "127.0.0.1:8080:80/udp"
    assert model.parse_long_port({"target": 80}, "p").publish_spec() == "80/tcp"


def test_short_volume_syntax(tmp_path):
    directory = str(tmp_path)
    named = model.parse_short_volume("data:/var/lib/db", directory, "v")
    assert (named.type, named.source, named.target, named.read_only) == (
        "volume",
        "data",
        "/var/lib/db",
        False,
    )
    bind = model.parse_short_volume("./conf:/etc/app:ro", directory, "v")
    assert (bind.type, bind.source, bind.read_only) == (
        "bind",
        f"{directory}/conf",
        True,
    )
    absolute = model.parse_short_volume("/srv:/srv", directory, "v")
    assert (absolute.type, absolute.source) == ("bind", "/srv")
    anonymous = model.parse_short_volume("/cache", directory, "v")
    assert (anonymous.type, anonymous.source, anonymous.target) == (
        "volume",
        "",
        "/cache",
    )


@pytest.mark.parametrize(
    "value", ["data:relative", "data:/x:rw:extra", "a::/b", "x:/y:zz"]
)
def test_short_volume_syntax_invalid(tmp_path, value):
    with pytest.raises(ComposeError, match="volumes"):
        model.parse_short_volume(value, str(tmp_path), "services.web.volumes[0]")


def test_long_volume_syntax(tmp_path):
    directory = str(tmp_path)
    bind = model.parse_long_volume(
        {"type": "bind", "source": "./site", "target": "/www", "read_only": True},
        directory,
        "v",
    )
    assert (bind.source, bind.read_only) == (f"{directory}/site", True)
    tmpfs = model.parse_long_volume(
        {"type": "tmpfs", "target": "/run", "tmpfs": {"size": "64m"}}, directory, "v"
    )
    assert tmpfs.tmpfs_size == 64 << 20
    volume = model.parse_long_volume(
        {"source": "data", "target": "/d", "volume": {"nocopy": True}}, directory, "v"
    )
    assert (volume.type, volume.nocopy) == ("volume", True)
    with pytest.raises(ComposeError, match="bind, volume and tmpfs"):
        model.parse_long_volume({"type": "npipe", "target": "/x"}, directory, "v")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), (5, 5)],
)
def test_durations(text, seconds):
    assert model.parse_duration(text, "d") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("64m", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10), (100, 100)],
)
def test_sizes(text, size):
    assert model.parse_size(text, "s") == size


def test_healthcheck_forms():
    shell = model.parse_healthcheck({"test": "pg_isready"}, "h")
    assert shell.test == ["/bin/sh", "-c", "pg_isready"]
    cmd = model.parse_healthcheck(
        {
            "test": ["CMD", "nc", "-z", "localhost", "80"],
            "interval": "2s",
            "retries": 5,
        },
        "h",
    )
    assert cmd.test == ["nc", "-z", "localhost", "80"]
    assert (cmd.interval, cmd.retries) == (2.0, 5)
    cmd_shell = model.parse_healthcheck({"test": ["CMD-SHELL", "exit 0"]}, "h")
    assert cmd_shell.test == ["/bin/sh", "-c", "exit 0"]
    assert model.parse_healthcheck({"test": ["NONE"]}, "h") is None
    assert model.parse_healthcheck({"test": "x", "disable": True}, "h") is None


@pytest.mark.parametrize(
    ("value", "name", "retries"),
    [
        ("no", "no", None),
        (False, "no", None),
        ("always", "always", None),
        ("unless-stopped", "unless-stopped", None),
        ("on-failure", "on-failure", None),
        ("on-failure:3", "on-failure", 3),
    ],
)
def test_restart_policies(value, name, retries):
    policy = model.parse_restart(value, "r")
    assert (policy.name, policy.max_retries) == (name, retries)


def test_service_settings_and_names(tmp_path):
    project = load(
        tmp_path,
        """\
        name: shop
        services:
          web:
            build: {context: ./web, dockerfile: Web.dockerfile, args: [A=1]}
            environment: [DEBUG=1, FROM_HOST]
            env_file: web.env
            mem_limit: 64m
            cpus: 0.5
            deploy:
              resources:
                limits: {pids: 50}
            networks:
              front: {aliases: [www]}
            stop_grace_period: 1m
            volumes: [data:/data]
        networks:
          front: {}
        volumes:
          data: {}
          shared: {external: true}
        """,
        environ={"FROM_HOST": "h"},
    )
    web = project.services["web"]
    assert web.build.context == f"{tmp_path}/web"
    assert web.build.dockerfile == "Web.dockerfile"
    assert web.build.args == {"A": "1"}
    assert web.image_name("shop") == "shop-web"
    assert web.environment == {"DEBUG": "1", "FROM_HOST": "h"}
    assert web.env_files == [f"{tmp_path}/web.env"]
    assert (web.mem_limit, web.cpus, web.pids_limit) == (64 << 20, 0.5, 50)
    assert web.stop_grace_period == 60
    assert project.networks["front"].name == "shop_front"
    assert project.volumes["data"].name == "shop_data"
    assert project.volumes["shared"].name == "shared"
    assert web.networks[0].aliases == ["www"]


def test_default_network_added(tmp_path):
    project = load(tmp_path, "name: p\nservices: {a: {image: x}}\n")
    assert project.networks["default"].name == "p_default"
    assert project.services["a"].networks[0].key == "default"


def test_undefined_network_and_volume(tmp_path):
    with pytest.raises(ComposeError, match="network 'back' is not defined"):
        load(tmp_path, "services: {a: {image: x, networks: [back]}}\n")
    with pytest.raises(ComposeError, match="volume 'data' is not defined"):
        load(tmp_path, "services: {a: {image: x, volumes: ['data:/d']}}\n")


def test_service_needs_image_or_build(tmp_path):
    with pytest.raises(ComposeError, match="services.a: give image or build"):
        load(tmp_path, "services: {a: {command: 'true'}}\n")


def test_gpu_request(tmp_path):
    project = load(
        tmp_path,
        """\
        services:
          train:
            image: x
            deploy:
              resources:
                reservations:
                  devices:
                    - driver: nvidia
                      device_ids: ["0", "2"]
                      capabilities: [gpu, compute]
          infer:
            image: x
            deploy:
              resources:
                reservations:
                  devices:
                    - {driver: nvidia, count: 1, capabilities: [gpu]}
        """,
    )
    assert project.services["train"].gpus == '"device=0,2","capabilities=compute"'
    assert project.services["infer"].gpus == "count=1"


def test_run_options(tmp_path):
    project = load(
        tmp_path,
        """\
        name: shop
        services:
          web:
            image: web
            entrypoint: ["/bin/sh", "-c"]
            command: ["echo hi"]
            ports: ["127.0.0.1:8080:80"]
            volumes: ["data:/data:ro", "./site:/www"]
            tmpfs: [/run]
            cap_add: [NET_ADMIN]
            cap_drop: [ALL]
            read_only: true
            user: "1000"
            working_dir: /app
            hostname: webhost
            stop_signal: SIGINT
            stop_grace_period: 1500ms
            pids_limit: 20
            restart: on-failure:2
        volumes:
          data: {}
        """,
    )
    web = project.services["web"]
    options = compose_project.run_options(project, web)
    pairs = list(itertools.pairwise(options))
    assert ("--name", "shop-web-1") in pairs
    assert ("--network", "shop_default") in pairs
    assert ("--network-alias", "web") in pairs
    assert ("--publish", "127.0.0.1:8080:80/tcp") in pairs
    assert ("--mount", "type=volume,target=/data,source=shop_data,readonly") in pairs
    assert ("--volume", f"{tmp_path}/site:/www") in pairs
    assert ("--tmpfs", "/run") in pairs
    assert ("--cap-add", "NET_ADMIN") in pairs
    assert ("--cap-drop", "ALL") in pairs
    assert ("--user", "1000") in pairs
    assert ("--workdir", "/app") in pairs
    assert ("--hostname", "webhost") in pairs
    assert ("--stop-signal", "SIGINT") in pairs
    assert ("--stop-timeout", "2") in pairs
    assert ("--pids-limit", "20") in pairs
    assert ("--entrypoint", "") in pairs
    assert "--read-only" in options
    assert ("--label", "com.docker.compose.project=shop") in pairs
    assert ("--label", "com.docker.compose.service=web") in pairs
    assert compose_project.command_of(web) == ["/bin/sh", "-c", "echo hi"]
