"""Images and registries for tests: build image blobs, write archives, push, serve.

- `tar_bytes(entries)` / `busybox_rootfs(path)`: layer and rootfs tarballs built here
  (busybox-static from the host, applets as symlinks), no docker engine needed.
- `Image.build(layers, cmd)`: config, gzipped layers and an OCI manifest as bytes.
- `write_oci_archive` / `write_docker_save`: the two file formats `swarm image load` reads.
- `push(base_url, repo, tag, image)`: a tiny registry client doing what `docker push`
  does: monolithic blob uploads (POST, then PUT with ?digest=) and a manifest PUT.
- `RegistryServer`: Debian's `docker-registry` on 127.0.0.1:<free port>, storage in tmp.
- `FakeRegistry`: an in-process registry (http.server) that can demand bearer tokens,
  serve an image index, and serve a corrupt blob, counting what it was asked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "sleep", "ls", "true", "false", "env", "hostname", "id",
           "ps", "wc", "head", "seq", "yes", "mkdir", "touch", "test", "grep")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- tarballs


def tar_bytes(entries: list[tuple[str, str, Any]]) -> bytes:
    """An uncompressed tar: entries are (name, kind, value) with kind "file" (bytes),
    "dir" (None), "symlink" (target), "hardlink" (target), "chr" ((major, minor))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                info.size, info.mode = len(value), 0o755 if name.startswith("bin/") else 0o644
                tf.addfile(info, io.BytesIO(value))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
            elif kind == "chr":
                info.type, (info.devmajor, info.devminor) = tarfile.CHRTYPE, value
            tf.addfile(info)
    return buf.getvalue()


def busybox_entries(extra: list[tuple[str, str, Any]] | None = None) -> list[tuple[str, str, Any]]:
    entries: list[tuple[str, str, Any]] = [
        ("bin", "dir", None), ("etc", "dir", None), ("tmp", "dir", None),
        ("bin/busybox", "file", BUSYBOX.read_bytes()),
    ]
    entries += [(f"bin/{a}", "symlink", "busybox") for a in APPLETS]
    entries += [("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n"),
                ("etc/group", "file", b"root:x:0:\n")]
    return entries + (extra or [])


def busybox_rootfs(path: Path) -> Path:
    """A rootfs tarball of busybox-static with its applets, for `swarm image import`."""
    path.write_bytes(tar_bytes(busybox_entries()))
    return path


# ---------------------------------------------------------------------- images


@dataclass
class Image:
    config: bytes
    layers: list[bytes]                   # gzipped layer blobs
    manifest: bytes
    diff_ids: list[str] = field(default_factory=list)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {digest_of(b): b for b in [self.config, *self.layers]}

    @property
    def manifest_digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)

    @classmethod
    def build(cls, layers: list[bytes], cmd: list[str] | None = None,
              arch: str = "amd64", env: list[str] | None = None) -> Image:
        """An image from uncompressed layer tars (lowest first)."""
        gz = [gzip.compress(t, mtime=0) for t in layers]
        config = {
            "created": "2024-05-01T12:00:00.123456789Z",
            "architecture": arch, "os": "linux",
            "config": {"Env": env or ["PATH=/bin"], "Cmd": cmd or ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(t) for t in layers]},
        }
        cfg = json.dumps(config).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest_of(g), "size": len(g)}
                       for g in gz],
        }).encode()
        return cls(cfg, gz, manifest, [digest_of(t) for t in layers])


def index_of(images: dict[str, Image]) -> bytes:
    """An OCI image index over images keyed by architecture."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": img.manifest_digest,
             "size": len(img.manifest), "platform": {"os": "linux", "architecture": arch}}
            for arch, img in images.items()
        ],
    }).encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_oci_archive(path: Path, image: Image, name: str) -> Path:
    """An OCI archive (oci-layout, index.json, blobs/) naming the image `name`."""
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": image.manifest_digest, "size": len(image.manifest),
        "annotations": {"org.opencontainers.image.ref.name": name},
    }]}
    with tarfile.open(path, "w") as tf:
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tf, "index.json", json.dumps(index).encode())
        for digest, data in {**image.blobs, image.manifest_digest: image.manifest}.items():
            _add(tf, "blobs/sha256/" + digest.split(":")[1], data)
    return path


def write_docker_save(path: Path, image: Image, repo_tags: list[str]) -> Path:
    """A `docker save` tarball (manifest.json, <id>.json, <n>/layer.tar uncompressed)."""
    cfg_name = image.config_digest.split(":")[1] + ".json"
    layer_names = [f"{i:02d}/layer.tar" for i in range(len(image.layers))]
    doc = [{"Config": cfg_name, "RepoTags": repo_tags, "Layers": layer_names}]
    with tarfile.open(path, "w") as tf:
        _add(tf, "manifest.json", json.dumps(doc).encode())
        _add(tf, cfg_name, image.config)
        for name, layer in zip(layer_names, image.layers, strict=True):
            _add(tf, name, gzip.decompress(layer))
    return path


# ---------------------------------------------------------------------- push


def _request(method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(req, timeout=30)


def push(base_url: str, repo: str, tag: str, image: Image) -> str:
    """Push an image as `docker push` would; returns the manifest digest."""
    for digest, data in image.blobs.items():
        with _request("POST", f"{base_url}/v2/{repo}/blobs/uploads/", b"") as r:
            location = r.headers["Location"]
        url = urllib.parse.urljoin(base_url, location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        with _request("PUT", url, data, {"Content-Type": "application/octet-stream"}) as r:
            assert r.status == 201, r.status
    with _request("PUT", f"{base_url}/v2/{repo}/manifests/{tag}", image.manifest,
                  {"Content-Type": OCI_MANIFEST}) as r:
        assert r.status == 201, r.status
    return image.manifest_digest


# ---------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """Debian's docker-registry serving plain HTTP on 127.0.0.1, storage under tmp."""

    BINARY = "docker-registry"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.BINARY) is not None

    def start(self, timeout: float = 20.0) -> RegistryServer:
        storage = self.tmp / "registry-storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.tmp / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: {self.addr}\n"
        )
        log = open(self.tmp / "registry.log", "wb")  # noqa: SIM115 (kept for the process)
        self.proc = subprocess.Popen([self.BINARY, "serve", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: "
                                   + (self.tmp / "registry.log").read_text()[-2000:])
            try:
                with _request("GET", f"{self.url}/v2/") as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.addr} in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class FakeRegistry:
    """An in-process v2 registry over plain HTTP on 127.0.0.1 (thread per request)."""

    def __init__(self, require_token: bool = False) -> None:
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.require_token = require_token
        self.token = "tok-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]
        self.requests: list[tuple[str, str]] = []   # (path, Authorization header)
        self.token_queries: list[dict[str, list[str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.addr = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, repo: str, tag: str, image: Image) -> None:
        self.blobs.update(image.blobs)
        self.manifests[(repo, tag)] = (OCI_MANIFEST, image.manifest)
        self.manifests[(repo, image.manifest_digest)] = (OCI_MANIFEST, image.manifest)

    def add_index(self, repo: str, tag: str, images: dict[str, Image]) -> None:
        for img in images.values():
            self.add(repo, img.manifest_digest, img)
        self.manifests[(repo, tag)] = (OCI_INDEX, index_of(images))

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, err: str, message: str) -> None:
                body = json.dumps({"errors": [{"code": err, "message": message}]}).encode()
                self._send(code, body, {"Content-Type": "application/json"})

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/token":
                    reg.token_queries.append(urllib.parse.parse_qs(url.query))
                    self._send(200, json.dumps({"token": reg.token}).encode(), {})
                    return
                auth = self.headers.get("Authorization", "")
                reg.requests.append((url.path, auth))
                if reg.require_token and auth != f"Bearer {reg.token}":
                    realm = f"http://{reg.addr}/token"
                    body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                   "message": "authentication required"}]})
                    self._send(401, body.encode(), {"WWW-Authenticate":
                               f'Bearer realm="{realm}",service="fake-registry"'})
                    return
                self._route(url.path)

            def _route(self, path: str) -> None:
                parts = path.split("/")
                if path == "/v2/":
                    self._send(200, b"{}", {})
                elif len(parts) >= 5 and parts[-2] == "manifests":
                    repo = "/".join(parts[2:-2])
                    found = reg.manifests.get((repo, parts[-1]))
                    if found is None:
                        self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                    else:
                        self._send(200, found[1], {"Content-Type": found[0],
                                                   "Docker-Content-Digest": digest_of(found[1])})
                elif len(parts) >= 5 and parts[-2] == "blobs":
                    data = reg.blobs.get(parts[-1])
                    if data is None:
                        self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
                    else:
                        self._send(200, data, {"Content-Type": "application/octet-stream"})
                else:
                    self._error(404, "NOT_FOUND", "not found")

        return Handler
