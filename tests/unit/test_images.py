"""Image store: layout, import, load (OCI archive, docker save), listing, removal, GC."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from swarmlet.clock import FakeClock
from tests.harness.registry import (
    Image,
    busybox_entries,
    digest_of,
    tar_bytes,
    write_docker_save,
    write_oci_archive,
)
from worker.images import ImageError, ImageNotFound, ImageStore
from worker.images.layout import Layout


def _store(tmp: Path) -> ImageStore:
    return ImageStore(tmp / "images", clock=FakeClock(1_715_000_000.0))


def _blob_files(store: ImageStore) -> set[str]:
    return {p.name for p in store.layout.blobs.iterdir()}


def test_layout_verifies_digest_before_keeping_a_blob(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    assert json.loads((tmp_path / "l" / "oci-layout").read_text())["imageLayoutVersion"]
    good = layout.put_bytes(b"hello", expected=digest_of(b"hello"))
    assert layout.read_blob(good) == b"hello"
    with pytest.raises(ImageError, match="digest mismatch"):
        layout.put_bytes(b"tampered", expected=digest_of(b"original"))
    assert {p.name for p in layout.blobs.iterdir()} == {good.split(":")[1]}
    assert list(layout.tmp_dir.iterdir()) == []


def test_import_rootfs_then_ensure_list_and_remove(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rootfs = tmp_path / "rootfs.tar.gz"
    rootfs.write_bytes(gzip.compress(tar_bytes(busybox_entries())))
    info = store.import_rootfs(rootfs, "local/busybox:1")
    assert info.tags == ["docker.io/local/busybox:1"]
    assert info.created == pytest.approx(1_715_000_000.0)

    img = store.ensure("local/busybox:1")
    assert img.id == info.id
    assert "Cmd" not in img.config and "Entrypoint" not in img.config
    (layer,) = img.layers
    assert (layer / "bin" / "busybox").stat().st_size == Path("/bin/busybox").stat().st_size
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    # the blob of an imported layer is the uncompressed tar: its digest is the diff id
    assert layer.name in _blob_files(store)

    (listed,) = store.list()
    assert listed.id == info.id and listed.size >= Path("/bin/busybox").stat().st_size
    removed = store.remove("local/busybox:1")
    assert removed.untagged == ["docker.io/local/busybox:1"] and removed.deleted == [info.id]
    assert store.list() == []
    assert _blob_files(store) == set()
    assert list(store.layers_dir.iterdir()) == []


def test_import_refuses_bad_reference_and_missing_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ImageError, match="invalid reference format"):
        store.import_rootfs(tmp_path / "x.tar", "Bad:Name")
    with pytest.raises(ImageError, match="No such file"):
        store.import_rootfs(tmp_path / "missing.tar", "ok:1")
    assert store.list() == []


def _two_layer_image() -> Image:
    base = tar_bytes(busybox_entries([("etc/motd", "file", b"base\n")]))
    top = tar_bytes([("etc", "dir", None), ("etc/motd", "file", b"top\n"),
                     ("etc/hard", "hardlink", "etc/motd")])
    return Image.build([base, top], cmd=["echo", "hi"])


def test_load_oci_archive(tmp_path: Path) -> None:
    store = _store(tmp_path)
    image = _two_layer_image()
    archive = write_oci_archive(tmp_path / "img.tar", image, "example.com/team/app:2")
    (info,) = store.load(archive)
    assert info.id == image.config_digest
    assert info.tags == ["example.com/team/app:2"]
    img = store.ensure("example.com/team/app:2")
    assert img.config["Cmd"] == ["echo", "hi"]
    assert [p.name for p in img.layers] == [d.split(":")[1] for d in image.diff_ids]
    assert (img.layers[1] / "etc" / "motd").read_text() == "top\n"
    assert (img.layers[1] / "etc" / "hard").stat().st_ino == (
        img.layers[1] / "etc" / "motd").stat().st_ino
    # lookup by image id prefix works too
    assert store.ensure(image.config_digest.split(":")[1][:12]).id == image.config_digest


def test_load_docker_save_tarball_keeps_docker_image_id(tmp_path: Path) -> None:
    store = _store(tmp_path)
    image = _two_layer_image()
    saved = write_docker_save(tmp_path / "save.tar", image, ["busybox:saved", "other:1"])
    (info,) = store.load(saved)
    assert info.id == image.config_digest
    assert info.tags == ["docker.io/library/busybox:saved", "docker.io/library/other:1"]
    assert store.ensure("busybox:saved").config["Cmd"] == ["echo", "hi"]
    # removing one tag keeps the image; removing by id takes the rest
    assert store.remove("other:1").deleted == []
    assert store.remove(image.config_digest).deleted == [image.config_digest]
    assert _blob_files(store) == set()


def test_load_with_wrong_diff_id_leaves_nothing_tagged(tmp_path: Path) -> None:
    store = _store(tmp_path)
    good = _two_layer_image()
    config = json.loads(good.config)
    config["rootfs"]["diff_ids"][0] = digest_of(b"not the layer")
    bad = Image(json.dumps(config).encode(), good.layers, b"")
    archive = write_docker_save(tmp_path / "bad.tar", bad, ["bad:1"])
    with pytest.raises(ImageError, match="diff id"):
        store.load(archive)
    assert store.list() == []
    with pytest.raises(ImageNotFound):
        store.remove("bad:1")


def test_load_rejects_a_file_that_is_no_image(tmp_path: Path) -> None:
    store = _store(tmp_path)
    f = tmp_path / "plain.tar"
    with tarfile.open(f, "w") as tf:
        tf.add(__file__, arcname="readme.txt")
    with pytest.raises(ImageError, match="neither an OCI archive"):
        store.load(f)


def test_concurrent_ensure_unpacks_each_layer_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    archive = write_oci_archive(tmp_path / "img.tar", _two_layer_image(), "app:1")
    store.load(archive)
    for p in store.layers_dir.iterdir():
        os.chmod(p, 0o755)
        p.rename(tmp_path / p.name)  # forget the unpacked layers; blobs stay
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(store.ensure("app:1")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len(list(store.layers_dir.iterdir())) == 2
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_unsafe_layer_paths_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    outside = tmp_path / "evil"
    for entries in (
        [("../evil", "file", b"x")],
        [("lnk", "symlink", str(tmp_path)), ("lnk/evil", "file", b"x")],
        [("a", "file", b"x"), ("b", "hardlink", "../../etc/passwd")],
    ):
        image = Image.build([tar_bytes(entries)])
        archive = write_oci_archive(tmp_path / "evil.tar", image, "evil:1")
        with pytest.raises(ImageError, match="layer"):
            store.load(archive)
        assert not outside.exists()
        assert store.list() == []
