"""Time for a large service to converge: one manager daemon, N simulated workers (a
separate process, real gRPC sessions), `service create --replicas R` -> all RUNNING.

    .venv/bin/python bench/converge.py [--workers 200] [--replicas 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.client import ControlClient  # noqa: E402
from swarmlet.errors import SwarmletError  # noqa: E402
from tests.harness.cluster import LocalCluster, wait_for  # noqa: E402


class Fleet:
    """Simulated workers spread over several processes (one Python process is one GIL:
    hundreds of agents in it get at most one core between them, and their heartbeats go
    late while they take in a large assignment; real workers are separate machines)."""

    def __init__(self, procs: list[subprocess.Popen[str]]) -> None:
        self.procs = procs

    def terminate(self) -> None:
        for p in self.procs:
            p.terminate()

    def wait(self, timeout: float) -> None:
        for p in self.procs:
            p.wait(timeout)

    def kill(self) -> None:
        for p in self.procs:
            p.kill()


# The fleet stands for machines of its own: on this one it must not take the managers'
# CPU (their Raft ticks) before they do, so it runs at a lower priority.
FLEET_NICE = 10


def fleet_procs(count: int) -> int:
    return max(1, min(4, count // 50))


def start_fleet(cluster: LocalCluster, count: int, tmp: Path, procs: int = 0) -> Fleet:
    procs = procs or fleet_procs(count)
    (tmp / "fleet").mkdir(exist_ok=True)
    token = cluster.token()
    started = []
    per = -(-count // procs)
    for first in range(0, count, per):
        started.append(subprocess.Popen(
            [sys.executable, str(ROOT / "bench/simfleet.py"), "--manager",
             cluster.manager_addr, "--token", token, "--count", str(min(per, count - first)),
             "--first", str(first), "--dir", str(tmp / "fleet")],
            stdout=subprocess.PIPE, text=True, env=cluster.env,
            preexec_fn=lambda: os.nice(FLEET_NICE),
        ))
    fleet = Fleet(started)
    for p in started:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line.startswith("ready"):
            fleet.kill()
            raise SystemExit(f"fleet failed to start: {line!r}")
    return fleet


def running(client: ControlClient, name: str) -> int:
    try:
        resp = client.list_services()
    except SwarmletError as e:  # an election under load: report and keep polling
        print(f"  (control API: {e})", flush=True)
        return 0
    for s in resp.services:
        if s.spec.annotations.name == name:
            return int(resp.running[s.id])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=200)
    p.add_argument("--replicas", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--managers", type=int, default=1)
    p.add_argument("--fleet-procs", type=int, default=0,
                   help="processes the simulated workers run in (default: 1 per 50, at most 4)")
    p.add_argument("--keep", action="store_true", help="keep the state dir (for debugging)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-bench-") as t:
        if args.keep:
            t = tempfile.mkdtemp(prefix="swarmlet-bench-keep-")
            print(f"state kept in {t}")
        tmp = Path(t)
        cluster = LocalCluster(tmp, runtime="sim")
        fleet = None
        try:
            if args.managers > 1:
                cluster.start_ha(managers=args.managers)
            else:
                cluster.init()
            t0 = time.monotonic()
            fleet = start_fleet(cluster, args.workers, tmp, args.fleet_procs)
            wait_for(lambda: cluster.ready_nodes() == args.workers + args.managers,
                     timeout=180, interval=0.5, what="all simulated nodes ready")
            print(f"{args.managers} manager(s); {args.workers} simulated workers "
                  f"({len(fleet.procs)} processes) joined and "
                  f"ready in {time.monotonic() - t0:.1f}s")
            client = ControlClient(cluster.nodes["manager-1"])
            before = client._call("GetClusterStatus", pb.Empty())
            spec = pb.ServiceSpec(annotations=pb.Annotations(name="bench"))
            spec.task_template.container.image = "sim"
            spec.mode.replicated.replicas = args.replicas
            t0 = time.monotonic()
            client.create_service(spec)
            t_created = time.monotonic() - t0
            last_report = t0
            while (n := running(client, "bench")) < args.replicas:
                now = time.monotonic()
                if now - t0 > args.timeout:
                    raise SystemExit(f"did not converge within {args.timeout}s ({n} running)")
                if now - last_report > 5:
                    print(f"  {now - t0:.0f}s: {n} running", flush=True)
                    last_report = now
                time.sleep(0.05)
            took = time.monotonic() - t0
            after = client._call("GetClusterStatus", pb.Empty())
            print(f"service create returned in {t_created * 1000:.0f} ms")
            print(f"converge: {args.replicas} replicas on {args.workers + args.managers} nodes "
                  f"all RUNNING in {took:.2f} s ({args.replicas / took:.0f} tasks/s)")
            if after.leader_id == before.leader_id:
                print(f"raft: {after.raft_entries - before.raft_entries} entries carried "
                      f"{after.raft_commands - before.raft_commands} commands")
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
