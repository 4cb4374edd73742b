"""Images from a real registry: Debian's docker-registry on 127.0.0.1 holding a busybox
image (built from busybox-static, pushed by tests/harness/registry.push), a manager and
a worker running runc. `swarm image pull/ls/rm` through the CLI, a task whose image is
missing REJECTED with the registry's reason, and a task whose worker pulls its image
itself, its output back through `service logs`. Needs root, runc and docker-registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import LocalCluster, wait_for
from tests.harness.registry import Image, RegistryServer, busybox_entries, push, tar_bytes
from tests.system.runc_support import requires_runc
from tests.system.test_runc_cluster import sweep

pytestmark = [
    *requires_runc,
    pytest.mark.slow,
    pytest.mark.skipif(not RegistryServer.available(),
                       reason="docker-registry is not installed (Debian package "
                              "docker-registry; scripts/bootstrap.sh installs it as root)"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Image]]:
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    try:
        image = Image.build([tar_bytes(busybox_entries())], cmd=["sh"],
                            env=["PATH=/bin"])
        push(server.url, "tools/busybox", "1", image)
        yield server.addr, image
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("registry-cluster"), runtime="runc")
    try:
        c.start(workers=1)
        yield c
    finally:
        c.close()
        assert sweep(c.nodes) == []


def _images(c: LocalCluster, node: str = "manager-1") -> list[dict[str, Any]]:
    return list(c.json("image", "ls", node=node))


def test_pull_ls_rm_through_the_cli(cluster: LocalCluster,
                                    registry: tuple[str, Image]) -> None:
    addr, image = registry
    ref = f"{addr}/tools/busybox:1"
    out = cluster.swarm("image", "pull", ref).stdout.splitlines()
    assert out == [f"Pulled {ref}", f"Image ID: {image.config_digest}"]
    rows = [r for r in _images(cluster) if r["image_id"] == image.config_digest]
    assert [(r["repository"], r["tag"]) for r in rows] == [(f"{addr}/tools/busybox", "1")]
    table = cluster.swarm("image", "ls").stdout
    assert re.search(rf"{re.escape(addr)}/tools/busybox\s+1\s+{image.config_digest[7:19]}\s",
                     table), table

    out = cluster.swarm("image", "rm", ref).stdout.splitlines()
    assert out == [f"Untagged: {ref}", f"Deleted: {image.config_digest}"]
    assert all(r["image_id"] != image.config_digest for r in _images(cluster))

    missing = cluster.swarm("image", "pull", f"{addr}/tools/nope:1", check=False)
    assert missing.returncode == 1
    assert missing.stderr == f"Error: pull {addr}/tools/nope:1: manifest unknown\n"


def test_missing_image_rejects_the_task_with_the_registry_reason(
        cluster: LocalCluster, registry: tuple[str, Image]) -> None:
    addr, _ = registry
    cluster.swarm("service", "create", "--detach", "--name", "ghost", "--restart-condition",
                  "none", f"{addr}/tools/nope:1", "true")
    reason = f"pull {addr}/tools/nope:1: manifest unknown"
    wait_for(lambda: [r["error"] for r in cluster.json("service", "ps", "ghost")] == [reason],
             timeout=60, what="the task rejected with the registry's reason")
    (row,) = cluster.json("service", "ps", "ghost")
    assert row["current_state"].startswith("Rejected")
    assert reason in cluster.swarm("service", "ps", "ghost").stdout
    cluster.swarm("service", "rm", "ghost")


def test_worker_pulls_the_image_of_its_task(cluster: LocalCluster,
                                            registry: tuple[str, Image]) -> None:
    addr, image = registry
    ref = f"{addr}/tools/busybox:1"
    cluster.swarm("service", "create", "--detach", "--name", "hello", "--constraint",
                  "node.hostname==worker-1", ref, "sh", "-c",
                  "echo hello from $(hostname); sleep 600")
    wait_for(lambda: [r["current_state"].split()[0]
                      for r in cluster.json("service", "ps", "hello")] == ["Running"],
             timeout=60, what="the task running on worker-1")
    pulled = [r for r in _images(cluster, node="worker-1")
              if r["image_id"] == image.config_digest]
    assert [(r["repository"], r["tag"]) for r in pulled] == [(f"{addr}/tools/busybox", "1")]
    (task,) = cluster.json("service", "ps", "hello")
    expected = f"hello.1.{task['id'][:12]}@worker-1    | hello from {task['id'][:12]}"
    wait_for(lambda: cluster.swarm("service", "logs", "hello").stdout.splitlines()
             == [expected], timeout=30, what="the container's output in service logs")
    cluster.swarm("service", "rm", "hello")
    wait_for(lambda: not list(Path(cluster.nodes["worker-1"], "agent", "runtime").glob(
        f"{task['id']}*")), timeout=60, what="the task removed from the worker")
