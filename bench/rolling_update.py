"""Time for a rolling update: one manager daemon, N simulated workers (a separate process,
real gRPC sessions, sim runtime), a service of R replicas updated to a new image with
parallelism P and no delay.

    .venv/bin/python bench/rolling_update.py [--workers 20] [--replicas 100]
        [--parallelism 10] [--order stop-first|start-first] [--monitor 5] [--trials 3]

Per trial it prints the time from the UpdateService call until every replica RUNNING is of
the new spec ("replaced"), and until update_status says completed (that adds the
`monitor` period the last batch is watched for), and the fewest replicas seen RUNNING
while it rolled.
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
sys.path.insert(0, str(ROOT / "bench"))

from converge import start_fleet  # noqa: E402

from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.client import ControlClient  # noqa: E402
from swarmlet.errors import SwarmletError  # noqa: E402
from tests.harness.cluster import LocalCluster, wait_for  # noqa: E402

NAME = "rolling"


def running_images(client: ControlClient) -> list[str]:
    try:
        tasks = client.list_tasks(service=NAME).tasks
    except SwarmletError as e:  # an election under load: report and keep polling
        print(f"  (control API: {e})", flush=True)
        return []
    return [
        t.spec.container.image for t in tasks
        if t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
    ]


def one_update(client: ControlClient, args: argparse.Namespace, image: str) -> tuple[float,
                                                                                      float, int]:
    svc = client.get_service(NAME)
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.task_template.container.image = image
    cfg = spec.update_config
    cfg.parallelism, cfg.delay_s, cfg.order = args.parallelism, 0.0, args.order
    cfg.monitor_s = args.monitor
    t0 = time.monotonic()
    client.update_service(svc.id, spec, svc.meta.version)
    replaced = None
    fewest = args.replicas
    while time.monotonic() - t0 < args.timeout:
        imgs = running_images(client)
        fewest = min(fewest, len(imgs))
        if replaced is None and len(imgs) == args.replicas and set(imgs) == {image}:
            replaced = time.monotonic() - t0
        if replaced is not None and client.get_service(NAME).update_status.state == "completed":
            return replaced, time.monotonic() - t0, fewest
        time.sleep(0.02)
    raise SystemExit(f"update did not complete within {args.timeout}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=20)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--parallelism", type=int, default=10)
    p.add_argument("--order", choices=["stop-first", "start-first"], default="stop-first")
    p.add_argument("--monitor", type=float, default=5.0, help="seconds (must be > 0)")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmlet-bench-") as t:
        tmp = Path(t)
        cluster = LocalCluster(tmp, runtime="sim")
        fleet = None
        try:
            cluster.init()
            fleet = start_fleet(cluster, args.workers, tmp)
            wait_for(lambda: cluster.ready_nodes() == args.workers + 1, timeout=120,
                     interval=0.5, what="all simulated nodes ready")
            client = ControlClient(cluster.nodes["manager-1"])
            spec = pb.ServiceSpec(annotations=pb.Annotations(name=NAME))
            spec.task_template.container.image = "sim:0"
            spec.mode.replicated.replicas = args.replicas
            client.create_service(spec)
            wait_for(lambda: len(running_images(client)) == args.replicas, timeout=120,
                     what="all replicas running")
            print(f"{args.replicas} replicas on {args.workers + 1} nodes; update with "
                  f"parallelism {args.parallelism}, delay 0, {args.order}, "
                  f"monitor {args.monitor:g}s", flush=True)
            results = []
            for i in range(1, args.trials + 1):
                replaced, completed, fewest = one_update(client, args, f"sim:{i}")
                results.append((replaced, completed))
                print(f"  trial {i}: all replaced in {replaced:.2f} s, update completed in "
                      f"{completed:.2f} s, fewest running {fewest}", flush=True)
            rep = [r for r, _ in results]
            print(f"rolling update of {args.replicas} replicas, parallelism {args.parallelism}: "
                  f"replaced median {statistics.median(rep):.2f} s (min {min(rep):.2f}, "
                  f"max {max(rep):.2f})")
        finally:
            if fleet is not None:
                fleet.terminate()
                try:
                    fleet.wait(10)
                except Exception:  # noqa: BLE001 - it has to go either way
                    fleet.kill()
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
