"""ImageStore: a node's local images, in OCI image-layout form, plus unpacked layers.

    root/oci-layout, root/index.json, root/blobs/sha256/<hex>   (worker.images.layout)
    root/layers/<diff id hex>/   each layer unpacked once (worker.images.extract), shared
                                 by every image and container that uses it; these are the
                                 directories a container's overlayfs stacks (lowest first)
    root/tmp/                    downloads and unpacks in progress

`ensure(ref)` answers from the store, else pulls; `pull`, `load`, `import_rootfs` fetch
or read blobs, unpack and verify every layer, and only then tag the image in index.json:
a failure leaves no half-made image. Tags live in index.json as
`org.opencontainers.image.ref.name` = the normalized reference
("docker.io/library/busybox:latest"); an image id is its config's digest, as Docker's.

`remove` drops tags; blobs and layer directories no longer referenced by any tag are
garbage-collected at once, except (a) while any pull/load/import/ensure is in flight
(collection then waits for the last of them to finish) and (b) layer directories that a
mounted overlayfs still uses (found in /proc/self/mountinfo): a running container keeps
its layers; they are collected by the next collection after it is gone.

Thread-safe: every ImageStore over the same root in one process shares one lock.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlet import log as slog
from swarmlet.clock import Clock, RealClock
from swarmlet.errors import SpecError
from swarmlet.imageref import ImageRef, parse
from worker.images import archive, media, registry
from worker.images.errors import ImageError, ImageNotFound
from worker.images.extract import remove_tree, unpack_into_cache
from worker.images.layout import REF_NAME, Layout

_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ResolvedImage:
    """A local image ready to run: its unpacked layers (lowest first) and run config."""

    id: str                       # "sha256:<config digest hex>"
    layers: list[Path]
    config: dict[str, Any]        # the config's "config": Env, Entrypoint, Cmd, WorkingDir, User
    ref: str = ""                 # the normalized reference it was found by
    digest: str = ""              # manifest digest


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]               # normalized references ("docker.io/library/busybox:latest")
    size: int                     # bytes of manifest, config and layer blobs
    created: float                # from the image config; 0 when unknown


@dataclass(frozen=True)
class Removed:
    untagged: list[str]
    deleted: list[str] = field(default_factory=list)   # image ids no longer in the store


class _Shared:
    """State shared by all ImageStore objects over one root in this process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.busy = 0             # staging operations in flight
        self.gc_pending = False
        self.ref_locks: dict[str, threading.Lock] = {}


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _ref_name(entry: dict[str, Any]) -> str:
    ann = entry.get("annotations")
    return str(ann.get(REF_NAME, "")) if isinstance(ann, dict) else ""


class ImageStore:
    def __init__(
        self,
        root: Path,
        *,
        insecure_registries: Iterable[str] = (),
        clock: Clock | None = None,
        privileged: bool | None = None,
        timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        arch: tuple[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.layout = Layout(self.root)
        self.layers_dir = self.root / "layers"
        self.layers_dir.mkdir(exist_ok=True)
        self.insecure_registries = list(insecure_registries)
        self._clock = clock or RealClock()
        self._privileged = privileged
        self._timeout = timeout
        self._ssl = ssl_context
        self.arch = arch or media.host_arch()
        self._log = slog.get("images", root=str(self.root))
        with _SHARED_LOCK:
            key = str(self.root.resolve())
            fresh = key not in _SHARED
            self._shared = _SHARED.setdefault(key, _Shared())
        if fresh:
            self.layout.clean_tmp()
            if privileged is False or (privileged is None and not _is_root()):
                self._log.info("images.unprivileged", note="not root: layer whiteouts, file "
                               "owners and device nodes are skipped when unpacking")

    # ------------------------------------------------------------------ run

    def ensure(self, ref: str) -> ResolvedImage:
        """The image `ref` names (a reference or a local image id), pulled if missing."""
        with self._operation():
            found = self._resolve_local(ref)
            if found is not None:
                return found
        parsed = self._parse(ref)
        with self._ref_lock(str(parsed)), self._operation():
            found = self._resolve_local(str(parsed))
            if found is not None:
                return found  # pulled by another caller meanwhile
            return self._pull(parsed, insecure=False)

    def resolve(self, ref: str) -> ResolvedImage | None:
        """The local image `ref` names, or None; never contacts a registry."""
        with self._operation():
            return self._resolve_local(ref)

    def pull(self, ref: str, insecure: bool = False) -> ResolvedImage:
        """Fetch `ref` from its registry (again, even if present) and tag it."""
        parsed = self._parse(ref)
        with self._ref_lock(str(parsed)), self._operation():
            return self._pull(parsed, insecure)

    def _pull(self, ref: ImageRef, insecure: bool) -> ResolvedImage:
        insecure = insecure or registry.is_insecure(ref.registry, self.insecure_registries)
        self._log.info("images.pull", ref=str(ref), insecure=insecure)
        try:
            pulled = registry.pull_into(ref, self.layout, insecure=insecure,
                                        timeout=self._timeout, ssl_context=self._ssl,
                                        arch=self.arch)
            staged = archive.Staged([str(ref)], pulled.manifest_digest, pulled.manifest,
                                    media.OCI_MANIFEST)
            resolved = self._unpack(staged.manifest_digest, str(ref))
        except ImageError as e:
            self._log.warning("images.pull_failed", ref=str(ref), error=str(e))
            raise ImageError(f"pull {ref.familiar()}: {e}") from None
        media_type = media.media_type_of(self.layout.read_json(pulled.manifest_digest))
        self._tag([archive.Staged(staged.names, staged.manifest_digest, staged.manifest,
                                  media_type)])
        return resolved

    # ------------------------------------------------------------------ files

    def load(self, path: Path) -> builtins.list[ImageInfo]:
        """Load every image of an OCI archive or a `docker save` tarball."""
        path = Path(path)
        with self._operation():
            try:
                staged = archive.load_archive(path, self.layout, self.arch)
                for s in staged:
                    self._unpack(s.manifest_digest, ", ".join(s.names) or s.manifest_digest)
            except OSError as e:
                raise ImageError(f"load {path}: {e.strerror or e}") from None
            except ImageError as e:
                raise ImageError(f"load {path}: {e}") from None
            self._tag(staged)
        return [self._info_of(s.manifest_digest, s.names) for s in staged]

    def import_rootfs(self, tar_path: Path, ref: str) -> ImageInfo:
        """A one-layer image from a rootfs tarball, tagged `ref`; its config has no Cmd."""
        parsed = self._parse(ref)
        with self._operation():
            try:
                staged = archive.import_rootfs(Path(tar_path), parsed, self.layout,
                                               self._clock.now(), self.arch)
                self._unpack(staged.manifest_digest, str(parsed))
            except ImageError as e:
                raise ImageError(f"import {tar_path}: {e}") from None
            self._tag([staged])
        return self._info_of(staged.manifest_digest, staged.names)

    # ------------------------------------------------------------------ listing

    def list(self) -> builtins.list[ImageInfo]:
        """Every local image, newest first; several tags of one image are one entry."""
        with self._shared.lock:
            index = self.layout.read_index()
        by_id: dict[str, ImageInfo] = {}
        for entry in index:
            try:
                info = self._info_of(entry["digest"], [_ref_name(entry)] if _ref_name(entry)
                                     else [])
            except ImageError as e:
                self._log.warning("images.unreadable", digest=entry.get("digest"), error=str(e))
                continue
            old = by_id.get(info.id)
            if old is not None:
                info = ImageInfo(info.id, sorted(set(old.tags + info.tags)), old.size,
                                 old.created)
            by_id[info.id] = info
        return sorted(by_id.values(), key=lambda i: (-i.created, i.id))

    def _info_of(self, manifest_digest: str, tags: builtins.list[str]) -> ImageInfo:
        man = media.parse_manifest(self.layout.read_json(manifest_digest))
        config = self.layout.read_json(man.config.digest)
        size = (self.layout.blob_size(manifest_digest) + man.config.size
                + sum(max(0, d.size) for d in man.layers))
        return ImageInfo(man.config.digest, sorted(t for t in tags if t), size,
                         archive.parse_time(config.get("created")))

    # ------------------------------------------------------------------ removal

    def remove(self, ref_or_id: str) -> Removed:
        """Untag `ref_or_id` (a reference: that tag; an image id: all its tags) and
        collect what is no longer referenced."""
        with self._shared.lock:
            index = self.layout.read_index()
            hit = self._entries_for(index, ref_or_id)
            if not hit:
                raise ImageNotFound(f"no such image: {ref_or_id}")
            keep = [e for e in index if e not in hit]
            self.layout.write_index(keep)
            gone_ids = {self._config_of(e["digest"]) for e in hit}
            kept_ids = {self._config_of(e["digest"]) for e in keep}
            removed = Removed([_ref_name(e) for e in hit if _ref_name(e)],
                              sorted(i for i in gone_ids - kept_ids if i))
            self._log.info("images.removed", untagged=removed.untagged, deleted=removed.deleted)
            self._collect()
        return removed

    def _entries_for(self, index: builtins.list[dict[str, Any]],
                     text: str) -> builtins.list[dict[str, Any]]:
        try:
            name = str(parse(text))
        except SpecError:
            name = ""
        hit = [e for e in index if name and _ref_name(e) == name]
        if hit:
            return hit
        m = _ID.match(text.strip().lower())
        if not m:
            return []
        ids = {self._config_of(e["digest"]) for e in index}
        matching = {i for i in ids if i and i.split(":", 1)[1].startswith(m.group(1))}
        if len(matching) > 1:
            raise ImageError(f"image id prefix {text} is ambiguous ({len(matching)} images)")
        return [e for e in index if self._config_of(e["digest"]) in matching]

    def _config_of(self, manifest_digest: str) -> str:
        try:
            return media.parse_manifest(self.layout.read_json(manifest_digest)).config.digest
        except ImageError:
            return ""

    def gc(self) -> None:
        """Delete blobs and layer directories no tag references (see the module doc)."""
        with self._shared.lock:
            self._collect()

    def _collect(self) -> None:
        if self._shared.busy:
            self._shared.gc_pending = True
            return
        self._shared.gc_pending = False
        keep: set[str] = set()
        for entry in self.layout.read_index():
            keep |= self._closure(entry["digest"])
        blobs = [d for d in self.layout.all_blobs() if d not in keep]
        for d in blobs:
            self.layout.delete_blob(d)
        mounts = _mountinfo()
        layers = []
        for p in self.layers_dir.iterdir():
            if _HEX64.match(p.name) and f"sha256:{p.name}" not in keep:
                if str(p) in mounts:
                    self._log.info("images.layer_in_use", layer=p.name)
                    continue
                remove_tree(p)
                layers.append(p.name[:12])
        if blobs or layers:
            self._log.info("images.collected", blobs=len(blobs), layers=layers)

    def _closure(self, manifest_digest: str) -> set[str]:
        """The manifest's digest, its config and layer digests, and its diff ids."""
        out = {manifest_digest}
        try:
            man = media.parse_manifest(self.layout.read_json(manifest_digest))
            out.add(man.config.digest)
            out.update(d.digest for d in man.layers)
            config = self.layout.read_json(man.config.digest)
            out.update(media.config_diff_ids(config, len(man.layers)))
        except ImageError:
            pass  # keep what could be read; a broken image is removed by rm
        return out

    # ------------------------------------------------------------------ internals

    def _parse(self, ref: str) -> ImageRef:
        try:
            return parse(ref)
        except SpecError as e:
            raise ImageError(str(e)) from None

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        with self._shared.lock:
            self._shared.busy += 1
        try:
            yield
        finally:
            with self._shared.lock:
                self._shared.busy -= 1
                if self._shared.busy == 0 and self._shared.gc_pending:
                    self._collect()

    def _ref_lock(self, name: str) -> threading.Lock:
        with self._shared.lock:
            return self._shared.ref_locks.setdefault(name, threading.Lock())

    def _resolve_local(self, text: str) -> ResolvedImage | None:
        with self._shared.lock:
            index = self.layout.read_index()
            hit = self._entries_for(index, text)
        if not hit:
            return None
        return self._unpack(hit[0]["digest"], _ref_name(hit[0]))

    def _unpack(self, manifest_digest: str, name: str) -> ResolvedImage:
        """Unpack (once) and verify every layer of a manifest whose blobs are present."""
        man = media.parse_manifest(self.layout.read_json(manifest_digest))
        config = self.layout.read_json(man.config.digest)
        diff_ids = media.config_diff_ids(config, len(man.layers))
        dirs = []
        for desc, diff_id in zip(man.layers, diff_ids, strict=True):
            blob = self.layout.blob_path(desc.digest)
            if not (self.layers_dir / diff_id.split(":", 1)[1]).is_dir() and not blob.is_file():
                raise ImageError(f"image {name}: layer {desc.digest} is missing; pull it again")
            path, res = unpack_into_cache(blob, diff_id, self.layers_dir, self.layout.tmp_dir,
                                          self._privileged)
            if res is not None and (res.skipped_whiteouts or res.skipped_devices):
                self._log.warning("images.whiteouts_skipped", layer=diff_id,
                                  whiteouts=res.skipped_whiteouts, devices=res.skipped_devices,
                                  reason="not root: mknod and trusted.* xattrs need root")
            dirs.append(path)
        run = config.get("config")
        return ResolvedImage(man.config.digest, dirs, dict(run) if isinstance(run, dict) else {},
                             name, manifest_digest)

    def _tag(self, staged: builtins.list[archive.Staged]) -> None:
        with self._shared.lock:
            index = self.layout.read_index()
            names = {n for s in staged for n in s.names}
            named = {s.manifest_digest for s in staged if s.names}
            replaced = [e for e in index if _ref_name(e) in names
                        or (not _ref_name(e) and e["digest"] in named)]
            index = [e for e in index if e not in replaced]
            present = {e["digest"] for e in index}
            for s in staged:
                desc = {"mediaType": s.media_type, "digest": s.manifest_digest,
                        "size": self.layout.blob_size(s.manifest_digest)}
                for n in s.names:
                    index.append({**desc, "annotations": {REF_NAME: n}})
                if not s.names and s.manifest_digest not in present:
                    index.append(desc)  # untagged, like Docker's <none>:<none>
                present.add(s.manifest_digest)
            self.layout.write_index(index)
            if replaced:
                self._collect()


def _is_root() -> bool:
    return os.geteuid() == 0


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ""
