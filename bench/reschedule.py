"""Time to replace a lost worker's tasks: kill -9 a worker daemon running 50 tasks and
measure until replacements for all of them are RUNNING on the other nodes.

A manager and 3 worker daemons on loopback (sim runtime, real processes and sessions);
a service of 150 replicas constrained to workers (50 each). Each trial uses a fresh
cluster.

    .venv/bin/python bench/reschedule.py [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.client import ControlClient  # noqa: E402
from tests.harness.cluster import LocalCluster, wait_for  # noqa: E402


def replaced(client: ControlClient, lost: str, want: int) -> bool:
    tasks = client.list_tasks("bench").tasks
    ok = [t for t in tasks if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING
          and t.node_id != lost]
    return len(ok) >= want


def trial(per_node: int) -> float:
    with tempfile.TemporaryDirectory(prefix="swarmlet-bench-") as t:
        cluster = LocalCluster(Path(t), runtime="sim")
        try:
            cluster.start(workers=3)
            client = ControlClient(cluster.nodes["manager-1"])
            spec = pb.ServiceSpec(annotations=pb.Annotations(name="bench"))
            spec.task_template.container.image = "sim"
            spec.task_template.placement.constraints.append("node.role==worker")
            spec.mode.replicated.replicas = per_node * 3
            client.create_service(spec)
            wait_for(lambda: replaced(client, "", per_node * 3), timeout=60, what="converged")
            victim = next(n for n in client.list_nodes() if n.description.hostname == "worker-1")
            on_victim = sum(1 for x in client.list_tasks("bench").tasks
                            if x.node_id == victim.id and x.status.state == pb.RUNNING)
            t0 = time.monotonic()
            cluster.kill("worker-1")
            while not replaced(client, victim.id, per_node * 3):
                if time.monotonic() - t0 > 120:
                    raise SystemExit("replacements not running within 120s")
                time.sleep(0.02)
            took = time.monotonic() - t0
            print(f"  killed worker-1 with {on_victim} tasks; all replaced and RUNNING "
                  f"elsewhere after {took:.2f} s", flush=True)
            return took
        finally:
            cluster.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--per-node", type=int, default=50)
    args = p.parse_args()
    times = [trial(args.per_node) for _ in range(args.trials)]
    print(f"reschedule after kill -9: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} trials "
          "(heartbeat 1 s, node down after 3 missed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
