"""Benchmark of `scheduler.schedule`: place many tasks on a heterogeneous cluster.

Builds a synthetic cluster (node sizes 2/4/8/16 CPUs with 4-64 GiB, zone and disk labels)
and ~200 services of varied sizes and replica counts (10% of the tasks carry a label
constraint), places every task in one `schedule` call and prints: tasks, nodes, seconds,
placements/s, nodes used, the lower bound on nodes, their ratio and the unplaced count.

Lower bound: per resource, the fewest nodes whose summed capacity covers the total demand,
taking the largest nodes first; the bound is the larger of the cpu and memory figures.
No placement can use fewer nodes. The run also checks that no node is overcommitted.

    .venv/bin/python bench/scheduler.py [--tasks 100000] [--nodes 5000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler import NodeInfo, ScheduleResult, TaskRequest, schedule  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
CPU = 1_000_000_000
NODE_TYPES = [(2, 4), (2, 8), (4, 8), (4, 16), (8, 16), (8, 32), (16, 32), (16, 64)]
TASK_CPUS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0]
TASK_MEM_MIB = [64, 128, 256, 512, 1024, 2048, 4096]
CONSTRAINTS = [
    "node.labels.zone==a",
    "node.labels.zone==b",
    "node.labels.zone==c",
    "node.labels.disk==ssd",
    "node.labels.zone!=c",
]


def make_nodes(count: int, rng: random.Random) -> list[NodeInfo]:
    nodes = []
    for i in range(count):
        cpus, gib = rng.choice(NODE_TYPES)
        labels = {}
        if rng.random() < 0.9:
            labels["zone"] = rng.choice("abc")
        if rng.random() < 0.3:
            labels["disk"] = "ssd"
        nodes.append(
            NodeInfo(
                id=f"node-{i:05d}",
                hostname=f"host{i}",
                role="worker",
                ready=True,
                availability="active",
                labels=labels,
                os="linux",
                arch="x86_64",
                cpu_capacity=cpus * CPU,
                mem_capacity=gib * GIB,
            )
        )
    return nodes


def replica_counts(tasks: int, services: int, rng: random.Random) -> list[int]:
    """Replica counts summing to `tasks`, heavy-tailed, at least 1 each."""
    weights = [rng.lognormvariate(0, 1.2) for _ in range(services)]
    spare = tasks - services
    counts = [1 + int(spare * w / sum(weights)) for w in weights]
    for i in range(tasks - sum(counts)):
        counts[i % services] += 1
    return counts


def make_tasks(
    tasks: int, nodes: list[NodeInfo], rng: random.Random, cpu_load: float, mem_load: float
) -> list[TaskRequest]:
    """~200 services sized so the demand is `cpu_load` of the cluster's cpu, `mem_load` of
    its memory."""
    services = min(200, tasks)
    counts = replica_counts(tasks, services, rng)
    sizes = [(rng.choice(TASK_CPUS), rng.choice(TASK_MEM_MIB)) for _ in range(services)]
    cpu_scale = (
        cpu_load
        * sum(n.cpu_capacity for n in nodes)
        / sum(c * s[0] * CPU for c, s in zip(counts, sizes, strict=True))
    )
    mem_scale = (
        mem_load
        * sum(n.mem_capacity for n in nodes)
        / sum(c * s[1] * MIB for c, s in zip(counts, sizes, strict=True))
    )
    constrained: dict[int, tuple[str, ...]] = {}
    in_constrained = 0
    for index in rng.sample(range(services), services):
        if in_constrained + counts[index] <= 0.1 * tasks:
            constrained[index] = (rng.choice(CONSTRAINTS),)
            in_constrained += counts[index]
    out = []
    for index, (count, (cpus, mib)) in enumerate(zip(counts, sizes, strict=True)):
        cpu = int(cpus * CPU * cpu_scale)
        mem = int(mib * MIB * mem_scale)
        for r in range(count):
            out.append(
                TaskRequest(
                    f"svc{index:03d}.{r}", f"svc{index:03d}", cpu, mem, constrained.get(index, ())
                )
            )
    rng.shuffle(out)
    return out


def lower_bound(capacities: list[int], demand: int) -> int:
    """Fewest nodes, largest first, whose capacities sum to at least `demand`."""
    total = 0
    for used, capacity in enumerate(sorted(capacities, reverse=True), start=1):
        if total >= demand:
            return used - 1
        total += capacity
    return len(capacities) if total >= demand else len(capacities) + 1


def overcommitted(nodes: list[NodeInfo], tasks: list[TaskRequest], result: ScheduleResult) -> int:
    by_id = {t.id: t for t in tasks}
    cpu: Counter[str] = Counter()
    mem: Counter[str] = Counter()
    for p in result.placements:
        cpu[p.node_id] += by_id[p.task_id].cpu
        mem[p.node_id] += by_id[p.task_id].mem
    return sum(1 for n in nodes if cpu[n.id] > n.cpu_capacity or mem[n.id] > n.mem_capacity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu-load", type=float, default=0.55, help="demand / cluster cpu")
    parser.add_argument("--mem-load", type=float, default=0.50, help="demand / cluster memory")
    parser.add_argument("--strategy", default="binpack", choices=["binpack", "spread"])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    nodes = make_nodes(args.nodes, rng)
    tasks = make_tasks(args.tasks, nodes, rng, args.cpu_load, args.mem_load)
    start = time.perf_counter()
    result = schedule(nodes, tasks, args.strategy, seed=args.seed)
    seconds = time.perf_counter() - start
    used = len({p.node_id for p in result.placements})
    bound = max(
        lower_bound([n.cpu_capacity for n in nodes], sum(t.cpu for t in tasks)),
        lower_bound([n.mem_capacity for n in nodes], sum(t.mem for t in tasks)),
    )
    print(f"tasks           {len(tasks)}")
    print(f"nodes           {len(nodes)}")
    print(f"seconds         {seconds:.3f}")
    print(f"placements/s    {len(result.placements) / seconds:,.0f}")
    print(f"nodes used      {used}")
    print(f"lower bound     {bound}")
    print(f"ratio           {used / max(bound, 1):.3f}")
    print(f"unplaced        {len(result.unplaced)}")
    print(f"overcommitted   {overcommitted(nodes, tasks, result)}")
    for reason, count in Counter(result.unplaced.values()).most_common(3):
        print(f"  {count} x {reason}")


if __name__ == "__main__":
    main()
