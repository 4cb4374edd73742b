"""schedule(): binpack and spread choices, preferences, limits, unusable nodes, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from scheduler import (
    NodeInfo,
    Placement,
    SchedulerError,
    ScheduleResult,
    TaskRequest,
    schedule,
)

CPU = 10**9
GIB = 2**30


def make_node(
    node_id: str,
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


def replicas(
    service: str, count: int, cpu: float = 0.5, mem: float = 1, **kw: object
) -> list[TaskRequest]:
    return [
        TaskRequest(f"{service}.{i}", service, int(cpu * CPU), int(mem * GIB), **kw)  # type: ignore[arg-type]
        for i in range(count)
    ]


def where(result: ScheduleResult) -> dict[str, str]:
    return {p.task_id: p.node_id for p in result.placements}


def per_node(result: ScheduleResult) -> Counter[str]:
    return Counter(p.node_id for p in result.placements)


# binpack


def test_binpack_fills_the_fullest_node_first() -> None:
    nodes = [
        make_node("a", cpu_reserved=1, mem_reserved=2, service_tasks={"db": 1}),
        make_node("b", cpu_reserved=2, mem_reserved=4, service_tasks={"db": 2}),
        make_node("c"),
    ]
    result = schedule(nodes, replicas("web", 1))
    assert where(result) == {"web.0": "b"}


def test_binpack_prefers_a_used_small_node_over_an_idle_big_one() -> None:
    nodes = [
        make_node("big", cpu=16, mem=64),
        make_node("small", cpu=2, mem=4, cpu_reserved=1, mem_reserved=2, service_tasks={"x": 1}),
    ]
    assert where(schedule(nodes, replicas("web", 1))) == {"web.0": "small"}


def test_binpack_opens_the_largest_idle_node() -> None:
    nodes = [make_node("a", cpu=2, mem=4), make_node("b", cpu=16, mem=64), make_node("c", 8, 16)]
    assert where(schedule(nodes, replicas("web", 1))) == {"web.0": "b"}


def test_binpack_spreads_replicas_over_equal_nodes() -> None:
    nodes = [make_node(n, cpu_reserved=1, mem_reserved=2, service_tasks={"db": 1}) for n in "abc"]
    result = schedule(nodes, replicas("web", 3))
    assert per_node(result) == {"a": 1, "b": 1, "c": 1}


def test_binpack_spreads_a_small_service_on_an_idle_cluster() -> None:
    nodes = [make_node(n) for n in "abcd"]
    assert len(per_node(schedule(nodes, replicas("web", 2)))) == 2
    assert len(per_node(schedule(nodes, replicas("web", 3)))) == 3


def test_binpack_avoids_the_node_already_running_the_service() -> None:
    nodes = [
        make_node("a", cpu_reserved=2, mem_reserved=4, service_tasks={"web": 2}),
        make_node("b", cpu_reserved=2, mem_reserved=4, service_tasks={"db": 2}),
    ]
    assert where(schedule(nodes, replicas("web", 1))) == {"web.0": "b"}


def test_binpack_packs_a_large_service_on_few_nodes_where_spread_uses_all() -> None:
    nodes = [make_node(f"n{i}", cpu=16, mem=64) for i in range(10)]
    tasks = replicas("web", 100, cpu=0.1, mem=0.25)
    packed = per_node(schedule(nodes, tasks, "binpack"))
    spread = per_node(schedule(nodes, tasks, "spread"))
    assert sum(packed.values()) == sum(spread.values()) == 100
    assert len(packed) == 2  # no node holds more than half of the service
    assert max(packed.values()) == 50
    assert len(spread) == 10 and set(spread.values()) == {10}


def test_binpack_puts_a_task_where_it_rebalances_the_node() -> None:
    # Both nodes are equally full on average; "cpu" has memory to spare, "mem" has cpu.
    nodes = [
        make_node("cpu", cpu=4, mem=8, cpu_reserved=3, mem_reserved=1, service_tasks={"x": 1}),
        make_node("mem", cpu=4, mem=8, cpu_reserved=0.5, mem_reserved=6, service_tasks={"y": 1}),
    ]
    assert where(schedule(nodes, replicas("cache", 1, cpu=0.1, mem=1))) == {"cache.0": "cpu"}
    assert where(schedule(nodes, replicas("calc", 1, cpu=1, mem=0.1))) == {"calc.0": "mem"}


def test_binpack_fills_nodes_before_opening_new_ones() -> None:
    nodes = [make_node(f"n{i}", cpu=4, mem=8) for i in range(6)]
    tasks = [t for s in "abcdef" for t in replicas(s, 4, cpu=0.5, mem=1)]  # 12 cpu, 24 GiB
    result = schedule(nodes, tasks)
    assert not result.unplaced
    assert len(per_node(result)) == 3


def test_binpack_zero_reservation_tasks_spread_by_service_then_total() -> None:
    nodes = [
        make_node("a", service_tasks={"x": 5}),
        make_node("b", service_tasks={"x": 1}),
        make_node("c", service_tasks={"x": 3}),
    ]
    result = schedule(nodes, replicas("web", 3, cpu=0, mem=0))
    assert where(result) == {"web.0": "b", "web.1": "c", "web.2": "a"}


def test_node_without_capacity_for_a_resource_the_task_does_not_need() -> None:
    nodes = [make_node("a", cpu=4, mem=0), make_node("b", cpu=0, mem=8)]
    result = schedule(nodes, replicas("cpu", 1, cpu=1, mem=0) + replicas("mem", 1, cpu=0, mem=1))
    assert where(result) == {"cpu.0": "a", "mem.0": "b"}


# spread


def test_spread_fewest_service_tasks_then_fewest_tasks_then_node_id() -> None:
    nodes = [
        make_node("a", service_tasks={"web": 1}),
        make_node("b", service_tasks={"db": 3}),
        make_node("c", service_tasks={"db": 1}),
        make_node("d", service_tasks={"db": 1}),
    ]
    result = schedule(nodes, replicas("web", 4), "spread")
    assert [p.node_id for p in result.placements] == ["c", "d", "b", "a"]


def test_spread_evenly() -> None:
    nodes = [make_node(n, cpu=16, mem=64) for n in "abcd"]
    result = schedule(nodes, replicas("web", 10), "spread")
    assert sorted(per_node(result).values()) == [2, 2, 3, 3]


def test_spread_respects_resources() -> None:
    nodes = [make_node("a", cpu=1), make_node("b", cpu=8)]
    result = schedule(nodes, replicas("web", 4, cpu=1, mem=0.5), "spread")
    assert per_node(result) == {"a": 1, "b": 3}


# preferences


def zoned_nodes() -> list[NodeInfo]:
    zones = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b", "x1": None}
    return [make_node(n, labels={"zone": z} if z else {}) for n, z in zones.items()]


def zone_counts(result: ScheduleResult) -> Counter[str]:
    return Counter(p.node_id[0] for p in result.placements)


@pytest.mark.parametrize("strategy", ["binpack", "spread"])
def test_preference_spreads_over_label_values_and_unlabelled_nodes(strategy: str) -> None:
    tasks = replicas("web", 6, preferences=("spread=node.labels.zone",))
    result = schedule(zoned_nodes(), tasks, strategy)
    assert zone_counts(result) == {"a": 2, "b": 2, "x": 2}


def test_preference_counts_tasks_already_running() -> None:
    nodes = zoned_nodes()
    nodes[0] = make_node("a1", labels={"zone": "a"}, service_tasks={"web": 2})
    tasks = replicas("web", 4, preferences=("spread=node.labels.zone",))
    assert zone_counts(schedule(nodes, tasks)) == {"b": 2, "x": 2}


def test_preference_skips_a_full_branch() -> None:
    nodes = [make_node("a1", cpu=1, labels={"zone": "a"}), make_node("b1", labels={"zone": "b"})]
    tasks = replicas("web", 4, cpu=1, preferences=("spread=node.labels.zone",))
    assert per_node(schedule(nodes, tasks)) == {"a1": 1, "b1": 3}


def test_nested_preferences() -> None:
    nodes = [
        make_node(f"{z}{r}{i}", labels={"zone": z, "rack": r})
        for z in "ab"
        for r in "xy"
        for i in range(2)
    ]
    prefs = ("spread=node.labels.zone", "spread=node.labels.rack")
    result = schedule(nodes, replicas("web", 8, preferences=prefs))
    assert Counter(p.node_id[:2] for p in result.placements) == {"ax": 2, "ay": 2, "bx": 2, "by": 2}


def test_binpack_within_a_preference_branch() -> None:
    nodes = [
        make_node("a1", labels={"zone": "a"}),
        make_node(
            "a2", labels={"zone": "a"}, cpu_reserved=2, mem_reserved=4, service_tasks={"db": 1}
        ),
        make_node("b1", labels={"zone": "b"}),
    ]
    tasks = replicas("web", 2, preferences=("spread=node.labels.zone",))
    assert sorted(per_node(schedule(nodes, tasks))) == ["a2", "b1"]


# limits and unusable nodes


def test_max_replicas_per_node() -> None:
    nodes = [make_node("a", service_tasks={"web": 1}), make_node("b"), make_node("c")]
    result = schedule(nodes, replicas("web", 6, max_replicas_per_node=2))
    assert per_node(result) + Counter({"a": 1}) == {"a": 2, "b": 2, "c": 2}
    assert list(result.unplaced.values()) == [
        "no suitable node (max replicas per node (2) reached on 3 nodes)"
    ]


@pytest.mark.parametrize("strategy", ["binpack", "spread"])
def test_down_paused_drained_nodes_never_chosen(strategy: str) -> None:
    nodes = [
        make_node("down", cpu=64, mem=256, ready=False),
        make_node("paused", cpu=64, mem=256, availability="pause"),
        make_node("drained", cpu=64, mem=256, availability="drain"),
        make_node("ok", cpu=2, mem=4),
    ]
    result = schedule(nodes, replicas("web", 6), strategy)
    assert set(per_node(result)) == {"ok"}
    assert len(result.placements) == 4
    assert set(result.unplaced.values()) == {
        "no suitable node (node not ready on 1 node; node availability is pause on 1 node; "
        "node availability is drain on 1 node; insufficient cpu on 1 node)"
    }


def test_constraints_restrict_nodes() -> None:
    nodes = [make_node("a", labels={"zone": "a"}), make_node("b", labels={"zone": "b"})]
    result = schedule(nodes, replicas("web", 3, constraints=("node.labels.zone==b",)))
    assert set(per_node(result)) == {"b"}


# errors, determinism


def test_bad_constraint_leaves_task_unplaced_with_the_message() -> None:
    tasks = replicas("web", 2, constraints=("node.labels==a",)) + replicas("db", 1)
    result = schedule([make_node("a")], tasks)
    assert where(result) == {"db.0": "a"}
    assert set(result.unplaced) == {"web.0", "web.1"}
    assert result.unplaced["web.0"].startswith('constraint "node.labels==a": expected KEY==VALUE')


def test_bad_preference_leaves_task_unplaced() -> None:
    result = schedule([make_node("a")], replicas("web", 1, preferences=("pack=node.id",)))
    assert result.unplaced["web.0"].startswith('placement preference "pack=node.id"')


def test_unknown_strategy_raises() -> None:
    with pytest.raises(SchedulerError, match="unknown strategy 'random'"):
        schedule([make_node("a")], replicas("web", 1), "random")


def test_duplicate_ids_raise() -> None:
    with pytest.raises(SchedulerError, match="duplicate task id"):
        schedule([make_node("a")], replicas("web", 1) * 2)
    with pytest.raises(SchedulerError, match="duplicate node id"):
        schedule([make_node("a"), make_node("a")], replicas("web", 1))


def test_invalid_node_values_raise() -> None:
    with pytest.raises(SchedulerError, match="availability"):
        make_node("a", availability="gone")
    with pytest.raises(SchedulerError, match="cpu_reserved must be >= 0"):
        make_node("a", cpu_reserved=-1)


def test_ties_go_to_lowest_node_id_with_seed_0_and_vary_with_seed() -> None:
    nodes = [make_node(f"n{i}") for i in (3, 1, 2, 0)]
    assert where(schedule(nodes, replicas("web", 1))) == {"web.0": "n0"}
    firsts = {where(schedule(nodes, replicas("web", 1), seed=s))["web.0"] for s in range(1, 30)}
    assert len(firsts) > 1
    again = {where(schedule(nodes, replicas("web", 1), seed=s))["web.0"] for s in range(1, 30)}
    assert again == firsts


def test_result_independent_of_input_order() -> None:
    nodes = [make_node(f"n{i}", cpu=2 + i % 3, mem=4 + i % 5) for i in range(8)]
    tasks = replicas("a", 5, cpu=0.7) + replicas("b", 7, mem=1.5) + replicas("c", 3, cpu=0)
    forward: Sequence[Placement] = schedule(nodes, tasks).placements
    backward = schedule(nodes[::-1], tasks[::-1]).placements
    assert forward == backward
