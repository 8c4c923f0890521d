"""Restart policies and healthchecks of a project's containers.

Each container runs under its own minictr monitor (see
:mod:`minicontainer.lifecycle`), which records its exit but does not start
it again. This supervisor does two things on top, for as long as it runs:

- It runs each service's healthcheck with ``exec`` inside the container
  every ``interval`` seconds, and records ``starting``, ``healthy`` or
  ``unhealthy`` in ``<state root>/compose/PROJECT/health/CONTAINER_ID``.
  A check that exits 0 within ``timeout`` passes. ``retries`` failures in a
  row make the container unhealthy, except that failures during
  ``start_period`` do not count.
- It starts an exited container again when its restart policy requires it:
  ``always`` and ``unless-stopped`` after any exit, ``on-failure[:N]`` after
  a non-zero exit code (at most N times), never after ``minictr stop`` or
  ``compose stop``. The delay between restarts doubles from 0.5 s up to
  16 s, as a crash loop should not busy the host.

``compose up`` runs it in the foreground; ``compose up -d`` starts it as a
background process (``python -m minicontainer.compose.supervisor PROJECT``)
that exits once the project has no containers left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import paths
from .model import Healthcheck, RestartPolicy

log = logging.getLogger(__name__)

LABEL_RESTART = "minictr.compose.restart"
LABEL_HEALTHCHECK = "minictr.compose.healthcheck"

POLL_INTERVAL = 0.5  # seconds between looks at the containers' states
MAX_RESTART_DELAY = 16.0


def project_dir(project: str) -> str:
    return os.path.join(paths.state_root(), "compose", project)


# ---------------------------------------------------------------- health


def health_path(project: str, container_id: str) -> str:
    return os.path.join(project_dir(project), "health", container_id)


def read_health(project: str, container_id: str) -> str:
    """Return ``starting``, ``healthy``, ``unhealthy`` or "" (no healthcheck)."""
    try:
        with open(health_path(project, container_id), encoding="utf-8") as f:
            return json.load(f).get("status", "")
    except (OSError, ValueError):
        return ""


def write_health(project: str, container_id: str, status: str, output: str) -> None:
    from .. import state

    path = health_path(project, container_id)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    state.write_json_atomic(
        path, {"status": status, "output": output[-4096:], "time": time.time()}
    )


def run_check(container_id: str, check: Healthcheck) -> tuple[bool, str]:
    """Run the healthcheck's command once; return whether it passed, and its output."""
    from .. import api, errors

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = api.Container(container_id).exec(check.test)
        except errors.MinictrError as exc:
            result["error"] = str(exc)

    # NOTE: a check that overruns its timeout is reported as failed but its
    # process keeps running until it exits; exec_in offers no way to kill it.
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(check.timeout)
    if worker.is_alive():
        return False, f"healthcheck timed out after {check.timeout:g} s"
    if "error" in result:
        return False, result["error"]
    outcome = result["value"]
    output = (outcome.stdout + outcome.stderr).decode(errors="replace")
    return outcome.exit_code == 0, output


@dataclass
class HealthTracker:
    """The healthcheck state of one container, advanced by :meth:`due_check`."""

    project: str
    container_id: str
    check: Healthcheck
    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    status: str = "starting"
    next_run: float = 0.0

    def due_check(self, now: float) -> bool:
        """Run the check if its interval has passed; return whether it ran."""
        if now < self.next_run:
            return False
        passed, output = run_check(self.container_id, self.check)
        if passed:
            self.failures = 0
            self.status = "healthy"
        elif time.monotonic() - self.started >= self.check.start_period:
            self.failures += 1
            if self.failures >= self.check.retries:
                self.status = "unhealthy"
        log.debug(
            "healthcheck of %s: %s (%s)",
            self.container_id[:12],
            "passed" if passed else "failed",
            self.status,
        )
        write_health(self.project, self.container_id, self.status, output)
        self.next_run = time.monotonic() + self.check.interval
        return True


# ---------------------------------------------------------------- restarts


def should_restart(
    policy: RestartPolicy, record: dict[str, Any], restarts: int
) -> bool:
    """Decide whether an exited container starts again under ``policy``.

    ``record`` is the container's current state; ``restarts`` counts the
    restarts this supervisor made so far.
    """
    if record.get("stopped_by_user") or policy.name == "no":
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    code = record.get("exit_code")
    if code == 0:
        return False
    return policy.max_retries is None or restarts < policy.max_retries


def policy_from_labels(
    labels: dict[str, str],
) -> tuple[RestartPolicy, Healthcheck | None]:
    policy = RestartPolicy(**json.loads(labels.get(LABEL_RESTART) or "{}"))
    check_data = labels.get(LABEL_HEALTHCHECK)
    check = Healthcheck(**json.loads(check_data)) if check_data else None
    return policy, check


def labels_for(policy: RestartPolicy, check: Healthcheck | None) -> dict[str, str]:
    """Return the labels that carry the policy and healthcheck to the supervisor."""
    labels = {LABEL_RESTART: json.dumps(asdict(policy))}
    if check is not None:
        labels[LABEL_HEALTHCHECK] = json.dumps(asdict(check))
    return labels


@dataclass
class _Watched:
    policy: RestartPolicy
    health: HealthTracker | None
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Watches the containers of one project: healthchecks and restarts."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.watched: dict[str, _Watched] = {}
        self.stopping = threading.Event()

    def refresh(self) -> list[str]:
        """Pick up the project's current containers; return their ids."""
        from .project import containers_of

        found = containers_of(self.project)
        ids = [container.id for container in found]
        for container in found:
            if container.id not in self.watched:
                policy, check = policy_from_labels(container.labels)
                tracker = None
                if check is not None:
                    tracker = HealthTracker(self.project, container.id, check)
                self.watched[container.id] = _Watched(policy, tracker)
        for gone in set(self.watched) - set(ids):
            del self.watched[gone]
        return ids

    def step(self) -> bool:
        """Look at every container once; return whether any still runs or will."""
        from .. import errors, lifecycle

        self.refresh()
        active = False
        now = time.monotonic()
        for container_id, watched in list(self.watched.items()):
            try:
                record = lifecycle.current_state(container_id)
            except (OSError, ValueError):
                continue  # removed meanwhile
            if record["status"] in ("running", "paused"):
                active = True
                if watched.health is not None and record["status"] == "running":
                    watched.health.due_check(now)
                continue
            if record["status"] != "exited" or record.get("monitor_alive"):
                active = active or record["status"] == "created"
                continue
            if not should_restart(watched.policy, record, watched.restarts):
                continue
            active = True
            if watched.restart_at is None:
                delay = min(0.5 * 2**watched.restarts, MAX_RESTART_DELAY)
                watched.restart_at = now + delay
            if now < watched.restart_at or self.stopping.is_set():
                continue
            watched.restart_at = None
            watched.restarts += 1
            log.info(
                "restarting container %s (policy %s, restart %d)",
                container_id[:12],
                watched.policy.name,
                watched.restarts,
            )
            try:
                lifecycle.start(container_id)
            except errors.MinictrError as exc:
                log.warning(
                    "restart of container %s failed: %s", container_id[:12], exc
                )
            if watched.health is not None:
                watched.health = HealthTracker(
                    self.project, container_id, watched.health.check
                )
        return active

    def run(self, until_idle: bool = True) -> None:
        """Step until stopped, or until no container runs when ``until_idle``."""
        while not self.stopping.is_set():
            if not self.step() and until_idle:
                return
            self.stopping.wait(POLL_INTERVAL)


# ---------------------------------------------------------------- background


def _pid_file(project: str) -> str:
    return os.path.join(project_dir(project), "supervisor.pid")


def running_pid(project: str) -> int | None:
    """Return the pid of the project's background supervisor, if it runs."""
    from ..lifecycle import process_alive

    try:
        with open(_pid_file(project), encoding="ascii") as f:
            pid, start_time = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid, start_time) else None


def start_background(project: str) -> None:
    """Start the background supervisor of ``project`` unless one runs.

    The pid file is written here, under a lock, as soon as the process
    exists. So a second ``up -d`` cannot start a second supervisor, and a
    ``down`` right after ``up -d`` finds the supervisor to stop.
    """
    import subprocess

    from .. import state
    from ..lifecycle import process_start_time

    with state.locked(f"compose-{project}"):
        if running_pid(project) is not None:
            return
        os.makedirs(project_dir(project), mode=0o700, exist_ok=True)
        log_path = os.path.join(project_dir(project), "supervisor.log")
        with open(log_path, "ab") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "minicontainer.compose.supervisor", project],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
            )
        _write_pid_file(project, child.pid, process_start_time(child.pid))


def _write_pid_file(project: str, pid: int, start_time: int | None) -> None:
    path = _pid_file(project)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as f:
        f.write(f"{pid} {start_time}\n")
    os.rename(temporary, path)


def stop_background(project: str, timeout: float = 10.0) -> None:
    """Stop the background supervisor of ``project`` and wait for it to exit."""
    from ..lifecycle import process_alive

    pid = running_pid(project)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)


def _background_main(project: str) -> None:
    from ..lifecycle import process_start_time

    supervisor = Supervisor(project)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # start_background wrote the pid file already; this covers a supervisor
    # started by hand.
    if running_pid(project) != os.getpid():
        os.makedirs(project_dir(project), mode=0o700, exist_ok=True)
        _write_pid_file(project, os.getpid(), process_start_time(os.getpid()))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    log.info("supervisor of project %s started", project)
    try:
        supervisor.run(until_idle=True)
    finally:
        if running_pid(project) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_pid_file(project))
        log.info("supervisor of project %s stopped", project)


if __name__ == "__main__":
    _background_main(sys.argv[1])
