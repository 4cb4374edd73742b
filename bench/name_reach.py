"""Time from a task starting to its being reachable by service name from another host.

    .venv/bin/python bench/name_reach.py [--trials 5]      # root: runc, netns hosts

Builds a `swarm cluster` (1 manager, 1 worker; runc; busybox image imported on both), an
overlay network, and a probe task on the manager's host. Each trial creates a new service
(busybox httpd) on that network, constrained to the worker, and a probe loop inside the
probe task's network namespace asks the node's DNS for the service name every 5 ms and,
once answered, GETs the answer (the VIP) until a reply comes back. Figures: from the
task's RUNNING timestamp (as its worker reported it) to the first reply through the name,
and from the `service create` call. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.client import ControlClient  # noqa: E402
from tests.harness.netns_cluster import NetnsCluster, skip_reason  # noqa: E402
from tests.system.runc_support import busybox_tar  # noqa: E402
from tests.system.runc_support import skip_reason as runc_skip  # noqa: E402

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"

# Runs inside the probe task's network namespace: DNS A query by hand, then HTTP GET.
PROBE = r"""
import socket, struct, sys, time, urllib.request
name, server, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
def query(qname):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        s.sendto(q, (server, 53))
        r = s.recv(1500)
    except OSError:
        return None
    finally:
        s.close()
    if struct.unpack(">H", r[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(r[-4:])
while time.time() < deadline:
    ip = query(name)
    if ip:
        try:
            urllib.request.urlopen(f"http://{ip}/", timeout=0.3).read()
            print(f"{time.time():.6f}", flush=True)
            sys.exit(0)
        except OSError:
            pass
    time.sleep(0.005)
sys.exit(1)
"""


def task_of(c: NetnsCluster, service: str) -> dict[str, object]:
    rows = c.json("m1", "service", "ps", service)
    return next(r for r in rows if r["desired_state"] == "Running")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args()
    why = skip_reason() or runc_skip()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="swarmlet-namereach-") as d:
        c = NetnsCluster(Path(d), tag="nr")
        try:
            c.up(managers=1, workers=1, runtime="runc")
            tar = busybox_tar(Path(d))
            for h in ("m1", "w1"):
                c.swarm(h, "image", "import", str(tar), "bb:1")
            nodes = {n["hostname"] for n in c.json("m1", "node", "ls")}
            m1 = next(n for n in nodes if n.endswith("m1"))
            w1 = next(n for n in nodes if n.endswith("w1"))
            c.swarm("m1", "network", "create", "--driver", "overlay", "bench")
            c.swarm("m1", "service", "create", "--name", "probe", "--network", "bench",
                    "--constraint", f"node.hostname=={m1}", "bb:1", "sleep", "86400")
            probe = str(task_of(c, "probe")["id"])
            dns = c.nameserver(probe)
            from_running, from_create = [], []
            for i in range(args.trials):
                name = f"web{i}"
                loop = subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/swl-{probe[:12]}", "python3", "-c", PROBE,
                     name, dns, "30"], stdout=subprocess.PIPE, text=True)
                t0 = time.time()
                c.swarm("m1", "service", "create", "--name", name, "--network", "bench",
                        "--detach", "--constraint", f"node.hostname=={w1}", "bb:1", "sh",
                        "-c", HTTPD)
                out, _ = loop.communicate(timeout=60)
                if loop.returncode != 0:
                    print(f"trial {i}: {name} not reachable within 30 s", file=sys.stderr)
                    continue
                reached = float(out.strip())
                t_run = task_running_at(c, name)
                from_running.append(reached - t_run)
                from_create.append(reached - t0)
                print(f"trial {i}: reachable by name {from_running[-1] * 1000:.0f} ms after "
                      f"RUNNING, {from_create[-1] * 1000:.0f} ms after service create",
                      flush=True)
                c.swarm("m1", "service", "rm", name)
            if from_running:
                print(f"name reachable from another host after the task runs: median "
                      f"{statistics.median(from_running) * 1000:.0f} ms, max "
                      f"{max(from_running) * 1000:.0f} ms ({len(from_running)} trials)")
                print(f"from service create: median {statistics.median(from_create) * 1000:.0f}"
                      f" ms, max {max(from_create) * 1000:.0f} ms")
        finally:
            c.down()
    return 0


def task_running_at(c: NetnsCluster, service: str) -> float:
    """When the service's task reached RUNNING, as its worker reported it."""
    deadline = time.monotonic() + 30
    with ControlClient(Path(c.data_dir("m1"))) as cl:
        while time.monotonic() < deadline:
            done = [t for t in cl.list_tasks(service).tasks if t.status.state == pb.RUNNING]
            if done:
                return float(done[0].status.timestamp)
            time.sleep(0.05)
    raise RuntimeError(f"{service} did not reach RUNNING")


if __name__ == "__main__":
    raise SystemExit(main())
