"""What a container may do once it runs: capabilities, seccomp, masked paths.

Namespaces decide what a container sees; this package decides what it may
do with it. The runtime calls four hooks:

- ``path_steps(config)`` on the host before fork, returning the steps that
  PID 1 runs right after pivot_root: the ``--sysctl`` writes first (they
  need /proc/sys writable), then the masked and read-only paths.
- ``prepare(config)`` (called by ``path_steps``) resolves the capabilities
  and compiles the seccomp filter while the host's files are still
  reachable: after pivot_root, PID 1 can import nothing more from the host.
- ``apply_process(config, identity)`` in PID 1 as the last step before
  exec: limits, capabilities, user, no_new_privs and the seccomp filter.
- ``harden_joining_process()`` in a process about to join a running
  container (``minictr exec``), before its first setns.

This module imports its submodules inside the hooks, so that ``minictr``
commands that run no container do not load them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MinictrError

if TYPE_CHECKING:
    from ..config import ContainerConfig
    from ..process import Identity
    from ..steps import Step

log = logging.getLogger(__name__)


@dataclass
class ProcessPlan:
    """What ``apply_process`` applies, computed on the host before fork."""

    kept: list[str]  # capability names in the bounding set
    added: list[str]  # capabilities a non-root user keeps (ambient)
    no_new_privs: bool
    seccomp_filter: bytes | None
    ulimits: dict[str, list[int]] = field(default_factory=dict)


_plans: dict[str, ProcessPlan] = {}


def is_privileged(config: ContainerConfig) -> bool:
    return bool(config.privileged or config.security.get("privileged"))


def path_steps(config: ContainerConfig) -> list[Step]:
    """Return the sysctl, masking and read-only steps PID 1 runs after pivot_root."""
    from . import limits, paths

    prepare(config)
    mode = config.network.get("mode", "none")
    steps = limits.sysctl_steps(config.security.get("sysctls") or {}, mode)
    steps += paths.steps(is_privileged(config))
    return steps


def prepare(config: ContainerConfig) -> ProcessPlan:
    """Resolve the capabilities and compile the seccomp filter for ``config``.

    Runs on the host. The result is kept in this process, so the forked PID 1
    (or an exec'd process) finds it without importing or reading files.
    """
    from . import capabilities, hygiene, limits  # noqa: F401 - needed after pivot

    security = config.security
    if security.get("userns"):
        from . import userns  # noqa: F401 - needed after pivot
    kept = capabilities.held(capabilities.resolve(_with_privileged(config)))
    added = [name for name in capabilities.ambient(security, kept) if name in kept]
    plan = ProcessPlan(
        kept=kept,
        added=added,
        no_new_privs=bool(security.get("no_new_privileges")),
        seccomp_filter=_seccomp_filter(config, kept),
        ulimits=dict(security.get("ulimits") or {}),
    )
    _plans[config.id] = plan
    return plan


def _with_privileged(config: ContainerConfig) -> dict[str, Any]:
    return {**config.security, "privileged": is_privileged(config)}


def _seccomp_filter(config: ContainerConfig, kept: list[str]) -> bytes | None:
    setting = config.security.get("seccomp", "default")
    if setting == "unconfined" or is_privileged(config):
        return None
    if setting == "default":
        return _default_filter(kept)
    from . import seccomp

    return seccomp.compile_filter(setting["profile"], kept)


def _default_filter(kept: list[str]) -> bytes:
    """Return the default filter for ``kept``, compiled once and cached on disk.

    Importing the compiler and compiling take a few milliseconds, more than
    the rest of this package, so the program is stored under the state root,
    named after the capability mask and the source files it was built from.
    """
    from .. import paths
    from . import capabilities

    here = os.path.dirname(__file__)
    sources = [
        os.stat(os.path.join(here, name))
        for name in ("default_profile.py", "seccomp.py", "syscall_table.py")
    ]
    stamp = "-".join(f"{s.st_mtime_ns:x}{s.st_size:x}" for s in sources)
    name = f"default-{capabilities.mask(kept):x}-{stamp}.bpf"
    cache = os.path.join(paths.state_root(), "seccomp", name)
    try:
        with open(cache, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass

    from . import default_profile, seccomp

    program = seccomp.compile_filter(
        default_profile.profile(), kept, enosys_unknown=True
    )
    os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
    temporary = f"{cache}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        f.write(program)
    os.rename(temporary, cache)
    return program


def apply_process(
    config: ContainerConfig, identity: Identity, userns_fd: int | None = None
) -> None:
    """Turn this process into the container's confined process, just before exec.

    The order matters. The bounding set is dropped while the process still
    has CAP_SETPCAP. PR_SET_KEEPCAPS keeps the permitted set across the uid
    change. Without no_new_privs the kernel accepts a filter only from a
    process holding CAP_SYS_ADMIN, so the filter is loaded before the
    capabilities are dropped; it allows the calls that follow. With
    no_new_privs it is loaded last, so the filter sees only the exec.

    With a user namespace, PID 1 creates it here; ``minictr exec`` passes
    ``userns_fd``, PID 1's namespace, to join it instead.
    """
    from .. import process
    from . import capabilities, hygiene, kernel, limits

    plan = _plans.get(config.id) or prepare(config)
    hygiene.check_workdir()
    limits.apply_rlimits(plan.ulimits)
    if userns_fd is not None:
        from .. import syscalls

        log.debug("setns user (the container's user namespace)")
        syscalls.setns(userns_fd)
        os.close(userns_fd)
    elif config.security.get("userns"):
        from . import userns  # imported by prepare, before pivot_root

        userns.enter(config.security["userns"])
    capabilities.drop_bounding(plan.kept)
    capabilities.keep_across_setuid()
    filtered = plan.seccomp_filter is not None and not plan.no_new_privs
    if filtered:
        _load_filter(plan.seccomp_filter)
    log.debug(
        "setgroups %s, setresgid %d, setresuid %d",
        identity.additional_gids,
        identity.gid,
        identity.uid,
    )
    try:
        process.switch_user(identity)
        capabilities.set_process_caps(plan.kept, identity.uid, plan.added)
    except PermissionError as exc:
        if not filtered:
            raise
        # Without no_new_privs the filter must be loaded while root still
        # has CAP_SYS_ADMIN, so it already applies to these calls.
        raise MinictrError(
            f"switching to user {identity.uid}:{identity.gid} failed: {exc.strerror};"
            " the seccomp profile may block setgroups, setresgid, setresuid or"
            " capset, which the runtime needs before exec"
        ) from exc
    if plan.no_new_privs:
        log.debug("prctl PR_SET_NO_NEW_PRIVS 1")
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")
        if plan.seccomp_filter is not None:
            _load_filter(plan.seccomp_filter)


def _load_filter(program: bytes) -> None:
    from . import kernel

    log.debug("seccomp: load a filter of %d BPF instructions", len(program) // 8)
    kernel.load_seccomp_filter(program)


def harden_joining_process() -> None:
    """Make this process unreadable through /proc before it joins a container.

    Call it in ``minictr exec`` before the first setns. See
    ``hygiene.harden_joining_process``.
    """
    from . import hygiene

    hygiene.harden_joining_process()


def sysctl_steps(config: ContainerConfig) -> list[Step]:
    """Return only the sysctl writes; ``path_steps`` already includes them."""
    from . import limits

    mode = config.network.get("mode", "none")
    return limits.sysctl_steps(config.security.get("sysctls") or {}, mode)


def prepare_rootfs(config: ContainerConfig, container_dir: str) -> list[Step]:
    """Map file ownership for ``--userns``; call before the root steps are built.

    Changes ``config.lower_dirs`` for this run and returns the steps that
    attach id-mapped layers, which go before the overlay mount. The caller
    closes their descriptors with ``close_layer_steps`` once PID 1 has
    forked. Does nothing without a user namespace.
    """
    if not config.security.get("userns"):
        return []
    from .. import state
    from . import userns

    steps = userns.prepare_rootfs(config, container_dir)
    maps = config.security["userns"]
    state.update_state(
        config.id,
        uid_map=maps["uid_map"],
        gid_map=maps["gid_map"],
        userns_layers=maps["layers"],
    )
    return steps


def close_layer_steps(steps: list[Step]) -> None:
    """Close the host's copies of the descriptors that ``prepare_rootfs`` made."""
    if steps:
        from . import userns

        userns.close_steps(steps)
