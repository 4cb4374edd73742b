"""Orchestrator decisions: services -> one live task per slot, restarts, node loss, reaping.

`reconcile(store, now, new_id, history_limit)` is pure (no clock, no threads, no random):
it reads one consistent view of the store and returns the commands that move the cluster
toward its services' declared state, to be proposed as one batch in order.

Slots: a replicated service with N replicas has slots 1..N; a global service has one slot
per eligible node (node not drained and matching the placement constraints), keyed by the
node id with task.slot = 0. A slot is occupied by its live task (`store.is_live`).

Per slot, in Swarm's way:
- no task, or every task already shut down by the manager (desired > RUNNING): create one;
- the last task ended by itself (terminal while desired RUNNING): restart per the service's
  restart policy -- desired SHUTDOWN on it and a new task with restart_attempt + 1 and
  not_before = end time + delay -- or leave the slot alone (it is done);
- a replicated task on a DOWN or drained node is shut down and replaced at once (same
  restart_attempt, no delay); on a node that no longer exists it is removed and replaced.
  Global services never create on DOWN nodes and keep what still runs there.
Slots above the replica count, global slots of nodes no longer eligible, tasks of other
mode and tasks of removed services are retired: desired REMOVE, or removed at once when
nothing runs them (see `_gone`).

Reaper, in the same pass so that the output is a fixed point: a task with desired REMOVE
is removed once it is terminal, never got past PENDING, or its node is gone or DOWN; a task
on a node that no longer exists is removed (nobody will ever report it again); per slot
at most `history_limit` tasks are kept, the newest, and only terminal ones are trimmed.
The task that records a finished slot (ended by itself, not restarted) is always kept, or
the slot would be refilled.

Rolling updates and rollbacks are decided by `manager.updater` for each service whose
tasks are not all of its current spec_version (or whose update is in progress); the slots
it works on in a pass are left alone here. Its timing (update delay, monitor period) comes
back as `Decision.wake_at`; restart delays are stamped into the new task's `not_before`
and enforced by the allocator. `Decision.watching` asks the leader loop to run again as
soon as a task reaches RUNNING (an update waits for that).

Cost when converged: one pass over all tasks grouping them by (service, slot) in plain
dicts, then a few field reads per task; no protobuf is copied or built unless a command is
emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

from manager import updater
from manager.store import Store
from scheduler.constraints import Constraint, parse_constraint
from scheduler.errors import ConstraintError
from scheduler.types import NodeInfo
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.specs import DEFAULT_RESTART_DELAY_S
from swarmlet.states import ASSIGNED, COMPLETE, FAILED, NEW, REJECTED, REMOVE, RUNNING, SHUTDOWN

Key = int | str  # replicated slot number, or node id for global tasks

_ROLE = {pb.MANAGER: "manager", pb.WORKER: "worker"}
_AVAIL = {pb.ACTIVE: "active", pb.PAUSE: "pause", pb.DRAIN: "drain"}


@dataclass
class Decision:
    """Commands to propose as one batch (applied in order), and when to run again."""

    commands: list[pb.Command] = field(default_factory=list)
    wake_at: float | None = None
    watching: bool = False  # run again when a task reaches RUNNING (an update waits)


def reconcile(
    store: Store, now: float, new_id: Callable[[], str], history_limit: int = 5
) -> Decision:
    """Decide what makes the store's tasks match its services; see the module docstring."""
    with store.lock:  # one consistent view; stored objects are never mutated in place
        services = store.all_services()
        nodes = store.all_nodes()
        tasks = store.all_tasks()
    plan = _Plan(nodes, now, new_id, max(1, history_limit))
    groups = _group(tasks)
    for svc in services:
        slots = groups.pop(svc.id, {})
        if svc.spec.mode.WhichOneof("mode") == "global":
            _global_service(plan, svc, slots)
        else:
            _replicated_service(plan, svc, slots)
    for slots in groups.values():  # tasks whose service was removed
        for group in slots.values():
            plan.retire(group)
    return Decision(plan.commands, plan.wake_at, plan.watching)


def _group(tasks: Iterable[pb.Task]) -> dict[str, dict[Key, list[pb.Task]]]:
    """service id -> slot key -> tasks of that slot (in store order)."""
    out: dict[str, dict[Key, list[pb.Task]]] = {}
    for t in tasks:
        sid = t.service_id
        slots = out.get(sid)
        if slots is None:
            slots = out[sid] = {}
        key: Key = t.slot or t.node_id
        group = slots.get(key)
        if group is None:
            slots[key] = [t]
        else:
            group.append(t)
    return out


def _age(task: pb.Task) -> tuple[float, str]:
    return (task.meta.created_at, task.id)


class _Plan:
    """The view of nodes, and the commands decided so far."""

    def __init__(
        self, nodes: list[pb.Node], now: float, new_id: Callable[[], str], limit: int
    ) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.down = {n.id for n in nodes if n.status.state == pb.DOWN}
        drained = {n.id for n in nodes if n.spec.availability == pb.DRAIN}
        self.unfit = self.down | drained  # replicated tasks there are moved
        self.healthy = {n.id for n in nodes if n.id not in self.unfit}
        self.schedulable = [n for n in nodes if n.id not in drained]
        self.now = now
        self.new_id = new_id
        self.limit = limit
        self.commands: list[pb.Command] = []
        self.wake_at: float | None = None
        self.watching = False
        self.global_view = updater.NodeView(avoid=self.down, down=self.down, known=self.nodes)
        self.replicated_view = updater.NodeView(
            avoid=self.unfit, down=self.down, known=self.nodes
        )

    # commands ------------------------------------------------------------------

    def desire(self, task: pb.Task, state: pb.TaskState.ValueType) -> None:
        if state > task.desired_state:
            op = pb.SetTaskDesired(task_id=task.id, desired_state=state)
            self.commands.append(pb.Command(set_task_desired=op))

    def remove(self, task: pb.Task) -> None:
        self.commands.append(pb.Command(remove_task=task.id))

    def create(
        self, svc: pb.Service, slot: int, node_id: str, attempt: int, not_before: float
    ) -> None:
        cmd = pb.Command()
        t = cmd.create_task
        t.id = self.new_id()
        t.service_id = svc.id
        t.service_name = svc.spec.annotations.name
        t.slot = slot
        t.node_id = node_id
        t.spec.CopyFrom(svc.spec.task_template)
        t.spec_version = svc.spec_version
        t.desired_state = RUNNING
        t.status.state = NEW
        t.status.message = "created"
        t.status.timestamp = self.now
        t.restart_attempt = attempt
        t.not_before = not_before
        self.commands.append(cmd)

    # predicates ----------------------------------------------------------------

    def gone(self, task: pb.Task) -> bool:
        """Bound to a node that no longer exists."""
        return bool(task.node_id) and task.node_id not in self.nodes

    def removable(self, task: pb.Task) -> bool:
        """Nothing runs this task or ever will: it can leave the store once unwanted."""
        state = task.status.state
        return state >= COMPLETE or state < ASSIGNED or task.node_id in self.down or self.gone(task)

    def retire(self, group: Iterable[pb.Task]) -> None:
        """The slot is no longer wanted: remove its tasks, or ask them to stop first."""
        for t in group:
            if self.removable(t):
                self.remove(t)
            else:
                self.desire(t, REMOVE)


# services ----------------------------------------------------------------------


def _replicated_service(plan: _Plan, svc: pb.Service, slots: dict[Key, list[pb.Task]]) -> None:
    replicas = svc.spec.mode.replicated.replicas
    held: Container[Key] = ()
    if updater.wants_pass(svc, slots):
        wanted: dict[Key, list[pb.Task]] = {
            k: g for k, g in slots.items() if type(k) is int and k <= replicas
        }
        held = _update(plan, svc, wanted, plan.replicated_view)
    present = 0
    for key, group in slots.items():
        if type(key) is int and key <= replicas:
            present += 1
            if key in held:
                continue
            if len(group) == 1 and _settled(group[0], plan.healthy):
                continue  # the common case: one live task where it may stay
            _tend_slot(plan, svc, group, key, "", can_start=True)
        else:  # scaled away, or a global task left from a mode change
            plan.retire(group)
    if present < replicas:
        for slot in range(1, replicas + 1):
            if slot not in slots:
                plan.create(svc, slot, "", 0, 0.0)


def _global_service(plan: _Plan, svc: pb.Service, slots: dict[Key, list[pb.Task]]) -> None:
    eligible = _eligible_nodes(plan, svc)
    held: Container[Key] = ()
    if updater.wants_pass(svc, slots):
        wanted: dict[Key, list[pb.Task]] = {
            k: g for k, g in slots.items() if type(k) is str and k in eligible
        }
        held = _update(plan, svc, wanted, plan.global_view)
    for key, group in slots.items():
        if type(key) is str and key in eligible:
            if key in held:
                continue
            if len(group) == 1 and _settled(group[0], eligible):
                continue
            _tend_slot(plan, svc, group, 0, key, can_start=key not in plan.down)
        else:  # drained, constraint no longer met, node gone, or a replicated leftover
            plan.retire(group)
    for nid in eligible:
        if nid not in slots and nid not in plan.down:
            plan.create(svc, 0, nid, 0, 0.0)


def _update(
    plan: _Plan, svc: pb.Service, wanted: dict[Key, list[pb.Task]], view: updater.NodeView
) -> Container[Key]:
    """Carry out the updater's decision for this service; return the slots it holds."""
    decided = updater.plan_update(svc, wanted, plan.now, view)
    if decided is None:
        return ()
    for t in decided.shutdown:
        plan.desire(t, SHUTDOWN)
    for key in decided.create:
        if type(key) is int:
            plan.create(svc, key, "", 0, 0.0)
        else:
            plan.create(svc, 0, str(key), 0, 0.0)
    if decided.service is not None:
        cmd = pb.Command(update_service=decided.service, expected_version=svc.meta.version)
        plan.commands.append(cmd)
    if decided.wake_at is not None:
        wake = plan.wake_at
        plan.wake_at = decided.wake_at if wake is None else min(wake, decided.wake_at)
    plan.watching = plan.watching or decided.watching
    return decided.held


def _settled(task: pb.Task, fine_nodes: Container[str]) -> bool:
    """Live, and unplaced or on a node where it may stay: nothing to do for its slot."""
    if task.desired_state > RUNNING or task.status.state >= COMPLETE:
        return False
    nid = task.node_id
    return not nid or nid in fine_nodes


def _eligible_nodes(plan: _Plan, svc: pb.Service) -> dict[str, None]:
    """Ids of the nodes a global service wants a task on, in store order."""
    exprs = svc.spec.task_template.placement.constraints
    if not exprs:
        return dict.fromkeys(n.id for n in plan.schedulable)
    try:
        constraints = [parse_constraint(e) for e in exprs]
    except ConstraintError:  # validation rejects these; never place on a guess
        return {}
    return dict.fromkeys(n.id for n in plan.schedulable if _node_matches(n, constraints))


def _node_matches(node: pb.Node, constraints: list[Constraint]) -> bool:
    """Adapter to the scheduler's constraint semantics (the one place that converts)."""
    d = node.description
    info = NodeInfo(
        id=node.id,
        hostname=d.hostname,
        role=_ROLE.get(node.role, "worker"),
        ready=node.status.state == pb.READY,
        availability=_AVAIL.get(node.spec.availability, "active"),
        labels=node.spec.annotations.labels,
        os=d.platform.os,
        arch=d.platform.architecture,
        cpu_capacity=0,
        mem_capacity=0,
    )
    return all(c.matches(info) for c in constraints)


# slots -------------------------------------------------------------------------


def _tend_slot(
    plan: _Plan, svc: pb.Service, group: list[pb.Task], slot: int, node_id: str, can_start: bool
) -> None:
    """Keep one live task in this wanted slot, then reap and trim the slot's history."""
    live = dead = None
    dirty = False  # some task is to be removed, or sits on a node that is gone
    nodes = plan.nodes
    for t in group:
        want = t.desired_state
        if want <= RUNNING:
            if t.status.state < COMPLETE:
                if live is None or _age(t) > _age(live):
                    live = t  # the newest: a start-first update may hold two for a while
            elif dead is None or _age(t) > _age(dead):
                dead = t  # ended by itself and not handled yet
        elif want >= REMOVE:
            dirty = True
        nid = t.node_id
        if nid and nid not in nodes:
            dirty = True
    created, removed = False, None
    if live is not None:
        if (slot and live.node_id in plan.unfit) or plan.gone(live):
            if plan.gone(live):  # nobody will report it again: replace and forget
                plan.remove(live)
                removed = live
            else:
                plan.desire(live, SHUTDOWN)
            plan.create(svc, slot, node_id, live.restart_attempt, 0.0)
            created = True
    elif can_start:
        created = _refill(plan, svc, dead, slot, node_id)
    keep = None if created else dead  # a finished slot's record stays, or it is refilled
    if dirty:
        group = _reap_unwanted(plan, group, keep, removed)
    _trim_history(plan, group, keep, 1 if created else 0)


def _refill(plan: _Plan, svc: pb.Service, dead: pb.Task | None, slot: int, node_id: str) -> bool:
    """Create the slot's next task if it needs one; `dead` ended by itself (or is None)."""
    policy = svc.spec.task_template.restart_policy
    if dead is None:  # empty, or every task was shut down by the manager
        plan.create(svc, slot, node_id, 0, 0.0)
        return True
    if not _should_restart(policy, dead):
        return False
    plan.desire(dead, SHUTDOWN)
    not_before = dead.status.timestamp + _restart_delay(policy)
    plan.create(svc, slot, node_id, dead.restart_attempt + 1, not_before)
    return True


def _should_restart(policy: pb.RestartPolicy, task: pb.Task) -> bool:
    if policy.condition == pb.RESTART_NONE:
        return False
    if policy.condition == pb.RESTART_ON_FAILURE and task.status.state not in (FAILED, REJECTED):
        return False
    return not (policy.max_attempts and task.restart_attempt >= policy.max_attempts)


def _restart_delay(policy: pb.RestartPolicy) -> float:
    return policy.delay_s if policy.delay_set else DEFAULT_RESTART_DELAY_S


def _reap_unwanted(
    plan: _Plan, group: list[pb.Task], keep: pb.Task | None, removed: pb.Task | None
) -> list[pb.Task]:
    """Remove tasks on gone nodes and removable tasks with desired REMOVE; return the rest."""
    rest = []
    for t in group:
        if t is removed:
            continue
        if t is not keep and (plan.gone(t) or (t.desired_state >= REMOVE and plan.removable(t))):
            plan.remove(t)
        else:
            rest.append(t)
    return rest


def _trim_history(plan: _Plan, group: list[pb.Task], keep: pb.Task | None, created: int) -> None:
    """Keep the newest `limit` tasks of the slot (counting new ones); trim terminal ones."""
    if len(group) + created <= plan.limit:
        return
    for t in sorted(group, key=_age, reverse=True)[max(0, plan.limit - created) :]:
        if t.status.state >= COMPLETE and t is not keep:
            plan.remove(t)


def matches_placement(node: pb.Node, exprs: Iterable[str]) -> bool:
    """Whether a node satisfies a service's placement constraints (unparsable: no)."""
    try:
        constraints = [parse_constraint(e) for e in exprs]
    except ConstraintError:
        return False
    return _node_matches(node, constraints)
