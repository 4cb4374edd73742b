"""On-disk size of the Raft state under a long churn of writes: snapshots and log
compaction keep it bounded. Creates and removes tasks in rounds and prints the raft
directory's size after each round.

    .venv/bin/python bench/raft_compaction.py [--rounds 12] [--per-round 200]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--per-round", type=int, default=200)
    p.add_argument("--compact-entries", type=int, default=200)
    p.add_argument("--compact-seconds", type=float, default=2.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-raft-") as t:
        d = Path(t)
        store = Store()
        raft = RaftNode(store, "127.0.0.1:47411", [], d, "bench", settings=RaftSettings(
            compaction_min_entries=args.compact_entries,
            compaction_min_time=args.compact_seconds))
        while not raft.is_leader():
            time.sleep(0.01)
        prop = Proposer(raft, RealClock())
        svc = pb.Service(id="s1")
        svc.spec.annotations.name = "churn"
        prop.propose([pb.Command(create_service=svc)])
        writes = 0
        for rnd in range(args.rounds):
            for i in range(args.per_round):
                prop.propose([pb.Command(create_task=pb.Task(
                    id=f"t{rnd}-{i}", service_id="s1", slot=i + 1, desired_state=pb.REMOVE))])
            futs = [prop.propose_async([pb.Command(remove_task=f"t{rnd}-{i}")])
                    for i in range(args.per_round)]
            for f in futs:
                f.result(30)
            writes += 2 * args.per_round
            time.sleep(args.compact_seconds / 4)
            size = sum(f.stat().st_size for f in d.iterdir())
            print(f"round {rnd + 1}: {writes} writes committed, raft dir {size / 1024:.1f} KiB",
                  flush=True)
        prop.stop()
        raft.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
