"""Candidate nodes of one task group, best first, and the preference tree over them.

`Candidates` keeps the group's scored nodes in a heap (smallest entry = best node). After
a placement only the node that took the task is re-scored (heapreplace), so a group of k
tasks over n nodes costs O(n + k log n). With `pool_idle` (binpack) only nodes in use are
scored up front; idle nodes, which all score by size alone and are listed largest first,
are offered one at a time: the next is scored only once the offered one is taken. That
keeps the per-group cost proportional to the nodes in use, not to the cluster.

`Tree` implements `spread=KEY` placement preferences: nodes are split by the key's value
(nodes lacking it form one more branch, last), recursively for further preferences; each
task goes to the branch holding the fewest tasks of the service (ties: value order), and
within the leaf to its best candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from heapq import heapify, heappop, heappush, heapreplace

from scheduler.constraints import Preference
from scheduler.scoring import EntryFn
from scheduler.state import NodeState


class Candidates:
    """The nodes that may take the group's next task, best first."""

    __slots__ = ("heap", "entry_fn", "idle", "cursor", "offered")

    def __init__(
        self, states: Sequence[NodeState], entry_fn: EntryFn, pool_idle: bool, idle_from: int = 0
    ) -> None:
        """`states` are the group's eligible nodes, largest first when `pool_idle`; the
        idle ones among them come at or after index `idle_from`."""
        self.entry_fn = entry_fn
        self.idle: Sequence[NodeState] = states if pool_idle else ()
        self.cursor = idle_from
        self.offered: NodeState | None = None
        scored = [s for s in states if s.in_use] if pool_idle else states
        self.heap = [e for e in map(entry_fn, scored) if e is not None]
        heapify(self.heap)
        if pool_idle:
            self._offer_idle()

    def _offer_idle(self) -> None:
        idle, entry_fn = self.idle, self.entry_fn
        while self.cursor < len(idle):
            state = idle[self.cursor]
            self.cursor += 1
            if not state.in_use:
                entry = entry_fn(state)
                if entry is not None:
                    self.offered = state
                    heappush(self.heap, entry)
                    return

    def top(self) -> NodeState | None:
        """The best node, or None when no node can take the group's next task."""
        return self.heap[0][-1] if self.heap else None

    def taken(self) -> None:
        """Re-score the top node after it took a task (and offer the next idle node)."""
        heap = self.heap
        state: NodeState = heap[0][-1]
        entry = self.entry_fn(state)
        if entry is None:
            heappop(heap)
        else:
            heapreplace(heap, entry)
        if state is self.offered:
            self.offered = None
            self._offer_idle()


class Tree:
    """A preference-tree level: a heap of (service tasks in branch, value order, branch)."""

    __slots__ = ("children",)

    def __init__(self, children: list[tuple[int, int, Tree | Candidates]]) -> None:
        heapify(children)
        self.children = children

    @classmethod
    def build(
        cls,
        states: Sequence[NodeState],
        preferences: Sequence[Preference],
        entry_fn: EntryFn,
        service_id: str,
        pool_idle: bool,
    ) -> Tree:
        """Split `states` (order kept within branches) by the first preference, recursively."""
        pref = preferences[0]
        buckets: dict[str | None, list[NodeState]] = {}
        for state in states:
            buckets.setdefault(pref.value_of(state), []).append(state)
        values: list[str | None] = []
        values.extend(sorted(v for v in buckets if v is not None))
        if None in buckets:
            values.append(None)
        children: list[tuple[int, int, Tree | Candidates]] = []
        for order, value in enumerate(values):
            members = buckets[value]
            count = sum(s.service_tasks.get(service_id, 0) for s in members)
            child: Tree | Candidates
            if len(preferences) > 1:
                child = cls.build(members, preferences[1:], entry_fn, service_id, pool_idle)
            else:
                child = Candidates(members, entry_fn, pool_idle)
            children.append((count, order, child))
        return cls(children)

    def leaf(self) -> Candidates | None:
        """The candidates to place the next task from, dropping exhausted branches."""
        children = self.children
        while children:
            child = children[0][2]
            found = child.leaf() if isinstance(child, Tree) else (child if child.heap else None)
            if found is not None:
                return found
            heappop(children)
        return None

    def taken(self) -> None:
        """Count one more task in the branches `leaf()` last walked through."""
        children = self.children
        count, order, child = children[0]
        heapreplace(children, (count + 1, order, child))
        if isinstance(child, Tree):
            child.taken()
