"""Unpacking one layer tar into a directory that overlayfs can use as a lower layer.

The layer blob is read as a stream (gzip, bzip2, xz or plain tar; zstd is refused with a
clear message), its uncompressed bytes hashed on the way to give the diff id, which must
match the image config's `rootfs.diff_ids` entry. Extraction is done member by member,
never through a path that leaves the destination: names are normalised (leading `/`
dropped, `..` refused), no member is written through a symlink, hard links must point
inside the layer.

OCI whiteouts become overlayfs whiteouts: `dir/.wh.NAME` -> character device 0/0 at
`dir/NAME`, `dir/.wh..wh..opq` -> xattr `trusted.overlay.opaque=y` on `dir`. Both need
root (mknod, trusted.* xattrs), as do owners, device nodes and xattrs from the tar; as
another user they are skipped and a log line says so: images without whiteouts still
work, images with them show deleted files.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from worker.images.errors import ImageError

CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PREFIX = "SCHILY.xattr."


@dataclass(frozen=True, slots=True)
class Unpacked:
    diff_id: str
    size: int                 # uncompressed tar bytes
    skipped_whiteouts: int    # whiteouts not converted (not root)
    skipped_devices: int      # device nodes not created (not root)


class _Hashing(io.RawIOBase):
    """A read-only stream that hashes what passes through it."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self.h = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._src.read(len(b))
        n = len(data)
        b[:n] = data
        self.h.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def decompressed(f: IO[bytes]) -> IO[bytes]:
    """The uncompressed stream of a layer blob, whatever its compression."""
    buf: Any = f if isinstance(f, io.BufferedReader) else io.BufferedReader(f)  # type: ignore[arg-type,type-var]
    magic = buf.peek(6)[:6]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buf, mode="rb")  # type: ignore[return-value]
    if magic[:3] == b"BZh":
        return bz2.BZ2File(buf)  # type: ignore[return-value]
    if magic[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(buf)  # type: ignore[return-value]
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        raise ImageError("zstd-compressed layers are not supported (no zstd in this Python)")
    return buf


def safe_parts(name: str) -> list[str]:
    """A tar member name as path components under the destination; ImageError on `..`."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer member {name!r} points outside the layer")
    return parts


class _Extractor:
    def __init__(self, dest: Path, privileged: bool) -> None:
        self.dest = dest
        self.privileged = privileged
        self.dirs: list[tuple[Path, tarfile.TarInfo]] = []
        self.skipped_whiteouts = 0
        self.skipped_devices = 0

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = safe_parts(m.name)
        if not parts:
            if m.isdir():
                self.dirs.append((self.dest, m))
            return
        parent = self._parent(parts[:-1])
        base = parts[-1]
        if base == OPAQUE:
            self._opaque(parent)
        elif base.startswith(WHITEOUT):
            self._whiteout(parent / base[len(WHITEOUT):])
        else:
            self._create(tf, m, parent / base)

    def _parent(self, parts: list[str]) -> Path:
        """The member's parent directory, made if missing; never reached via a symlink."""
        p = self.dest
        for c in parts:
            p = p / c
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                os.mkdir(p, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise ImageError(f"layer writes through the symlink {'/'.join(parts)!r}")
            if not stat.S_ISDIR(st.st_mode):
                raise ImageError(f"layer puts entries under the non-directory {'/'.join(parts)!r}")
        return p

    def _clear(self, path: Path, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(path)
        else:
            path.unlink()

    def _create(self, tf: tarfile.TarFile, m: tarfile.TarInfo, path: Path) -> None:
        self._clear(path, keep_dir=m.isdir())
        if m.isdir():
            if not path.exists():
                os.mkdir(path, 0o700)
            self.dirs.append((path, m))
            return
        if m.isreg():
            self._regular(tf, m, path)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            os.link(self._link_target(m), path, follow_symlinks=False)
            return  # a hard link shares the target's attributes
        elif m.ischr() or m.isblk():
            if not self.privileged:
                self.skipped_devices += 1
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            return  # unknown member types are ignored, as tar does
        self._attrs(path, m)

    def _regular(self, tf: tarfile.TarFile, m: tarfile.TarInfo, path: Path) -> None:
        src = tf.extractfile(m)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, CHUNK)

    def _link_target(self, m: tarfile.TarInfo) -> Path:
        parts = safe_parts(m.linkname)
        if not parts:
            raise ImageError(f"layer hard link {m.name!r} has no target")
        target = self.dest
        for i, c in enumerate(parts):
            target = target / c
            if i < len(parts) - 1 and target.is_symlink():
                raise ImageError(f"layer hard link {m.name!r} goes through a symlink")
        if not os.path.lexists(target):
            raise ImageError(f"layer hard link {m.name!r} points to a missing file")
        return target

    def _attrs(self, path: Path, m: tarfile.TarInfo) -> None:
        if self.privileged:
            os.lchown(path, m.uid, m.gid)
            for key, value in m.pax_headers.items():
                if key.startswith(_XATTR_PREFIX):
                    raw = value.encode("utf-8", "surrogateescape")
                    try:
                        os.setxattr(path, key[len(_XATTR_PREFIX):], raw, follow_symlinks=False)
                    except OSError:
                        pass  # a filesystem without that namespace: the file still works
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            os.chmod(path, m.mode & 0o7777)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def _opaque(self, directory: Path) -> None:
        if not self.privileged:
            self.skipped_whiteouts += 1
            return
        os.setxattr(directory, OPAQUE_XATTR, b"y")

    def _whiteout(self, path: Path) -> None:
        if not self.privileged:
            self.skipped_whiteouts += 1
            return
        self._clear(path, keep_dir=False)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    def finish(self) -> None:
        """Directory attributes last, deepest first, so that writing into them worked."""
        for path, m in reversed(self.dirs):
            self._attrs(path, m)


def extract_layer(src: IO[bytes], dest: Path, privileged: bool | None = None) -> Unpacked:
    """Unpack one layer stream into the existing empty directory `dest`."""
    if privileged is None:
        privileged = os.geteuid() == 0
    hashing = _Hashing(decompressed(src))
    ex = _Extractor(dest, privileged)
    try:
        with tarfile.open(fileobj=hashing, mode="r|") as tf:  # type: ignore[call-overload]
            for m in tf:
                ex.member(tf, m)
        hashing.drain()
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as e:
        raise ImageError(f"layer cannot be unpacked: {e}") from None
    ex.finish()
    return Unpacked("sha256:" + hashing.h.hexdigest(), hashing.size,
                    ex.skipped_whiteouts, ex.skipped_devices)


def unpack_into_cache(blob: Path, diff_id: str, layers_dir: Path, tmp_dir: Path,
                      privileged: bool | None = None) -> tuple[Path, Unpacked | None]:
    """The layer directory layers_dir/<diff id hex>, unpacking the blob first if needed.

    Unpacking goes to a temporary directory renamed into place only once the diff id is
    verified, so a layer directory that exists is complete. Returns (dir, Unpacked or None
    when it was already there)."""
    final = layers_dir / diff_id.split(":", 1)[1]
    if final.is_dir():
        return final, None
    work = Path(tempfile.mkdtemp(dir=tmp_dir, prefix="layer-"))
    try:
        os.chmod(work, 0o755)
        with open(blob, "rb") as f:
            res = extract_layer(f, work, privileged)
        if res.diff_id != diff_id:
            raise ImageError(f"layer {diff_id}: content has diff id {res.diff_id}")
        try:
            os.rename(work, final)
        except OSError:
            if not final.is_dir():
                raise
            remove_tree(work)  # another thread unpacked the same layer first
        return final, res
    except BaseException:
        remove_tree(work)
        raise


def remove_tree(path: Path) -> None:
    """rmtree that also copes with directories left without write permission."""

    def retry(func: Any, p: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry)
