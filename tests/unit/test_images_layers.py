"""Layer unpacking: OCI whiteouts become overlayfs whiteouts (root), and what happens
without root; a layer a mounted overlay uses survives garbage collection."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness.registry import Image, busybox_entries, tar_bytes, write_oci_archive
from worker.images import ImageStore
from worker.images.extract import OPAQUE_XATTR, extract_layer

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, trusted.* xattrs, "
                                "mount -t overlay)")

LOWER = [("dir", "dir", None), ("dir/a", "file", b"a"), ("dir/b", "file", b"b"),
         ("opq", "dir", None), ("opq/x", "file", b"x")]
UPPER = [("dir", "dir", None), ("dir/.wh.a", "file", b""),
         ("opq", "dir", None), ("opq/.wh..wh..opq", "file", b""), ("opq/y", "file", b"y")]


@contextmanager
def overlay(layers: list[Path], tmp: Path) -> Iterator[Path]:
    """A read-only overlay of `layers` (lowest first); unmounted on exit."""
    merged, empty = tmp / "merged", tmp / "empty"
    merged.mkdir()
    empty.mkdir()
    # without an upper dir overlayfs wants two lower dirs at least
    lower = ":".join(str(p) for p in [*reversed(layers), empty])
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}",
                           str(merged)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {proc.stderr.strip()}")
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@needs_root
def test_whiteouts_become_overlayfs_whiteouts(tmp_path: Path) -> None:
    dest = tmp_path / "upper"
    dest.mkdir()
    res = extract_layer(io.BytesIO(tar_bytes(UPPER)), dest, privileged=True)
    assert res.skipped_whiteouts == 0
    st = os.lstat(dest / "dir" / "a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "opq", OPAQUE_XATTR) == b"y"
    assert not (dest / "dir" / ".wh.a").exists()


@needs_root
def test_overlay_of_unpacked_layers_hides_deleted_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    image = Image.build([tar_bytes(LOWER), tar_bytes(UPPER)])
    store.load(write_oci_archive(tmp_path / "img.tar", image, "wh:1"))
    img = store.ensure("wh:1")
    with overlay(img.layers, tmp_path) as root:
        assert sorted(os.listdir(root / "dir")) == ["b"]
        assert sorted(os.listdir(root / "opq")) == ["y"]


def test_without_root_whiteouts_are_skipped_and_counted(tmp_path: Path) -> None:
    dest = tmp_path / "upper"
    dest.mkdir()
    res = extract_layer(io.BytesIO(tar_bytes(UPPER + [("dev", "dir", None),
                                                      ("dev/null", "chr", (1, 3))])),
                        dest, privileged=False)
    assert (res.skipped_whiteouts, res.skipped_devices) == (2, 1)
    assert not os.path.lexists(dest / "dir" / "a")
    assert not os.path.lexists(dest / "dev" / "null")
    assert (dest / "opq" / "y").read_bytes() == b"y"


@needs_root
def test_layer_in_use_by_a_mount_outlives_removal_until_unmounted(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    image = Image.build([tar_bytes(busybox_entries())])
    store.load(write_oci_archive(tmp_path / "img.tar", image, "busy:1"))
    (layer,) = store.ensure("busy:1").layers
    with overlay([layer], tmp_path) as root:
        assert (root / "bin" / "busybox").exists()
        store.remove("busy:1")
        assert layer.is_dir(), "a mounted layer must not be deleted"
        assert list(store.layout.blobs.iterdir()) == []
    store.gc()
    assert not layer.exists()
