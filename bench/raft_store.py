"""Raft write figures of the store (journal on disk): synced write latency, batched task
creations and batched task status updates through the proposer, on one manager or on a
leader with followers in their own processes.

    .venv/bin/python bench/raft_store.py [--commands 20000] [--managers 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manager.proposer import Proposer  # noqa: E402
from manager.raft import RaftNode, RaftSettings  # noqa: E402
from manager.store import Store  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.clock import RealClock  # noqa: E402

SECRET = "bench-secret"


def follower(addr: str, peers: list[str], state: str, stop: object) -> None:
    """A Raft member in its own process; its long election timeout leaves the leadership
    to the benchmark's process."""
    slow = RaftSettings(min_timeout=2.5, max_timeout=3.4)
    raft = RaftNode(Store(), addr, peers, Path(state), SECRET, settings=slow)
    stop.wait()  # type: ignore[attr-defined]
    raft.destroy()


def timed(prop: Proposer, commands: list[pb.Command]) -> tuple[float, int]:
    entries0 = prop.entries
    t0 = time.perf_counter()
    futs = [prop.propose_async([c]) for c in commands]
    results = [f.result(120) for f in futs]
    took = time.perf_counter() - t0
    assert all(r[0].ok for r in results), next(r[0].error for r in results if not r[0].ok)
    return took, prop.entries - entries0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=20000)
    p.add_argument("--managers", type=int, default=1)
    p.add_argument("--port", type=int, default=47391)
    args = p.parse_args()
    addrs = [f"127.0.0.1:{args.port + i}" for i in range(args.managers)]
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    with tempfile.TemporaryDirectory(prefix="swarmlet-raft-") as d:
        procs = [ctx.Process(target=follower, args=(a, [x for x in addrs if x != a],
                                                     f"{d}/m{i}", stop), daemon=True)
                 for i, a in enumerate(addrs[1:], start=1)]
        for pr in procs:
            pr.start()
        store = Store()
        raft = RaftNode(store, addrs[0], addrs[1:], Path(d) / "m0", SECRET)
        deadline = time.monotonic() + 60
        while not raft.is_leader() or raft.members()[0] < args.managers:
            if time.monotonic() > deadline:
                print("no leader with all members within 60 s", file=sys.stderr)
                return 1
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
        n = args.commands
        creates = [pb.Command(create_task=pb.Task(id=f"t{i}", service_id="s1", slot=1000 + i))
                   for i in range(n)]
        c_took, c_entries = timed(prop, creates)
        updates = [pb.Command(task_status=pb.TaskStatusUpdate(
            task_id=f"t{i}", status=pb.TaskStatus(state=pb.PENDING, timestamp=1.0)))
            for i in range(n)]
        u_took, u_entries = timed(prop, updates)
        print(f"managers: {args.managers}")
        print(f"synced write latency: median {statistics.median(lat) * 1000:.1f} ms, "
              f"max {max(lat) * 1000:.1f} ms (50 writes)")
        print(f"batched task creations: {n} in {c_took:.2f} s = {n / c_took:,.0f} commands/s "
              f"in {c_entries} Raft entries")
        print(f"batched task status updates: {n} in {u_took:.2f} s = {n / u_took:,.0f} "
              f"updates/s in {u_entries} Raft entries")
        prop.stop()
        raft.destroy()
        stop.set()
        for pr in procs:
            pr.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
