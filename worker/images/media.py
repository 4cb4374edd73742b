"""Media types of OCI / Docker images, manifest parsing, and picking a platform from an index.

Pure: no I/O. Manifests are checked enough that later code can trust their shape (every
descriptor has a sha256 digest, a size and a media type).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from worker.images.errors import ImageError
from worker.images.layout import check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


def host_arch(machine: str | None = None) -> tuple[str, str]:
    """(architecture, variant) of this machine in OCI terms: ("amd64", "")."""
    m = (machine or platform.machine()).lower()
    return _ARCH.get(m, (m, ""))


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class Manifest:
    config: Descriptor
    layers: list[Descriptor]


def descriptor(doc: Any, what: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise ImageError(f"{what}: not a descriptor")
    size = doc.get("size", -1)
    if not isinstance(size, int):
        raise ImageError(f"{what}: size is not an integer")
    return Descriptor(str(doc.get("mediaType", "")), check_digest(doc.get("digest", ""), what),
                      size)


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


def media_type_of(doc: dict[str, Any], header: str = "") -> str:
    """A manifest's media type: its own mediaType field, else the Content-Type given."""
    mt = doc.get("mediaType") or header.split(";")[0].strip()
    if not mt and "manifests" in doc:
        mt = OCI_INDEX
    elif not mt and "layers" in doc:
        mt = OCI_MANIFEST
    return str(mt)


def parse_manifest(doc: dict[str, Any]) -> Manifest:
    """The config and layers of an image manifest (OCI or Docker schema 2)."""
    mt = media_type_of(doc)
    if mt in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageError("manifest is Docker schema 1, which is not supported")
    if mt not in MANIFEST_TYPES:
        raise ImageError(f"unsupported manifest media type {mt!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest has no layers list")
    return Manifest(descriptor(doc.get("config"), "manifest config"),
                    [descriptor(x, f"manifest layer {i}") for i, x in enumerate(layers)])


def manifest_bytes(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A canonical OCI image manifest for stores that make their own (load, import)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.as_json(),
        "layers": [layer.as_json() for layer in layers],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def pick_platform(index: dict[str, Any], arch: tuple[str, str] | None = None) -> Descriptor:
    """The linux/<arch> manifest of an image index (variant preferred when given)."""
    want, variant = arch or host_arch()
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise ImageError("image index has no manifests list")
    seen: list[str] = []
    matches: list[tuple[int, Descriptor]] = []
    for i, e in enumerate(entries):
        plat = e.get("platform") if isinstance(e, dict) else None
        if not isinstance(plat, dict):
            continue
        os_, a, v = plat.get("os", ""), plat.get("architecture", ""), plat.get("variant", "")
        seen.append(f"{os_}/{a}" + (f"/{v}" if v else ""))
        if os_ == "linux" and a == want:
            matches.append((0 if not variant or v == variant else 1,
                            descriptor(e, f"image index entry {i}")))
    if not matches:
        has = ", ".join(sorted(set(seen))) or "none"
        raise ImageError(f"no image for linux/{want} in the image index (it has: {has})")
    matches.sort(key=lambda m: m[0])
    return matches[0][1]


def config_diff_ids(config: dict[str, Any], layers: int) -> list[str]:
    """rootfs.diff_ids of an image config, one per manifest layer."""
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise ImageError("image config has no rootfs.diff_ids")
    if len(ids) != layers:
        raise ImageError(f"image config names {len(ids)} layers but the manifest has {layers}")
    return [check_digest(d, "image config diff id") for d in ids]
