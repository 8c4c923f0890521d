"""`minictr build` on a real kernel: layers, cache, stages, substitution, run."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from support import MINICTR, free_subnet


def write_context(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def build(minictr, context: Path, *args: str, network: str = "none"):
    result = minictr("build", "--network", network, *args, str(context), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def step_results(output: str) -> list[str]:
    """Return "CACHED" or "done" for each step that printed a result line."""
    results = []
    for line in output.splitlines():
        if line == " ---> CACHED":
            results.append("CACHED")
        elif line.startswith(" ---> done in "):
            results.append("done")
    return results


def inspect(minictr, image: str) -> dict:
    result = minictr("image", "inspect", image)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def leftover_containers(state_dirs) -> list[str]:
    base = Path(state_dirs["root"]) / "containers"
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


@pytest.fixture
def app_context(tmp_path, busybox_rootfs) -> Path:
    """A context in the shape of the course's first exercise."""
    return write_context(
        tmp_path / "app",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\n"
                "WORKDIR /app\n"
                "COPY requirements.txt .\n"
                "RUN mkdir -p /opt/site && \\\n"
                "    while read pkg; do echo installed $pkg; done"
                " < requirements.txt > /opt/site/packages\n"
                "COPY app.py .\n"
                "ENV APP_MODE=production\n"
                'CMD ["sh", "app.py"]\n'
            ),
            "requirements.txt": "flask\nrequests\n",
            "app.py": 'echo "mode=$APP_MODE"\ncat /opt/site/packages\n',
        },
    )


def test_app_image_builds_and_runs(minictr, app_context, state_dirs, tmp_path):
    result = build(minictr, app_context, "-t", "course-app:1")
    assert "Step 7/7 : CMD" in result.stdout
    assert "Successfully tagged docker.io/library/course-app:1" in result.stdout

    run = minictr("run", "--rm", "--pull", "never", "--network", "none", "course-app:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "mode=production",
        "installed flask",
        "installed requests",
    ]
    assert leftover_containers(state_dirs) == []

    archive = tmp_path / "app.tar"
    saved = minictr("save", "-o", str(archive), "course-app:1")
    assert saved.returncode == 0, saved.stderr
    with tarfile.open(archive) as tar:
        assert "index.json" in tar.getnames()
    if shutil.which("skopeo"):
        seen = subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{archive}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert seen.returncode == 0, seen.stderr
        assert len(json.loads(seen.stdout)["Layers"]) == 4


def test_app_image_config_and_layers(minictr, app_context):
    build(minictr, app_context, "-t", "course-app:layers")
    image = inspect(minictr, "course-app:layers")
    config = image["Config"]
    assert config["WorkingDir"] == "/app"
    assert config["Cmd"] == ["sh", "app.py"]
    assert "APP_MODE=production" in config["Env"]
    # The base directory, two COPY steps and one RUN step.
    assert len(image["Layers"]) == 4
    run_layer = Path(image["Layers"][2]["Directory"])
    assert (run_layer / "opt" / "site" / "packages").is_file()
    assert not (run_layer / "etc" / "hosts").exists()


def test_rebuild_is_cached(minictr, app_context):
    first = build(minictr, app_context, "-t", "cached:1")
    assert "CACHED" not in first.stdout
    second = build(minictr, app_context, "-t", "cached:1")
    assert step_results(second.stdout) == ["CACHED"] * 7
    assert "Step 4/7 : RUN" in second.stdout


def test_cached_rebuild_keeps_image_id(minictr, app_context):
    build(minictr, app_context, "-t", "same:1")
    first_id = inspect(minictr, "same:1")["Id"]
    build(minictr, app_context, "-t", "same:1")
    assert inspect(minictr, "same:1")["Id"] == first_id


def test_changed_file_invalidates_from_its_step(minictr, app_context):
    build(minictr, app_context, "-t", "change:1")
    (app_context / "app.py").write_text("echo changed\n")
    result = build(minictr, app_context, "-t", "change:1")
    # FROM, WORKDIR, COPY requirements.txt and RUN stay cached. COPY app.py
    # and the steps after it run again.
    assert step_results(result.stdout) == ["CACHED"] * 4 + ["done"] * 3
    run = minictr("run", "--rm", "--pull", "never", "--network", "none", "change:1")
    assert run.stdout == "changed\n"


def test_changed_early_file_reruns_run_step(minictr, app_context):
    build(minictr, app_context, "-t", "early:1")
    (app_context / "requirements.txt").write_text("numpy\n")
    result = build(minictr, app_context, "-t", "early:1")
    assert step_results(result.stdout) == ["CACHED"] * 2 + ["done"] * 5
    assert (
        "installed numpy"
        in minictr(
            "run", "--rm", "--pull", "never", "--network", "none", "early:1"
        ).stdout
    )


def test_touched_file_keeps_cache(minictr, app_context):
    build(minictr, app_context, "-t", "touch:1")
    later = time.time() + 3600
    for name in ("requirements.txt", "app.py"):
        os.utime(app_context / name, (later, later))
    result = build(minictr, app_context, "-t", "touch:1")
    assert step_results(result.stdout) == ["CACHED"] * 7


def test_mode_change_invalidates_copy(minictr, app_context):
    build(minictr, app_context, "-t", "mode:1")
    os.chmod(app_context / "app.py", 0o755)
    result = build(minictr, app_context, "-t", "mode:1")
    assert step_results(result.stdout) == ["CACHED"] * 4 + ["done"] * 3


def test_no_cache_reruns_everything(minictr, app_context):
    build(minictr, app_context, "-t", "nocache:1")
    result = build(minictr, app_context, "-t", "nocache:1", "--no-cache")
    assert step_results(result.stdout) == ["done"] * 7


def test_multistage_copy_from_and_target(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "multi",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs} AS builder\n"
                "RUN mkdir /out && echo built-artifact > /out/artifact"
                " && echo junk > /junk\n"
                "\n"
                "FROM scratch AS unused\n"
                "COPY nothing-here /x\n"
                "\n"
                f"FROM {busybox_rootfs} AS final\n"
                "COPY --from=builder /out/artifact /srv/artifact\n"
                'CMD ["cat", "/srv/artifact"]\n'
                "\n"
                "FROM final AS debug\n"
                "ENV DEBUG=1\n"
            ),
        },
    )
    # The "unused" stage would fail (its source is missing), so it must not run.
    result = build(minictr, context, "-t", "multi:final", "--target", "final")
    assert "nothing-here" not in result.stdout
    run = minictr("run", "--rm", "--pull", "never", "--network", "none", "multi:final")
    assert run.stdout == "built-artifact\n"
    check = minictr(
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "multi:final",
        "ls",
        "/junk",
    )
    assert check.returncode != 0
    assert "DEBUG=1" not in inspect(minictr, "multi:final")["Config"].get("Env", [])

    missing = minictr("build", "--target", "nope", str(context))
    assert missing.returncode == 1
    assert "target stage 'nope' not found" in missing.stderr


def test_copy_from_later_stage_is_rejected(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "order",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs} AS first\n"
                "COPY --from=second /bin/sh /sh\n"
                f"FROM {busybox_rootfs} AS second\n"
            ),
        },
    )
    result = minictr("build", "--network", "none", "--target", "first", str(context))
    assert result.returncode == 1
    assert "line 2 COPY" in result.stderr


def test_arg_and_env_substitution(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "args",
        {
            "Dockerfile": (
                "ARG BASE=/does/not/exist\n"
                "FROM ${BASE}\n"
                "ARG GREETING=hello\n"
                "ARG TARGET\n"
                "ARG UNSET_ONE\n"
                'ENV MESSAGE="${GREETING} ${TARGET:-nobody}" \\\n'
                "    ALT=${UNSET_ONE:+set} \\\n"
                "    DIR=/data/$GREETING\n"
                "WORKDIR $DIR\n"
                'RUN echo "arg=$GREETING env=$MESSAGE" > run.txt\n'
                'LABEL "greeting"="$GREETING"\n'
                'CMD ["sh", "-c", "echo [$MESSAGE] [$ALT] [$GREETING] $(pwd);'
                ' cat run.txt"]\n'
            ),
        },
    )
    build(
        minictr,
        context,
        "-t",
        "args:1",
        "--build-arg",
        f"BASE={busybox_rootfs}",
        "--build-arg",
        "TARGET=world",
    )
    run = minictr("run", "--rm", "--pull", "never", "--network", "none", "args:1")
    assert run.returncode == 0, run.stderr
    # ARG values reach RUN but are not stored in the image's environment.
    assert run.stdout.splitlines() == [
        "[hello world] [] [] /data/hello",
        "arg=hello env=hello world",
    ]
    assert inspect(minictr, "args:1")["Config"]["Labels"] == {"greeting": "hello"}


def test_build_arg_changes_invalidate_run(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "argcache",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\nARG VERSION=1\nRUN echo v$VERSION > /v\n"
            ),
        },
    )
    build(minictr, context, "-t", "argcache:1")
    same = build(minictr, context, "-t", "argcache:1")
    assert step_results(same.stdout) == ["CACHED"] * 3
    other = build(minictr, context, "-t", "argcache:2", "--build-arg", "VERSION=2")
    assert step_results(other.stdout) == ["CACHED", "done", "done"]
    assert (
        minictr(
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "argcache:2",
            "cat",
            "/v",
        ).stdout
        == "v2\n"
    )


@pytest.mark.parametrize(
    ("lines", "run_args", "expected"),
    [
        ('ENTRYPOINT ["echo", "entry"]\nCMD ["default"]', [], "entry default"),
        ('ENTRYPOINT ["echo", "entry"]\nCMD ["default"]', ["given"], "entry given"),
        ('ENTRYPOINT echo shell-entry\nCMD ["ignored"]', [], "shell-entry"),
        ('ENTRYPOINT echo shell-entry\nCMD ["ignored"]', ["also"], "shell-entry"),
        ("CMD echo $((1 + 2)) shell-cmd", [], "3 shell-cmd"),
        ('CMD ["echo", "$HOME"]', [], "$HOME"),
        ('SHELL ["/bin/sh", "-ec"]\nCMD echo custom-shell', [], "custom-shell"),
    ],
)
def test_cmd_entrypoint_combinations(
    minictr, tmp_path, busybox_rootfs, lines, run_args, expected
):
    context = write_context(
        tmp_path / "cmd", {"Dockerfile": f"FROM {busybox_rootfs}\n{lines}\n"}
    )
    build(minictr, context, "-t", "cmd:1")
    run = minictr(
        "run", "--rm", "--pull", "never", "--network", "none", "cmd:1", *run_args
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected + "\n"


def test_entrypoint_resets_inherited_cmd(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "inherit",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs} AS base\n"
                'CMD ["base-cmd"]\n'
                "FROM base\n"
                'ENTRYPOINT ["echo", "child"]\n'
            ),
        },
    )
    build(minictr, context, "-t", "inherit:1")
    config = inspect(minictr, "inherit:1")["Config"]
    assert config["Entrypoint"] == ["echo", "child"]
    assert "Cmd" not in config
    assert (
        minictr(
            "run", "--rm", "--pull", "never", "--network", "none", "inherit:1"
        ).stdout
        == "child\n"
    )


def test_dockerignore_keeps_files_out(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "ignore",
        {
            "Dockerfile": f"FROM {busybox_rootfs}\nCOPY . /ctx/\n",
            ".dockerignore": "*.log\n!keep.log\nsecret/\n**/*.tmp\nDockerfile\n",
            "app.txt": "app",
            "debug.log": "debug",
            "keep.log": "keep",
            "secret/key": "key",
            "src/a.tmp": "tmp",
            "src/deep/b.tmp": "tmp",
            "src/main.txt": "main",
        },
    )
    build(minictr, context, "-t", "ignore:1")
    run = minictr(
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "ignore:1",
        "find",
        "/ctx",
        "-type",
        "f",
    )
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.split()) == [
        "/ctx/.dockerignore",
        "/ctx/app.txt",
        "/ctx/keep.log",
        "/ctx/src/main.txt",
    ]

    ignored_source = write_context(
        tmp_path / "ignore2",
        {
            "Dockerfile": f"FROM {busybox_rootfs}\nCOPY debug.log /\n",
            ".dockerignore": "*.log\n",
            "debug.log": "debug",
        },
    )
    result = minictr("build", "--network", "none", str(ignored_source))
    assert result.returncode == 1
    assert "line 2 COPY" in result.stderr
    assert ".dockerignore" in result.stderr


def test_copy_wildcards_chown_chmod(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "wild",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\n"
                "COPY --chown=1234:99 src/*.py /code/\n"
                "COPY --chmod=700 src/[ab].txt /text/\n"
                "COPY src /whole\n"
                "COPY src/a.txt /renamed.txt\n"
            ),
            "src/one.py": "1",
            "src/two.py": "2",
            "src/a.txt": "a",
            "src/b.txt": "b",
            "src/c.txt": "c",
        },
    )
    build(minictr, context, "-t", "wild:1")
    listing = minictr(
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "wild:1",
        "sh",
        "-c",
        "stat -c '%n %u:%g %a' /code/* /text/* /renamed.txt; ls /whole",
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[:5] == [
        "/code/one.py 1234:99 644",
        "/code/two.py 1234:99 644",
        "/text/a.txt 0:0 700",
        "/text/b.txt 0:0 700",
        "/renamed.txt 0:0 644",
    ]
    assert lines[5:] == ["a.txt", "b.txt", "c.txt", "one.py", "two.py"]


def test_several_sources_need_directory(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "several",
        {"Dockerfile": f"FROM {busybox_rootfs}\nCOPY a b /target\n", "a": "", "b": ""},
    )
    result = minictr("build", "--network", "none", str(context))
    assert result.returncode == 1
    assert "must end with '/'" in result.stderr


def test_add_unpacks_local_tar(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "add",
        {"Dockerfile": f"FROM {busybox_rootfs}\nADD bundle.tar.gz /opt/bundle/\n"},
    )
    with tarfile.open(context / "bundle.tar.gz", "w:gz") as tar:
        data = b"inside the archive\n"
        entry = tarfile.TarInfo("pkg/readme.txt")
        entry.size = len(data)
        entry.mode = 0o640
        tar.addfile(entry, io.BytesIO(data))
    build(minictr, context, "-t", "add:1")
    run = minictr(
        "run",
        "--rm",
        "--pull",
        "never",
        "add:1",
        "sh",
        "-c",
        "cat /opt/bundle/pkg/readme.txt; ls /opt",
    )
    assert run.stdout.splitlines() == ["inside the archive", "bundle"]


def test_add_remote_url_is_rejected(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "url",
        {"Dockerfile": f"FROM {busybox_rootfs}\nADD https://example.com/x /x\n"},
    )
    result = minictr("build", "--network", "none", str(context))
    assert result.returncode == 1
    assert "line 2 ADD" in result.stderr
    assert "not supported" in result.stderr
    assert "RUN step" in result.stderr
    assert "reach no network" not in result.stderr


def test_run_deletion_becomes_whiteout(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "delete",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\n"
                "RUN mkdir -p /d/sub && echo x > /d/sub/f && echo y > /d/keep\n"
                "RUN rm /bin/vi && rm -r /d/sub\n"
            ),
        },
    )
    build(minictr, context, "-t", "delete:1")
    run = minictr(
        "run",
        "--rm",
        "--pull",
        "never",
        "delete:1",
        "sh",
        "-c",
        "ls /bin/vi /d/sub 2>&1; ls /d",
    )
    assert "keep" in run.stdout.splitlines()
    assert run.stdout.count("No such file") == 2


def test_failed_run_names_line_and_leaves_nothing(
    minictr, tmp_path, busybox_rootfs, state_dirs
):
    context = write_context(
        tmp_path / "fail",
        {"Dockerfile": f"FROM {busybox_rootfs}\n\nRUN echo before; exit 3\n"},
    )
    result = minictr("build", "--network", "none", "-t", "fail:1", str(context))
    assert result.returncode == 1
    assert "before" in result.stdout
    assert "line 3 RUN" in result.stderr
    assert "exit status 3" in result.stderr
    assert leftover_containers(state_dirs) == []
    assert minictr("image", "inspect", "fail:1").returncode != 0


def test_parse_error_names_line(minictr, tmp_path):
    context = write_context(tmp_path / "bad", {"Dockerfile": "FROM scratch\nENV X\n"})
    result = minictr("build", str(context))
    assert result.returncode == 1
    assert "Dockerfile line 2 ENV" in result.stderr


def test_metadata_instructions_reach_config(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "meta",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\n"
                "USER 1000:1000\n"
                "EXPOSE 80 53/udp 8000-8001\n"
                'VOLUME ["/data"]\n'
                "STOPSIGNAL SIGINT\n"
                "HEALTHCHECK --interval=1m30s --retries=2 CMD wget -q localhost\n"
                "LABEL a=1 b=two\n"
                'CMD ["id", "-u"]\n'
            ),
        },
    )
    build(minictr, context, "-t", "meta:1")
    config = inspect(minictr, "meta:1")["Config"]
    assert config["User"] == "1000:1000"
    assert sorted(config["ExposedPorts"]) == [
        "53/udp",
        "80/tcp",
        "8000/tcp",
        "8001/tcp",
    ]
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost"],
        "Interval": 90 * 10**9,
        "Retries": 2,
    }
    assert config["Labels"] == {"a": "1", "b": "two"}
    assert (
        minictr("run", "--rm", "--pull", "never", "--network", "none", "meta:1").stdout
        == "1000\n"
    )


def test_history_lists_steps(minictr, app_context, busybox_rootfs):
    build(minictr, app_context, "-t", "hist:1")
    result = minictr("history", "--no-trunc", "hist:1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].endswith('CMD ["sh", "app.py"]')
    assert "RUN /bin/sh -c mkdir -p /opt/site" in lines[4]
    assert lines[-1].endswith(f"FROM {os.path.realpath(busybox_rootfs)}")


def test_run_step_uses_bridge_network_by_default(minictr, tmp_path, busybox_rootfs):
    pytest.importorskip("minicontainer.network")
    context = write_context(
        tmp_path / "net",
        {"Dockerfile": f"FROM {busybox_rootfs}\nRUN ls /sys/class/net > /nets\n"},
    )
    result = minictr("build", "-t", "net:1", str(context), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    nets = minictr(
        "run", "--rm", "--pull", "never", "--network", "none", "net:1", "cat", "/nets"
    ).stdout.split()
    assert "lo" in nets
    assert len(nets) >= 2  # loopback and the bridge's veth


def test_from_stored_image_runs_onbuild(minictr, tmp_path, busybox_rootfs):
    context = write_context(
        tmp_path / "onbuild",
        {
            "Dockerfile": (
                f"FROM {busybox_rootfs}\n"
                "ONBUILD RUN echo triggered > /trigger\n"
                'CMD ["cat", "/trigger"]\n'
            ),
            "child.Dockerfile": "# escape=`\nFROM onbuild-base:1\nENV A=1 `\n    B=2\n",
        },
    )
    build(minictr, context, "-t", "onbuild-base:1")
    assert (
        minictr(
            "run", "--rm", "--pull", "never", "--network", "none", "onbuild-base:1"
        ).returncode
        != 0
    )
    child = build(
        minictr,
        context,
        "-t",
        "onbuild-child:1",
        "-f",
        str(context / "child.Dockerfile"),
    )
    assert "ONBUILD RUN echo triggered" in child.stdout
    run = minictr(
        "run", "--rm", "--pull", "never", "--network", "none", "onbuild-child:1"
    )
    assert run.stdout == "triggered\n"
    config = inspect(minictr, "onbuild-child:1")["Config"]
    assert "OnBuild" not in config
    assert config["Env"] == ["A=1", "B=2"]


@pytest.fixture
def build_network(minictr, state_dirs):
    """A private bridge network for RUN steps, removed with its nftables table."""
    pytest.importorskip("minicontainer.network")
    name = f"bld{secrets.token_hex(3)}"
    created = minictr("network", "create", "--subnet", free_subnet(), name)
    assert created.returncode == 0, created.stderr
    yield name
    minictr("network", "rm", name)
    from minicontainer.network import firewall

    subprocess.run(
        ["nft", "delete", "table", "ip", firewall.table()],
        check=False,
        capture_output=True,
    )


def _running_build_container(state_dirs, timeout: float = 120) -> str:
    """Wait until a RUN step's container runs; return its id."""
    base = Path(state_dirs["root"]) / "containers"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state_file in base.glob("*/state.json"):
            try:
                record = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            if record.get("status") == "running":
                return state_file.parent.name
        time.sleep(0.2)
    raise AssertionError("the RUN step's container never reached running")


@pytest.mark.parametrize(
    ("signum", "expected_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_signal_cancels_build_and_cleans_up(
    minictr, tmp_path, busybox_rootfs, state_dirs, build_network, signum, expected_code
):
    context = write_context(
        tmp_path / "slow",
        {"Dockerfile": f"FROM {busybox_rootfs}\nRUN sleep 1000\n"},
    )
    process = subprocess.Popen(
        [*MINICTR, "build", "--network", build_network, "-t", "slow:1", str(context)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        container_id = _running_build_container(state_dirs)
        inspect_network = minictr("network", "inspect", build_network)
        leases = json.loads(inspect_network.stdout)[0]["leases"]
        veths = [lease["host_ifname"] for lease in leases.values()]
        assert len(leases) == 1
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == expected_code, stderr
    assert stderr.strip().splitlines() == [
        f"minictr: build cancelled by {signal.Signals(signum).name}"
    ]
    assert leftover_containers(state_dirs) == []
    after = json.loads(minictr("network", "inspect", build_network).stdout)[0]
    assert after["leases"] == {}
    links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert veths
    for veth in veths:
        assert f" {veth}@" not in links
        assert f" {veth}:" not in links
    from minicontainer.network import firewall

    ruleset = subprocess.run(
        ["nft", "list", "table", "ip", firewall.table()],
        capture_output=True,
        text=True,
    ).stdout
    assert container_id not in ruleset
    assert minictr("images", "-q").stdout.strip() == ""
