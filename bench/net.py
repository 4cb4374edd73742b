"""Overlay data-plane figures (needs root, nft; iperf3 for throughput).

    .venv/bin/python bench/net.py [--seconds 2] [--requests 2000] [--clients 4] [--rounds 3]

Builds the system tests' two-host lab (tests/system/net_support.py: two host namespaces
joined by a veth, no route out, one NetworkAgent each) and removes it afterwards.

Each pair of figures is measured in --rounds alternating rounds; medians are printed.

1. TCP throughput, task on host 1 -> task on host 2 (iperf3, --seconds per run):
   across the overlay (veth, bridge, VXLAN, underlay veth, and back out) versus a direct
   veth between the same two task namespaces. Target: overlay >= 0.9 of direct.
2. Requests/s (connect, read a short reply, close; --requests split over the rounds,
   --clients threads) from host 2's namespace, where no task runs: through the routing
   mesh (host 2's published port, DNAT to the service's one task on host 1) versus
   straight to that task's ingress address (the same overlay path without the mesh:
   no DNAT, no masquerade). Target: mesh >= 0.8 of direct.
3. Plumbing: median attach and detach time of 10 tasks on a network whose sandbox
   exists (veth made in the task netns, address, route, VIP table by `nft -f -`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarmlet import log as slog  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from tests.system.net_support import (  # noqa: E402
    Lab,
    Svc,
    fetch,
    ip,
    leftovers,
    network,
    skip_reason,
)

REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def iperf(server_ns: str, client_ns: str, addr: str, seconds: float) -> float:
    """Gbit/s received, one TCP stream from client_ns to an iperf3 in server_ns."""
    srv = subprocess.Popen(["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = subprocess.run(["nsenter", f"--net={client_ns}", "iperf3", "-c", addr,
                                "-t", str(seconds), "-J"], capture_output=True, text=True,
                               timeout=seconds + 20)
            out = json.loads(r.stdout or "{}")
            if r.returncode == 0 and "sum_received" in out.get("end", {}):
                return float(out["end"]["sum_received"]["bits_per_second"]) / 1e9
            last = out.get("error") or r.stderr
            time.sleep(0.1)  # the server was not listening yet
        raise RuntimeError(f"iperf3 failed: {last}")
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=5)


def req_per_s(ns: str, addr: str, port: int, requests: int, clients: int) -> float:
    per = requests // clients
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(per):
                if not fetch(ns, addr, port).endswith(b"ok"):
                    raise RuntimeError("bad reply")
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
    return per * clients / elapsed


def alternate(rounds: int, first: Callable[[], float],
              second: Callable[[], float]) -> tuple[float, float]:
    """Medians of the two measurements taken in alternating rounds (the machine's load
    from other work drifts; alternating keeps the drift out of the ratio)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def throughput(lab: Lab, seconds: float, rounds: int) -> tuple[float, float]:
    net = lab.add_network(network("benchnet" + lab.tag + "0" * 13, 4200, "10.41.0.0/24",
                                  "10.41.0.1"))
    svc = Svc("benchsvc" + lab.tag, "iperf")
    lab.services.append(svc)
    a = lab.add_task(0, svc, {net.id: "10.41.0.10/24"})
    b = lab.add_task(1, svc, {net.id: "10.41.0.20/24"})
    lab.update()
    lab.attach_all()
    # the direct veth between the same two task namespaces
    ta, tb = Path(a.path).name, Path(b.path).name
    ip(ta, "link", "add", f"swt{lab.tag}d", "type", "veth", "peer", "name", f"swt{lab.tag}e",
       "netns", tb)
    ip(ta, "addr", "add", "10.99.0.1/30", "dev", f"swt{lab.tag}d")
    ip(tb, "addr", "add", "10.99.0.2/30", "dev", f"swt{lab.tag}e")
    ip(ta, "link", "set", f"swt{lab.tag}d", "up")
    ip(tb, "link", "set", f"swt{lab.tag}e", "up")
    return alternate(rounds, lambda: iperf(b.path, a.path, "10.41.0.20", seconds),
                     lambda: iperf(b.path, a.path, "10.99.0.2", seconds))


def mesh(lab: Lab, requests: int, clients: int, rounds: int) -> tuple[float, float]:
    ing = lab.add_network(network("benching" + lab.tag + "0" * 13, 4201, "10.42.0.0/24",
                                  "10.42.0.1", name="ingress", ingress=True))
    lab.ingress_addrs = ["10.42.0.250/24", "10.42.0.251/24"]
    web = Svc("benchweb" + lab.tag, "web", vips={ing.id: "10.42.0.2/24"}, ports=[
        pb.PortConfig(protocol="tcp", target_port=80, published_port=8080,
                      publish_mode="ingress")])
    lab.services.append(web)
    tasks = [lab.add_task(0, web, {ing.id: "10.42.0.10/24"})]
    lab.update()
    for t in tasks:
        lab.agents[0].attach(lab.task_pb(t), t.path)
        lab.serve(t.path, 80, REPLY)
    h2 = lab.host_paths[1]
    req_per_s(h2, "192.168.250.2", 8080, 100, 1)  # warm up both paths
    req_per_s(h2, "10.42.0.10", 80, 100, 1)
    n = max(requests // rounds, clients)
    return alternate(rounds, lambda: req_per_s(h2, "192.168.250.2", 8080, n, clients),
                     lambda: req_per_s(h2, "10.42.0.10", 80, n, clients))


def plumbing(lab: Lab, tasks: int) -> tuple[float, float]:
    """Median attach and detach times (ms) of tasks joining a network whose sandbox
    already exists on the node, each task reaching one VIP."""
    net = lab.add_network(network("benchplb" + lab.tag + "0" * 13, 4202, "10.43.0.0/24",
                                  "10.43.0.1"))
    svc = Svc("benchplb" + lab.tag, "plumb", vips={net.id: "10.43.0.2/24"})
    lab.services.append(svc)
    made = [lab.add_task(0, svc, {net.id: f"10.43.0.{10 + i}/24"}) for i in range(tasks + 1)]
    lab.update()
    agent = lab.agents[0]
    agent.attach(lab.task_pb(made[0]), made[0].path)  # makes the sandbox
    attach, detach = [], []
    for t in made[1:]:
        t0 = time.perf_counter()
        agent.attach(lab.task_pb(t), t.path)
        attach.append(time.perf_counter() - t0)
    for t in made[1:]:
        t0 = time.perf_counter()
        agent.detach(t.id)
        detach.append(time.perf_counter() - t0)
    agent.detach(made[0].id)
    return statistics.median(attach) * 1000, statistics.median(detach) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    slog.setup(level="warning", json=False)
    why = skip_reason()
    if why:
        print(f"skipped: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="swt-bench-") as tmp:
        lab = Lab(Path(tmp))
        try:
            if shutil.which("iperf3"):
                overlay, direct = throughput(lab, args.seconds, args.rounds)
                print(f"TCP throughput  overlay {overlay:6.2f} Gbit/s   direct veth "
                      f"{direct:6.2f} Gbit/s   ratio {overlay / direct:.2f}  (target >= 0.9)")
            else:
                print("TCP throughput: skipped (iperf3 not installed)")
            att, det = plumbing(lab, 10)
            print(f"plumbing        attach {att:5.1f} ms   detach {det:5.1f} ms  (median of 10)")
            through, direct_rps = mesh(lab, args.requests, args.clients, args.rounds)
            print(f"requests/s      mesh {through:8.0f}   straight to one task "
                  f"{direct_rps:8.0f}   ratio {through / direct_rps:.2f}  (target >= 0.8)")
        finally:
            lab.close()
    left = leftovers()
    if left or lab.residue:
        print(f"left behind: {left + lab.residue}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
