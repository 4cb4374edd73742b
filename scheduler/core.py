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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler.candidates import Candidates, Tree
from scheduler.constraints import Constraint, Preference, parse_constraint, parse_preference
from scheduler.errors import ConstraintError, SchedulerError
from scheduler.filters import (
    NO_NODES,
    ConstraintFilter,
    Filter,
    count_rejections,
    filter_chain,
    format_reason,
    static_chain,
)
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


def _parse(task: TaskRequest) -> tuple[tuple[Constraint, ...], tuple[Preference, ...]]:
    constraints = tuple(parse_constraint(expr) for expr in task.constraints)
    return constraints, tuple(parse_preference(expr) for expr in task.preferences)


def _make_groups(tasks: Sequence[TaskRequest]) -> tuple[list[_Group], dict[str, str]]:
    """Group the tasks; tasks whose constraints do not parse go straight to unplaced."""
    if len({task.id for task in tasks}) != len(tasks):
        counts = Counter(task.id for task in tasks)
        duplicate = min(task_id for task_id, n in counts.items() if n > 1)
        raise SchedulerError(f"duplicate task id {duplicate!r} in the task list")
    groups: dict[tuple[object, ...], _Group] = {}
    unplaced: dict[str, str] = {}
    bad: dict[tuple[object, ...], str] = {}
    for task in tasks:
        key = (task.service_id, task.cpu, task.mem, task.constraints,
               task.max_replicas_per_node, task.preferences)  # fmt: skip
        group = groups.get(key)
        if group is None:
            if key not in bad:
                try:
                    group = groups[key] = _Group(task, *_parse(task))
                except ConstraintError as exc:
                    bad[key] = str(exc)
            if group is None:
                unplaced[task.id] = bad[key]
                continue
        group.tasks.append(task)
    return list(groups.values()), unplaced


def _service_totals(states: Sequence[NodeState], groups: Sequence[_Group]) -> dict[str, int]:
    """Per service: tasks already on nodes plus tasks to place in this call."""
    totals: dict[str, int] = {}
    for state in states:
        for service_id, count in state.service_tasks.items():
            totals[service_id] = totals.get(service_id, 0) + count
    for group in groups:
        service_id = group.first.service_id
        totals[service_id] = totals.get(service_id, 0) + len(group.tasks)
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


def _constraints_key(constraints: Sequence[Constraint]) -> tuple[str, ...]:
    return tuple(sorted({str(c) for c in constraints}))


class _Call:
    """The state of one `schedule` call: node states, caches and the results so far."""

    def __init__(self, states: list[NodeState], strategy: str, totals: dict[str, int]) -> None:
        self.states = states
        self.strategy = strategy
        self.totals = totals
        self.placements: list[Placement] = []
        self.unplaced: dict[str, str] = {}
        self._eligible: dict[tuple[str, ...], list[NodeState]] = {}
        self._idle_from: dict[int, int] = {}
        self._static_counts: dict[tuple[str, ...], list[int]] = {}
        self._base: list[NodeState] | None = None

    def eligible(self, constraints: tuple[Constraint, ...]) -> list[NodeState]:
        """Nodes passing the static filters for `constraints` (cached per constraint set)."""
        key = _constraints_key(constraints)
        found = self._eligible.get(key)
        if found is None:
            if self._base is None:
                self._base = self._pass(self.states, static_chain(()))
            found = self._pass(self._base, [ConstraintFilter(c) for c in constraints])
            found.sort(key=lambda s: (-s.size, s.rank))
            self._eligible[key] = found
        return found

    def idle_from(self, eligible: list[NodeState]) -> int:
        """Index of the first idle node in `eligible`: nodes never become idle again within
        a call, so the in-use prefix of a list only grows (amortised O(len) per list)."""
        index = self._idle_from.get(id(eligible), 0)
        while index < len(eligible) and eligible[index].in_use:
            index += 1
        self._idle_from[id(eligible)] = index
        return index

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
            candidates = Candidates(eligible, entry_fn, pool_idle, self.idle_from(eligible))
            placed = self._fill(candidates, group.tasks)
        if placed < len(group.tasks):
            reason = self.explain(group)
            for task in group.tasks[placed:]:
                self.unplaced[task.id] = reason

    def explain(self, group: _Group) -> str:
        """The reason no node takes the group's next task: `explain_unplaced` over all
        nodes, with the static filters' counts cached per constraint set."""
        if not self.states:
            return NO_NODES
        first, constraints = group.first, group.constraints
        chain = filter_chain(first, constraints)
        static = len(static_chain(constraints))
        key = tuple(str(c) for c in constraints)  # the chain has one filter per constraint
        counts = self._static_counts.get(key)
        if counts is None:
            counts = count_rejections(chain[:static], first, self.states)
            self._static_counts[key] = counts
        eligible = self.eligible(constraints)
        dynamic = count_rejections(chain[static:], first, eligible)
        return format_reason(chain, counts + dynamic)

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
    if strategy == "binpack":
        demand_cpu = sum(g.first.cpu * len(g.tasks) for g in groups)
        demand_mem = sum(g.first.mem * len(g.tasks) for g in groups)
        open_working_set(states, demand_cpu, demand_mem)
    call = _Call(states, strategy, _service_totals(states, groups))
    call.unplaced.update(unplaced)
    for group in _order_groups(groups, states):
        call.place_group(group)
    return ScheduleResult(call.placements, call.unplaced)
