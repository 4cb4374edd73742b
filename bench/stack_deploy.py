"""Time for `swarm stack deploy` of a 20-service file to converge on a simulated cluster:
one manager daemon, N simulated workers (bench/simfleet.py: real joins, real mutual-TLS
sessions, sim runtime), the real CLI. Prints the wall time of the deploy command (it
returns once every service converged), of an identical redeploy (nothing to do), and of a
redeploy with one image changed (one rolling update).

    .venv/bin/python bench/stack_deploy.py [--workers 50] [--services 20] [--replicas 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from converge import start_fleet  # noqa: E402

from swarmlet.client import ControlClient  # noqa: E402
from tests.harness.cluster import LocalCluster, wait_for  # noqa: E402


def stack_file(services: int, replicas: int, tag: str) -> str:
    lines = ['version: "3.8"', "services:"]
    for i in range(services):
        image = f"bench/svc{i}:{tag if i == 0 else '1'}"
        lines += [
            f"  svc{i}:",
            f"    image: {image}",
            "    environment: {ROLE: bench}",
            "    deploy:",
            f"      replicas: {replicas}",
            "      resources: {reservations: {cpus: '0.01', memory: 8M}}",
            f"      update_config: {{parallelism: {replicas}, monitor: 100ms}}" if i == 0 else
            "      update_config: {parallelism: 2}",
        ]
    return "\n".join(lines) + "\n"


def timed_deploy(cluster: LocalCluster, path: Path) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = cluster.swarm("stack", "deploy", "-q", "-c", str(path), "bench", timeout=600)
    return time.monotonic() - t0, proc.stdout


def all_running(client: ControlClient, services: int, replicas: int) -> bool:
    resp = client.list_services()
    return len(resp.services) == services and all(
        resp.running[s.id] == replicas for s in resp.services)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--services", type=int, default=20)
    p.add_argument("--replicas", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-bench-") as t:
        tmp = Path(t)
        cluster = LocalCluster(tmp, runtime="sim")
        fleet = None
        try:
            cluster.init()
            fleet = start_fleet(cluster, args.workers, tmp)
            wait_for(lambda: cluster.ready_nodes() == args.workers + 1, timeout=180,
                     interval=0.5, what="all simulated nodes ready")
            client = ControlClient(cluster.nodes["manager-1"])
            total = args.services * args.replicas
            path = tmp / "stack.yml"
            path.write_text(stack_file(args.services, args.replicas, "1"))
            took, _ = timed_deploy(cluster, path)
            assert all_running(client, args.services, args.replicas)
            print(f"stack deploy: {args.services} services, {total} tasks on "
                  f"{args.workers + 1} nodes converged in {took:.2f} s (CLI wall time)")
            took, out = timed_deploy(cluster, path)
            print(f"identical redeploy: {took:.2f} s, {out.count('Updating')} updates")
            path.write_text(stack_file(args.services, args.replicas, "2"))
            took, _ = timed_deploy(cluster, path)
            print(f"redeploy with one image changed ({args.replicas} replicas rolled, "
                  f"parallelism {args.replicas}): {took:.2f} s")
        finally:
            if fleet is not None:
                fleet.terminate()
                try:
                    fleet.wait(10)
                except subprocess.TimeoutExpired:
                    fleet.kill()
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
