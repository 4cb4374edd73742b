"""`schedule`: place a batch of tasks on nodes. Pure: no I/O, no clock, no global random.

Tasks of one service with identical requirements (cpu, memory, constraints, max replicas
per node, preferences) form a group. Groups are placed largest first (first-fit-decreasing
order: the sum of the group's cpu and memory shares of the cluster's capacity), then by
service id; tasks within a group by id. Node ties are broken by node id order (or a
permutation of it drawn from the seed), so the result does not depend on input order.

Before placing, binpack marks its working set (`state.open_working_set`). For each group
the static filters (ready, availability, constraints) are evaluated once per node and
constraint set (cached for the call), the candidates are scored once into a heap and each
placement re-scores only the node that took the task (`candidates.Candidates`); with
`spread=KEY` preferences the candidates form a tree over the key's values
(`candidates.Tree`).

A task whose constraints or preferences do not parse is left unplaced with the
ConstraintError message as reason; a task no node can take gets the per-filter reason
from `scheduler.filters.explain_unplaced`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler.candidates import Candidates, Tree
from scheduler.constraints import Constraint, Preference, parse_constraint, parse_preference
from scheduler.errors import ConstraintError, SchedulerError
from scheduler.filters import Filter, explain_unplaced, filter_chain, static_chain
from scheduler.scoring import STRATEGIES, make_entry_fn, pools_idle
from scheduler.state import NodeState, build_states, open_working_set
from scheduler.types import NodeInfo, Placement, ScheduleResult, TaskRequest


@dataclass(slots=True)
class _Group:
    """Tasks with identical requirements, and their parsed constraints and preferences."""

    first: TaskRequest
    constraints: tuple[Constraint, ...]
    preferences: tuple[Preference, ...]
    tasks: list[TaskRequest] = field(default_factory=list)


def _requirements(task: TaskRequest) -> tuple[object, ...]:
    return (
        task.service_id, task.cpu, task.mem, task.constraints,
        task.max_replicas_per_node, task.preferences,
    )  # fmt: skip


def _parse(task: TaskRequest) -> tuple[tuple[Constraint, ...], tuple[Preference, ...]]:
    constraints = tuple(parse_constraint(expr) for expr in task.constraints)
    return constraints, tuple(parse_preference(expr) for expr in task.preferences)


def _make_groups(tasks: Sequence[TaskRequest]) -> tuple[list[_Group], dict[str, str]]:
    """Group the tasks; tasks whose constraints do not parse go straight to unplaced."""
    groups: dict[tuple[object, ...], _Group] = {}
    unplaced: dict[str, str] = {}
    seen: set[str] = set()
    bad: dict[tuple[object, ...], str] = {}
    for task in tasks:
        if task.id in seen:
            raise SchedulerError(f"duplicate task id {task.id!r} in the task list")
        seen.add(task.id)
        key = _requirements(task)
        group = groups.get(key)
        if group is None and key not in bad:
            try:
                group = groups[key] = _Group(task, *_parse(task))
            except ConstraintError as exc:
                bad[key] = str(exc)
        if group is None:
            unplaced[task.id] = bad[key]
        else:
            group.tasks.append(task)
    return list(groups.values()), unplaced


def _service_totals(states: Sequence[NodeState], tasks: Sequence[TaskRequest]) -> dict[str, int]:
    """Per service: tasks already on nodes plus tasks in this call."""
    totals: dict[str, int] = {}
    for state in states:
        for service_id, count in state.service_tasks.items():
            totals[service_id] = totals.get(service_id, 0) + count
    for task in tasks:
        totals[task.service_id] = totals.get(task.service_id, 0) + 1
    return totals


def _order_groups(groups: list[_Group], states: Sequence[NodeState]) -> list[_Group]:
    """Largest groups first (by share of the cluster's capacity), then a stable key."""
    cpu_total = sum(s.cpu_capacity for s in states) or 1
    mem_total = sum(s.mem_capacity for s in states) or 1

    def key(group: _Group) -> tuple[object, ...]:
        task = group.first
        size = task.cpu / cpu_total + task.mem / mem_total
        return (-size, task.service_id, task.cpu, task.mem, task.constraints,
                task.max_replicas_per_node, task.preferences)  # fmt: skip

    for group in groups:
        group.tasks.sort(key=lambda t: t.id)
    return sorted(groups, key=key)


class _Call:
    """The state of one `schedule` call: node states, caches and the results so far."""

    def __init__(self, states: list[NodeState], strategy: str, totals: dict[str, int]) -> None:
        self.states = states
        self.strategy = strategy
        self.totals = totals
        self.placements: list[Placement] = []
        self.unplaced: dict[str, str] = {}
        self._eligible: dict[tuple[str, ...], list[NodeState]] = {}
        self._base: list[NodeState] | None = None

    def eligible(self, constraints: tuple[Constraint, ...]) -> list[NodeState]:
        """Nodes passing the static filters for `constraints` (cached per constraint set)."""
        key = tuple(sorted({str(c) for c in constraints}))
        found = self._eligible.get(key)
        if found is None:
            if self._base is None:
                self._base = self._pass(self.states, static_chain(()))
            found = self._pass(self._base, static_chain(constraints)[3:])
            found.sort(key=lambda s: (-s.size, s.rank))
            self._eligible[key] = found
        return found

    @staticmethod
    def _pass(states: list[NodeState], chain: Sequence[Filter]) -> list[NodeState]:
        probe = TaskRequest("", "")
        return [s for s in states if all(f.check(probe, s) for f in chain)]

    def place_group(self, group: _Group) -> None:
        first = group.first
        entry_fn = make_entry_fn(
            self.strategy, first.cpu, first.mem, first.service_id,
            first.max_replicas_per_node, self.totals.get(first.service_id, 0),
        )  # fmt: skip
        pool_idle = pools_idle(self.strategy, first.cpu, first.mem)
        eligible = self.eligible(group.constraints)
        if group.preferences:
            tree = Tree.build(eligible, group.preferences, entry_fn, first.service_id, pool_idle)
            placed = self._fill_tree(tree, group.tasks)
        else:
            placed = self._fill(Candidates(eligible, entry_fn, pool_idle), group.tasks)
        if placed < len(group.tasks):
            chain = filter_chain(first, group.constraints)
            reason = explain_unplaced(chain, first, self.states)
            for task in group.tasks[placed:]:
                self.unplaced[task.id] = reason

    def _fill(self, candidates: Candidates, tasks: Sequence[TaskRequest]) -> int:
        """Place `tasks` in order on the best candidates; return how many were placed."""
        placements = self.placements
        placed = 0
        for task in tasks:
            state = candidates.top()
            if state is None:
                break
            state.place(task.service_id, task.cpu, task.mem)
            placements.append(Placement(task.id, state.id))
            candidates.taken()
            placed += 1
        return placed

    def _fill_tree(self, tree: Tree, tasks: Sequence[TaskRequest]) -> int:
        placed = 0
        for task in tasks:
            leaf = tree.leaf()
            if leaf is None:
                break
            self._fill(leaf, (task,))
            tree.taken()
            placed += 1
        return placed


def schedule(
    nodes: Sequence[NodeInfo],
    tasks: Sequence[TaskRequest],
    strategy: str = "binpack",
    seed: int = 0,
) -> ScheduleResult:
    """Place `tasks` on `nodes`; every task is placed once or unplaced with a reason.

    Deterministic for given inputs and seed: seed 0 breaks ties by node id, another seed
    by a permutation of the node ids drawn from `random.Random(seed)`. Raises
    SchedulerError for an unknown strategy or duplicate node or task ids.
    """
    if strategy not in STRATEGIES:
        raise SchedulerError(f"unknown strategy {strategy!r}: expected binpack or spread")
    states = build_states(nodes, seed)
    groups, unplaced = _make_groups(tasks)
    open_working_set(
        states,
        sum(g.first.cpu * len(g.tasks) for g in groups),
        sum(g.first.mem * len(g.tasks) for g in groups),
    )
    call = _Call(states, strategy, _service_totals(states, tasks))
    call.unplaced.update(unplaced)
    for group in _order_groups(groups, states):
        call.place_group(group)
    return ScheduleResult(call.placements, call.unplaced)
