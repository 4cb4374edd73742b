"""Rolling updates and rollbacks: which slots of a service to replace now, and how.

`plan_update(svc, slots, now, nodes)` is pure: it reads one service and its wanted slots
(slot number, or node id for a global service -> the slot's tasks) and says which old tasks
to shut down, which slots get a new task from the service's current spec, which slots the
orchestrator must leave alone this pass, what to write to `Service.update_status`, and
when to look again. The orchestrator calls it from `reconcile` and turns the answer into
store commands. All of the update's state is in the store -- `update_status` (state,
started_at) and the tasks themselves (spec_version, creation time, status) -- so a new
leader continues an update where the old one left it.

A task is *clean* when it was made from the service's current task template: its
spec_version is the service's, or (after a rollback, which bumps the version back to an
older template) its spec equals the template. The store bumps spec_version only when the
task template changes (a scale never does), and `--force` changes the template's
force_update counter. A wanted slot whose live task is not clean is *dirty*.

An update runs in batches of `parallelism` dirty slots (0 = all at once):
- stop-first: the old task is shut down; once it has stopped (or its node is down or
  gone) the slot gets its new task;
- start-first: the new task is created next to the old one (the store accepts a second
  live task in a slot when the first is of an older spec_version); the old one is shut
  down once the new one is RUNNING.
A batch is done when each of its slots has a RUNNING clean task (or its new task failed);
the next batch starts `delay` seconds after the last of them reached RUNNING. The update
completes when no slot is dirty or in flight and the newest of its tasks has been
RUNNING for `monitor` seconds.

Tasks of the update are the clean tasks of the current spec_version created since
`update_status.started_at`. One that ends by itself (failed, rejected, or exited) while
the update is in progress counts as a failure. (Swarm counts it only within `monitor`
seconds of that task's start; the store keeps a task's latest status only, so an ended
task's start time is unknown, and this errs toward stopping a bad update.) When failures /
tasks of the update > max_failure_ratio, failure_action applies: pause (state paused),
rollback (spec := previous_spec, previous_spec := the failed spec, state
rollback_started; a failing rollback pauses as rollback_paused) or continue. A paused
update only finishes the slots already in flight; a new UpdateService (which clears
update_status) starts a new update. Rollbacks use rollback_config (Swarm's defaults when
the spec has none).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.specs import DEFAULT_FAILURE_ACTION, DEFAULT_MONITOR_S, DEFAULT_ORDER
from swarmlet.states import ASSIGNED, COMPLETE, FAILED, REJECTED, REMOVE, RUNNING

Key = int | str

UPDATING = "updating"
PAUSED = "paused"
COMPLETED = "completed"
ROLLBACK_STARTED = "rollback_started"
ROLLBACK_PAUSED = "rollback_paused"
ROLLBACK_COMPLETED = "rollback_completed"
ACTIVE_STATES = (UPDATING, ROLLBACK_STARTED)
PAUSED_STATES = (PAUSED, ROLLBACK_PAUSED)

ENDED_BY_ITSELF = (COMPLETE, FAILED, REJECTED)


@dataclass(frozen=True)
class NodeView:
    """What the updater needs to know about nodes.

    avoid: tasks there are the orchestrator's to move or keep (DOWN or drained nodes for a
    replicated service, DOWN nodes for a global one); down: DOWN nodes (a task there is not
    running as far as anyone can tell); known: ids of nodes that exist."""

    avoid: Container[str]
    down: Container[str]
    known: Container[str]


@dataclass
class UpdatePlan:
    """What to do for one service this pass (see the module docstring)."""

    shutdown: list[pb.Task] = field(default_factory=list)  # desired SHUTDOWN
    create: list[Key] = field(default_factory=list)  # a new task from the current spec
    held: set[Key] = field(default_factory=set)  # the orchestrator leaves these alone
    service: pb.Service | None = None  # write this (new update_status, or rolled back)
    wake_at: float | None = None
    watching: bool = False  # an update is under way: wake on tasks reaching RUNNING


def wants_pass(svc: pb.Service, slots: dict[Key, list[pb.Task]]) -> bool:
    """Cheap test: may `plan_update` have anything to do for this service? (An update in
    progress, or a live task of another spec_version that is not of the current template.)"""
    state = svc.update_status.state
    if state in ACTIVE_STATES:
        return True
    version = svc.spec_version
    others: dict[int, pb.Task] = {}  # one live task per other spec_version
    for group in slots.values():
        for t in group:
            v = t.spec_version
            if v != version and v not in others and _is_live(t):
                others[v] = t
    if not others:
        return False
    if state in PAUSED_STATES:
        return True
    template = svc.spec.task_template
    return any(t.spec != template for t in others.values())


def plan_update(
    svc: pb.Service, slots: dict[Key, list[pb.Task]], now: float, nodes: NodeView
) -> UpdatePlan | None:
    """Decide this pass's part of the service's rolling update; None when there is none."""
    state = svc.update_status.state
    fresh = state not in ACTIVE_STATES and state not in PAUSED_STATES
    if fresh:
        status = pb.UpdateStatus(state=UPDATING, started_at=now, message="update in progress")
    else:
        status = pb.UpdateStatus()
        status.CopyFrom(svc.update_status)
        if not status.started_at:
            status.started_at = now
    scan = _Scan(svc.spec_version, status.started_at, _Clean(svc), nodes)
    for key, group in slots.items():
        scan.slot(key, group)
    if fresh and not scan.dirty:
        return None  # nothing the updater could replace (the orchestrator has the rest)
    rollback = status.state in (ROLLBACK_STARTED, ROLLBACK_PAUSED)
    cfg = _config(svc.spec, rollback)
    plan = UpdatePlan(held=scan.held, create=scan.create)
    if status.state in PAUSED_STATES:
        _finish(plan, scan, failed_too=False)
        return plan
    plan.watching = True
    stopped = _failure_action(svc, status, cfg, scan, now)
    if stopped is not None:  # nothing else this pass: the next one sees the new state
        plan.service = stopped
        plan.held.update(slots)
        plan.create = []
        plan.watching = stopped.update_status.state == ROLLBACK_STARTED
        return plan
    _finish(plan, scan, failed_too=True)
    if scan.dirty and not scan.in_flight:
        _next_batch(plan, scan, cfg, now)
    elif not scan.dirty and not scan.in_flight:
        _maybe_complete(plan, scan, cfg, status, now)
    if status != svc.update_status:
        plan.service = _with_status(svc, status)
    return plan


# ---------------------------------------------------------------- reading the slots


class _Clean:
    """Whether a task was made from the service's current template, memoized per version
    (all tasks of one service with the same spec_version were made from the same spec)."""

    def __init__(self, svc: pb.Service) -> None:
        self._template = svc.spec.task_template
        self._memo: dict[int, bool] = {svc.spec_version: True}

    def __call__(self, task: pb.Task) -> bool:
        got = self._memo.get(task.spec_version)
        if got is None:
            got = self._memo[task.spec_version] = task.spec == self._template
        return got


def _is_live(t: pb.Task) -> bool:
    return t.desired_state <= RUNNING and t.status.state < COMPLETE


def _age(task: pb.Task) -> tuple[float, str]:
    return (task.meta.created_at, task.id)


class _Scan:
    """One pass over the wanted slots: what is dirty, in flight, done, and how it went."""

    def __init__(self, version: int, started: float, clean: _Clean, nodes: NodeView) -> None:
        self.version, self.started, self.clean, self.nodes = version, started, clean, nodes
        self.dirty: list[tuple[Key, list[pb.Task]]] = []  # candidates for a batch
        self.finish: list[tuple[Key, list[pb.Task], bool]] = []  # (slot, old, new failed)
        self.create: list[Key] = []  # empty slots to fill now (stop-first, old task gone)
        self.held: set[Key] = set()
        self.in_flight = 0
        self.updated = 0  # tasks of this update
        self.failed: list[pb.Task] = []  # ...that ended by themselves
        self.last_done: float | None = None  # latest RUNNING (or end) time among them
        self.last_running: float | None = None  # latest RUNNING time of the live ones

    def ours(self, t: pb.Task) -> bool:
        return t.spec_version == self.version and t.meta.created_at >= self.started

    def _count(self, t: pb.Task) -> bool:
        """Account for a task of this update; True when it ended by itself."""
        self.updated += 1
        state, ts = t.status.state, t.status.timestamp
        ended = state in ENDED_BY_ITSELF
        if ended:
            self.failed.append(t)
        if ended or state == RUNNING:
            self.last_done = ts if self.last_done is None else max(self.last_done, ts)
        if state == RUNNING and t.desired_state <= RUNNING:
            self.last_running = ts if self.last_running is None else max(self.last_running, ts)
        return ended

    def _stopping(self, t: pb.Task) -> bool:
        """Told to stop, not yet stopped, on a node that will still report it."""
        nid = t.node_id
        return (
            RUNNING < t.desired_state <= REMOVE
            and ASSIGNED <= t.status.state < COMPLETE
            and nid in self.nodes.known
            and nid not in self.nodes.down
        )

    def slot(self, key: Key, group: list[pb.Task]) -> None:
        new: list[pb.Task] = []
        old: list[pb.Task] = []
        stopping = dead = slot_failed = False
        for t in group:
            if self.ours(t) and self._count(t):
                slot_failed = True
            if _is_live(t):
                (new if self.clean(t) else old).append(t)
            elif t.status.state >= COMPLETE and t.desired_state <= RUNNING:
                dead = True  # ended by itself; the orchestrator's restart policy decides
            elif not self.clean(t) and self._stopping(t):
                stopping = True
        if new:
            newest = max(new, key=_age)
            if newest.status.state == RUNNING:
                if old:
                    self.finish.append((key, old, False))
            elif not slot_failed:
                self.in_flight += 1
        elif old:
            if slot_failed:  # start-first: the new task failed next to the old one
                self.finish.append((key, old, True))
            elif not any(t.node_id in self.nodes.avoid or self._gone(t) for t in old):
                self.dirty.append((key, old))
        elif stopping:  # stop-first: wait until the old task has stopped
            self.held.add(key)
            self.in_flight += 1
        elif not dead and not (type(key) is str and key in self.nodes.down):
            self.create.append(key)  # the old task stopped: start the new one
            self.held.add(key)
            self.in_flight += 1

    def _gone(self, t: pb.Task) -> bool:
        return bool(t.node_id) and t.node_id not in self.nodes.known


# ---------------------------------------------------------------- deciding


def _config(spec: pb.ServiceSpec, rollback: bool) -> pb.UpdateConfig:
    """The update (or rollback) settings with Swarm's defaults for what is unset."""
    cfg = pb.UpdateConfig()
    if rollback:
        cfg.parallelism, cfg.monitor_s = 1, DEFAULT_MONITOR_S
        if spec.HasField("rollback_config"):
            cfg.CopyFrom(spec.rollback_config)
    else:
        cfg.CopyFrom(spec.update_config)
    cfg.failure_action = cfg.failure_action or DEFAULT_FAILURE_ACTION
    cfg.order = cfg.order or DEFAULT_ORDER
    return cfg


def _failure_action(
    svc: pb.Service, status: pb.UpdateStatus, cfg: pb.UpdateConfig, scan: _Scan, now: float
) -> pb.Service | None:
    """The service to write when failures passed the ratio and the action stops the update."""
    if not scan.failed or cfg.failure_action == "continue":
        return None
    if len(scan.failed) / scan.updated <= cfg.max_failure_ratio:
        return None
    culprit = max(scan.failed, key=lambda t: (t.status.timestamp, t.id))
    cause = f"due to failure or early termination of task {culprit.id}"
    rolling_back = status.state == ROLLBACK_STARTED
    if cfg.failure_action == "rollback" and not rolling_back:
        if not svc.HasField("previous_spec"):
            return _paused(svc, status, f"update paused {cause}; no previous spec to roll back to")
        return rolled_back(svc, f"update rolled back {cause}", now)
    what = "rollback" if rolling_back else "update"
    return _paused(svc, status, f"{what} paused {cause}")


def _paused(svc: pb.Service, status: pb.UpdateStatus, message: str) -> pb.Service:
    state = ROLLBACK_PAUSED if status.state == ROLLBACK_STARTED else PAUSED
    return _with_status(
        svc, pb.UpdateStatus(state=state, started_at=status.started_at, message=message)
    )


def _finish(plan: UpdatePlan, scan: _Scan, failed_too: bool) -> None:
    """Shut down the old tasks of start-first slots whose new task is RUNNING (or, while
    the update goes on, failed: the slot then restarts from the new spec, as in Swarm)."""
    for key, old, new_failed in scan.finish:
        if new_failed and not failed_too:
            continue  # paused: keep the old task serving
        plan.shutdown.extend(old)
        plan.held.add(key)


def _next_batch(plan: UpdatePlan, scan: _Scan, cfg: pb.UpdateConfig, now: float) -> None:
    if cfg.delay_s > 0 and scan.last_done is not None and now < scan.last_done + cfg.delay_s:
        plan.wake_at = scan.last_done + cfg.delay_s
        return
    # slots whose old task is not running yet first (nothing to lose), then by slot
    batch = sorted(scan.dirty, key=lambda d: (_serving(d[1]), d[0]))
    if cfg.parallelism:
        batch = batch[: cfg.parallelism]
    for key, old in batch:
        _replace(plan, key, old, cfg.order == "start-first")


def _serving(old: Iterable[pb.Task]) -> bool:
    return any(t.status.state >= ASSIGNED for t in old)


def _replace(plan: UpdatePlan, key: Key, old: list[pb.Task], start_first: bool) -> None:
    placed = [t for t in old if t.status.state >= ASSIGNED]
    if start_first and placed:
        # one old task stays until the new one runs: a running one, the newest of those
        keep = max(placed, key=lambda t: (t.status.state == RUNNING, _age(t)))
        plan.shutdown.extend(t for t in old if t is not keep)
        plan.create.append(key)
    else:
        plan.shutdown.extend(old)
        if not placed:  # nothing runs yet: no need to wait for it to stop
            plan.create.append(key)
    plan.held.add(key)


def _maybe_complete(
    plan: UpdatePlan, scan: _Scan, cfg: pb.UpdateConfig, status: pb.UpdateStatus, now: float
) -> None:
    if scan.last_running is not None and now < scan.last_running + cfg.monitor_s:
        plan.wake_at = scan.last_running + cfg.monitor_s
        return
    rollback = status.state == ROLLBACK_STARTED
    status.state = ROLLBACK_COMPLETED if rollback else COMPLETED
    status.completed_at = now
    status.message = "rollback completed" if rollback else "update completed"
    plan.watching = False


def rolled_back(svc: pb.Service, message: str, now: float = 0.0) -> pb.Service:
    """`svc` returned to its previous spec, the current one becoming the previous, with
    update_status rollback_started (started_at 0 is stamped by the next pass). The caller
    checks that there is a previous spec."""
    status = pb.UpdateStatus(state=ROLLBACK_STARTED, started_at=now, message=message)
    out = _with_status(svc, status)
    out.spec.CopyFrom(svc.previous_spec)
    out.previous_spec.CopyFrom(svc.spec)
    return out


def _with_status(svc: pb.Service, status: pb.UpdateStatus) -> pb.Service:
    out = pb.Service()
    out.CopyFrom(svc)
    out.update_status.CopyFrom(status)
    return out
