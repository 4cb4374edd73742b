"""Scheduler filters: each check, its explanation, and the assembled unplaced reason."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from scheduler import NodeInfo, TaskRequest, parse_constraint, schedule
from scheduler.filters import (
    AvailabilityFilter,
    ConstraintFilter,
    CpuFilter,
    MaxReplicasFilter,
    MemoryFilter,
    ReadyFilter,
    explain_unplaced,
    filter_chain,
)

CPU = 10**9
GIB = 2**30


def make_node(
    node_id: str = "n1",
    cpu: float = 4,
    mem: float = 8,
    *,
    ready: bool = True,
    availability: str = "active",
    labels: Mapping[str, str] | None = None,
    cpu_reserved: float = 0,
    mem_reserved: float = 0,
    service_tasks: Mapping[str, int] | None = None,
) -> NodeInfo:
    tasks = dict(service_tasks or {})
    return NodeInfo(
        id=node_id,
        hostname=f"host-{node_id}",
        role="worker",
        ready=ready,
        availability=availability,
        labels=dict(labels or {}),
        os="linux",
        arch="x86_64",
        cpu_capacity=int(cpu * CPU),
        mem_capacity=int(mem * GIB),
        cpu_reserved=int(cpu_reserved * CPU),
        mem_reserved=int(mem_reserved * GIB),
        service_tasks=tasks,
        total_tasks=sum(tasks.values()),
    )


def make_task(cpu: float = 1, mem: float = 1, **kw: object) -> TaskRequest:
    return TaskRequest("t1", "web", int(cpu * CPU), int(mem * GIB), **kw)  # type: ignore[arg-type]


def test_ready_filter() -> None:
    f = ReadyFilter()
    assert f.applies(make_task())
    assert f.check(make_task(), make_node())
    assert not f.check(make_task(), make_node(ready=False))
    assert f.explain(1) == "node not ready on 1 node"
    assert f.explain(3) == "node not ready on 3 nodes"


@pytest.mark.parametrize("state", ["pause", "drain"])
def test_availability_filter(state: str) -> None:
    f = AvailabilityFilter(state)
    assert f.check(make_task(), make_node())
    assert not f.check(make_task(), make_node(availability=state))
    assert f.explain(2) == f"node availability is {state} on 2 nodes"


def test_constraint_filter() -> None:
    f = ConstraintFilter(parse_constraint("node.labels.zone == b"))
    task = make_task(constraints=("node.labels.zone==b",))
    assert f.applies(task)
    assert f.check(task, make_node(labels={"zone": "b"}))
    assert not f.check(task, make_node(labels={"zone": "a"}))
    assert not f.check(task, make_node())
    assert f.explain(1) == "constraint node.labels.zone==b not met on 1 node"


def test_cpu_filter_never_overcommits() -> None:
    f = CpuFilter()
    assert f.applies(make_task(cpu=1))
    assert not f.applies(make_task(cpu=0))
    assert f.check(make_task(cpu=1), make_node(cpu=4, cpu_reserved=3))
    assert not f.check(make_task(cpu=1.5), make_node(cpu=4, cpu_reserved=3))
    assert not f.check(make_task(cpu=0.001), make_node(cpu=0))
    assert f.explain(2) == "insufficient cpu on 2 nodes"


def test_memory_filter_never_overcommits() -> None:
    f = MemoryFilter()
    assert not f.applies(make_task(mem=0))
    assert f.check(make_task(mem=2), make_node(mem=8, mem_reserved=6))
    assert not f.check(make_task(mem=2.5), make_node(mem=8, mem_reserved=6))
    assert f.explain(1) == "insufficient memory on 1 node"


def test_max_replicas_filter() -> None:
    f = MaxReplicasFilter(2)
    task = make_task(max_replicas_per_node=2)
    assert f.applies(task)
    assert not f.applies(make_task())
    assert f.check(task, make_node(service_tasks={"web": 1, "db": 5}))
    assert not f.check(task, make_node(service_tasks={"web": 2}))
    assert f.explain(2) == "max replicas per node (2) reached on 2 nodes"


def test_chain_order_and_applicability() -> None:
    task = make_task(cpu=0, mem=1, constraints=("node.role==worker",), max_replicas_per_node=1)
    chain = filter_chain(task, [parse_constraint("node.role==worker")])
    names = [type(f).__name__ for f in chain]
    assert names == [
        "ReadyFilter",
        "AvailabilityFilter",
        "AvailabilityFilter",
        "ConstraintFilter",
        "MemoryFilter",
        "MaxReplicasFilter",
    ]


def test_each_node_counted_once_under_first_failing_filter() -> None:
    task = make_task(cpu=8, mem=16, constraints=("node.labels.zone==b",))
    constraints = [parse_constraint("node.labels.zone==b")]
    nodes = [
        make_node("a", ready=False, labels={"zone": "a"}),  # fails all; counted as not ready
        make_node("b", availability="drain"),
        make_node("c", labels={"zone": "a"}),
        make_node("d", cpu=16, mem=8, labels={"zone": "b"}),
        make_node("e", cpu=16, mem=8, labels={"zone": "b"}),
    ]
    reason = explain_unplaced(filter_chain(task, constraints), task, nodes)
    assert reason == (
        "no suitable node (node not ready on 1 node; node availability is drain on 1 node; "
        "constraint node.labels.zone==b not met on 1 node; insufficient memory on 2 nodes)"
    )


def test_reason_from_schedule_mixed_case() -> None:
    nodes = [
        make_node("n1", cpu=4, mem=2, labels={"zone": "b"}),
        make_node("n2", cpu=4, mem=8, mem_reserved=7, labels={"zone": "b"}),
        make_node("n3", cpu=4, mem=8, labels={"zone": "a"}),
    ]
    task = make_task(cpu=1, mem=4, constraints=("node.labels.zone==b",))
    result = schedule(nodes, [task])
    assert result.placements == []
    assert result.unplaced == {
        "t1": "no suitable node (constraint node.labels.zone==b not met on 1 node; "
        "insufficient memory on 2 nodes)"
    }


def test_reason_names_the_failing_constraint_of_several() -> None:
    nodes = [make_node("n1", labels={"zone": "b"}), make_node("n2", labels={"zone": "a"})]
    task = make_task(constraints=("node.labels.zone==b", "node.hostname==host-n2"))
    result = schedule(nodes, [task])
    assert result.unplaced["t1"] == (
        "no suitable node (constraint node.labels.zone==b not met on 1 node; "
        "constraint node.hostname==host-n2 not met on 1 node)"
    )


def test_reason_with_no_nodes() -> None:
    result = schedule([], [make_task()])
    assert result.unplaced == {"t1": "no suitable node (no nodes in the cluster)"}


def test_reason_cpu_and_max_replicas() -> None:
    nodes = [make_node("n1", cpu=1), make_node("n2", service_tasks={"web": 1})]
    result = schedule(nodes, [make_task(cpu=2, max_replicas_per_node=1)])
    assert result.unplaced["t1"] == (
        "no suitable node (insufficient cpu on 1 node; max replicas per node (1) reached on 1 node)"
    )


def test_reason_unavailable_nodes() -> None:
    nodes = [
        make_node("n1", ready=False),
        make_node("n2", availability="pause"),
        make_node("n3", availability="drain"),
        make_node("n4", availability="drain"),
    ]
    result = schedule(nodes, [make_task()])
    assert result.unplaced["t1"] == (
        "no suitable node (node not ready on 1 node; node availability is pause on 1 node; "
        "node availability is drain on 2 nodes)"
    )
