"""A real cluster (manager + worker daemons on loopback) running runc containers: the node
reports its runtime, restart policy on-failure with delay and max attempts, an unhealthy
task replaced, REJECTED tasks for what only the worker can know. Every node imports a
busybox image built from busybox-static (`swarm image import`). Needs root and runc.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmlet.client import ControlClient
from swarmlet.clock import RealClock
from tests.harness.cluster import LocalCluster, wait_for
from tests.system.runc_support import busybox_tar, leftovers, requires_probes, requires_runc
from worker.runtime.runc import RuncRuntime

pytestmark = [*requires_runc, pytest.mark.slow]


class _NoImages:
    def ensure(self, ref: str) -> Any:
        raise AssertionError("cleanup only")


def sweep(nodes: dict[str, Path]) -> list[str]:
    """Remove every container the daemons left (they were SIGKILLed); what remains."""
    left: list[str] = []
    for path in nodes.values():
        state = path / "agent" / "runtime"
        if not state.is_dir():
            continue
        rt = RuncRuntime(state, RealClock(), _NoImages())
        ids = [d.name for d in state.iterdir() if d.is_dir() and d.name != "runc"]
        for tid in ids:
            rt.remove(tid)
        left += leftovers(state, ids)
    return left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("runc-cluster")
    c = LocalCluster(tmp, runtime="runc")
    try:
        c.start(workers=1)
        tar = busybox_tar(tmp)
        for node in c.nodes:
            c.swarm("image", "import", str(tar), "busybox:latest", node=node)
        yield c
    finally:
        c.close()
        assert sweep(c.nodes) == []


def ps(c: LocalCluster, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = c.json("service", "ps", name)
    return rows


def create(c: LocalCluster, name: str, *args: str) -> None:
    c.swarm("service", "create", "--detach", "--name", name, *args)


def test_nodes_report_the_runc_runtime(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        info = json.loads(cluster.swarm("node", "inspect", node).stdout)
        info = info[0] if isinstance(info, list) else info
        assert info["description"]["runtime"] == "runc"


def test_on_failure_restarts_with_delay_until_max_attempts(cluster: LocalCluster) -> None:
    create(cluster, "flaky", "--restart-condition", "on-failure", "--restart-delay", "1s",
           "--restart-max-attempts", "2", "busybox", "sh", "-c", "sleep 0.2; exit 3")
    wait_for(lambda: len([r for r in ps(cluster, "flaky") if r["error"] == "exit 3"]) == 3,
             timeout=60, what="three failed tasks")
    rows = ps(cluster, "flaky")
    assert len(rows) == 3, rows  # the first run and two restarts, then no more
    assert all(r["current_state"].startswith("Failed") for r in rows)
    with ControlClient(cluster.nodes["manager-1"], timeout=10) as cl:
        tasks = sorted(cl.list_tasks(service="flaky").tasks, key=lambda t: t.restart_attempt)
    assert [t.restart_attempt for t in tasks] == [0, 1, 2]
    for before, after in zip(tasks, tasks[1:], strict=False):
        # each restart waited the delay after its predecessor ended
        assert after.not_before >= before.status.timestamp + 1.0 - 0.05
        assert after.status.exit_code == 3 and after.status.has_exit_code
    cluster.swarm("service", "rm", "flaky")


@requires_probes
def test_unhealthy_task_is_replaced(cluster: LocalCluster) -> None:
    create(cluster, "sick", "--health-cmd", "test -f /tmp/ok || { echo gone; exit 1; }",
           "--health-interval", "0.3s", "--health-retries", "2", "--restart-delay", "0s",
           "busybox", "sh", "-c", "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 600")
    wait_for(lambda: any("(healthy)" in r["current_state"] for r in ps(cluster, "sick")),
             timeout=60, what="a healthy task")
    wait_for(lambda: any(r["error"] == "unhealthy: gone" for r in ps(cluster, "sick")),
             timeout=60, what="the task failed as unhealthy")
    wait_for(lambda: len(ps(cluster, "sick")) >= 2, timeout=60, what="a replacement task")
    cluster.swarm("service", "rm", "sick")


def test_worker_side_problems_reject_the_task(cluster: LocalCluster) -> None:
    create(cluster, "nobind", "--restart-condition", "none",
           "--mount", "type=bind,source=/nonexistent/swarmlet,target=/x", "busybox", "true")
    create(cluster, "nouser", "--restart-condition", "none", "--user", "nosuch",
           "busybox", "true")
    wait_for(lambda: [r["error"] for r in ps(cluster, "nobind")]
             == ["mount: bind source /nonexistent/swarmlet does not exist"], timeout=60,
             what="nobind rejected")
    wait_for(lambda: [r["error"] for r in ps(cluster, "nouser")]
             == ["user: unknown user nosuch in image"], timeout=60, what="nouser rejected")
    assert ps(cluster, "nobind")[0]["current_state"].startswith("Rejected")
    cluster.swarm("service", "rm", "nobind", "nouser")
