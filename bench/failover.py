"""Manager failover: SIGKILL the leader of 3 managers and time until the first write
through a surviving manager succeeds. Median and max over N trials; the killed manager is
restarted (from its journal) between trials.

    .venv/bin/python bench/failover.py [--trials 10]
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

from swarmlet.client import ControlClient  # noqa: E402
from swarmlet.errors import SwarmletError  # noqa: E402
from tests.harness.cluster import LocalCluster, wait_for  # noqa: E402


def leader_name(c: LocalCluster, via: str) -> str:
    with ControlClient(c.nodes[via], timeout=3) as cl:
        for n in cl.list_nodes():
            if n.manager_status.leader:
                return str(n.description.hostname)
    raise SwarmletError("no leader")


def all_reachable(c: LocalCluster, via: str) -> bool:
    with ControlClient(c.nodes[via], timeout=3) as cl:
        nodes = cl.list_nodes()
    return all(n.manager_status.reachability == "reachable" for n in nodes) and len(nodes) == 3


def trial(c: LocalCluster, n: int) -> float:
    def stable_leader() -> str | None:
        # a restarted member can start an election (pysyncobj has no PreVote): wait until
        # every manager names the same leader twice, a second apart
        first = {leader_name(c, m) for m in ("manager-1", "manager-2", "manager-3")}
        time.sleep(1.0)
        second = {leader_name(c, m) for m in ("manager-1", "manager-2", "manager-3")}
        return first.pop() if len(first) == 1 and first == second else None

    leader = wait_for(stable_leader, timeout=60, what="a stable leader")
    survivor = next(m for m in ("manager-1", "manager-2", "manager-3") if m != leader)
    client = ControlClient(c.nodes[survivor], timeout=2)
    c.kill(leader)
    t0 = time.monotonic()
    while True:
        try:
            client.scale_service("probe", n)
            break
        except SwarmletError:
            if time.monotonic() - t0 > 60:
                raise SystemExit("no successful write within 60 s") from None
            time.sleep(0.02)
    took = time.monotonic() - t0
    client.close()
    print(f"  trial {n}: killed {leader}; write through {survivor} ok after {took:.2f} s",
          flush=True)
    c.restart(leader)
    wait_for(lambda: all_reachable(c, survivor), timeout=60, what="all managers back")
    return took


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-bench-") as t:
        c = LocalCluster(Path(t), runtime="sim")
        try:
            c.start_ha(managers=3)
            c.swarm("service", "create", "--name", "probe", "--detach", "sim")
            times = [trial(c, i + 1) for i in range(args.trials)]
        finally:
            c.close()
    print(f"failover (kill -9 leader of 3 -> first write ok): median "
          f"{statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
