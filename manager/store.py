"""The cluster state machine: a plain object with one entry point, `apply_batch`.

Pure and deterministic (no clock, no I/O): Raft replays the same batches on every manager
and must reach the same state. Each command is validated against the current state when
applied and rejected -- not applied -- when it no longer fits (optimistic concurrency),
so a deposed leader's stale decisions cannot double-place a task or resurrect a service.

Stored objects are never mutated in place: a change replaces the object with a new
message, so readers may keep references taken under the lock.

A service's spec_version counts changes of what its tasks are made from (the task
template, or the mode kind): a scale or an update_config change leaves it alone, so only
real changes make tasks out of date. A slot (or, for a global service, a node) holds one
live task; a second is accepted only while a start-first update replaces the first -- when
the slot holds exactly one live task and it is of an older spec_version than the new one.
Two live tasks of the same version, or three, are never accepted (no double placement).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, TypeVar

from manager.errors import Rejected
from manager.events import Event, Listener
from manager.store_networks import NetworkStore
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.states import RUNNING, is_terminal

__all__ = ["Event", "Listener", "Store", "is_live"]

M = TypeVar("M", pb.Service, pb.Task, pb.Node, pb.Cluster, pb.Secret, pb.Config, pb.Network)


def _copy(msg: M) -> M:
    new = type(msg)()
    new.CopyFrom(msg)
    return new


def is_live(task: pb.Task) -> bool:
    """A task that occupies its slot: meant to run and not yet stopped."""
    return task.desired_state <= RUNNING and not is_terminal(task.status.state)


class Store(NetworkStore):
    """Services, tasks, nodes, networks and the cluster object, with secondary indexes."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.index = 0
        self.cluster: pb.Cluster | None = None
        self.nodes: dict[str, pb.Node] = {}
        self.services: dict[str, pb.Service] = {}
        self.tasks: dict[str, pb.Task] = {}
        self.secrets: dict[str, pb.Secret] = {}  # data encrypted (manager.secretbox)
        self.configs: dict[str, pb.Config] = {}
        self.networks: dict[str, pb.Network] = {}
        self._object_names: dict[str, dict[str, str]] = {"secret": {}, "config": {},
                                                         "network": {}}
        self._holders: dict[tuple[str, str], str] = {}  # (network id, ip) -> kind:id
        self._names: dict[str, str] = {}
        self._by_service: dict[str, set[str]] = {}
        self._by_node: dict[str, set[str]] = {}
        self._live: dict[tuple[str, int | str], tuple[str, ...]] = {}
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------------ listeners

    def subscribe(self, listener: Listener) -> None:
        """Call listener(events) after every applied batch (in the applying thread)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ reads

    def service_by_name(self, name: str) -> pb.Service | None:
        with self.lock:
            sid = self._names.get(name)
            return self.services.get(sid) if sid else None

    def tasks_of_service(self, service_id: str) -> list[pb.Task]:
        with self.lock:
            return [self.tasks[t] for t in self._by_service.get(service_id, ())]

    def tasks_on_node(self, node_id: str) -> list[pb.Task]:
        with self.lock:
            return [self.tasks[t] for t in self._by_node.get(node_id, ())]

    def all_tasks(self) -> list[pb.Task]:
        with self.lock:
            return list(self.tasks.values())

    def all_services(self) -> list[pb.Service]:
        with self.lock:
            return list(self.services.values())

    def all_nodes(self) -> list[pb.Node]:
        with self.lock:
            return list(self.nodes.values())

    def secret_by_name(self, name: str) -> pb.Secret | None:
        with self.lock:
            sid = self._object_names["secret"].get(name)
            return self.secrets.get(sid) if sid else None

    def config_by_name(self, name: str) -> pb.Config | None:
        with self.lock:
            cid = self._object_names["config"].get(name)
            return self.configs.get(cid) if cid else None

    def users_of(self, kind: str, object_id: str) -> list[str]:
        """Names of the services whose spec references secret/config `object_id`."""
        with self.lock:
            return sorted(
                svc.spec.annotations.name
                for svc in self.services.values()
                if any(
                    (r.secret_id if kind == "secret" else r.config_id) == object_id
                    for r in getattr(svc.spec.task_template.container, kind + "s")
                )
            )

    # ------------------------------------------------------------------ apply

    def apply_batch(self, batch: pb.CommandBatch) -> pb.BatchResult:
        """Apply every command in order; each succeeds or is rejected on its own."""
        result = pb.BatchResult()
        events: list[Event] = []
        with self.lock:
            self.index += 1
            for cmd in batch.commands:
                try:
                    events.extend(self._apply_one(cmd, batch.timestamp))
                    result.results.add(ok=True)
                except Rejected as e:
                    result.results.add(ok=False, error=str(e))
            result.index = self.index
        if events:
            for listener in self._listeners:
                listener(events)
        return result

    def _apply_one(self, cmd: pb.Command, now: float) -> list[Event]:
        op = cmd.WhichOneof("op")
        if op is None:
            raise Rejected("empty command")
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise Rejected(f"unknown command {op!r}")
        events: list[Event] = handler(getattr(cmd, op), cmd.expected_version, now)
        return events

    @staticmethod
    def _check_version(kind: str, current: pb.Meta, expected: int) -> None:
        if expected and current.version != expected:
            raise Rejected(
                f"{kind} changed since it was read (version {current.version}, expected {expected})"
            )

    @staticmethod
    def _stamp(
        obj: pb.Service | pb.Task | pb.Node | pb.Cluster | pb.Secret | pb.Config | pb.Network,
        now: float,
        new: bool,
    ) -> None:
        if new:
            obj.meta.version = 1
            obj.meta.created_at = now
        else:
            obj.meta.version += 1
        obj.meta.updated_at = now

    # services --------------------------------------------------------------

    def _op_create_service(self, svc: pb.Service, _v: int, now: float) -> list[Event]:
        name = svc.spec.annotations.name
        if svc.id in self.services:
            raise Rejected(f"service id {svc.id} exists")
        if name in self._names:
            raise Rejected(f"service {name} already exists")
        self._check_service_endpoint(svc)
        new = _copy(svc)
        self._stamp(new, now, True)
        new.spec_version = 1
        self._reindex("service", None, new)
        self.services[new.id] = new
        self._names[name] = new.id
        return [Event("service", new.id, "create")]

    def _op_update_service(self, svc: pb.Service, expected: int, now: float) -> list[Event]:
        old = self.services.get(svc.id)
        if old is None:
            raise Rejected(f"service {svc.id} not found")
        self._check_version("service", old.meta, expected)
        name, old_name = svc.spec.annotations.name, old.spec.annotations.name
        if name != old_name and name in self._names:
            raise Rejected(f"service {name} already exists")
        if svc.endpoint != old.endpoint or svc.spec.task_template.networks != \
                old.spec.task_template.networks:
            self._check_service_endpoint(svc)
        new = _copy(svc)
        new.meta.CopyFrom(old.meta)
        new.spec_version = old.spec_version
        if new.spec != old.spec:
            if _makes_tasks_differ(old.spec, new.spec):
                new.spec_version += 1
            if not svc.HasField("previous_spec"):
                new.previous_spec.CopyFrom(old.spec)
        self._stamp(new, now, False)
        self._reindex("service", old, new)
        self.services[new.id] = new
        del self._names[old_name]
        self._names[name] = new.id
        return [Event("service", new.id, "update")]

    def _op_remove_service(self, sid: str, _v: int, _now: float) -> list[Event]:
        old = self.services.pop(sid, None)
        if old is None:
            raise Rejected(f"service {sid} not found")
        self._reindex("service", old, None)
        self._names.pop(old.spec.annotations.name, None)
        return [Event("service", sid, "remove")]

    # tasks -------------------------------------------------------------------

    def _occupant(self, task: pb.Task) -> pb.Task | None:
        """A live task that keeps `task` out of its slot (or node, for global tasks)."""
        holders = self._live.get(_slot_key(task), ())
        if len(holders) == 1:
            only = self.tasks[holders[0]]
            if only.spec_version < task.spec_version:
                return None  # a start-first update: the new task joins the old one
        return self.tasks[holders[0]] if holders else None

    def _op_create_task(self, task: pb.Task, _v: int, now: float) -> list[Event]:
        if task.id in self.tasks:
            raise Rejected(f"task {task.id} exists")
        if task.service_id not in self.services:
            raise Rejected(f"service {task.service_id} not found")
        if is_live(task):
            holder = self._occupant(task)
            if holder is not None:
                raise Rejected(f"slot already held by task {holder.id}")
        new = _copy(task)
        self._stamp(new, now, True)
        if not new.status.timestamp:
            new.status.timestamp = now
        self._put_task(new)
        return [Event("task", new.id, "create")]

    def _put_task(self, task: pb.Task) -> None:
        old = self.tasks.get(task.id)
        if old is not None or task.networks:
            self._reindex("task", old, task)
        if old is not None:
            self._unindex_live(old)
            if old.node_id and old.node_id != task.node_id:
                self._by_node.get(old.node_id, set()).discard(task.id)
        if is_live(task):
            key = _slot_key(task)
            holders = self._live.get(key, ())
            if task.id not in holders:
                self._live[key] = (*holders, task.id)
        self.tasks[task.id] = task
        self._by_service.setdefault(task.service_id, set()).add(task.id)
        if task.node_id:
            self._by_node.setdefault(task.node_id, set()).add(task.id)

    def _task(self, tid: str) -> pb.Task:
        task = self.tasks.get(tid)
        if task is None:
            raise Rejected(f"task {tid} not found")
        return task

    def _op_task_status(self, upd: pb.TaskStatusUpdate, _v: int, now: float) -> list[Event]:
        old = self._task(upd.task_id)
        if upd.status.state <= old.status.state:
            raise Rejected(f"task {upd.task_id}: status does not move forward")
        new = _copy(old)
        new.status.CopyFrom(upd.status)
        if not new.status.timestamp:
            new.status.timestamp = now
        self._stamp(new, now, False)
        self._put_task(new)
        # "progress": the task moved between non-terminal states (nothing to decide on);
        # "ended": it reached a terminal state
        return [Event("task", new.id, "ended" if is_terminal(new.status.state) else "progress")]

    def _op_assign_task(self, a: pb.AssignTask, expected: int, now: float) -> list[Event]:
        old = self._task(a.task_id)
        self._check_version("task", old.meta, expected)
        if old.status.state >= pb.ASSIGNED:
            raise Rejected(f"task {a.task_id} is already assigned")
        if old.desired_state > RUNNING:
            raise Rejected(f"task {a.task_id} is no longer wanted")
        if old.node_id and old.node_id != a.node_id:
            raise Rejected(f"task {a.task_id} is bound to node {old.node_id}")
        if a.node_id not in self.nodes:
            raise Rejected(f"node {a.node_id} not found")
        new = _copy(old)
        new.node_id = a.node_id
        new.status.CopyFrom(pb.TaskStatus(state=pb.ASSIGNED, message="assigned", timestamp=now))
        self._stamp(new, now, False)
        self._put_task(new)
        return [Event("task", new.id, "update")]

    def _op_set_task_pending(self, p: pb.SetTaskPending, _v: int, now: float) -> list[Event]:
        old = self._task(p.task_id)
        if old.status.state >= pb.ASSIGNED:
            raise Rejected(f"task {p.task_id} is already assigned")
        new = _copy(old)
        if old.status.state != pb.PENDING:
            new.status.timestamp = now
        new.status.state = pb.PENDING
        new.status.message = "pending task scheduling"
        new.status.err = p.reason
        self._stamp(new, now, False)
        self._put_task(new)
        return [Event("task", new.id, "update")]

    def _op_set_task_desired(self, d: pb.SetTaskDesired, _v: int, now: float) -> list[Event]:
        old = self._task(d.task_id)
        if d.desired_state <= old.desired_state:
            raise Rejected(f"task {d.task_id}: desired state does not move forward")
        new = _copy(old)
        new.desired_state = d.desired_state
        self._stamp(new, now, False)
        self._put_task(new)
        return [Event("task", new.id, "update")]

    def _op_remove_task(self, tid: str, _v: int, _now: float) -> list[Event]:
        old = self.tasks.pop(tid, None)
        if old is None:
            raise Rejected(f"task {tid} not found")
        self._reindex("task", old, None)
        self._unindex_live(old)
        self._by_service.get(old.service_id, set()).discard(tid)
        if old.node_id:
            self._by_node.get(old.node_id, set()).discard(tid)
        return [Event("task", tid, "remove")]

    def _unindex_live(self, task: pb.Task) -> None:
        key = _slot_key(task)
        holders = self._live.get(key, ())
        if task.id in holders:
            rest = tuple(h for h in holders if h != task.id)
            if rest:
                self._live[key] = rest
            else:
                del self._live[key]

    # nodes -------------------------------------------------------------------

    def _op_create_node(self, node: pb.Node, _v: int, now: float) -> list[Event]:
        if node.id in self.nodes:
            raise Rejected(f"node {node.id} exists")
        new = _copy(node)
        self._stamp(new, now, True)
        self._reindex("node", None, new)
        self.nodes[new.id] = new
        return [Event("node", new.id, "create")]

    def _op_update_node(self, node: pb.Node, expected: int, now: float) -> list[Event]:
        old = self.nodes.get(node.id)
        if old is None:
            raise Rejected(f"node {node.id} not found")
        self._check_version("node", old.meta, expected)
        new = _copy(node)
        new.meta.CopyFrom(old.meta)
        self._stamp(new, now, False)
        self._reindex("node", old, new)
        self.nodes[new.id] = new
        return [Event("node", new.id, "update")]

    def _op_node_status(self, s: pb.UpdateNodeStatus, _v: int, now: float) -> list[Event]:
        old = self.nodes.get(s.node_id)
        if old is None:
            raise Rejected(f"node {s.node_id} not found")
        new = _copy(old)
        new.status.CopyFrom(s.status)
        if s.HasField("description"):
            new.description.CopyFrom(s.description)
        self._stamp(new, now, False)
        self.nodes[new.id] = new
        return [Event("node", new.id, "update")]

    def _op_remove_node(self, nid: str, _v: int, _now: float) -> list[Event]:
        old = self.nodes.pop(nid, None)
        if old is None:
            raise Rejected(f"node {nid} not found")
        self._reindex("node", old, None)
        return [Event("node", nid, "remove")]

    # secrets and configs -----------------------------------------------------

    def _op_create_secret(self, s: pb.Secret, _v: int, now: float) -> list[Event]:
        return self._create_object("secret", s, self.secrets, now)

    def _op_create_config(self, c: pb.Config, _v: int, now: float) -> list[Event]:
        return self._create_object("config", c, self.configs, now)

    def _op_remove_secret(self, sid: str, _v: int, _now: float) -> list[Event]:
        return self._remove_object("secret", sid, self.secrets)

    def _op_remove_config(self, cid: str, _v: int, _now: float) -> list[Event]:
        return self._remove_object("config", cid, self.configs)

    def _create_object(self, kind: str, obj: Any, table: dict[str, Any], now: float) -> list[Event]:
        names = self._object_names[kind]
        if obj.id in table:
            raise Rejected(f"{kind} id {obj.id} exists")
        if obj.spec.annotations.name in names:
            raise Rejected(f"{kind} {obj.spec.annotations.name} already exists")
        new = type(obj)()
        new.CopyFrom(obj)
        self._stamp(new, now, True)
        table[new.id] = new
        names[new.spec.annotations.name] = new.id
        return [Event(kind, new.id, "create")]

    def _remove_object(self, kind: str, oid: str, table: dict[str, Any]) -> list[Event]:
        old = table.get(oid)
        if old is None:
            raise Rejected(f"{kind} {oid} not found")
        name = old.spec.annotations.name
        users = self.users_of(kind, oid)
        if users:
            raise Rejected(f"{kind} {name} is in use by service {', '.join(users)}")
        del table[oid]
        self._object_names[kind].pop(name, None)
        return [Event(kind, oid, "remove")]

    # cluster -----------------------------------------------------------------

    def _op_put_cluster(self, cluster: pb.Cluster, expected: int, now: float) -> list[Event]:
        old = self.cluster
        if old is not None:
            if old.id != cluster.id:
                raise Rejected("cluster id mismatch")
            self._check_version("cluster", old.meta, expected)
        new = _copy(cluster)
        if old is None:
            self._stamp(new, now, True)
        else:
            new.meta.CopyFrom(old.meta)
            self._stamp(new, now, False)
        self.cluster = new
        return [Event("cluster", new.id, "create" if old is None else "update")]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        with self.lock:
            snap = pb.StoreSnapshot(index=self.index)
            if self.cluster is not None:
                snap.cluster.CopyFrom(self.cluster)
            snap.nodes.extend(self.nodes.values())
            snap.services.extend(self.services.values())
            snap.tasks.extend(self.tasks.values())
            snap.networks.extend(self.networks.values())
            snap.secrets.extend(self.secrets.values())
            snap.configs.extend(self.configs.values())
            return bytes(snap.SerializeToString(deterministic=True))

    def restore(self, data: bytes) -> None:
        snap = pb.StoreSnapshot.FromString(data)
        with self.lock:
            self.__init_state(snap)
        for listener in self._listeners:
            listener([Event("cluster", "", "restore")])

    def __init_state(self, snap: pb.StoreSnapshot) -> None:
        self.index = snap.index
        self.cluster = _copy(snap.cluster) if snap.HasField("cluster") else None
        self.nodes = {n.id: n for n in _fresh(snap.nodes)}
        self.services = {s.id: s for s in _fresh(snap.services)}
        self._names = {s.spec.annotations.name: s.id for s in self.services.values()}
        self.tasks, self._by_service, self._by_node, self._live = {}, {}, {}, {}
        for t in _fresh(snap.tasks):
            self._put_task(t)
        self.secrets = {s.id: s for s in _fresh(snap.secrets)}
        self.configs = {c.id: c for c in _fresh(snap.configs)}
        self.networks = {n.id: n for n in _fresh(snap.networks)}
        self._object_names = {
            kind: {o.spec.annotations.name: o.id for o in table.values()}
            for kind, table in (("secret", self.secrets), ("config", self.configs),
                                ("network", self.networks))
        }
        self._rebuild_holders()

    def digest(self) -> str:
        """A stable digest of the whole state (to compare managers)."""
        import hashlib

        return hashlib.sha256(self.snapshot()).hexdigest()


def _slot_key(task: pb.Task) -> tuple[str, int | str]:
    """Replicated tasks occupy (service, slot); global tasks occupy (service, node)."""
    return (task.service_id, task.slot if task.slot else task.node_id)


def _makes_tasks_differ(old: pb.ServiceSpec, new: pb.ServiceSpec) -> bool:
    """Whether tasks made from `old` are out of date under `new` (spec_version bumps)."""
    return (
        old.task_template != new.task_template
        or old.mode.WhichOneof("mode") != new.mode.WhichOneof("mode")
    )


def _fresh(items: Iterable[M]) -> list[M]:
    return [_copy(i) for i in items]
