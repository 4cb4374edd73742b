"""Many simulated worker nodes in one process, for scale benchmarks.

Each node joins through the real join endpoint (its own key, CSR and certificate), then
runs a real worker agent with a real mutual-TLS gRPC session to the manager; only the
runtime is simulated (`sim`: tasks run instantly, no process). Prints "ready N" once all
agents are started, then runs until SIGTERM/SIGINT.

    python bench/simfleet.py --manager 127.0.0.21:23000 --token SWMTKN-1-… --count 200 --dir D
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarmlet import bootstrap, log, nodeconfig  # noqa: E402
from swarmlet.clock import RealClock  # noqa: E402
from swarmlet.daemon import NodeDaemon, describe  # noqa: E402
from worker.agent import Agent  # noqa: E402
from worker.runtime import make_runtime  # noqa: E402


def sim_ip(i: int) -> str:
    return f"127.0.{100 + i // 250}.{1 + i % 250}"


def join(i: int, args: argparse.Namespace) -> nodeconfig.NodeConfig:
    d = Path(args.dir) / f"sim-{i:04d}"
    if nodeconfig.exists(d):
        return nodeconfig.load(d)
    return bootstrap.join_cluster(d, args.token, args.manager, sim_ip(i), f"sim-{i:04d}", "sim")


def start_agent(i: int, cfg: nodeconfig.NodeConfig, args: argparse.Namespace) -> Agent:
    d = Path(args.dir) / f"sim-{i:04d}"
    clock = RealClock()
    ca, cert, key = nodeconfig.read_certs(d)
    shim = NodeDaemon(d, cfg, clock)
    runtime = make_runtime("sim", d / "agent" / "runtime", clock)
    agent = Agent(
        state_dir=d / "agent",
        managers=list(cfg.managers),
        credentials_factory=shim._channel_factory(ca, cert, key),
        runtime=runtime,
        description=describe(cfg, "sim"),
        addr=cfg.advertise_ip,
        clock=clock,
        node_id=cfg.node_id,
    )
    agent.start()
    return agent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manager", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--first", type=int, default=0, help="index of the first node (several "
                   "fleet processes side by side)")
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    log.setup(stream=open(Path(args.dir) / f"simfleet-{args.first}.log", "a"),  # noqa: SIM115
              level="warning")
    with ThreadPoolExecutor(8) as pool:
        ids = range(args.first, args.first + args.count)
        cfgs = list(pool.map(lambda i: join(i, args), ids))
    agents = [start_agent(i, cfg, args) for i, cfg in zip(ids, cfgs, strict=True)]
    print(f"ready {len(agents)}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for a in agents:
        a.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
