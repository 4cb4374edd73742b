"""Bringing images in from files: OCI archives, `docker save` tarballs, rootfs tarballs.

Each function copies blobs into the layout (every one verified against its digest) and
returns Staged images: blobs present, nothing tagged yet. The store unpacks (verifying
diff ids) and only then tags, so a bad file leaves no half-made image behind.

- OCI archive: a tar of an OCI image layout (oci-layout, index.json, blobs/). Names come
  from the `io.containerd.image.name` annotation, else from
  `org.opencontainers.image.ref.name` when that is a full reference (has "/" or ":"); a
  bare tag such as "latest" names no repository, so that image is loaded untagged.
- `docker save`: manifest.json [{Config, RepoTags, Layers}], a config file and layer
  tars; an OCI manifest is made for it (the image id, the config digest, stays Docker's).
- rootfs import: one uncompressed layer, a config with no command.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from swarmlet.errors import SpecError
from swarmlet.imageref import ImageRef, parse
from worker.images import media
from worker.images.errors import ImageError
from worker.images.extract import decompressed
from worker.images.layout import REF_NAME, Layout, check_digest

CONTAINERD_NAME = "io.containerd.image.name"
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


@dataclass(frozen=True, slots=True)
class Staged:
    """An image whose blobs are all in the layout, not yet tagged."""

    names: list[str]              # normalized references to tag; empty = untagged
    manifest_digest: str
    manifest: media.Manifest
    media_type: str = media.OCI_MANIFEST


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> float:
    """An RFC 3339 time from an image config (nanoseconds allowed) as epoch seconds; 0 if
    absent or unreadable."""
    if not isinstance(text, str) or not text:
        return 0.0
    s = text.strip().replace("Z", "+00:00")
    main, dot, rest = s.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        s = f"{main}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        return 0.0


def _member(tf: tarfile.TarFile, name: str) -> IO[bytes]:
    for candidate in (name, "./" + name):
        try:
            f = tf.extractfile(candidate)
        except KeyError:
            continue
        if f is not None:
            return f
    raise ImageError(f"archive has no file {name}")


def _json_member(tf: tarfile.TarFile, name: str) -> Any:
    try:
        return json.loads(_member(tf, name).read(16 << 20))
    except ValueError as e:
        raise ImageError(f"archive file {name} is not valid JSON: {e}") from None


def _copy_blob(tf: tarfile.TarFile, layout: Layout, desc: media.Descriptor) -> None:
    if layout.has_blob(desc.digest):
        return
    src = _member(tf, "blobs/sha256/" + desc.digest.split(":", 1)[1])
    layout.put_stream(src, expected=desc.digest, expected_size=desc.size)


def _name(text: str) -> str:
    try:
        return str(parse(text))
    except SpecError as e:
        raise ImageError(f"archive names an invalid image reference: {e}") from None


def load_archive(path: Path, layout: Layout,
                 arch: tuple[str, str] | None = None) -> list[Staged]:
    """Stage every image of an OCI archive or `docker save` tarball."""
    try:
        with tarfile.open(path, "r:*") as tf:
            names = {n.lstrip("./") for n in tf.getnames()}
            if "index.json" in names and "oci-layout" in names:
                return _load_oci(tf, layout, arch)
            if "manifest.json" in names:
                return _load_docker(tf, layout)
    except (tarfile.TarError, EOFError) as e:
        raise ImageError(f"{path}: not a readable tar archive: {e}") from None
    raise ImageError(f"{path}: neither an OCI archive (oci-layout, index.json) nor a "
                     "docker save tarball (manifest.json)")


def _oci_names(desc: dict[str, Any]) -> list[str]:
    ann = desc.get("annotations") or {}
    full = ann.get(CONTAINERD_NAME) or ""
    ref = ann.get(REF_NAME) or ""
    if full:
        return [_name(full)]
    if ref and ("/" in ref or ":" in ref):
        return [_name(ref)]
    return []


def _load_oci(tf: tarfile.TarFile, layout: Layout,
              arch: tuple[str, str] | None) -> list[Staged]:
    index = _json_member(tf, "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageError("archive index.json lists no images")
    staged = []
    for i, entry in enumerate(entries):
        desc = media.descriptor(entry, f"archive index entry {i}")
        data = _member(tf, "blobs/sha256/" + desc.digest.split(":", 1)[1]).read(16 << 20)
        doc = media.load_json(data, f"archive manifest {desc.digest}")
        if media.media_type_of(doc, desc.media_type) in media.INDEX_TYPES:
            desc = media.pick_platform(doc, arch)
            data = _member(tf, "blobs/sha256/" + desc.digest.split(":", 1)[1]).read(16 << 20)
            doc = media.load_json(data, f"archive manifest {desc.digest}")
        man = media.parse_manifest(doc)
        for d in [man.config, *man.layers]:
            _copy_blob(tf, layout, d)
        layout.put_bytes(data, expected=desc.digest)
        staged.append(Staged(_oci_names(entry), desc.digest, man, media.media_type_of(doc)))
    return staged


def _layer_media(layout: Layout, digest: str) -> str:
    with open(layout.blob_path(digest), "rb") as f:
        return media.OCI_LAYER_GZIP if f.read(2) == b"\x1f\x8b" else media.OCI_LAYER


def _load_docker(tf: tarfile.TarFile, layout: Layout) -> list[Staged]:
    doc = _json_member(tf, "manifest.json")
    if not isinstance(doc, list) or not doc:
        raise ImageError("archive manifest.json lists no images")
    staged = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get("Layers"), list):
            raise ImageError(f"archive manifest.json entry {i} has no Layers")
        config_data = _member(tf, str(item.get("Config", ""))).read(16 << 20)
        config_digest = layout.put_bytes(config_data)
        layers = []
        for name in item["Layers"]:
            digest = layout.put_stream(_member(tf, str(name)))
            layers.append(media.Descriptor(_layer_media(layout, digest), digest,
                                           layout.blob_size(digest)))
        config = media.Descriptor(media.OCI_CONFIG, config_digest, len(config_data))
        data = media.manifest_bytes(config, layers)
        digest = layout.put_bytes(data)
        names = [_name(t) for t in item.get("RepoTags") or []]
        staged.append(Staged(names, digest, media.Manifest(config, layers)))
    return staged


def import_rootfs(path: Path, ref: ImageRef, layout: Layout, now: float,
                  arch: tuple[str, str]) -> Staged:
    """Stage a one-layer image from a rootfs tarball (any compression; stored plain)."""
    try:
        with open(path, "rb") as raw:
            layer = layout.put_stream(decompressed(raw))
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or e}") from None
    created = rfc3339(now)
    config_doc = {
        "created": created,
        "architecture": arch[0],
        **({"variant": arch[1]} if arch[1] else {}),
        "os": "linux",
        "config": {"Env": DEFAULT_ENV},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
        "history": [{"created": created, "created_by": "swarm image import",
                     "comment": f"imported from {path.name}"}],
    }
    config_data = json.dumps(config_doc, separators=(",", ":"), sort_keys=True).encode()
    config_digest = layout.put_bytes(config_data)
    config = media.Descriptor(media.OCI_CONFIG, config_digest, len(config_data))
    layers = [media.Descriptor(media.OCI_LAYER, check_digest(layer), layout.blob_size(layer))]
    data = media.manifest_bytes(config, layers)
    digest = layout.put_bytes(data)
    return Staged([str(ref)], digest, media.Manifest(config, layers))
