"""An OCI image layout on disk: content-addressed blobs and the index of named manifests.

    root/oci-layout            {"imageLayoutVersion": "1.0.0"}
    root/index.json            an OCI image index; one descriptor per (reference, manifest),
                               the reference in "org.opencontainers.image.ref.name"
    root/blobs/sha256/<hex>    every manifest, config and layer, named by its digest
    root/tmp/                  incoming blobs; renamed into blobs/ only once verified

A blob enters the layout only after its sha256 has been checked against the digest it
was asked for, so whatever is under blobs/ is what its name says. Writes are atomic
(temp file + rename); index.json is replaced whole. Not thread-safe by itself: the
ImageStore serialises index changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from worker.images.errors import ImageError

INDEX_MEDIA = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def check_digest(digest: str, what: str = "digest") -> str:
    """The digest if it is a well-formed sha256 digest; ImageError otherwise."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"{what}: {digest!r} is not a sha256 digest")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobWriter:
    """An incoming blob: write() the bytes, then commit(expected digest) or discard()."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        fd, name = tempfile.mkstemp(dir=layout.tmp_dir, prefix="blob-")
        self.path = Path(name)
        self._f: IO[bytes] = os.fdopen(fd, "wb")
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def commit(self, expected: str | None = None, expected_size: int | None = None) -> str:
        """Move the blob into place if it matches `expected`; ImageError (and nothing kept)
        if it does not."""
        self._f.close()
        got = self.digest
        try:
            if expected is not None and got != expected:
                raise ImageError(f"digest mismatch: expected {expected}, got {got}")
            if expected_size is not None and expected_size >= 0 and self.size != expected_size:
                raise ImageError(
                    f"size mismatch for {got}: expected {expected_size} bytes, got {self.size}"
                )
            dest = self._layout.blob_path(got)
            if dest.exists():
                self.path.unlink()
            else:
                os.chmod(self.path, 0o644)
                os.replace(self.path, dest)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return got

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        self.path.unlink(missing_ok=True)


class Layout:
    """The files of one OCI image layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            write_atomic(marker, json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        if not (self.root / "index.json").exists():
            self.write_index([])

    # ------------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def read_blob(self, digest: str, limit: int = 16 << 20) -> bytes:
        """A small blob (manifest, config), verified against its name."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the image store") from None
        if len(data) > limit:
            raise ImageError(f"blob {digest} is larger than {limit} bytes")
        if sha256_digest(data) != digest:
            raise ImageError(f"blob {digest} is corrupt (content does not match its digest)")
        return data

    def read_json(self, digest: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.read_blob(digest))
        except ValueError as e:
            raise ImageError(f"blob {digest} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return doc

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        w = self.writer()
        w.write(data)
        return w.commit(expected)

    def put_stream(self, src: IO[bytes], expected: str | None = None,
                   expected_size: int | None = None) -> str:
        w = self.writer()
        try:
            while chunk := src.read(CHUNK):
                w.write(chunk)
        except BaseException:
            w.discard()
            raise
        return w.commit(expected, expected_size)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def all_blobs(self) -> Iterator[str]:
        for p in self.blobs.iterdir():
            if _DIGEST.match("sha256:" + p.name):
                yield "sha256:" + p.name

    def delete_blob(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def clean_tmp(self) -> None:
        """Remove leftovers of interrupted writes (call only when nothing is writing)."""
        for p in self.tmp_dir.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ index

    def read_index(self) -> list[dict[str, Any]]:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ImageError(f"{path} cannot be read: {e}") from None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(manifests, list):
            raise ImageError(f"{path} has no manifests list")
        return [m for m in manifests if isinstance(m, dict) and "digest" in m]

    def write_index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA, "manifests": manifests}
        write_atomic(self.root / "index.json", json.dumps(doc, indent=1).encode())


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
