"""The order in which services start: dependencies first, cycles rejected.

``depends_on`` makes a directed graph of services. They start in a
topological order of it (Kahn's algorithm, taking ready services in the
order the file lists them, so the order is stable) and stop in the reverse
order. A dependency on a service that does not exist, or a cycle, is an
error found before anything is created.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import Project
from .schema import ComposeError


def check_dependencies(project: Project) -> None:
    """Raise ComposeError for a missing service or a cycle in ``depends_on``."""
    start_order(project)


def start_order(project: Project, selected: Iterable[str] | None = None) -> list[str]:
    """Return ``selected`` services (all by default) and their dependencies, in start order."""
    services = project.services
    for service in services.values():
        for dependency in service.depends_on:
            if dependency.service not in services:
                raise ComposeError(
                    f"invalid services.{service.name}.depends_on: service"
                    f" {dependency.service!r} is not defined"
                )
    wanted = _with_dependencies(project, list(selected or services))
    remaining = {
        name: {d.service for d in services[name].depends_on} for name in wanted
    }
    order: list[str] = []
    while remaining:
        ready = [name for name, needs in remaining.items() if not needs - set(order)]
        if not ready:
            raise ComposeError(
                f"dependency cycle between services {_cycle(remaining)}: remove one"
                " of these depends_on entries"
            )
        for name in ready:
            order.append(name)
            del remaining[name]
    return order


def stop_order(project: Project, selected: Iterable[str] | None = None) -> list[str]:
    """Return the services in the order they stop: dependents first."""
    return list(reversed(start_order(project, selected)))


def _with_dependencies(project: Project, names: list[str]) -> list[str]:
    """Return ``names`` and everything they depend on, in file order."""
    for name in names:
        if name not in project.services:
            raise ComposeError(
                f"no such service: {name} (the project defines"
                f" {', '.join(project.services)})"
            )
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        pending += [d.service for d in project.services[name].depends_on]
    return [name for name in project.services if name in found]


def _cycle(remaining: dict[str, set[str]]) -> str:
    """Return one cycle among ``remaining`` as ``a -> b -> a``."""
    start = next(iter(remaining))
    path = [start]
    while True:
        following = min(remaining[path[-1]] & set(remaining))
        if following in path:
            cycle = path[path.index(following) :] + [following]
            return " -> ".join(cycle)
        path.append(following)
