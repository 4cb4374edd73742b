"""Highly available managers on loopback: three manager daemons (real Raft over TCP with
the cluster secret), failover, forwarding, quorum loss, whole-cluster restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def services(c: LocalCluster, via: str) -> dict[str, str]:
    return {s["name"]: s["replicas"] for s in c.json("service", "ls", node=via)}


def test_any_manager_serves_and_kill_leader_fails_over(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=3, workers=1)
        roles = {n["hostname"]: n["manager_status"] for n in c.json("node", "ls", node="manager-3")}
        assert roles == {"manager-1": "Leader", "manager-2": "Reachable",
                         "manager-3": "Reachable", "worker-1": ""}
        # a write through a follower is forwarded to the leader
        c.swarm("service", "create", "--name", "web", "--replicas", "4", "--constraint",
                "node.role==worker", "sim", node="manager-2")
        before = {t["id"] for t in c.json("service", "ps", "web", node="manager-3")}
        assert len(before) == 4

        c.kill("manager-1")
        t0 = time.monotonic()
        wait_for(lambda: c.swarm("service", "scale", "web=5", "--detach", node="manager-2",
                                 check=False).returncode == 0, timeout=30, interval=0.1,
                 what="a write after failover")
        took = time.monotonic() - t0
        new_leader = c.leader(via="manager-2")
        assert new_leader in ("manager-2", "manager-3")
        # tasks that were running are untouched
        wait_for(lambda: services(c, "manager-3")["web"] == "5/5", what="scaled")
        rows = c.json("service", "ps", "web", node="manager-3")
        assert before <= {r["id"] for r in rows if r["current_state"].startswith("Running")}
        assert took < 15
        # the worker stayed ready across the leader change
        assert {n["hostname"]: n["status"] for n in c.json("node", "ls", node="manager-2")
                }["worker-1"] == "Ready"
    finally:
        c.close()


def test_quorum_loss_answers_at_once_and_restart_recovers_everything(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=3)
        for i in range(3):
            c.swarm("service", "create", "--name", f"s{i}", "--detach", "--replicas", str(i + 1),
                    "sim", node=f"manager-{i + 1}")
        c.kill("manager-2")
        c.kill("manager-3")
        # the survivor steps down within seconds; then reads and writes fail fast
        msg = "cluster has no leader: 1 of 3 managers reachable"

        def no_leader() -> bool:
            proc = c.swarm("service", "ls", node="manager-1", check=False, timeout=30)
            return proc.returncode != 0 and msg in proc.stderr
        wait_for(no_leader, timeout=30, interval=0.5, what="no-leader error")
        t0 = time.monotonic()
        proc = c.swarm("service", "scale", "s0=3", "--detach", node="manager-1", check=False)
        assert proc.returncode == 1 and msg in proc.stderr
        assert time.monotonic() - t0 < 5
        # kill everything, start everything again from the journals
        c.kill("manager-1")
        for m in ("manager-1", "manager-2", "manager-3"):
            c.restart(m)
        got = wait_for(lambda: services(c, "manager-2"), timeout=30, what="state back")
        assert {k: v.split("/")[1] for k, v in got.items()} == {"s0": "1", "s1": "2", "s2": "3"}
        wait_for(lambda: all(v.split("/")[0] == v.split("/")[1]
                             for v in services(c, "manager-3").values()), what="converged")
    finally:
        c.close()


def test_worker_token_cannot_join_as_manager(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start(workers=1)
        roles = {n["hostname"]: n["manager_status"] for n in c.json("node", "ls")}
        assert roles["worker-1"] == ""  # the worker token made a worker
    finally:
        c.close()


def test_manager_leave_and_rm_change_raft_membership(tmp_path: Path) -> None:
    from swarmlet.api import swarmlet_pb2 as pb
    from swarmlet.client import ControlClient

    def members(via: str) -> tuple[int, int]:
        with ControlClient(c.nodes[via]) as cl:
            st = cl._call("GetClusterStatus", pb.Empty())
        return int(st.managers), int(st.reachable)

    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=3)
        c.join_manager("manager-4", "127.0.0.24")
        managers = ["manager-1", "manager-2", "manager-3", "manager-4"]
        leader = c.leader()
        followers = [m for m in managers if m != leader]
        c.swarm("leave", node=followers[0])
        assert members(leader) == (3, 3)
        assert followers[0] not in {n["hostname"] for n in c.json("node", "ls", node=leader)}
        # one of the 3 remaining managers dies: removing the other live follower would
        # leave 1 of 2 reachable, no quorum -> refused; removing the dead one is fine
        dead, alive = followers[1], followers[2]
        c.kill(dead)
        wait_for(lambda: members(leader) == (3, 2), what="dead manager unreachable")
        proc = c.swarm("node", "rm", "--force", alive, node=leader, check=False)
        assert proc.returncode == 1 and "without quorum" in proc.stderr, proc.stderr
        c.swarm("node", "rm", "--force", dead, node=leader)
        assert members(leader) == (2, 2)
        c.swarm("service", "create", "--name", "after", "--detach", "sim", node=alive)
    finally:
        c.close()


def test_leader_leaves_gracefully(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=3)
        leader = c.leader()
        rest = [m for m in ("manager-1", "manager-2", "manager-3") if m != leader]
        c.swarm("leave", node=leader)
        new = c.leader(via=rest[0])
        assert new in rest
        names = {n["hostname"]: n["manager_status"] for n in c.json("node", "ls", node=rest[0])}
        assert leader not in names and sorted(names.values()) == ["Leader", "Reachable"]
        c.swarm("service", "create", "--name", "after", "--detach", "sim", node=rest[1])
    finally:
        c.close()


def test_promote_and_demote(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start_ha(managers=1, workers=2)

        def status(name: str) -> str:
            nodes = {n["hostname"]: n for n in c.json("node", "ls")}
            return str(nodes[name]["manager_status"])

        proc = c.swarm("service", "ls", node="worker-1", check=False)
        assert proc.returncode == 1 and "not a manager" in proc.stderr
        c.swarm("node", "promote", "worker-1", "worker-2")
        wait_for(lambda: status("worker-1") == "Reachable" and status("worker-2") == "Reachable",
                 timeout=30, what="promoted managers reachable")
        # the promoted node now serves the control API itself
        c.swarm("service", "create", "--name", "p", "--detach", "sim", node="worker-1")
        proc = c.swarm("node", "promote", "worker-1", check=False)
        assert proc.returncode == 1 and "already a manager" in proc.stderr
        c.swarm("node", "demote", "worker-2")
        wait_for(lambda: status("worker-2") == "", what="demoted")
        wait_for(lambda: c.swarm("service", "ls", node="worker-2", check=False).returncode == 1,
                 what="demoted node no longer serves the control API")
        proc = c.swarm("node", "demote", "manager-1", node="worker-1", check=False)
        assert proc.returncode == 1 and "leader" in proc.stderr
    finally:
        c.close()
