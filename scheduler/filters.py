"""Filters: which nodes may take a task, and why the others may not.

Each filter has `applies(task)`, `check(task, node) -> bool` and `explain(count) -> str`.
`filter_chain` lists the filters for one task in the fixed order used for reasons:
ready, availability (pause, drain), constraints (in the task's order), cpu, memory,
max replicas per node. `explain_unplaced` counts every node once, under the first filter
that rejects it, and joins the parts:
`no suitable node (insufficient memory on 2 nodes; constraint node.labels.zone==b not met
on 1 node)`.

Resources are never overcommitted: a node fits when reserved + request <= capacity, with
capacity taken as exact (a capacity of 0 only fits requests of 0).
The hot path in `scheduler.core` evaluates the static filters (ready, availability,
constraints) once per node and constraint set, and the resource and replica checks inline
with the same arithmetic as `CpuFilter`, `MemoryFilter` and `MaxReplicasFilter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scheduler.constraints import Constraint
from scheduler.types import NodeView, TaskRequest

NO_NODES = "no suitable node (no nodes in the cluster)"


def count_nodes(count: int) -> str:
    """`1 node`, `3 nodes`."""
    return f"{count} node" if count == 1 else f"{count} nodes"


class Filter:
    """Base filter: applies to every task, accepts every node."""

    wording = "rejected"

    def applies(self, task: TaskRequest) -> bool:
        return True

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return True

    def explain(self, count: int) -> str:
        return f"{self.wording} on {count_nodes(count)}"


class ReadyFilter(Filter):
    """The node is up and its agent reports ready."""

    wording = "node not ready"

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return node.ready


class AvailabilityFilter(Filter):
    """Rejects nodes whose availability is `state` (pause or drain): no new tasks there."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.wording = f"node availability is {state}"

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return node.availability != self.state


class ConstraintFilter(Filter):
    """One of the task's constraints (built from the task by `filter_chain`)."""

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint
        self.wording = f"constraint {constraint} not met"

    def applies(self, task: TaskRequest) -> bool:
        return bool(task.constraints)

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return self.constraint.matches(node)


class CpuFilter(Filter):
    """The node has the task's cpu reservation free."""

    wording = "insufficient cpu"

    def applies(self, task: TaskRequest) -> bool:
        return task.cpu > 0

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return node.cpu_reserved + task.cpu <= node.cpu_capacity


class MemoryFilter(Filter):
    """The node has the task's memory reservation free."""

    wording = "insufficient memory"

    def applies(self, task: TaskRequest) -> bool:
        return task.mem > 0

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return node.mem_reserved + task.mem <= node.mem_capacity


class MaxReplicasFilter(Filter):
    """Fewer than `limit` tasks of the task's service already on the node."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.wording = f"max replicas per node ({limit}) reached"

    def applies(self, task: TaskRequest) -> bool:
        return task.max_replicas_per_node > 0

    def check(self, task: TaskRequest, node: NodeView) -> bool:
        return node.service_tasks.get(task.service_id, 0) < task.max_replicas_per_node


def static_chain(constraints: Sequence[Constraint]) -> list[Filter]:
    """The filters that depend only on what a node is, not on what runs there."""
    chain: list[Filter] = [ReadyFilter(), AvailabilityFilter("pause"), AvailabilityFilter("drain")]
    chain.extend(ConstraintFilter(c) for c in constraints)
    return chain


def filter_chain(task: TaskRequest, constraints: Sequence[Constraint]) -> list[Filter]:
    """Every filter that applies to `task`, in reason order; `constraints` are its parsed ones."""
    chain = static_chain(constraints)
    chain += [CpuFilter(), MemoryFilter(), MaxReplicasFilter(task.max_replicas_per_node)]
    return [f for f in chain if f.applies(task)]


def count_rejections(
    chain: Sequence[Filter], task: TaskRequest, nodes: Iterable[NodeView]
) -> list[int]:
    """Per filter of `chain`, how many `nodes` it is the first to reject."""
    counts = [0] * len(chain)
    for node in nodes:
        for index, filt in enumerate(chain):
            if not filt.check(task, node):
                counts[index] += 1
                break
    return counts


def format_reason(chain: Sequence[Filter], counts: Sequence[int]) -> str:
    """`no suitable node (part; part)` from per-filter rejection counts."""
    parts = [filt.explain(n) for filt, n in zip(chain, counts, strict=True) if n]
    if not parts:
        return "no suitable node"
    return f"no suitable node ({'; '.join(parts)})"


def explain_unplaced(chain: Sequence[Filter], task: TaskRequest, nodes: Sequence[NodeView]) -> str:
    """Why no node takes `task`: each node counted under the first filter rejecting it."""
    if not nodes:
        return NO_NODES
    return format_reason(chain, count_rejections(chain, task, nodes))
