"""End to end on loopback: real daemons started by the real CLI, real Raft journal, real
mutual-TLS sessions, process runtime. One cluster is shared by the tests of this module
that do not break it; the destructive ones build their own."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

TASK = ["sh", "-c", 'echo "slot $SWARMLET_TASK_SLOT on $SWARMLET_NODE_HOSTNAME"; exec sleep 300']


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c.start(workers=2)
    finally:
        c.close()


def running_by_node(c: LocalCluster, service: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in c.json("service", "ps", service):
        if t["desired_state"] == "Running" and t["current_state"].startswith("Running"):
            out[t["node"]] = out.get(t["node"], 0) + 1
    return out


def test_nodes_listed_with_roles(cluster: LocalCluster) -> None:
    nodes = {n["hostname"]: n for n in cluster.json("node", "ls")}
    assert set(nodes) == {"manager-1", "worker-1", "worker-2"}
    assert nodes["manager-1"]["manager_status"] == "Leader"
    assert nodes["worker-1"]["manager_status"] == ""
    assert all(n["status"] == "Ready" for n in nodes.values())


def test_service_spreads_and_drain_moves_tasks(cluster: LocalCluster) -> None:
    cluster.swarm("service", "create", "--name", "spread", "--replicas", "6", "busybox", *TASK)
    assert running_by_node(cluster, "spread") == {"manager-1": 2, "worker-1": 2, "worker-2": 2}
    svc = {s["name"]: s for s in cluster.json("service", "ls")}["spread"]
    assert svc["replicas"] == "6/6"

    cluster.swarm("node", "update", "--availability", "drain", "worker-1")
    try:
        wait_for(lambda: running_by_node(cluster, "spread").get("worker-1", 0) == 0
                 and sum(running_by_node(cluster, "spread").values()) == 6,
                 what="tasks off the drained node")
        # the drained node's old tasks really stopped
        wait_for(lambda: not any(
            t["node"] == "worker-1" and not t["current_state"].startswith("Shutdown")
            for t in cluster.json("service", "ps", "spread")), what="old tasks shut down")
    finally:
        cluster.swarm("node", "update", "--availability", "active", "worker-1")
        cluster.swarm("service", "rm", "spread")


def test_scale_down_removes_highest_slots(cluster: LocalCluster) -> None:
    cluster.swarm("service", "create", "--name", "scaler", "--replicas", "4", "busybox", *TASK)
    cluster.swarm("service", "scale", "scaler=2")
    wait_for(lambda: sorted(t["name"] for t in cluster.json("service", "ps", "scaler")
                            if t["desired_state"] == "Running") == ["scaler.1", "scaler.2"],
             what="slots 3 and 4 gone")
    cluster.swarm("service", "rm", "scaler")


def test_unplaceable_task_says_why_and_is_retried(cluster: LocalCluster) -> None:
    cluster.swarm("service", "create", "--name", "big", "--detach", "--reserve-memory", "100T",
                  "busybox", *TASK)
    wait_for(lambda: "insufficient memory on 3 nodes" in cluster.json("service", "ps", "big")[0]
             ["error"], what="pending reason")
    cluster.swarm("service", "create", "--name", "picky", "--detach", "--constraint",
                  "node.labels.zone==b", "busybox", *TASK)
    wait_for(lambda: "constraint node.labels.zone==b not met on 3 nodes" in
             cluster.json("service", "ps", "picky")[0]["error"], what="constraint reason")
    cluster.swarm("node", "update", "--label-add", "zone=b", "worker-2")
    wait_for(lambda: running_by_node(cluster, "picky") == {"worker-2": 1},
             what="placed once a node matches")
    cluster.swarm("service", "rm", "big", "picky")
    cluster.swarm("node", "update", "--label-rm", "zone", "worker-2")


def test_restart_policy_on_failure_stops_after_max_attempts(cluster: LocalCluster) -> None:
    cluster.swarm("service", "create", "--name", "crash", "--detach", "--restart-condition",
                  "on-failure", "--restart-delay", "0.2s", "--restart-max-attempts", "2",
                  "busybox", "sh", "-c", "exit 3")
    wait_for(lambda: len(cluster.json("service", "ps", "crash")) == 3, what="three attempts")
    rows = cluster.json("service", "ps", "crash")
    assert all(r["current_state"].startswith("Failed") for r in rows)
    assert all("exit 3" in r["error"] for r in rows)
    cluster.swarm("service", "rm", "crash")


def test_bad_input_is_one_line_and_writes_nothing(cluster: LocalCluster) -> None:
    cases = [
        (["service", "create", "--name", "x", "--replicas", "-1", "busybox"], "replicas"),
        (["service", "create", "--name", "x", "--replicas", "two", "busybox"], "replicas"),
        (["service", "create", "--name", "x", "--reserve-memory", "12XB", "busybox"],
         "reserve-memory"),
        (["service", "create", "--name", "x", "--constraint", "node.labels=a", "busybox"],
         "constraint"),
        (["node", "update", "--availability", "drain", "no-such-node"], "no-such-node"),
    ]
    for args, needle in cases:
        proc = cluster.swarm(*args, check=False)
        assert proc.returncode != 0, args
        err = proc.stderr.strip()
        assert err.startswith("Error: ") and "\n" not in err and needle in err, (args, err)
        assert "Traceback" not in proc.stderr
    assert [s["name"] for s in cluster.json("service", "ls")] == []
    cluster.swarm("service", "create", "--name", "dup", "--detach", "busybox", *TASK)
    proc = cluster.swarm("service", "create", "--name", "dup", "busybox", *TASK, check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    cluster.swarm("service", "rm", "dup")


def test_missing_daemon_message(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path)
    proc = c.swarm("service", "ls", node="nowhere", check=False)
    assert proc.returncode != 0
    assert "no swarmlet node is running at" in proc.stderr and "swarm init" in proc.stderr


def test_wrong_and_rotated_tokens_are_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    good = cluster.token()
    cluster.nodes["intruder"] = tmp_path / "intruder"
    forged = good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb")
    proc = cluster.swarm("join", "--token", forged, cluster.manager_addr, node="intruder",
                         check=False)
    assert proc.returncode == 1 and "invalid join token" in proc.stderr
    assert not (tmp_path / "intruder" / "node.json").exists()
    cluster.swarm("join-token", "--rotate", "worker")
    proc = cluster.swarm("join", "--token", good, cluster.manager_addr, node="intruder",
                         check=False)
    assert proc.returncode == 1 and "invalid join token" in proc.stderr
    assert cluster.token() != good


def test_manager_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path)
    try:
        c.start(workers=0)
        for i in range(5):
            c.swarm("service", "create", "--name", f"s{i}", "--detach", "--replicas", str(i),
                    "busybox", *TASK)
        c.swarm("service", "scale", "s4=7")
        c.kill("manager-1")
        c.restart("manager-1")
        services = wait_for(lambda: c.json("service", "ls"), what="manager back")
        assert {s["name"]: s["replicas"].split("/")[1] for s in services} == {
            "s0": "0", "s1": "1", "s2": "2", "s3": "3", "s4": "7"}
        wait_for(lambda: {s["name"]: s["replicas"] for s in c.json("service", "ls")}["s4"]
                 == "7/7", what="converged after restart")
    finally:
        c.close()


def test_lost_worker_is_replaced_and_shuts_down_stale_tasks_on_return(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path)
    try:
        c.start(workers=2)
        c.swarm("service", "create", "--name", "w", "--replicas", "4", "--constraint",
                "node.role==worker", "busybox", *TASK)
        before = {t["id"] for t in c.json("service", "ps", "w") if t["node"] == "worker-1"}
        assert len(before) == 2
        pids = _task_pids(c, "worker-1")
        assert len(pids) == 2
        c.kill("worker-1")
        wait_for(lambda: running_by_node(c, "w") == {"worker-2": 4}, what="replaced")
        node = {n["hostname"]: n for n in c.json("node", "ls")}["worker-1"]
        assert node["status"] == "Down"
        assert all(_alive(p) for p in pids)  # the daemon died, its tasks did not
        c.restart("worker-1")
        wait_for(lambda: not any(_alive(p) for p in pids), what="stale tasks stopped")
        assert running_by_node(c, "w") == {"worker-2": 4}
    finally:
        c.close()


def test_leave_stops_tasks_and_daemon(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path)
    try:
        c.start(workers=1)
        c.swarm("service", "create", "--name", "l", "--replicas", "2", "--constraint",
                "node.role==worker", "busybox", *TASK)
        pids = _task_pids(c, "worker-1")
        daemon = c.pid("worker-1")
        assert pids and daemon
        c.swarm("leave", node="worker-1")
        assert not _alive(daemon)
        assert not any(_alive(p) for p in pids)
        assert not (c.nodes["worker-1"] / "node.json").exists()
        wait_for(lambda: {n["hostname"]: n["status"] for n in c.json("node", "ls")}
                 ["worker-1"] == "Down", what="left node shown down")
    finally:
        c.close()


def _task_pids(c: LocalCluster, node: str) -> list[int]:
    return [int(json.loads(f.read_text())["pid"]) for f in c.nodes[node].glob("agent/**/pid.json")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False




def test_control_api_over_mutual_tls_needs_a_manager_certificate(cluster: LocalCluster) -> None:
    import grpc

    from swarmlet.api import swarmlet_pb2 as pb
    from swarmlet.api import swarmlet_pb2_grpc as pbg
    from swarmlet.nodeconfig import read_certs
    from swarmlet.pki import MANAGER_SERVER_NAME

    opts = [("grpc.ssl_target_name_override", MANAGER_SERVER_NAME)]

    def list_nodes(node: str) -> int:
        ca, cert, key = read_certs(cluster.nodes[node])
        creds = grpc.ssl_channel_credentials(ca, key, cert)
        with grpc.secure_channel(cluster.manager_addr, creds, options=opts) as ch:
            return len(pbg.ControlStub(ch).ListNodes(pb.Empty(), timeout=10).nodes)

    assert list_nodes("manager-1") == 3
    with pytest.raises(grpc.RpcError) as err:
        list_nodes("worker-1")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ca, _, _ = read_certs(cluster.nodes["manager-1"])
    with grpc.secure_channel(cluster.manager_addr, grpc.ssl_channel_credentials(ca),
                             options=opts) as ch, pytest.raises(grpc.RpcError):
        pbg.ControlStub(ch).ListNodes(pb.Empty(), timeout=5)
