"""`swarm cluster up|ls|exec|down`: hosts as network namespaces on a private bridge, a node
daemon in each; `down` leaves nothing of the cluster on the machine. Needs root."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmlet.errors import SwarmletError
from swarmlet.testcluster import build, nodes, teardown
from tests.harness.cluster import wait_for
from tests.harness.netns_cluster import NetnsCluster, skip_reason
from tests.system import runc_support

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(bool(skip_reason()), reason=skip_reason() or "root")]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    c = NetnsCluster(tmp_path_factory.mktemp("cluster-up"))
    try:
        proc = c.up(managers=1, workers=2, runtime="process")
        assert "HOST" in proc.stdout and "node ls" in proc.stdout
        yield c
    finally:
        c.down()


def _subnet_base(c: NetnsCluster) -> str:
    """'172.30.k' of the cluster's underlay."""
    return str(c.state["subnet"]).rsplit(".", 1)[0]


def _inspect(c: NetnsCluster, node: str) -> dict[str, Any]:
    got = json.loads(c.swarm("m1", "node", "inspect", node).stdout)
    return dict(got[0] if isinstance(got, list) else got)


def test_nodes_ready_with_their_addresses(cl: NetnsCluster) -> None:
    base = _subnet_base(cl)
    assert base.startswith("172.30.")
    rows = {n["hostname"]: n for n in cl.json("m1", "node", "ls")}
    assert {h: r["status"] for h, r in rows.items()} == {"m1": "Ready", "w1": "Ready",
                                                        "w2": "Ready"}
    assert rows["m1"]["manager_status"] == "Leader"
    want = {"m1": f"{base}.11", "w1": f"{base}.101", "w2": f"{base}.102"}
    for host, addr in want.items():
        node = _inspect(cl, host)
        assert node["status"]["addr"] == addr
        shown = cl.exec(host, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
        assert f"inet {addr}/24" in shown
        # no way out of the machine: the only route is the underlay /24
        routes = cl.exec(host, "ip", "route", "show").stdout.strip().splitlines()
        assert routes == [f"{base}.0/24 dev eth0 proto kernel scope link src {addr}"]


def test_service_runs_on_all_three_and_answers_from_the_client(cl: NetnsCluster) -> None:
    cl.swarm("m1", "service", "create", "--name", "web", "--mode", "global", "busybox",
             "python3", "-m", "http.server", "--bind", "0.0.0.0", "18080")
    rows = wait_for(lambda: [r for r in cl.json("m1", "service", "ps", "web")
                             if r["current_state"].startswith("Running")],
                    what="web running")
    assert sorted(r["node"] for r in rows) == ["m1", "w1", "w2"]
    base = _subnet_base(cl)
    for last in ("11", "101", "102"):  # each task lives in its host's namespace
        got = wait_for(lambda last=last: cl.exec(
            "client", "busybox", "wget", "-q", "-O", "-", f"http://{base}.{last}:18080/",
            check=False).returncode == 0, what=f"web on .{last}")
        assert got


def test_ls_lists_the_cluster_and_its_nodes(cl: NetnsCluster) -> None:
    out = cl.cli("cluster", "ls", "--state-dir", str(cl.root), "--format", "json").stdout
    (mine,) = [c for c in json.loads(out) if c["name"] == cl.name]
    assert mine["status"] == "up"
    assert {n["host"]: (n["role"], n["state"]) for n in mine["nodes"]} == {
        "client": ("client", "up"), "m1": ("manager", "up"), "w1": ("worker", "up"),
        "w2": ("worker", "up")}
    table = cl.cli("cluster", "ls", "--state-dir", str(cl.root)).stdout
    assert cl.name in table and "w2" in table


def test_name_in_use_and_bad_counts_are_refused(cl: NetnsCluster) -> None:
    proc = cl.cluster("up", "--managers", "2", check=False)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "already exists" in errors[0], proc.stderr
    assert "Warning:" in proc.stderr and "odd number" in proc.stderr
    proc = cl.cluster("up", "--managers", "0", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: managers:"), proc.stderr
    # the cluster in use is untouched
    assert len(cl.json("m1", "node", "ls")) == 3


def test_zz_down_leaves_nothing(cl: NetnsCluster) -> None:
    tasks, pids = cl.task_ids(), cl.pids()
    assert len(tasks) >= 3 and len(pids) >= 6  # 3 daemons, 3 web servers
    proc = cl.down()
    assert proc is not None and proc.returncode == 0, proc.stderr
    assert f"namespace swlc-{cl.name}-lan" in proc.stdout
    assert cl.leftovers(tasks, pids) == []
    proc = cl.cluster("down", check=False)
    assert proc.returncode == 1 and "no cluster named" in proc.stderr


def test_failed_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        ) -> None:
    c = NetnsCluster(tmp_path, tag="f")

    def broken_join(*args: object) -> None:
        raise SwarmletError("w1: swarm join: injected failure")

    monkeypatch.setattr(nodes, "join", broken_join)
    try:
        with pytest.raises(SwarmletError, match="injected failure.*removed what was made"):
            build.up(c.name, 1, 1, "process", c.root, lambda _: None)
        assert c.leftovers([], []) == []
    finally:
        teardown.down(c.name, c.root)


def test_down_after_a_crash(tmp_path: Path) -> None:
    """Daemons killed (tasks keep running without them): down still removes everything."""
    c = NetnsCluster(tmp_path, tag="c")
    try:
        c.up(managers=1, workers=1)
        c.swarm("m1", "service", "create", "--name", "s", "--replicas", "2", "busybox",
                "sleep", "1000")
        tasks, pids = c.task_ids(), c.pids()
        for h in ("m1", "w1"):
            pid = nodes.daemon_pid(Path(c.data_dir(h)))
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(nodes.daemon_pid(Path(c.data_dir(h))) is None
                             for h in ("m1", "w1")), what="daemons gone")
        out = c.cli("cluster", "ls", "--state-dir", str(c.root), "--format", "json").stdout
        states = {n["host"]: n["state"] for n in json.loads(out)[0]["nodes"]}
        assert states == {"client": "up", "m1": "down", "w1": "down"}
        proc = c.down()
        assert proc is not None and proc.returncode == 0, proc.stderr
        assert "removed process" in proc.stdout  # the orphaned tasks
        assert c.leftovers(tasks, pids) == []
    finally:
        c.down()


@pytest.mark.skipif(bool(runc_support.skip_reason()),
                    reason=runc_support.skip_reason() or "runc available")
def test_runc_cluster_up_and_down(tmp_path: Path) -> None:
    c = NetnsCluster(tmp_path, tag="r")
    try:
        c.up(managers=1, workers=1, runtime="runc")
        tar = runc_support.busybox_tar(tmp_path)
        for h in ("m1", "w1"):
            c.swarm(h, "image", "import", str(tar), "busybox:latest")
        c.swarm("m1", "service", "create", "--name", "box", "--mode", "global",
                "busybox:latest", "sleep", "1000")
        rows = wait_for(lambda: [r for r in c.json("m1", "service", "ps", "box")
                                 if r["current_state"].startswith("Running")],
                    timeout=60, what="box running")
        assert sorted(r["node"] for r in rows) == ["m1", "w1"]
        node = _inspect(c, "w1")
        assert node["description"]["runtime"] == "runc"
        tasks, pids = c.task_ids(), c.pids()
        assert len(tasks) == 2
        proc = c.down()
        assert proc is not None and proc.returncode == 0, proc.stderr
        assert c.leftovers(tasks, pids) == []
    finally:
        c.down()

