"""Registry client: pull images over the OCI distribution (Docker registry v2) API.

Standard library only (urllib, ssl). What it does:
  - GET /v2/<repo>/manifests/<tag|digest> accepting OCI index/manifest and Docker
    manifest list/schema 2; an index is resolved to its linux/<arch> manifest;
  - GET /v2/<repo>/blobs/<digest> for the config and every layer, streamed to a temp file
    in the layout and committed only if its sha256 (and size) match the descriptor;
    the manifest's own digest is checked against the pinned digest of the reference and
    the registry's Docker-Content-Digest header;
  - bearer tokens as Docker Hub issues them: a 401 with `WWW-Authenticate: Bearer
    realm=..,service=..,scope=..` -> anonymous GET of the realm -> retry with the token;
  - HTTPS with the system CAs; a registry listed as insecure (and, as Docker does, any
    registry on 127.0.0.0/8, ::1 or `localhost`) is tried over HTTPS without verification
    first and then over plain HTTP.
Errors are ImageError with the registry's own reason ("manifest unknown"); callers
prefix the reference ("pull 127.0.0.1:5000/nope:latest: manifest unknown").
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from swarmlet.imageref import ImageRef
from worker.images import media
from worker.images.errors import ImageError
from worker.images.layout import Layout, sha256_digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_MANIFEST = 4 << 20
USER_AGENT = "swarmlet/0.1"
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


_SYSTEM_CONTEXT: list[ssl.SSLContext] = []


def _system_context() -> ssl.SSLContext:
    """TLS verifying against the system CAs; made once (loading them takes ~150 ms)."""
    if not _SYSTEM_CONTEXT:
        _SYSTEM_CONTEXT.append(ssl.create_default_context())
    return _SYSTEM_CONTEXT[0]


def api_host(registry: str) -> str:
    """The host[:port] serving a registry's API (Docker Hub's is not docker.io)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def _host_only(registry: str) -> str:
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(registry: str) -> bool:
    host = _host_only(registry)
    ip = _ip(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def is_insecure(registry: str, configured: Iterable[str] = ()) -> bool:
    """True when plain HTTP is allowed: listed (host, host:port or CIDR) or loopback."""
    if is_loopback(registry):
        return True
    host = _host_only(registry)
    ip = _ip(host)
    for entry in configured:
        entry = entry.strip()
        if entry in (registry, host):
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def registry_reason(err: urllib.error.HTTPError) -> str:
    """The registry's message for a failed request (its JSON errors, else the status)."""
    try:
        body = err.read(64 << 10)
    except (OSError, http.client.HTTPException):
        body = b""
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return str(first.get("message") or first.get("code") or err.reason)
        if isinstance(doc, dict) and doc.get("details"):
            return str(doc["details"])
    except ValueError:
        pass
    return f"HTTP {err.code} {err.reason}"


@dataclass
class Fetched:
    media_type: str
    data: bytes
    digest: str


class RegistryClient:
    """Talks to one registry for one pull; remembers tokens and the scheme it found."""

    def __init__(self, registry: str, *, insecure: bool = False, timeout: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.registry = registry
        self.host = api_host(registry)
        self.insecure = insecure
        self.timeout = timeout
        self._verified = ssl_context
        self._scheme = "" if insecure else "https"
        self._tokens: dict[str, str] = {}
        handlers: list[Any] = [urllib.request.HTTPSHandler(context=self._context())]
        if is_loopback(registry):
            handlers.append(urllib.request.ProxyHandler({}))  # never proxy this machine
        self._opener = urllib.request.build_opener(*handlers)

    # ------------------------------------------------------------------ transport

    def _context(self) -> ssl.SSLContext:
        if not self.insecure:
            return self._verified or _system_context()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loading: nothing is verified
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _open(self, url: str, headers: dict[str, str]) -> Any:
        """urllib follows redirects (blobs are often served from elsewhere); the token is
        an unredirected header, so it never goes to the redirect's target."""
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
        token = self._tokens.get("token")
        if token:
            req.add_unredirected_header("Authorization", f"Bearer {token}")
        return self._opener.open(req, timeout=self.timeout)

    def _base(self) -> str:
        if not self._scheme:
            self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        """An insecure registry: HTTPS (unverified) if it speaks it, else plain HTTP."""
        try:
            self._open(f"https://{self.host}/v2/", {}).close()
        except urllib.error.HTTPError:
            return "https"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ConnectionRefusedError | socket.gaierror | TimeoutError):
                raise self._unreachable(e) from None
            return "http"
        return "https"

    def _unreachable(self, e: Exception) -> ImageError:
        reason = getattr(e, "reason", e)
        text = getattr(reason, "strerror", None) or str(reason)
        if isinstance(reason, TimeoutError | socket.timeout):
            text = f"no answer within {self.timeout:g}s"
        return ImageError(f"cannot reach registry {self.registry}: {text}")

    def get(self, path: str, repo: str, headers: dict[str, str] | None = None) -> Any:
        """GET an API path, answering one bearer challenge; the open response."""
        headers = headers or {}
        for attempt in (0, 1):
            try:
                return self._open(self._base() + path, headers)
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0 and self._authenticate(e, repo):
                    continue
                raise ImageError(registry_reason(e)) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                raise self._unreachable(e) from None
        raise ImageError("unauthorized")  # not reached: the loop returns or raises

    def _authenticate(self, err: urllib.error.HTTPError, repo: str) -> bool:
        scheme, params = parse_challenge(err.headers.get("WWW-Authenticate", ""))
        if scheme != "bearer" or not params.get("realm"):
            if scheme == "basic":
                raise ImageError("authentication required (registry credentials are not "
                                 "supported; only anonymous token auth)")
            return False
        query = {"scope": params.get("scope") or f"repository:{repo}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?")
        url += urllib.parse.urlencode(query)
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with self._opener.open(req, timeout=self.timeout) as r:
                doc = json.loads(r.read(1 << 20))
        except urllib.error.HTTPError as e:
            raise ImageError(f"token request failed: {registry_reason(e)}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise ImageError(f"token request to {params['realm']} failed: "
                             f"{getattr(e, 'reason', e)}") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not token:
            raise ImageError("token service answered without a token")
        self._tokens["token"] = str(token)
        return True

    # ------------------------------------------------------------------ API

    def manifest(self, repo: str, reference: str) -> Fetched:
        """A manifest or index by tag or digest, its bytes checked against every digest
        known for it."""
        with self.get(f"/v2/{repo}/manifests/{reference}", repo,
                      {"Accept": media.ACCEPT}) as resp:
            data = resp.read(MAX_MANIFEST + 1)
            header_type = resp.headers.get("Content-Type", "")
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        if len(data) > MAX_MANIFEST:
            raise ImageError(f"manifest larger than {MAX_MANIFEST} bytes")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise ImageError(f"manifest digest mismatch: asked for {reference}, got {digest}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise ImageError(f"manifest digest mismatch: registry says {header_digest}, "
                             f"content is {digest}")
        doc = media.load_json(data, "manifest")
        return Fetched(media.media_type_of(doc, header_type), data, digest)

    def blob(self, repo: str, desc: media.Descriptor, layout: Layout) -> None:
        """Fetch a blob into the layout (verified), unless it is there already."""
        if layout.has_blob(desc.digest):
            return
        with self.get(f"/v2/{repo}/blobs/{desc.digest}", repo) as resp:
            try:
                layout.put_stream(resp, expected=desc.digest, expected_size=desc.size)
            except (OSError, http.client.HTTPException) as e:
                raise ImageError(f"blob {desc.digest}: download failed: {e}") from None


@dataclass(frozen=True, slots=True)
class Pulled:
    manifest_digest: str
    manifest: media.Manifest


def pull_into(
    ref: ImageRef,
    layout: Layout,
    *,
    insecure: bool,
    timeout: float = 60.0,
    ssl_context: ssl.SSLContext | None = None,
    arch: tuple[str, str] | None = None,
) -> Pulled:
    """Fetch ref's manifest, config and layers into the layout (not tagged yet)."""
    client = RegistryClient(ref.registry, insecure=insecure, timeout=timeout,
                            ssl_context=ssl_context)
    got = client.manifest(ref.repository, ref.reference)
    if got.media_type in media.INDEX_TYPES:
        chosen = media.pick_platform(media.load_json(got.data, "image index"), arch)
        got = client.manifest(ref.repository, chosen.digest)
    man = media.parse_manifest(media.load_json(got.data, "manifest"))
    for desc in [man.config, *man.layers]:
        client.blob(ref.repository, desc, layout)
    layout.put_bytes(got.data, expected=got.digest)
    return Pulled(got.digest, man)
