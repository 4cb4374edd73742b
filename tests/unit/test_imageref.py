"""Image reference parsing: Docker Hub defaults, registries with ports, tags, digests."""

from __future__ import annotations

import pytest

from swarmlet.errors import SpecError
from swarmlet.imageref import ImageRef, is_valid, parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("busybox", ImageRef("docker.io", "library/busybox", "latest")),
        ("busybox:1.36", ImageRef("docker.io", "library/busybox", "1.36")),
        ("user/app", ImageRef("docker.io", "user/app", "latest")),
        ("docker.io/busybox", ImageRef("docker.io", "library/busybox", "latest")),
        ("index.docker.io/library/busybox", ImageRef("docker.io", "library/busybox", "latest")),
        ("localhost/app", ImageRef("localhost", "app", "latest")),
        ("localhost:5000/app:v2", ImageRef("localhost:5000", "app", "v2")),
        ("127.0.0.1:5000/a/b/c:x", ImageRef("127.0.0.1:5000", "a/b/c", "x")),
        ("Registry.Example.com/app", ImageRef("registry.example.com", "app", "latest")),
        (f"busybox@{DIGEST}", ImageRef("docker.io", "library/busybox", "", DIGEST)),
        (f"busybox:1@{DIGEST}", ImageRef("docker.io", "library/busybox", "1", DIGEST)),
        ("a__b.c-d---e", ImageRef("docker.io", "library/a__b.c-d---e", "latest")),
    ],
)
def test_parses_and_normalizes(text: str, want: ImageRef) -> None:
    assert parse(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "busy box",
        "UPPER::x",
        "Busybox",
        "busybox:",
        "busybox:-bad",
        "busybox@sha256:abc",
        "busybox@md5:" + "a" * 32,
        "a//b",
        "/abc",
        "abc/",
        "a_-b",
        "-abc",
        "localhost:5000/",
        "bad_host:5000/app",
        "busybox:" + "t" * 129,
    ],
)
def test_rejects_bad_references(text: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse(text)
    assert exc.value.field == "image"
    assert str(exc.value).startswith(f'image: invalid reference format "{text}"')
    assert not is_valid(text)


def test_uppercase_repository_says_why() -> None:
    with pytest.raises(SpecError, match="repository name must be lowercase"):
        parse("Busybox")


def test_string_forms() -> None:
    ref = parse("busybox")
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.familiar() == "busybox:latest"
    assert ref.name == "docker.io/library/busybox"
    assert ref.reference == "latest"
    pinned = parse(f"localhost:5000/app@{DIGEST}")
    assert str(pinned) == f"localhost:5000/app@{DIGEST}"
    assert pinned.reference == DIGEST
    assert pinned.familiar() == f"localhost:5000/app@{DIGEST}"
