"""Registry client against an in-process fake registry on 127.0.0.1: bearer-token auth,
image index resolution, digest verification, the registry's reasons in errors, and
which registries may be spoken to over plain HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from swarmlet.imageref import parse
from tests.harness.registry import FakeRegistry, Image, busybox_entries, tar_bytes
from worker.images import ImageError, ImageStore
from worker.images.registry import RegistryClient, is_insecure, parse_challenge


@pytest.fixture(scope="module")
def image() -> Image:
    return Image.build([tar_bytes(busybox_entries())], cmd=["sh", "-c", "echo hi"])


def _store(tmp: Path) -> ImageStore:
    return ImageStore(tmp / "images", arch=("amd64", ""))


def test_pull_with_anonymous_bearer_token(tmp_path: Path, image: Image) -> None:
    with FakeRegistry(require_token=True) as reg:
        reg.add("team/busybox", "1.0", image)
        img = _store(tmp_path).pull(f"{reg.addr}/team/busybox:1.0")
        assert img.id == image.config_digest
        assert img.config["Cmd"] == ["sh", "-c", "echo hi"]
        assert (img.layers[0] / "bin" / "busybox").is_file()
        (query,) = reg.token_queries
        assert query["scope"] == ["repository:team/busybox:pull"]
        assert query["service"] == ["fake-registry"]
        blob_auth = {auth for path, auth in reg.requests if "/blobs/" in path}
        assert blob_auth == {f"Bearer {reg.token}"}


def test_index_resolves_to_this_platform(tmp_path: Path, image: Image) -> None:
    other = Image.build([tar_bytes([("arm", "file", b"arm")])], arch="arm64")
    with FakeRegistry() as reg:
        reg.add_index("multi", "latest", {"arm64": other, "amd64": image})
        img = _store(tmp_path).ensure(f"{reg.addr}/multi")
        assert img.id == image.config_digest
        fetched = {path.rsplit("/", 1)[1] for path, _ in reg.requests if "/blobs/" in path}
        assert other.config_digest not in fetched


def test_index_without_this_platform_names_what_it_has(tmp_path: Path) -> None:
    other = Image.build([tar_bytes([("arm", "file", b"arm")])], arch="arm64")
    with FakeRegistry() as reg:
        reg.add_index("armonly", "latest", {"arm64": other})
        with pytest.raises(ImageError, match="no image for linux/amd64.*linux/arm64"):
            _store(tmp_path).pull(f"{reg.addr}/armonly")


def test_corrupt_blob_is_rejected_and_nothing_is_kept(tmp_path: Path, image: Image) -> None:
    store = _store(tmp_path)
    with FakeRegistry() as reg:
        reg.add("bad", "1", image)
        layer = next(d for d in image.blobs if d != image.config_digest)
        reg.blobs[layer] = reg.blobs[layer][:-1] + b"X"
        with pytest.raises(ImageError, match=rf"pull {reg.addr}/bad:1: digest mismatch"):
            store.pull(f"{reg.addr}/bad:1")
    assert store.list() == []
    assert layer.split(":")[1] not in {p.name for p in store.layout.blobs.iterdir()}
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_pinned_digest_must_match_the_manifest(tmp_path: Path, image: Image) -> None:
    wrong = "sha256:" + "0" * 64
    with FakeRegistry() as reg:
        reg.add("pinned", "1", image)
        reg.manifests[("pinned", wrong)] = reg.manifests[("pinned", "1")]
        with pytest.raises(ImageError, match="manifest digest mismatch"):
            _store(tmp_path).pull(f"{reg.addr}/pinned@{wrong}")
        ok = _store(tmp_path).pull(f"{reg.addr}/pinned@{image.manifest_digest}")
        assert ok.digest == image.manifest_digest


def test_missing_manifest_reports_the_registry_reason(tmp_path: Path) -> None:
    with FakeRegistry() as reg, pytest.raises(ImageError) as err:
        _store(tmp_path).ensure(f"{reg.addr}/nope")
    assert str(err.value) == f"pull {reg.addr}/nope:latest: manifest unknown"


def test_unreachable_registry(tmp_path: Path) -> None:
    with FakeRegistry() as reg:
        addr = reg.addr
    with pytest.raises(ImageError, match=f"cannot reach registry {addr}"):
        _store(tmp_path).pull(f"{addr}/x:1")


def test_secure_registry_is_never_spoken_to_in_plain_http(image: Image) -> None:
    with FakeRegistry() as reg:
        reg.add("x", "1", image)
        client = RegistryClient(reg.addr, insecure=False, timeout=5)
        with pytest.raises(ImageError, match="cannot reach registry"):
            client.manifest("x", "1")
        assert reg.requests == []


def test_concurrent_ensure_pulls_once(tmp_path: Path, image: Image) -> None:
    store = _store(tmp_path)
    with FakeRegistry() as reg:
        reg.add("once", "1", image)
        got: list[str] = []
        threads = [threading.Thread(target=lambda: got.append(
            store.ensure(f"{reg.addr}/once:1").id)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == [image.config_digest] * 3
        assert sum(1 for path, _ in reg.requests if "/manifests/" in path) == 1


def test_which_registries_are_insecure() -> None:
    assert is_insecure("127.0.0.1:5000") and is_insecure("127.3.4.5")
    assert is_insecure("localhost:5000") and is_insecure("[::1]:5000")
    assert not is_insecure("docker.io") and not is_insecure("10.1.2.3:5000")
    assert is_insecure("10.1.2.3:5000", ["10.1.2.3:5000"])
    assert is_insecure("10.1.2.3:5000", ["10.1.2.3"])
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert not is_insecure("reg.example.com", ["10.0.0.0/8", "other.example.com"])


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull"}


def test_reference_defaults_used_for_pulls() -> None:
    ref = parse("busybox")
    assert (ref.registry, ref.repository, ref.reference) == ("docker.io", "library/busybox",
                                                            "latest")
    assert parse("127.0.0.1:5000/nope").familiar() == "127.0.0.1:5000/nope:latest"
