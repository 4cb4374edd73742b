"""Image references: `[registry[:port]/]repository[:tag][@sha256:digest]`.

`parse(text)` returns an ImageRef with Docker Hub's defaults filled in (registry
`docker.io`, a single-component name under `library/`, tag `latest` when neither a tag nor
a digest is given), or raises SpecError("image", 'invalid reference format "TEXT"') with a
short reason. Pure: shared by spec validation (the CLI and the manager), the image store
and the runtimes.

The first path component is a registry only when it contains "." or ":" or is
`localhost`, as Docker decides. Repository components are lower-case letters and digits
separated by ".", "_", "__" or runs of "-".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarmlet.errors import SpecError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
LEGACY_REGISTRIES = ("index.docker.io", "registry-1.docker.io")

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]{1,5})?$"
)
_IPV6_HOST = re.compile(r"^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed, normalized image reference."""

    registry: str  # "docker.io", "localhost:5000"
    repository: str  # "library/busybox"
    tag: str = ""  # "latest"; "" when only a digest pins it
    digest: str = ""  # "sha256:<64 hex>" or ""

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form users type: "busybox:latest", "localhost:5000/app:1"."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        text = name + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")


def _bad(text: str, why: str = "") -> SpecError:
    problem = f'invalid reference format "{text}"'
    return SpecError("image", f"{problem}: {why}" if why else problem)


def parse(text: str) -> ImageRef:
    """The normalized reference `text` names; SpecError("image", ...) when it does not parse."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise _bad(text)
    rest, digest = text, ""
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise _bad(text, "digest must be sha256:<64 lower-case hex digits>")
    registry, path = _split_registry(rest, text)
    tag = ""
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.match(tag):
            raise _bad(text, "bad tag")
    if not path:
        raise _bad(text)
    for comp in path.split("/"):
        if not _COMPONENT.match(comp):
            lower_ok = comp.lower() != comp and _COMPONENT.match(comp.lower())
            why = "repository name must be lowercase" if lower_ok else ""
            raise _bad(text, why)
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise _bad(text, f"name longer than {MAX_NAME} characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return ImageRef(registry, path, tag, digest)


def _split_registry(rest: str, text: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not (_HOST.match(first) or _IPV6_HOST.match(first)):
            raise _bad(text, f"bad registry {first!r}")
        registry = first.lower()
        if registry in LEGACY_REGISTRIES:
            registry = DEFAULT_REGISTRY
        return registry, remainder
    return DEFAULT_REGISTRY, rest


def is_valid(text: str) -> bool:
    """True when `text` parses as an image reference."""
    try:
        parse(text)
    except SpecError:
        return False
    return True
