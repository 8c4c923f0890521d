"""``minictr compose``: multi-container applications from Compose files.

- ``interpolation``: ``${VAR}`` substitution,
- ``schema``: checks of the supported keys,
- ``loader``: finding, reading and merging the files, the project name,
- ``model``: the project as dataclasses,
- ``graph``: start and stop order,
- ``project``: up, down, ps, logs and the other commands,
- ``supervisor``: restart policies and healthchecks while minictr runs.

Importing this package loads none of them, nor PyYAML.
"""

from __future__ import annotations

from typing import Any


def load_project(
    files: list[str] | None = None,
    project_name: str | None = None,
    working_directory: str | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Any, Any]:
    """Load and check a project; return its ``Project`` and its ``LoadedFiles``."""
    from . import graph, loader, model

    loaded = loader.load(files, project_name, working_directory, environ)
    project = model.build_project(
        loaded.document, loaded.project_directory, loaded.variables
    )
    graph.check_dependencies(project)
    return project, loaded
