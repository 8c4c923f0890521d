"""The image store on a temporary state root: import, tag, rmi, prune, save, load."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from minicontainer.errors import Conflict, InvalidArgument, NotFound
from minicontainer.images import resolve_for_run
from minicontainer.images.archive import import_rootfs, load, save
from minicontainer.images.errors import DigestMismatch, ImageError
from minicontainer.images.reference import parse_reference
from minicontainer.images.store import ImageStore


def make_rootfs(path, marker: str):
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "hello").write_text(f"#!/bin/sh\necho {marker}\n")
    os.chmod(path / "bin" / "hello", 0o755)
    (path / "etc").mkdir()
    (path / "etc" / "marker").write_text(marker)
    os.symlink("/bin/hello", path / "bin" / "hi")
    return path


@pytest.fixture
def store(tmp_path):
    return ImageStore(str(tmp_path / "state"))


@pytest.fixture
def imported(store, tmp_path):
    rootfs = make_rootfs(tmp_path / "rootfs", "one")
    return import_rootfs(store, str(rootfs), parse_reference("lab/one:v1"))


def use_image(store, container_id, image_id):
    directory = os.path.join(store.root, "containers", container_id)
    os.makedirs(directory)
    with open(os.path.join(directory, "config.json"), "w") as config:
        json.dump({"id": container_id, "image": image_id}, config)


def test_import_directory_creates_one_layer(store, imported):
    assert imported.references == ["docker.io/lab/one:v1"]
    [layer_dir] = store.layer_dirs(imported)
    assert open(os.path.join(layer_dir, "etc", "marker")).read() == "one"
    assert os.readlink(os.path.join(layer_dir, "bin", "hi")) == "/bin/hello"


def test_import_tar_file(store, tmp_path):
    rootfs = make_rootfs(tmp_path / "rootfs", "tarred")
    tar_path = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(rootfs, arcname=".")
    image = import_rootfs(store, str(tar_path), parse_reference("tarred"))
    [layer_dir] = store.layer_dirs(image)
    assert open(os.path.join(layer_dir, "etc", "marker")).read() == "tarred"
    assert image.layers[0]["mediaType"].endswith("tar+gzip")


def test_lookup_by_name_and_id_prefix(store, imported):
    assert store.lookup("lab/one:v1").id == imported.id
    assert store.lookup(imported.short_id).id == imported.id
    assert store.lookup(imported.id).id == imported.id


def test_lookup_by_id_ignores_references(store, imported, tmp_path):
    assert store.lookup_by_id(imported.short_id).id == imported.id
    assert store.lookup_by_id(imported.id).id == imported.id
    assert store.lookup_by_id("lab/one:v1") is None
    assert store.lookup_by_id("0000000") is None

    # A tag spelled like the ID prefix wins, as it does in lookup().
    rootfs = make_rootfs(tmp_path / "other", "two")
    named = import_rootfs(store, str(rootfs), parse_reference(imported.short_id))
    assert store.lookup(imported.short_id).id == named.id
    assert store.lookup_by_id(imported.short_id) is None


def test_lookup_missing_image_names_the_fix(store):
    with pytest.raises(NotFound, match="minictr pull"):
        store.lookup("nothing:here")


def test_resolve_for_run_gives_top_layer_first(store, imported):
    image = resolve_for_run("lab/one:v1", root=store.root)
    assert image.image_id == imported.id
    assert image.lower_dirs == store.layer_dirs(imported)[::-1]
    assert image.reference == "docker.io/lab/one:v1"


def test_tag_adds_reference(store, imported):
    store.tag("lab/one:v1", "lab/one:latest")
    [image] = store.images()
    assert sorted(image.references) == [
        "docker.io/lab/one:latest",
        "docker.io/lab/one:v1",
    ]


def test_retag_leaves_old_image_untagged(store, imported, tmp_path):
    rootfs = make_rootfs(tmp_path / "rootfs2", "two")
    newer = import_rootfs(store, str(rootfs), parse_reference("lab/one:v1"))
    images = {image.id: image for image in store.images()}
    assert images[newer.id].references == ["docker.io/lab/one:v1"]
    assert images[imported.id].references == []


def test_rmi_by_tag_keeps_other_tags(store, imported):
    store.tag("lab/one:v1", "lab/one:latest")
    assert store.remove("lab/one:v1") == ["Untagged: docker.io/lab/one:v1"]
    assert store.lookup("lab/one:latest").id == imported.id


def test_rmi_by_id_with_several_tags_needs_force(store, imported):
    store.tag("lab/one:v1", "lab/one:latest")
    with pytest.raises(Conflict, match="rmi -f"):
        store.remove(imported.short_id)
    lines = store.remove(imported.short_id, force=True)
    assert f"Deleted: {imported.id}" in lines


def test_rmi_deletes_blobs_and_layers(store, imported):
    layer_dir = store.layer_dirs(imported)[0]
    store.remove("lab/one:v1")
    assert store.images() == []
    assert not os.path.exists(layer_dir)
    assert os.listdir(store.blobs_dir) == []


def test_rmi_rejects_image_in_use(store, imported):
    use_image(store, "c0ffee", imported.id)
    with pytest.raises(Conflict, match="c0ffee"):
        store.remove("lab/one:v1")
    assert store.lookup("lab/one:v1").id == imported.id


def test_rmi_force_untags_image_in_use_and_keeps_layers(store, imported):
    use_image(store, "c0ffee", imported.id)
    layer_dir = store.layer_dirs(imported)[0]
    assert store.remove("lab/one:v1", force=True) == ["Untagged: docker.io/lab/one:v1"]
    [image] = store.images()
    assert image.references == []
    assert os.path.isdir(layer_dir)


def test_prune_removes_untagged_unused_images(store, imported, tmp_path):
    use_image(store, "c0ffee", imported.id)
    store.remove("lab/one:v1", force=True)
    removed, _ = store.prune()
    assert removed == []
    os.unlink(os.path.join(store.root, "containers", "c0ffee", "config.json"))
    removed, freed = store.prune()
    assert removed == [imported.id]
    assert freed > 0
    assert store.images() == []


def test_prune_all_keeps_images_in_use(store, imported, tmp_path):
    other = import_rootfs(
        store, str(make_rootfs(tmp_path / "r2", "two")), parse_reference("two")
    )
    use_image(store, "c0ffee", imported.id)
    removed, _ = store.prune(all_unused=True)
    assert removed == [other.id]
    assert [image.id for image in store.images()] == [imported.id]


def test_save_and_load_round_trip(store, imported, tmp_path):
    archive = tmp_path / "out.tar"
    save(store, ["lab/one:v1"], str(archive))
    other = ImageStore(str(tmp_path / "other-state"))
    [loaded] = load(other, str(archive))
    assert loaded.id == imported.id
    assert loaded.references == ["docker.io/lab/one:v1"]
    [layer_dir] = other.layer_dirs(loaded)
    assert open(os.path.join(layer_dir, "etc", "marker")).read() == "one"


def test_save_writes_oci_layout(store, imported, tmp_path):
    archive = tmp_path / "out.tar"
    save(store, ["lab/one:v1"], str(archive))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))
    assert "oci-layout" in names
    assert f"blobs/sha256/{imported.manifest_digest.split(':')[1]}" in names
    annotations = index["manifests"][0]["annotations"]
    assert annotations["org.opencontainers.image.ref.name"] == "docker.io/lab/one:v1"


def test_load_rejects_blob_with_wrong_digest(store, imported, tmp_path):
    archive = tmp_path / "out.tar"
    save(store, ["lab/one:v1"], str(archive))
    tampered = tmp_path / "tampered.tar"
    config_name = "blobs/sha256/" + imported.id.split(":")[1]
    with tarfile.open(archive) as source, tarfile.open(tampered, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == config_name:
                data = data.replace(b'"os"', b'"OS"')
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    other = ImageStore(str(tmp_path / "other-state"))
    with pytest.raises(DigestMismatch):
        load(other, str(tampered))
    assert other.images() == []
    assert not os.path.exists(other.blob_path(imported.id))


def test_load_rejects_unknown_archive(store, tmp_path):
    archive = tmp_path / "x.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(__file__, arcname="random.py")
    with pytest.raises(ImageError, match="neither"):
        load(store, str(archive))


def test_prune_removes_leftovers_of_killed_pull(store, imported):
    stale_blob = os.path.join(store.blobs_dir, ".tmp-killed")
    stale_layer = os.path.join(store.layers_dir, ".tmp-killed")
    with open(stale_blob, "wb") as blob:
        blob.write(b"half a layer")
    os.makedirs(os.path.join(stale_layer, "diff"))
    store.prune()
    assert not os.path.exists(stale_blob)
    assert not os.path.exists(stale_layer)
    assert store.lookup("lab/one:v1").id == imported.id


def test_garbage_collection_waits_for_ingest(store, imported):
    with store.ingest_lock():
        digest = store.add_blob(b"not referenced by any image yet")
        assert store.collect_garbage() == 0
        assert store.has_blob(digest)
    assert store.collect_garbage() > 0
    assert not store.has_blob(digest)
    assert store.lookup("lab/one:v1").id == imported.id


def test_load_of_non_tar_gives_one_line(store, tmp_path):
    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("not an archive\n")
    with pytest.raises(ImageError) as raised:
        load(store, str(not_a_tar))
    message = str(raised.value)
    assert "\n" not in message
    assert str(not_a_tar) in message
    assert "not a tar archive" in message


def test_rmi_missing_image_points_at_images(store):
    with pytest.raises(NotFound) as raised:
        store.remove("nosuch:1")
    message = str(raised.value)
    assert "'nosuch:1' is not in the store" in message
    assert "minictr images" in message
    assert "pull" not in message


def test_save_into_missing_directory_names_path(store, imported, tmp_path):
    output = tmp_path / "missing" / "x.tar"
    with pytest.raises(InvalidArgument) as raised:
        save(store, ["lab/one:v1"], str(output))
    assert repr(str(output)) in str(raised.value)
    assert "does not exist" in str(raised.value)
    assert not (tmp_path / "missing").exists()


def test_save_onto_directory_is_rejected(store, imported, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(InvalidArgument, match="is a directory"):
        save(store, ["lab/one:v1"], str(target))
    assert os.listdir(target) == []


def test_save_failure_leaves_no_temporary_file(store, imported, tmp_path):
    os.unlink(store.blob_path(imported.layers[0]["digest"]))
    with pytest.raises(ImageError, match="cannot save to"):
        save(store, ["lab/one:v1"], str(tmp_path / "x.tar"))
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-save-")] == []
    assert not (tmp_path / "x.tar").exists()
