"""Per-call mutable node state: what each node holds while one `schedule` call places tasks.

`NodeState` carries the same attributes as `NodeInfo` (so the filters read either) plus
the precomputed numbers the scorers use. States are created once per call from the
caller's `NodeInfo` values, which are never modified. `open_working_set` marks the nodes
binpack fills first; `place` records a placement.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from scheduler.errors import SchedulerError
from scheduler.types import NodeInfo


class NodeState:
    """One node during one scheduling call."""

    __slots__ = (
        "info", "id", "hostname", "role", "ready", "availability", "labels", "os", "arch",
        "cpu_capacity", "mem_capacity", "cpu_reserved", "mem_reserved", "service_tasks",
        "total_tasks", "in_use", "fit_cpu", "fit_mem", "bal_cpu", "bal_mem", "size", "rank",
    )  # fmt: skip

    def __init__(self, info: NodeInfo, rank: int, size: float) -> None:
        self.info = info
        self.id = info.id
        self.hostname = info.hostname
        self.role = info.role
        self.ready = info.ready
        self.availability = info.availability
        self.labels: Mapping[str, str] = info.labels
        self.os = info.os
        self.arch = info.arch
        self.cpu_capacity = cpu_cap = info.cpu_capacity
        self.mem_capacity = mem_cap = info.mem_capacity
        self.cpu_reserved = info.cpu_reserved
        self.mem_reserved = info.mem_reserved
        self.service_tasks: dict[str, int] = dict(info.service_tasks)
        self.total_tasks = info.total_tasks
        self.in_use = bool(info.total_tasks or info.cpu_reserved or info.mem_reserved)
        # fit = mean over the resources the node has of reserved / capacity
        #     = cpu_reserved * fit_cpu + mem_reserved * fit_mem
        have = (cpu_cap > 0) + (mem_cap > 0)
        self.fit_cpu = 1.0 / (have * cpu_cap) if cpu_cap else 0.0
        self.fit_mem = 1.0 / (have * mem_cap) if mem_cap else 0.0
        # imbalance = cpu utilisation - memory utilisation (0 unless the node has both)
        self.bal_cpu = 1.0 / cpu_cap if have == 2 else 0.0
        self.bal_mem = 1.0 / mem_cap if have == 2 else 0.0
        self.size = size
        self.rank = rank

    def place(self, service_id: str, cpu: int, mem: int) -> None:
        """Account for one more task of `service_id` reserving `cpu` and `mem`."""
        self.cpu_reserved += cpu
        self.mem_reserved += mem
        self.total_tasks += 1
        self.service_tasks[service_id] = self.service_tasks.get(service_id, 0) + 1
        self.in_use = True


def _ranks(ids: Sequence[str], seed: int) -> dict[str, int]:
    """Tie-break order: node id order for seed 0, a seeded permutation of it otherwise."""
    ordered = sorted(ids)
    if seed:
        random.Random(seed).shuffle(ordered)
    return {node_id: rank for rank, node_id in enumerate(ordered)}


def build_states(nodes: Sequence[NodeInfo], seed: int) -> list[NodeState]:
    """States for `nodes`, in tie-break order; raises SchedulerError on duplicate ids.

    A node's size is the mean over cpu and memory of its capacity relative to the largest
    node of the cluster, in [0, 1].
    """
    ranks = _ranks([n.id for n in nodes], seed)
    if len(ranks) != len(nodes):
        raise SchedulerError("duplicate node id in the node list")
    max_cpu = max((n.cpu_capacity for n in nodes), default=0)
    max_mem = max((n.mem_capacity for n in nodes), default=0)
    states = []
    for node in nodes:
        parts = []
        if max_cpu:
            parts.append(node.cpu_capacity / max_cpu)
        if max_mem:
            parts.append(node.mem_capacity / max_mem)
        size = sum(parts) / len(parts) if parts else 0.0
        states.append(NodeState(node, ranks[node.id], size))
    states.sort(key=lambda s: s.rank)
    return states


def open_working_set(states: Sequence[NodeState], cpu: int, mem: int) -> None:
    """Mark the nodes binpack fills first: those in use, then the largest ready and active
    idle nodes until the free capacity of the set covers `cpu` and `mem` (the demand of
    the call). Filling a set sized to the demand lets the balance term mix tasks of
    different shapes on each node instead of filling nodes one at a time."""
    usable = [s for s in states if s.ready and s.availability == "active"]
    for state in usable:
        if state.in_use:
            cpu -= max(state.cpu_capacity - state.cpu_reserved, 0)
            mem -= max(state.mem_capacity - state.mem_reserved, 0)
    if cpu <= 0 and mem <= 0:
        return
    idle = [s for s in usable if not s.in_use]
    idle.sort(key=lambda s: (-s.size, s.rank))
    for state in idle:
        if cpu <= 0 and mem <= 0:
            return
        state.in_use = True
        cpu -= state.cpu_capacity
        mem -= state.mem_capacity
