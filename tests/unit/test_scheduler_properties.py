"""Property tests of schedule(): resources, unusable nodes, accounting, determinism."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import NodeInfo, ScheduleResult, TaskRequest, parse_constraint, schedule
from scheduler.filters import filter_chain

UNIT = 250_000_000  # a quarter CPU / a quarter of a unit of memory
CONSTRAINTS = ["node.labels.zone==a", "node.labels.zone!=b", "node.role==manager", "node.labels=="]
SERVICES = ["s0", "s1", "s2"]


@st.composite
def nodes_st(draw: st.DrawFn) -> list[NodeInfo]:
    nodes = []
    for i in range(draw(st.integers(0, 7))):
        cpu = draw(st.integers(0, 16)) * UNIT
        mem = draw(st.integers(0, 16)) * UNIT
        running = draw(st.sets(st.sampled_from(SERVICES)))
        service_tasks = {s: draw(st.integers(0, 2)) for s in running}
        zone = draw(st.sampled_from(["a", "b", None]))
        nodes.append(
            NodeInfo(
                id=f"n{i}",
                hostname=f"h{i}",
                role=draw(st.sampled_from(["manager", "worker"])),
                ready=draw(st.booleans()),
                availability=draw(st.sampled_from(["active", "active", "pause", "drain"])),
                labels={"zone": zone} if zone else {},
                os="linux",
                arch="x86_64",
                cpu_capacity=cpu,
                mem_capacity=mem,
                cpu_reserved=draw(st.integers(0, cpu)),
                mem_reserved=draw(st.integers(0, mem)),
                service_tasks=service_tasks,
                total_tasks=sum(service_tasks.values()),
            )
        )
    return nodes


@st.composite
def tasks_st(draw: st.DrawFn) -> list[TaskRequest]:
    limits = {s: draw(st.integers(0, 2)) for s in SERVICES}
    tasks = []
    for i in range(draw(st.integers(0, 25))):
        service = draw(st.sampled_from(SERVICES))
        tasks.append(
            TaskRequest(
                id=f"t{i}",
                service_id=service,
                cpu=draw(st.integers(0, 6)) * UNIT,
                mem=draw(st.integers(0, 6)) * UNIT,
                constraints=tuple(draw(st.lists(st.sampled_from(CONSTRAINTS), max_size=2))),
                max_replicas_per_node=limits[service],
                preferences=draw(st.sampled_from([(), ("spread=node.labels.zone",)])),
            )
        )
    return tasks


strategy_st = st.sampled_from(["binpack", "spread"])


def run(nodes: list[NodeInfo], tasks: list[TaskRequest], strategy: str) -> ScheduleResult:
    return schedule(nodes, tasks, strategy, seed=0)


def final_nodes(nodes: list[NodeInfo], tasks: list[TaskRequest], result: ScheduleResult) -> dict:
    by_id = {t.id: t for t in tasks}
    state = {
        n.id: {"cpu": n.cpu_reserved, "mem": n.mem_reserved, "svc": Counter(n.service_tasks)}
        for n in nodes
    }
    for p in result.placements:
        task = by_id[p.task_id]
        state[p.node_id]["cpu"] += task.cpu
        state[p.node_id]["mem"] += task.mem
        state[p.node_id]["svc"][task.service_id] += 1
    return state


@settings(max_examples=60, deadline=None)
@given(nodes_st(), tasks_st(), strategy_st)
def test_every_task_placed_once_or_unplaced_with_reason(nodes, tasks, strategy) -> None:
    result = run(nodes, tasks, strategy)
    placed = [p.task_id for p in result.placements]
    assert len(placed) == len(set(placed))
    assert set(placed).isdisjoint(result.unplaced)
    assert set(placed) | set(result.unplaced) == {t.id for t in tasks}
    for reason in result.unplaced.values():
        assert reason.startswith(("no suitable node", 'constraint "'))
        assert "\n" not in reason


@settings(max_examples=60, deadline=None)
@given(nodes_st(), tasks_st(), strategy_st)
def test_never_overcommits_nor_breaks_limits_or_constraints(nodes, tasks, strategy) -> None:
    result = run(nodes, tasks, strategy)
    by_node = {n.id: n for n in nodes}
    by_task = {t.id: t for t in tasks}
    after = final_nodes(nodes, tasks, result)
    for p in result.placements:
        node, task = by_node[p.node_id], by_task[p.task_id]
        assert after[node.id]["cpu"] <= node.cpu_capacity
        assert after[node.id]["mem"] <= node.mem_capacity
        if task.max_replicas_per_node:
            assert after[node.id]["svc"][task.service_id] <= task.max_replicas_per_node
        assert all(parse_constraint(c).matches(node) for c in task.constraints)


@settings(max_examples=60, deadline=None)
@given(nodes_st(), tasks_st(), strategy_st)
def test_never_places_on_down_paused_or_drained_nodes(nodes, tasks, strategy) -> None:
    usable = {n.id for n in nodes if n.ready and n.availability == "active"}
    assert {p.node_id for p in run(nodes, tasks, strategy).placements} <= usable


@settings(max_examples=60, deadline=None)
@given(nodes_st(), tasks_st(), strategy_st)
def test_unplaced_only_when_no_node_could_take_it(nodes, tasks, strategy) -> None:
    """Capacity only shrinks during a call, so a task that found no node cannot fit at the
    end either; every unplaced task with valid constraints must fail a filter everywhere."""
    result = run(nodes, tasks, strategy)
    after = final_nodes(nodes, tasks, result)
    final = [
        NodeInfo(
            id=n.id,
            hostname=n.hostname,
            role=n.role,
            ready=n.ready,
            availability=n.availability,
            labels=n.labels,
            os=n.os,
            arch=n.arch,
            cpu_capacity=n.cpu_capacity,
            mem_capacity=n.mem_capacity,
            cpu_reserved=after[n.id]["cpu"],
            mem_reserved=after[n.id]["mem"],
            service_tasks=dict(after[n.id]["svc"]),
            total_tasks=0,
        )
        for n in nodes
    ]
    for task in tasks:
        if task.id in result.unplaced and result.unplaced[task.id].startswith("no suitable"):
            chain = filter_chain(task, [parse_constraint(c) for c in task.constraints])
            assert not any(all(f.check(task, n) for f in chain) for n in final)


@settings(max_examples=60, deadline=None)
@given(nodes_st(), tasks_st(), strategy_st, st.integers(0, 5), st.randoms(use_true_random=False))
def test_deterministic_for_a_seed_whatever_the_input_order(nodes, tasks, strategy, seed, rnd):
    first = schedule(nodes, tasks, strategy, seed)
    shuffled_nodes, shuffled_tasks = nodes[:], tasks[:]
    rnd.shuffle(shuffled_nodes)
    rnd.shuffle(shuffled_tasks)
    second = schedule(shuffled_nodes, shuffled_tasks, strategy, seed)
    assert first.placements == second.placements
    assert first.unplaced == second.unplaced
