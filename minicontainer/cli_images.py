"""Image commands: images, rmi, image inspect/prune, tag, import, load, save,
pull, login and logout.

Each command parses its options and calls one function of
``minicontainer.images``. Only the pull progress display lives here.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add the image commands to ``cli``."""
    for command in (images, rmi, tag, import_, load, save, pull, login, logout):
        cli.add_command(command)
    cli.add_command(image_group)


def _store() -> Any:
    from .images.store import ImageStore

    return ImageStore()


def _human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.3g}GB"


def _image_rows(store: Any) -> list[dict[str, Any]]:
    from .images.reference import parse_reference

    rows = []
    for image in store.images():
        size = store.image_size(image)
        common = {
            "ID": image.id,
            "Created": image.config.get("created", ""),
            "Size": size,
        }
        if not image.references:
            rows.append({"Repository": "<none>", "Tag": "<none>", **common})
        for name in image.references:
            reference = parse_reference(name)
            tag = reference.tag or "<none>"
            rows.append({"Repository": reference.familiar_name, "Tag": tag, **common})
    return sorted(rows, key=lambda row: (row["Repository"], row["Tag"]))


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Print image IDs only.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    help="Output format: a table, or one JSON object per line.",
)
def images(quiet: bool, output_format: str) -> None:
    """List stored images."""
    rows = _image_rows(_store())
    if quiet:
        seen: list[str] = []
        for row in rows:
            short = row["ID"].removeprefix("sha256:")[:12]
            if short not in seen:
                seen.append(short)
        for short in seen:
            click.echo(short)
        return
    if output_format == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'REPOSITORY':<40} {'TAG':<16} {'IMAGE ID':<12}  {'CREATED':<20} SIZE")
    for row in rows:
        short = row["ID"].removeprefix("sha256:")[:12]
        created = row["Created"][:19].replace("T", " ")
        click.echo(
            f"{row['Repository']:<40} {row['Tag']:<16} {short:<12}  {created:<20} "
            f"{_human_size(row['Size'])}"
        )


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Untag images that containers use.")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
def rmi(force: bool, names: tuple[str, ...]) -> None:
    """Remove images, or untag them while containers use them (-f)."""
    store = _store()
    for name in names:
        for line in store.remove(name, force=force):
            click.echo(line)


@click.group("image")
def image_group() -> None:
    """Manage images."""


@image_group.command("inspect")
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
def image_inspect(names: tuple[str, ...]) -> None:
    """Print the layers, config, history and size of images as JSON."""
    store = _store()
    result = [image_document(store, name) for name in names]
    click.echo(json.dumps(result, indent=2))


def image_document(store: Any, name: str) -> dict[str, Any]:
    """Return the inspect data of image ``name``; raises NotFound without it."""
    image = store.lookup(name)
    return {
        "Id": image.id,
        "RepoTags": image.references,
        "ManifestDigest": image.manifest_digest,
        "RepoDigest": image.source_digest or image.manifest_digest,
        "Created": image.config.get("created", ""),
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Config": image.config.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Layers": [
            {
                "Digest": layer["digest"],
                "MediaType": layer.get("mediaType", ""),
                "CompressedSize": layer.get("size", 0),
                "DiffID": diff_id,
                "Directory": store.layer_path(chain_id),
            }
            for layer, diff_id, chain_id in zip(
                image.layers, image.diff_ids, image.chain_ids, strict=True
            )
        ],
        "History": image.config.get("history", []),
        "Size": store.image_size(image),
        "CompressedSize": image.compressed_size,
    }


def _confirm(question: str) -> bool:
    """Ask ``question`` on stdout; return True only for a y or yes answer."""
    click.echo(f"{question} [y/N] ", nl=False)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        click.echo()
        raise
    if not answer or not sys.stdin.isatty():
        # Only a terminal echoes the answer and its newline; otherwise the
        # prompt's line is still open.
        click.echo()
    return answer.strip().lower() in ("y", "yes")


@image_group.command("prune")
@click.option(
    "-a",
    "--all",
    "all_unused",
    is_flag=True,
    help="Remove every unused image, tagged or not.",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def image_prune(all_unused: bool, force: bool) -> None:
    """Remove untagged images that no container uses.

    Asks for confirmation first unless -f is given. An answer other than y
    or yes, or the end of input, removes nothing and exits with status 0.
    """
    if not force:
        scope = "every image without a container" if all_unused else "untagged images"
        if not _confirm(f"This removes {scope}. Continue?"):
            return
    removed, freed = _store().prune(all_unused=all_unused)
    for image_id in removed:
        click.echo(f"Deleted: {image_id}")
    click.echo(f"Total reclaimed space: {_human_size(freed)}")


@click.command("tag")
@click.argument("source", metavar="SOURCE_IMAGE")
@click.argument("target", metavar="TARGET_IMAGE[:TAG]")
def tag(source: str, target: str) -> None:
    """Give an image another name."""
    _store().tag(source, target)


@click.command("import")
@click.argument("source", metavar="ROOTFS.tar|DIR", type=click.Path(exists=True))
@click.argument("name", metavar="NAME[:TAG]")
def import_(source: str, name: str) -> None:
    """Create a one-layer image from a root file system."""
    from .images.archive import import_rootfs
    from .images.reference import parse_reference

    reference = parse_reference(name)
    image = import_rootfs(_store(), source, reference)
    click.echo(image.id)


@click.command("load")
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="OCI layout or 'docker save' tarball to read.",
)
def load(input_path: str) -> None:
    """Load images from an OCI layout or 'docker save' tarball."""
    from .images.archive import load as load_archive

    for image in load_archive(_store(), input_path):
        names = ", ".join(image.references) or image.id
        click.echo(f"Loaded image: {names}")


@click.command("save")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Tarball to write.",
)
@click.argument("names", nargs=-1, required=True, metavar="IMAGE...")
def save(output: str, names: tuple[str, ...]) -> None:
    """Write images to an OCI image layout tarball."""
    from .images.archive import save as save_archive

    save_archive(_store(), list(names), output)


class PullProgress:
    """Per-layer progress on stderr: redrawn in place on a terminal, one line
    per state change otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._layers: dict[str, list[Any]] = {}  # digest -> [done, total, status]
        self._drawn_lines = 0
        self._last_draw = 0.0

    def start(self, digest: str, total: int) -> None:
        with self._lock:
            self._layers[digest] = [0, total, "Downloading"]
            self._emit(digest, force=True)

    def advance(self, digest: str, count: int) -> None:
        with self._lock:
            self._layers[digest][0] += count
            self._emit(digest, force=False)

    def finish(self, digest: str, status: str) -> None:
        with self._lock:
            # A layer the store already has was never started.
            entry = self._layers.setdefault(digest, [0, 0, status])
            entry[0], entry[2] = entry[1], status
            self._emit(digest, force=True)

    def _line(self, digest: str) -> str:
        done, total, status = self._layers[digest]
        short = digest.removeprefix("sha256:")[:12]
        if status == "Downloading":
            return f"{short}: {status} {_human_size(done)}/{_human_size(total)}"
        return f"{short}: {status}"

    def _emit(self, digest: str, force: bool) -> None:
        if not self.live:
            if force:
                self.stream.write(self._line(digest) + "\n")
                self.stream.flush()
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        if self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}A")
        for key in self._layers:
            self.stream.write("\x1b[2K" + self._line(key) + "\n")
        self._drawn_lines = len(self._layers)
        self.stream.flush()


@click.command("pull")
@click.option(
    "--insecure-registry", is_flag=True, help="Use plain HTTP for this registry."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.argument("name", metavar="[REGISTRY/]REPO[:TAG|@DIGEST]")
def pull(insecure_registry: bool, quiet: bool, name: str) -> None:
    """Download an image from a registry."""
    from .images.pulling import pull_reference
    from .images.reference import parse_reference

    reference = parse_reference(name)
    progress = None if quiet else PullProgress()
    image = pull_reference(
        reference,
        _store(),
        insecure=insecure_registry,
        progress=progress,
        on_manifest=None if quiet else lambda d: click.echo(f"Digest: {d}", err=True),
    )
    if quiet:
        click.echo(image.id)
    else:
        click.echo(f"Pulled {reference} ({image.short_id})")


@click.command("login")
@click.option("-u", "--username", prompt=True, help="User name.")
@click.option(
    "-p", "--password", default=None, help="Password (prefer --password-stdin)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)
@click.option(
    "--insecure-registry", is_flag=True, help="Use plain HTTP for this registry."
)
@click.argument("registry", default="docker.io")
def login(
    username: str,
    password: str | None,
    password_stdin: bool,
    insecure_registry: bool,
    registry: str,
) -> None:
    """Check credentials against a registry and save them."""
    from .images.auth import store_credentials
    from .images.pulling import is_insecure
    from .images.reference import DEFAULT_REGISTRY, DOCKER_HUB_API_HOST
    from .images.registry import RegistryClient
    from .images.store import default_state_root

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    api_host = DOCKER_HUB_API_HOST if registry == DEFAULT_REGISTRY else registry
    client = RegistryClient(
        api_host,
        credentials=(username, password),
        insecure=is_insecure(registry, insecure_registry),
    )
    client.ping()
    store_credentials(registry, username, password, default_state_root())
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("registry", default="docker.io")
def logout(registry: str) -> None:
    """Forget the saved credentials of a registry."""
    from .images.auth import remove_credentials
    from .images.store import default_state_root

    if remove_credentials(registry, default_state_root()):
        click.echo(f"Removed login credentials for {registry}")
    else:
        click.echo(f"Not logged in to {registry}")
