"""Raft write figures of the store on one manager (journal on disk): synced write latency
and batched task-creation throughput through the proposer.

    .venv/bin/python bench/raft_store.py [--commands 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manager.proposer import Proposer  # noqa: E402
from manager.raft import RaftNode  # noqa: E402
from manager.store import Store  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.clock import RealClock  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=20000)
    p.add_argument("--port", type=int, default=47391)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-raft-") as d:
        store = Store()
        raft = RaftNode(store, f"127.0.0.1:{args.port}", [], Path(d), "bench-secret")
        while not raft.is_leader():
            time.sleep(0.01)
        prop = Proposer(raft, RealClock())
        svc = pb.Service(id="s1")
        svc.spec.annotations.name = "bench"
        prop.propose([pb.Command(create_service=svc)])
        lat = []
        for i in range(50):
            t = time.perf_counter()
            prop.propose([pb.Command(create_task=pb.Task(id=f"l{i}", service_id="s1",
                                                        slot=i + 1))])
            lat.append(time.perf_counter() - t)
        entries0 = prop.entries
        t0 = time.perf_counter()
        futs = [
            prop.propose_async([pb.Command(create_task=pb.Task(
                id=f"t{i}", service_id="s1", slot=1000 + i))])
            for i in range(args.commands)
        ]
        results = [f.result(60) for f in futs]
        took = time.perf_counter() - t0
        assert all(r[0].ok for r in results)
        print(f"synced write latency: median {statistics.median(lat) * 1000:.1f} ms, "
              f"max {max(lat) * 1000:.1f} ms (50 writes)")
        print(f"batched: {args.commands} task creations in {took:.2f} s = "
              f"{args.commands / took:,.0f} commands/s in {prop.entries - entries0} Raft entries")
        prop.stop()
        raft.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
