"""`swarm init --force-new-cluster`: two of three managers are lost for good; the survivor
restarts as a one-manager cluster from its own state, and managers can join it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def _services(c: LocalCluster, via: str) -> dict[str, str]:
    return {s["name"]: s["replicas"] for s in c.json("service", "ls", node=via)}


def test_force_new_cluster_keeps_state_and_takes_new_managers(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=3, workers=1)
        for i in range(3):
            c.swarm("service", "create", "--name", f"s{i}", "--replicas", str(i + 1),
                    "--constraint", "node.role==worker", "sim", node=f"manager-{i + 1}")
        c.swarm("node", "update", "--label-add", "zone=a", "worker-1")
        # compaction then more writes: the state is in the snapshot *and* the journal
        c.swarm("service", "scale", "s0=4", "--detach", node="manager-2")
        c.kill("manager-2")
        c.kill("manager-3")
        c.swarm("service", "ls", node="manager-1", check=False, timeout=30)

        out = c.swarm("init", "--force-new-cluster").stdout
        assert "only manager" in out and "swarm join --token" in out
        got = wait_for(lambda: _services(c, "manager-1"), what="state back")
        assert {k: v.split("/")[1] for k, v in got.items()} == {"s0": "4", "s1": "2", "s2": "3"}
        nodes = {n["hostname"]: n for n in c.json("node", "ls")}
        assert nodes["manager-1"]["manager_status"] == "Leader"
        assert nodes["manager-2"]["manager_status"] == "" and nodes["manager-2"]["status"] == "Down"
        inspected = json.loads(c.swarm("node", "inspect", "worker-1").stdout)
        assert '"zone": "a"' in json.dumps(inspected)
        # writes work again, and the worker still runs what it ran
        c.swarm("service", "scale", "s1=3", "--detach")
        wait_for(lambda: all(v.split("/")[0] == v.split("/")[1]
                             for v in _services(c, "manager-1").values()),
                 timeout=30, what="converged on the worker")

        # a new manager joins the new cluster and catches up
        c.swarm("node", "rm", "--force", "manager-3")
        c.join_manager("manager-4", "127.0.0.24")
        wait_for(lambda: _services(c, "manager-4").get("s1") == "3/3", timeout=30,
                 what="the new manager serving current state")
        # the recovered state survives a restart of the recovered manager
        c.kill("manager-1")
        c.kill("manager-4")
        c.restart("manager-1")
        c.restart("manager-4")
        got = wait_for(lambda: _services(c, "manager-4"), timeout=30, what="state after restart")
        assert {k: v.split("/")[1] for k, v in got.items()} == {"s0": "4", "s1": "3", "s2": "3"}
    finally:
        c.close()


def test_force_new_cluster_needs_manager_state(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    c.nodes["nowhere"] = tmp_path / "nowhere"
    proc = c.swarm("init", "--force-new-cluster", node="nowhere", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("Error: --force-new-cluster: no manager state in")
    assert not (tmp_path / "nowhere" / "node.json").exists()
