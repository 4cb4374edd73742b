"""`swarm service logs` on a real cluster (manager + two worker daemons on loopback, process
runtime): lines from tasks on both workers, docker's prefix, --tail, --timestamps, and
--follow until Ctrl-C, after which the workers stop reading."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import SWARM, LocalCluster, wait_for

pytestmark = pytest.mark.slow

TALK = 'i=0; while true; do i=$((i+1)); echo "tick $i $SWARMLET_NODE_HOSTNAME"; sleep 0.2; done'
# a global task shows its node id in place of the slot
LINE = re.compile(r"^talk\.[0-9a-z]{12}\.[0-9a-z]{12}@(worker-[12])    \| tick \d+ (worker-[12])$")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("logs"), runtime="process")
    try:
        c.start(workers=2)
        c.swarm("service", "create", "--detach", "--name", "talk", "--mode", "global",
                "--constraint", "node.role==worker", "busybox", "sh", "-c", TALK)
        wait_for(lambda: sum(r["current_state"].startswith("Running")
                             for r in c.json("service", "ps", "talk")) == 2,
                 timeout=60, what="a talking task on each worker")
        yield c
    finally:
        c.close()


def _ended_subscriptions(node_dir: Path) -> tuple[int, int]:
    text = (node_dir / "swarmd.log").read_text()
    return text.count('"logs.subscription"'), text.count('"logs.subscription_ended"')


def test_logs_with_tail_from_both_workers(cluster: LocalCluster) -> None:
    wait_for(lambda: len(cluster.swarm("service", "logs", "--tail", "2", "talk")
                         .stdout.splitlines()) == 4, what="two lines from each task")
    lines = cluster.swarm("service", "logs", "--tail", "2", "talk").stdout.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert sorted(m.group(1) for m in matches if m) == ["worker-1", "worker-1",
                                                         "worker-2", "worker-2"]
    assert all(m.group(1) == m.group(2) for m in matches if m)

    stamped = cluster.swarm("service", "logs", "-t", "--tail", "1", "talk").stdout.splitlines()
    assert len(stamped) == 2
    for line in stamped:
        stamp, _, rest = line.partition(" ")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), line
        assert LINE.match(rest), line


def test_logs_of_unknown_service_fail_in_one_line(cluster: LocalCluster) -> None:
    proc = cluster.swarm("service", "logs", "nosuch", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("Error: ") and len(proc.stderr.splitlines()) == 1
    assert "nosuch" in proc.stderr


def test_follow_streams_from_two_workers_until_interrupted(cluster: LocalCluster) -> None:
    before = {n: _ended_subscriptions(cluster.nodes[n]) for n in ("worker-1", "worker-2")}
    proc = subprocess.Popen(
        [*SWARM, "--data-dir", str(cluster.nodes["manager-1"]), "service", "logs", "-f",
         "--tail", "0", "talk"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
    )
    seen: dict[str, list[int]] = {"worker-1": [], "worker-2": []}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = LINE.match(line.rstrip("\n"))
            if m:
                seen[m.group(1)].append(int(line.split("tick ")[1].split()[0]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: all(len(v) >= 5 for v in seen.values()), timeout=30,
                 what="five new lines from each worker")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(15)
    assert rc == 130
    for ticks in seen.values():  # each task's lines arrive in order, none twice
        assert ticks == sorted(set(ticks))
    # the manager closed the follow subscriptions: each worker ended all it started
    for node, (started, _ended) in before.items():
        wait_for(lambda n=node, s=started: _ended_subscriptions(cluster.nodes[n])[1]
                 == _ended_subscriptions(cluster.nodes[n])[0] > s, timeout=15,
                 what=f"{node} to end its follow subscription")
