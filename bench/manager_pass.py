"""CPU time of the manager's side of a converge, in one process without Raft or gRPC.

    .venv/bin/python bench/manager_pass.py [--nodes 200] [--replicas 5000] [--network]

Store + orchestrator + allocator + dispatcher: create a service, reconcile, allocate and
place (applied in batches of 2,000 as the proposer does), build the first Assignments of
every node, then apply the workers' reports (ACCEPTED, then RUNNING, in batches of 250)
and build every push they cause. `--network` puts the service on an overlay network (a
/16) publishing a port, so the allocator's network step and the dispatcher's network
tables are part of it. Figures are process CPU seconds (best of 3), so other load on the
machine matters less than for bench/converge.py.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manager import orchestrator  # noqa: E402
from manager.allocator import allocate  # noqa: E402
from manager.dispatcher import Dispatcher, _Session  # noqa: E402
from manager.store import Store  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.clock import FakeClock  # noqa: E402


def _apply(store: Store, cmds: list[pb.Command], now: float = 1.0) -> None:
    for i in range(0, len(cmds), 2000):
        store.apply_batch(pb.CommandBatch(commands=cmds[i:i + 2000], timestamp=now))


def _nodes(count: int) -> list[pb.Command]:
    out = []
    for i in range(count):
        n = pb.Node(id=f"n{i:04d}")
        n.description.hostname = n.id
        n.description.resources.nano_cpus = 4 * 10**9
        n.description.resources.memory_bytes = 8 << 30
        n.status.state = pb.READY
        n.status.addr = f"10.1.{i // 250}.{i % 250 + 1}"
        out.append(pb.Command(create_node=n))
    return out


def _service(store: Store, replicas: int, network: bool) -> pb.Service:
    spec = pb.ServiceSpec()
    spec.annotations.name = "bench"
    spec.task_template.container.image = "sim"
    spec.mode.replicated.replicas = replicas
    svc = pb.Service(id="svc")
    if network:
        from manager.control_networks import new_ingress
        from manager.endpoints import allocate_endpoint, resolve_networks
        from manager.ipam import allocate_network

        net_spec = pb.NetworkSpec(driver="overlay", subnet="10.8.0.0/16")
        net_spec.annotations.name = "front"
        ingress = new_ingress([], "ingress")
        _apply(store, [pb.Command(create_network=ingress), pb.Command(
            create_network=allocate_network(net_spec, [ingress], "front"))])
        spec.task_template.networks.add(target="front")
        spec.endpoint_spec.mode = "vip"
        spec.endpoint_spec.ports.add(published_port=8080, target_port=80, protocol="tcp",
                                     publish_mode="ingress")
        resolve_networks(store, spec)
        svc.endpoint.CopyFrom(allocate_endpoint(store, svc.id, spec))
    svc.spec.CopyFrom(spec)
    return svc


def run(nodes: int, replicas: int, network: bool) -> tuple[float, float, float, int]:
    store = Store()
    ids = itertools.count()
    _apply(store, _nodes(nodes))
    d = Dispatcher(store, None, FakeClock(), lambda: True, lambda: [])  # type: ignore[arg-type]
    if hasattr(d, "_reset_networks"):
        d._reset_networks()
    store.subscribe(d.on_events)
    sessions = [_Session(f"n{i:04d}") for i in range(nodes)]
    d._sessions.update({s.node_id: s for s in sessions})
    pushes = 0

    def drain() -> None:
        nonlocal pushes
        for sess in sessions:
            if sess.dirty:
                sess.dirty = False
                pushes += d._assignments(sess) is not None

    t0 = time.process_time()
    _apply(store, [pb.Command(create_service=_service(store, replicas, network))])
    _apply(store, orchestrator.reconcile(store, 2.0, lambda: f"t{next(ids):07d}", 5).commands)
    for _ in range(4):
        cmds = allocate(store, 3.0).commands
        if not cmds:
            break
        _apply(store, cmds)
    t1 = time.process_time()
    drain()
    t2 = time.process_time()
    tasks = [t.id for t in store.all_tasks()]
    for state in (pb.ACCEPTED, pb.RUNNING):
        for i in range(0, len(tasks), 250):
            _apply(store, [pb.Command(task_status=pb.TaskStatusUpdate(
                task_id=t, status=pb.TaskStatus(state=state))) for t in tasks[i:i + 250]])
            drain()
    t3 = time.process_time()
    assert sum(t.status.state == pb.RUNNING and t.node_id != "" for t in store.all_tasks()) \
        == replicas
    return t1 - t0, t2 - t1, t3 - t2, pushes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--replicas", type=int, default=5000)
    p.add_argument("--network", action="store_true")
    args = p.parse_args()
    best = min((run(args.nodes, args.replicas, args.network) for _ in range(3)),
               key=lambda r: r[0] + r[1] + r[2])
    print(f"{args.replicas} replicas, {args.nodes} nodes, network={args.network}: "
          f"create+reconcile+allocate {best[0]:.3f} s, first push to every node "
          f"{best[1]:.3f} s, {2 * args.replicas} status reports and their pushes "
          f"{best[2]:.3f} s ({best[3]} pushes); CPU seconds, best of 3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
