"""Placement preferences and max replicas per node end to end: real daemons on loopback,
sim runtime. Specs go through the control API (`ControlClient`) with a ServiceSpec."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.client import ControlClient
from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

ZONES = {"manager-1": "a", "worker-1": "a", "worker-2": "b", "worker-3": "c"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("placement"), runtime="sim")
    try:
        c.start(workers=3)
        for node, zone in ZONES.items():
            c.swarm("node", "update", "--label-add", f"zone={zone}", node)
        yield c
    finally:
        c.close()


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[ControlClient]:
    with ControlClient(cluster.nodes["manager-1"]) as c:
        yield c


def spec(name: str, replicas: int) -> pb.ServiceSpec:
    s = pb.ServiceSpec()
    s.annotations.name = name
    s.task_template.container.image = "busybox"
    s.task_template.container.command.extend(["sleep", "1000"])
    s.mode.replicated.replicas = replicas
    return s


def running_per_node(client: ControlClient, name: str) -> Counter[str]:
    resp = client.list_tasks(service=name)
    return Counter(
        resp.node_names[t.node_id] for t in resp.tasks
        if t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
    )


def test_spread_preference_balances_zones_before_nodes(client: ControlClient) -> None:
    s = spec("zoned", 6)
    s.task_template.placement.preferences.append("spread=node.labels.zone")
    client.create_service(s)
    wait_for(lambda: sum(running_per_node(client, "zoned").values()) == 6, what="6 running")
    per_node = running_per_node(client, "zoned")
    per_zone: Counter[str] = Counter()
    for node, n in per_node.items():
        per_zone[ZONES[node]] += n
    # zone a has two nodes, b and c one each: spreading over nodes alone would give a 3+
    assert per_zone == {"a": 2, "b": 2, "c": 2}, per_node
    assert per_node["worker-2"] == 2 and per_node["worker-3"] == 2
    client.remove_service("zoned")


def test_max_replicas_per_node_leaves_the_rest_pending_with_the_reason(
    cluster: LocalCluster, client: ControlClient
) -> None:
    s = spec("capped", 4)
    s.task_template.placement.constraints.append("node.role==worker")
    s.task_template.placement.max_replicas = 1
    client.create_service(s)
    wait_for(lambda: sum(running_per_node(client, "capped").values()) == 3, what="3 running")
    assert running_per_node(client, "capped") == {"worker-1": 1, "worker-2": 1, "worker-3": 1}

    def pending() -> list[dict[str, str]]:
        return [t for t in cluster.json("service", "ps", "capped")
                if t["current_state"].startswith("Pending")]

    rows = wait_for(lambda: pending() if pending() and pending()[0]["error"] else None,
                    what="a pending task with its reason")
    assert len(rows) == 1
    reason = rows[0]["error"]
    assert "max replicas per node (1) reached on 3 nodes" in reason, reason
    assert "constraint node.role==worker not met on 1 node" in reason, reason
    client.remove_service("capped")
