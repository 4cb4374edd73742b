"""Allocation and placement step of the leader loop: unassigned tasks -> ASSIGNED or PENDING.

Pure given (store, now). Network allocation comes first (`allocator_networks`: task
attachments, node ingress endpoints, stale service endpoints); then it builds the
scheduler's value types from the store, calls `scheduler.schedule`, and turns the
result into store commands -- AssignTask for placements, SetTaskPending with the
scheduler's reason for the rest. Tasks still inside their restart delay are held
PENDING with that reason and a wake-up time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from manager.allocator_networks import PassPools, attach_networks, node_ingress, stale_endpoints
from manager.store import Store, is_live
from scheduler import NodeInfo, TaskRequest, schedule
from swarmlet.api import swarmlet_pb2 as pb

_ROLE = {pb.MANAGER: "manager", pb.WORKER: "worker"}
_AVAIL = {pb.ACTIVE: "active", pb.PAUSE: "pause", pb.DRAIN: "drain"}


@dataclass
class Allocation:
    commands: list[pb.Command] = field(default_factory=list)
    wake_at: float | None = None


def _node_infos(store: Store) -> list[NodeInfo]:
    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    per_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    total: dict[str, int] = defaultdict(int)
    for t in store.all_tasks():
        if not t.node_id or not is_live(t):
            continue
        res = t.spec.resources.reservations
        cpu[t.node_id] += res.nano_cpus
        mem[t.node_id] += res.memory_bytes
        per_service[t.node_id][t.service_id] += 1
        total[t.node_id] += 1
    infos = []
    for n in store.all_nodes():
        d = n.description
        infos.append(
            NodeInfo(
                id=n.id,
                hostname=d.hostname,
                role=_ROLE.get(n.role, "worker"),
                ready=n.status.state == pb.READY,
                availability=_AVAIL.get(n.spec.availability, "active"),
                labels=dict(n.spec.annotations.labels),
                os=d.platform.os,
                arch=d.platform.architecture,
                cpu_capacity=d.resources.nano_cpus,
                mem_capacity=d.resources.memory_bytes,
                cpu_reserved=cpu[n.id],
                mem_reserved=mem[n.id],
                service_tasks=dict(per_service[n.id]),
                total_tasks=total[n.id],
            )
        )
    return infos


def _request(task: pb.Task) -> TaskRequest:
    placement = task.spec.placement
    constraints = tuple(placement.constraints)
    if task.node_id:  # global tasks are bound to their node
        constraints += (f"node.id=={task.node_id}",)
    res = task.spec.resources.reservations
    return TaskRequest(
        id=task.id,
        service_id=task.service_id,
        cpu=res.nano_cpus,
        mem=res.memory_bytes,
        constraints=constraints,
        max_replicas_per_node=placement.max_replicas,
        preferences=tuple(placement.preferences),
    )


def _pending(task: pb.Task, reason: str) -> pb.Command | None:
    if task.status.state == pb.PENDING and task.status.err == reason:
        return None
    return pb.Command(set_task_pending=pb.SetTaskPending(task_id=task.id, reason=reason))


def allocate(store: Store, now: float, strategy: str = "binpack", seed: int = 0) -> Allocation:
    """Place every unassigned task that is wanted; explain the ones that cannot be."""
    out = Allocation()
    ready: list[pb.Task] = []
    for t in store.all_tasks():
        if t.status.state >= pb.ASSIGNED or t.desired_state > pb.RUNNING:
            continue
        if t.not_before > now:
            wait = t.not_before - now
            cmd = _pending(t, f"restart delay: starting in {wait:.0f}s" if wait >= 1 else
                           "restart delay: starting in under a second")
            if cmd is not None and (t.status.state != pb.PENDING or "restart delay" not in
                                    t.status.err):
                out.commands.append(cmd)
            out.wake_at = t.not_before if out.wake_at is None else min(out.wake_at, t.not_before)
            continue
        ready.append(t)
    out.commands.extend(stale_endpoints(store))
    pools = PassPools(store)
    out.commands.extend(node_ingress(store, pools))
    if not ready:
        return out
    ready.sort(key=lambda t: (t.service_id, t.slot, t.id))
    by_id = {t.id: t for t in ready}
    step = attach_networks(store, ready, pools)
    out.commands.extend(step.commands)
    for tid, reason in step.pending.items():
        cmd = _pending(by_id[tid], reason)
        if cmd is not None:
            out.commands.append(cmd)
    ready = step.schedulable
    if not ready:
        return out
    result = schedule(_node_infos(store), [_request(t) for t in ready], strategy, seed)
    for p in result.placements:
        out.commands.append(
            pb.Command(assign_task=pb.AssignTask(task_id=p.task_id, node_id=p.node_id))
        )
    for tid, reason in result.unplaced.items():
        cmd = _pending(by_id[tid], reason)
        if cmd is not None:
            out.commands.append(cmd)
    return out
