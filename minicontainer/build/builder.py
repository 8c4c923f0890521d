"""Build an image from a Dockerfile: stages, steps, cache and commit.

Each stage starts from its FROM line and applies its instructions in order.
RUN executes in a container (``runstep``) and COPY and ADD change an
overlay without one (``overlay``); each of the three adds one layer, which
goes through the image store like any pulled layer: archived into a blob,
then unpacked once under ``layers/CHAIN_ID/`` where the next step's overlay
finds it. Other instructions change only the config. Before running a step
the builder looks its key up in the build cache (``cache``) and reuses the
recorded layer on a hit.

``--target`` picks the stage to build. Only that stage and the stages it
needs (its FROM and its ``COPY --from`` sources, recursively) run. The
result is an ordinary image in the store, tagged with every ``-t`` name.

The whole build holds the store's ingest lock, so garbage collection cannot
delete the layers of a build in progress. Layers of stages that end up in
no image are collected by the next ``rmi`` or ``image prune``, and their
cache entries then miss.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import posixpath
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import InvalidArgument, MinictrError, NotFound
from ..images import oci
from ..images.diff import LayerBlob
from ..images.reference import parse_reference
from ..images.store import Image, ImageStore, host_platform
from . import cache as build_cache
from .files import CopyRequest, copy_into_root, digest_sources, match_sources
from .ignore import IgnoreMatcher, read_ignore_file
from .lexer import SubstitutionError, expand_word, split_words
from .overlay import change_in_overlay, remove_scratch
from .parser import (
    NO_DEFAULT,
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    parse,
)
from .runstep import BuildCancelled, RunRequest, cancel_on_signals, run_in_container
from .stage import StageState, apply_metadata

log = logging.getLogger(__name__)

_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_LAYER_KEYWORDS = ("RUN", "COPY", "ADD")


@dataclass
class BuildOptions:
    context_dir: str
    dockerfile: str = ""  # default: CONTEXT/Dockerfile
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    network: str = "default"  # "default" is the bridge when networking exists


class Progress:
    """Prints each step, the output of RUN commands, and CACHED or the time taken."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def step(self, number: int, total: int, text: str) -> None:
        self._write(f"Step {number}/{total} : {text}\n")

    def output(self, data: bytes) -> None:
        self._write(data.decode(errors="replace"))

    def cached(self) -> None:
        self._write(" ---> CACHED\n")

    def done(self, seconds: float) -> None:
        self._write(f" ---> done in {seconds:.2f}s\n")

    def message(self, text: str) -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def build(options: BuildOptions, progress: Progress | None = None) -> Image:
    """Build the Dockerfile of ``options`` and return the stored image."""
    with cancel_on_signals():
        return Builder(options, progress or Progress()).run()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_network(requested: str) -> str:
    if requested != "default":
        return requested
    if importlib.util.find_spec("minicontainer.network") is not None:
        return "bridge"
    return "none"


class Builder:
    def __init__(self, options: BuildOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.context = os.path.realpath(options.context_dir)
        if not os.path.isdir(self.context):
            raise InvalidArgument(
                f"build context {options.context_dir!r} is not a directory"
            )
        self.dockerfile = _read_dockerfile(self.context, options.dockerfile)
        self.references = [parse_reference(tag) for tag in options.tags]
        self.ignore: IgnoreMatcher = read_ignore_file(self.context)
        self.store = ImageStore()
        self.cache = build_cache.BuildCache(self.store.root)
        self.network = _default_network(options.network)
        self.used_args: set[str] = set()
        self.global_args = self._global_args()
        self.states: dict[int, StageState] = {}
        self.step_number = 0
        self.total_steps = 0

    # ---- stages -------------------------------------------------------------

    def run(self) -> Image:
        target = self._target_stage()
        stages = self._needed_stages(target)
        self.total_steps = sum(1 + len(s.instructions) for s in stages)
        with self.store.ingest_lock():
            for stage in stages:
                self.states[stage.index] = self._build_stage(stage)
            image = self._commit(self.states[target.index])
        unused = sorted(set(self.options.build_args) - self.used_args)
        if unused:
            self.progress.message(
                f"warning: build arguments not used by any ARG: {', '.join(unused)}"
            )
        self.progress.message(f"Successfully built {image.short_id}")
        for reference in image.references:
            self.progress.message(f"Successfully tagged {reference}")
        return image

    def _target_stage(self) -> Stage:
        stages = self.dockerfile.stages
        if not self.options.target:
            return stages[-1]
        wanted = self.options.target.lower()
        for stage in stages:
            if stage.name == wanted:
                return stage
        names = ", ".join(s.name for s in stages if s.name) or "none"
        raise InvalidArgument(
            f"target stage {self.options.target!r} not found: the named stages are "
            f"{names}"
        )

    def _needed_stages(self, target: Stage) -> list[Stage]:
        needed: set[int] = set()
        pending = [target]
        while pending:
            stage = pending.pop()
            if stage.index in needed:
                continue
            needed.add(stage.index)
            base = self._stage_named(self._expand_global(stage.from_instruction))
            if base is not None and base.index < stage.index:
                pending.append(base)
            for instruction in stage.instructions:
                source = instruction.flags.get("from")
                found = self._stage_named(source) if source else None
                if found is not None and found.index < stage.index:
                    pending.append(found)
        return [s for s in self.dockerfile.stages if s.index in needed]

    def _stage_named(self, name: str | None) -> Stage | None:
        if not name:
            return None
        for stage in self.dockerfile.stages:
            if stage.name == name.lower() or (
                name.isdigit() and stage.index == int(name)
            ):
                return stage
        return None

    def _global_args(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.dockerfile.global_args:
            for name, default in instruction.pairs:
                value = self._arg_value(instruction, name, default, values)
                if value is not None:
                    values[name] = value
        return values

    def _arg_value(
        self,
        instruction: Instruction,
        name: str,
        default: str,
        env: dict[str, str],
        inherited: str | None = None,
    ) -> str | None:
        if name in self.options.build_args:
            self.used_args.add(name)
            return self.options.build_args[name]
        if default != NO_DEFAULT:
            try:
                return expand_word(default, env, self.dockerfile.escape)
            except SubstitutionError as exc:
                raise instruction.error(str(exc)) from None
        return inherited

    def _expand_global(self, instruction: Instruction) -> str:
        escape = self.dockerfile.escape
        try:
            base = split_words(instruction.arguments, escape)[0]
            return expand_word(base, self.global_args, escape)
        except SubstitutionError as exc:
            raise instruction.error(str(exc)) from None

    def _build_stage(self, stage: Stage) -> StageState:
        self._announce(stage.from_instruction)
        state = self._from(stage)
        state.escape = self.dockerfile.escape
        triggers = state.config.pop("OnBuild", None) or []
        for text in triggers:
            from .parser import parse_instruction

            trigger = parse_instruction(text, stage.from_instruction.line, state.escape)
            self.progress.message(f" ---> ONBUILD {trigger.text}")
            self._step(state, trigger)
        for instruction in stage.instructions:
            self._announce(instruction)
            self._step(state, instruction)
        return state

    def _announce(self, instruction: Instruction) -> None:
        self.step_number += 1
        self.progress.step(self.step_number, self.total_steps, instruction.text)

    # ---- FROM ---------------------------------------------------------------

    def _from(self, stage: Stage) -> StageState:
        instruction = stage.from_instruction
        base = self._expand_global(instruction)
        earlier = self._stage_named(base)
        if earlier is not None and earlier.index < stage.index:
            return self.states[earlier.index].inherit()
        if base == "scratch":
            return StageState(created=_now())
        directory = self._rootfs_directory(base)
        if directory is not None:
            return self._from_directory(instruction, directory)
        return self._from_image(instruction, base)

    def _rootfs_directory(self, base: str) -> str | None:
        # A directory needs a "/" or a leading "." so that "FROM python" is
        # always an image; relative paths start at the build context.
        if "/" not in base and not base.startswith("."):
            return None
        path = os.path.join(self.context, base)
        return os.path.realpath(path) if os.path.isdir(path) else None

    def _from_directory(self, instruction: Instruction, directory: str) -> StageState:
        fingerprint = build_cache.tree_fingerprint(directory)
        key = build_cache.step_key(
            "rootfs-directory", {"path": directory, "fingerprint": fingerprint}
        )
        layer, created = self._cached_layer(key)
        if layer is None:
            started = time.monotonic()
            layer = self.store.add_layer_from_dir(directory, overlay_upper=False)
            created = _now()
            self.cache.put(key, layer, created)
            self.progress.done(time.monotonic() - started)
        else:
            self.progress.cached()
        history = {"created": created, "created_by": f"FROM {directory}"}
        return StageState(layers=[layer], history=[history], created=created)

    def _from_image(self, instruction: Instruction, name: str) -> StageState:
        try:
            image = self.store.lookup(name)
        except NotFound as exc:
            raise instruction.error(str(exc)) from None
        layers = [
            LayerBlob(d["digest"], diff_id, int(d.get("size", 0)), d["mediaType"])
            for d, diff_id in zip(image.layers, image.diff_ids, strict=True)
        ]
        return StageState(
            layers=layers,
            config=dict(image.config.get("config") or {}),
            history=list(image.config.get("history") or []),
            created=str(image.config.get("created") or _now()),
            author=str(image.config.get("author") or ""),
        )

    def _cached_layer(self, key: str) -> tuple[LayerBlob | None, str]:
        if self.options.no_cache:
            return None, ""
        entry = self.cache.get(key)
        if entry is None:
            return None, ""
        layer = build_cache.layer_from_json(entry.get("layer"))
        if layer is None or not self.store.has_blob(layer.digest):
            return None, ""
        return layer, str(entry["created"])

    # ---- steps --------------------------------------------------------------

    def _step(self, state: StageState, instruction: Instruction) -> None:
        keyword = instruction.keyword
        parent = build_cache.parent_identity(state.diff_ids, state.config)
        if keyword == "ARG":
            self._arg(state, instruction)
        elif keyword not in _LAYER_KEYWORDS:
            apply_metadata(state, instruction)
        description, execute = self._describe(state, instruction)
        key = build_cache.step_key(parent, description)
        entry = None if self.options.no_cache else self.cache.get(key)
        layer = build_cache.layer_from_json(entry.get("layer")) if entry else None
        if (
            entry is not None
            and (layer is None) == (execute is None)
            and (layer is None or self.store.has_blob(layer.digest))
        ):
            created = str(entry["created"])
            self.progress.cached()
        else:
            started = time.monotonic()
            try:
                layer = execute() if execute is not None else None
            except (DockerfileError, BuildCancelled):
                raise
            except MinictrError as exc:
                raise instruction.error(str(exc)) from exc
            created = _now()
            self.cache.put(key, layer, created)
            self.progress.done(time.monotonic() - started)
        if layer is not None:
            state.layers.append(layer)
        history: dict[str, Any] = {
            "created": created,
            "created_by": description["text"],
        }
        if layer is None:
            history["empty_layer"] = True
        state.history.append(history)
        state.created = created

    def _arg(self, state: StageState, instruction: Instruction) -> None:
        for name, default in instruction.pairs:
            value = self._arg_value(
                instruction,
                name,
                default,
                state.substitution_env(),
                inherited=self.global_args.get(name),
            )
            if value is not None:
                state.args[name] = value

    def _describe(self, state: StageState, instruction: Instruction):
        """Return the step's cache description and, for layer steps, its executor."""
        description: dict[str, Any] = {
            "text": instruction.text,
            "args": dict(state.args),
        }
        keyword = instruction.keyword
        if keyword == "RUN":
            command = state.command_form(instruction) or []
            description["text"] = "RUN " + " ".join(command)
            description["command"] = command
            return description, lambda: self._run(state, instruction, command)
        if keyword in ("COPY", "ADD"):
            return self._describe_copy(state, instruction, description)
        return description, None

    # ---- RUN ----------------------------------------------------------------

    def _run(
        self, state: StageState, instruction: Instruction, command: list[str]
    ) -> LayerBlob:
        if not command:
            raise instruction.error("RUN needs a command")
        request = RunRequest(
            args=command,
            env=state.run_env(),
            cwd=state.config.get("WorkingDir") or "/",
            user=state.config.get("User") or "",
            lower_dirs=self._lower_dirs(state),
            network=self.network,
        )
        try:
            return run_in_container(request, self.progress.output, self._commit_upper)  # type: ignore[return-value]
        except InvalidArgument as exc:
            raise instruction.error(str(exc)) from None

    def _commit_upper(self, upper: str) -> LayerBlob:
        return self.store.add_layer_from_dir(upper, overlay_upper=True)

    def _lower_dirs(self, state: StageState) -> list[str]:
        directories = []
        chain_ids = oci.chain_ids(state.diff_ids)
        for layer, chain_id in zip(state.layers, chain_ids, strict=True):
            descriptor = {
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
            }
            directories.append(
                self.store.unpack_layer(descriptor, layer.diff_id, chain_id)
            )
        if not directories:
            empty = os.path.join(self.cache.directory, "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            return [empty]
        return list(reversed(directories))

    # ---- COPY and ADD -------------------------------------------------------

    def _describe_copy(
        self, state: StageState, instruction: Instruction, description: dict[str, Any]
    ):
        words = self._copy_words(state, instruction)
        sources, destination = words[:-1], words[-1]
        workdir = state.config.get("WorkingDir") or "/"
        if not destination.startswith("/"):
            destination = posixpath.join(workdir, destination)
        if instruction.keyword == "ADD":
            remote = [s for s in sources if _URL.match(s)]
            if remote:
                raise instruction.error(
                    f"remote source {remote[0]!r} is not supported: minictr's ADD "
                    "copies only local files; download it with a RUN step "
                    "(wget, curl) or into the context and COPY it"
                )
        chmod = _parse_chmod(instruction)
        owner_spec = state.expand(instruction, instruction.flags.get("chown", ""))
        description.update(destination=destination, chown=owner_spec, chmod=chmod)
        source_from = instruction.flags.get("from")
        if source_from:
            source_state = self._copy_source_state(state, instruction, source_from)
            description["from"] = build_cache.parent_identity(
                source_state.diff_ids, source_state.config
            )
            description["sources"] = sources
            source_dirs: list[str] | None = self._lower_dirs(source_state)
            matched: list[str] | None = None
        else:
            try:
                matched = match_sources(self.context, sources, self.ignore)
            except InvalidArgument as exc:
                raise instruction.error(str(exc)) from None
            description["sources"] = matched
            description["content"] = digest_sources(
                self.context, matched, self.ignore, instruction.keyword == "ADD"
            )
            source_dirs = None

        def action(merged: str, source_root: str | None) -> None:
            root = source_root or self.context
            found = matched
            if found is None:
                found = match_sources(root, sources, None)
            request = CopyRequest(
                source_root=root,
                sources=found,
                destination=destination,
                ignore=None if source_root else self.ignore,
                owner=_resolve_owner(merged, owner_spec),
                chmod=chmod,
                unpack_archives=instruction.keyword == "ADD",
            )
            copy_into_root(merged, request)

        def execute() -> LayerBlob:
            lower_dirs = self._lower_dirs(state)
            try:
                upper = change_in_overlay(
                    lower_dirs, self.cache.temp_dir(), action, source_dirs
                )
            except InvalidArgument as exc:
                raise instruction.error(str(exc)) from None
            try:
                return self.store.add_layer_from_dir(upper, overlay_upper=True)
            finally:
                remove_scratch(upper)

        return description, execute

    def _copy_words(self, state: StageState, instruction: Instruction) -> list[str]:
        if instruction.exec_form is not None:
            env = state.substitution_env()
            try:
                return [
                    expand_word(word, env, state.escape, quotes=False)
                    for word in instruction.exec_form
                ]
            except SubstitutionError as exc:
                raise instruction.error(str(exc)) from None
        return state.expand_all(instruction, instruction.arguments)

    def _copy_source_state(
        self, state: StageState, instruction: Instruction, name: str
    ) -> StageState:
        name = state.expand(instruction, name)
        stage = self._stage_named(name)
        if stage is not None and stage.index in self.states:
            return self.states[stage.index]
        if stage is not None:
            raise instruction.error(
                f"--from={name} names this stage or a later one: copy only from "
                "an earlier stage"
            )
        try:
            return self._from_image(instruction, name)
        except InvalidArgument:
            raise instruction.error(
                f"--from={name} is neither an earlier stage nor a stored image"
            ) from None

    # ---- commit -------------------------------------------------------------

    def _commit(self, state: StageState) -> Image:
        image_config: dict[str, Any] = {
            "created": state.created,
            "architecture": host_platform()[0],
            "os": "linux",
            "config": state.config,
            "rootfs": {"type": "layers", "diff_ids": state.diff_ids},
            "history": state.history,
        }
        if state.author:
            image_config["author"] = state.author
        config_bytes = oci.canonical_json(image_config)
        self.store.add_blob(config_bytes)
        manifest = oci.image_manifest(
            config_bytes,
            [
                {
                    "mediaType": layer.media_type,
                    "digest": layer.digest,
                    "size": layer.size,
                }
                for layer in state.layers
            ],
        )
        return self.store.add_image(manifest, self.references)


def _read_dockerfile(context: str, path: str) -> Dockerfile:
    path = path or os.path.join(context, "Dockerfile")
    try:
        with open(path, encoding="utf-8") as dockerfile:
            text = dockerfile.read()
    except FileNotFoundError:
        raise NotFound(
            f"Dockerfile {path!r} not found: give its path with -f"
        ) from None
    return parse(text)


def _parse_chmod(instruction: Instruction) -> int | None:
    text = instruction.flags.get("chmod")
    if text is None:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", text):
        raise instruction.error(f"invalid --chmod {text!r}: use octal like 755")
    return int(text, 8)


def _resolve_owner(root: str, spec: str) -> tuple[int, int]:
    """Resolve ``--chown`` against the image's own /etc/passwd and /etc/group."""
    if not spec:
        return 0, 0
    from ..paths import resolve_in_root
    from ..process import parse_user_spec, resolve_identity

    _, group = parse_user_spec(spec)
    identity = resolve_identity(spec, resolve_in_root(root, "/etc"))
    # Docker: a user without a group gets the same number as its gid.
    return identity.uid, identity.gid if group is not None else identity.uid
