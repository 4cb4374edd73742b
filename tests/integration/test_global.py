"""Global services end to end: one task per eligible node, following joins, drains,
activations and labels. Real daemons on loopback, sim runtime, real CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("global"), runtime="sim")
    try:
        yield c.start(workers=1)
    finally:
        c.close()


def running_nodes(c: LocalCluster, service: str) -> list[str]:
    """Nodes where a task of the service runs and is meant to (one entry per task)."""
    return sorted(
        t["node"]
        for t in c.json("service", "ps", service)
        if t["desired_state"] == "Running" and t["current_state"].startswith("Running")
    )


def live_nodes(c: LocalCluster, service: str) -> list[str]:
    """Nodes holding a task that is meant to run (running or on its way)."""
    return sorted(t["node"] for t in c.json("service", "ps", service)
                  if t["desired_state"] == "Running")


def test_global_service_follows_joins_drains_and_activation(cluster: LocalCluster) -> None:
    cluster.swarm("service", "create", "--name", "agent", "--mode", "global", "busybox",
                  "sleep", "1000")
    wait_for(lambda: running_nodes(cluster, "agent") == ["manager-1", "worker-1"],
             what="one task per node")
    svc = {s["name"]: s for s in cluster.json("service", "ls")}["agent"]
    assert svc["replicas"] == "2/2"

    cluster.join("worker-2", "127.0.0.23")  # a node that joins gets one
    wait_for(lambda: running_nodes(cluster, "agent") == ["manager-1", "worker-1", "worker-2"],
             what="a task on the new node")

    cluster.swarm("node", "update", "--availability", "drain", "worker-1")
    wait_for(lambda: live_nodes(cluster, "agent") == ["manager-1", "worker-2"],
             what="drained node loses its task")
    wait_for(lambda: not any(t["node"] == "worker-1" and not t["current_state"].startswith(
        "Shutdown") for t in cluster.json("service", "ps", "agent")),
             what="the drained node's task really stopped")

    cluster.swarm("node", "update", "--availability", "active", "worker-1")
    wait_for(lambda: running_nodes(cluster, "agent") == ["manager-1", "worker-1", "worker-2"],
             what="a task again once active")
    assert sorted(live_nodes(cluster, "agent")) == ["manager-1", "worker-1", "worker-2"]
    cluster.swarm("service", "rm", "agent")


def test_global_service_follows_labels(cluster: LocalCluster) -> None:
    wait_for(lambda: cluster.ready_nodes() == 3, what="3 nodes ready")
    cluster.swarm("service", "create", "--name", "edge", "--mode", "global", "--detach",
                  "--constraint", "node.labels.edge==yes", "busybox", "sleep", "1000")
    assert live_nodes(cluster, "edge") == []

    cluster.swarm("node", "update", "--label-add", "edge=yes", "worker-2")
    wait_for(lambda: running_nodes(cluster, "edge") == ["worker-2"],
             what="the node that gained the label gets a task")
    cluster.swarm("node", "update", "--label-add", "edge=yes", "manager-1")
    wait_for(lambda: running_nodes(cluster, "edge") == ["manager-1", "worker-2"],
             what="a second labelled node")

    cluster.swarm("node", "update", "--label-rm", "edge", "worker-2")
    wait_for(lambda: live_nodes(cluster, "edge") == ["manager-1"],
             what="the node that lost the label loses its task")
    cluster.swarm("service", "rm", "edge")
    cluster.swarm("node", "update", "--label-rm", "edge", "manager-1")
