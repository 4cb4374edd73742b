"""Control API (manager side): validate, commit through Raft, answer from the store.

Writes return after they commit. Every error leaves as a gRPC status whose details are
one line naming the field or object (converted from swarmlet/manager errors here, at
the edge, and nowhere else).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from manager.control_networks import NetworksControl
from manager.control_secrets import SecretsControl
from manager.endpoints import check_capacity
from manager.errors import ManagerError, NotLeader, ProposalTimeout, Rejected
from manager.lookup import resolve_node, resolve_service
from manager.orchestrator import matches_placement
from manager.proposer import Proposer
from manager.store import Store, is_live
from manager.updater import PAUSED_STATES, rolled_back
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.errors import Conflict, NotFound, SpecError, SwarmletError
from swarmlet.pki import new_id, new_token
from swarmlet.specs import validate_service_spec

F = TypeVar("F", bound=Callable[..., Any])

_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (SpecError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotLeader, grpc.StatusCode.UNAVAILABLE),
    (ProposalTimeout, grpc.StatusCode.UNAVAILABLE),
    (Rejected, grpc.StatusCode.ABORTED),
]


def grpc_errors(fn: F) -> F:
    """Turn swarmlet errors into a gRPC status with a one-line message."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self._ready()
            return fn(self, request, context)
        except SwarmletError as e:
            code = next((c for t, c in _CODES if isinstance(e, t)), grpc.StatusCode.INTERNAL)
            context.abort(code, str(e))

    return wrapper  # type: ignore[return-value]


def _remaining(context: Any) -> float | None:
    """Seconds until the caller's deadline; None without one (or without a context)."""
    fn = getattr(context, "time_remaining", None)
    return fn() if fn is not None else None


def _time_left(context: Any, cap: float = 10.0) -> float:
    """Seconds the caller still waits (capped); the whole cap without a deadline."""
    left = _remaining(context)
    return cap if left is None else max(0.1, min(cap, left))


def _caller_waits(context: Any) -> bool:
    left = _remaining(context)
    active = getattr(context, "is_active", None)
    return (active is None or bool(active())) and (left is None or left > 0.1)


class ControlService(SecretsControl, NetworksControl, pbg.ControlServicer):
    def __init__(
        self,
        store: Store,
        proposer: Proposer,
        leader_node_id: Callable[[], str | None],
        on_node_removed: Callable[[str], None],
        ready: Callable[[], None] = lambda: None,
        raft: Any = None,
        logs: Any = None,
    ) -> None:
        self._store = store
        self._proposer = proposer
        self._leader_node_id = leader_node_id
        self._on_node_removed = on_node_removed
        self._ready = ready
        self._raft = raft
        self._logs = logs  # manager.logs.LogBroker

    def _versioned(self, context: Any, build: Callable[[], pb.Command], what: str) -> str:
        """Read, modify, propose with the version read; on a version conflict read again,
        but only while the caller still waits: a write whose caller gave up (deadline
        passed) must not be retried into effect after the caller's later writes."""
        for _ in range(5):
            cmd = build()
            result = self._proposer.propose([cmd], timeout=_time_left(context))[0]
            obj = cmd.update_service if cmd.HasField("update_service") else cmd.update_node
            if result.ok:
                return str(obj.id)
            if "changed since" not in result.error or not _caller_waits(context):
                raise Conflict(result.error)
        raise Conflict(f"{what} keeps changing; try again")

    def _commit(self, cmd: pb.Command, conflict: str | None = None) -> None:
        result = self._proposer.propose([cmd])[0]
        if not result.ok:
            if conflict and "already exists" in result.error:
                raise Conflict(conflict)
            raise Conflict(result.error)

    # ------------------------------------------------------------------ services

    @grpc_errors
    def CreateService(self, request: pb.CreateServiceRequest, context: Any) -> Any:  # noqa: N802
        spec = validate_service_spec(request.spec)
        self.resolve_references(spec)
        name = spec.annotations.name
        if self._store.service_by_name(name) is not None:
            raise Conflict(f"service {name} already exists")
        svc = pb.Service(id=new_id(), spec=spec)
        self.prepare_networking(svc)
        self._commit(pb.Command(create_service=svc), f"service {name} already exists")
        return pb.ServiceResponse(service=self._store.services[svc.id])

    @grpc_errors
    def UpdateService(self, request: pb.UpdateServiceRequest, context: Any) -> Any:  # noqa: N802
        old = resolve_service(self._store, request.id)
        spec = validate_service_spec(request.spec)
        self.resolve_references(spec)
        new = pb.Service()
        new.CopyFrom(old)
        new.spec.CopyFrom(spec)
        self.prepare_networking(new, old)
        if new.spec != old.spec:
            new.ClearField("update_status")  # a new update starts, as in Swarm
            new.ClearField("previous_spec")  # the store keeps the spec being replaced
        elif old.update_status.state in PAUSED_STATES:
            new.ClearField("update_status")  # unchanged spec: resume the paused update
        self._commit(pb.Command(update_service=new, expected_version=request.version))
        return pb.ServiceResponse(service=self._store.services[old.id])

    @grpc_errors
    def RollbackService(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        def build() -> pb.Command:
            old = resolve_service(self._store, request.id)
            if not old.HasField("previous_spec"):
                name = old.spec.annotations.name
                raise Conflict(f"service {name} has no previous spec to roll back to")
            new = rolled_back(old, "manually requested rollback")
            self.prepare_networking(new, old)
            return pb.Command(update_service=new, expected_version=old.meta.version)

        sid = self._versioned(context, build, "service")
        return pb.ServiceResponse(service=self._store.services[sid])

    @grpc_errors
    def ScaleService(self, request: pb.ScaleRequest, context: Any) -> Any:  # noqa: N802
        def build() -> pb.Command:
            old = resolve_service(self._store, request.id)
            if old.spec.mode.WhichOneof("mode") == "global":
                raise SpecError(
                    "replicas",
                    f"service {old.spec.annotations.name} is global; only replicated "
                    "services can be scaled",
                )
            new = pb.Service()
            new.CopyFrom(old)
            new.spec.mode.replicated.replicas = request.replicas
            check_capacity(self._store, old.id, new.spec)
            return pb.Command(update_service=new, expected_version=old.meta.version)

        sid = self._versioned(context, build, "service")
        return pb.ServiceResponse(service=self._store.services[sid])

    @grpc_errors
    def GetService(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        return pb.ServiceResponse(service=resolve_service(self._store, request.id))

    @grpc_errors
    def ListServices(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        resp = pb.ListServicesResponse()
        usable = [
            n for n in self._store.all_nodes()
            if n.status.state == pb.READY and n.spec.availability == pb.ACTIVE
        ]
        for svc in sorted(self._store.all_services(), key=lambda s: s.spec.annotations.name):
            resp.services.append(svc)
            tasks = self._store.tasks_of_service(svc.id)
            resp.running[svc.id] = sum(
                1 for t in tasks if t.status.state == pb.RUNNING and t.desired_state <= pb.RUNNING
            )
            if svc.spec.mode.WhichOneof("mode") == "global":
                exprs = svc.spec.task_template.placement.constraints
                eligible = sum(1 for n in usable if matches_placement(n, exprs))
                resp.desired[svc.id] = max(eligible, sum(1 for t in tasks if is_live(t)))
            else:
                resp.desired[svc.id] = svc.spec.mode.replicated.replicas
        return resp

    @grpc_errors
    def RemoveService(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        svc = resolve_service(self._store, request.id)
        self._commit(pb.Command(remove_service=svc.id))
        return pb.Empty()

    @grpc_errors
    def ServiceLogs(self, request: pb.LogsRequest, context: Any) -> Any:  # noqa: N802
        """A stream of the service's task output from the workers (manager.logs)."""
        svc = resolve_service(self._store, request.service)
        if self._logs is None:
            raise ManagerError("service logs are not available on this manager")
        return self._logs.stream(request, svc, context.is_active)

    @grpc_errors
    def ListTasks(self, request: pb.ListTasksRequest, context: Any) -> Any:  # noqa: N802
        if request.service:
            tasks = self._store.tasks_of_service(resolve_service(self._store, request.service).id)
        elif request.node:
            tasks = self._store.tasks_on_node(resolve_node(self._store, request.node).id)
        else:
            tasks = self._store.all_tasks()
        if request.service and request.node:
            nid = resolve_node(self._store, request.node).id
            tasks = [t for t in tasks if t.node_id == nid]
        tasks.sort(key=lambda t: (t.service_name, t.slot, t.node_id, -t.meta.created_at, t.id))
        resp = pb.ListTasksResponse(tasks=tasks)
        for n in self._store.all_nodes():
            resp.node_names[n.id] = n.description.hostname
        return resp

    # ------------------------------------------------------------------ nodes

    def _with_leader(self, node: pb.Node) -> pb.Node:
        if node.role != pb.MANAGER:
            return node
        out = pb.Node()
        out.CopyFrom(node)
        out.manager_status.leader = node.id == self._leader_node_id()
        reachable = out.manager_status.leader
        if not reachable and self._raft is not None:
            key = f"partner_node_status_server_{node.manager_status.raft_addr}"
            reachable = self._raft.status().get(key) == 2
        out.manager_status.reachability = "reachable" if reachable else "unreachable"
        return out

    @grpc_errors
    def GetNode(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        return pb.NodeResponse(node=self._with_leader(resolve_node(self._store, request.id)))

    @grpc_errors
    def ListNodes(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        nodes = sorted(self._store.all_nodes(), key=lambda n: (n.description.hostname, n.id))
        return pb.ListNodesResponse(nodes=[self._with_leader(n) for n in nodes])

    @grpc_errors
    def UpdateNode(self, request: pb.UpdateNodeRequest, context: Any) -> Any:  # noqa: N802
        def build() -> pb.Command:
            old = resolve_node(self._store, request.id)
            new = pb.Node()
            new.CopyFrom(old)
            if request.set_availability:
                new.spec.availability = request.availability
            for k, v in request.label_add.items():
                new.spec.annotations.labels[k] = v
            for k in request.label_rm:
                if k not in new.spec.annotations.labels:
                    raise SpecError("label-rm", f"node {old.description.hostname} has no label {k}")
                del new.spec.annotations.labels[k]
            return pb.Command(update_node=new, expected_version=request.version or old.meta.version)

        if request.version:  # the caller named a version: no re-read on conflict
            cmd = build()
            self._commit(cmd)
            nid = cmd.update_node.id
        else:
            nid = self._versioned(context, build, "node")
        return pb.NodeResponse(node=self._with_leader(self._store.nodes[nid]))

    @grpc_errors
    def RemoveNode(self, request: pb.RemoveNodeRequest, context: Any) -> Any:  # noqa: N802
        node = resolve_node(self._store, request.id)
        name = node.description.hostname or node.id
        if node.id == self._leader_node_id():
            raise Conflict(f"node {name} is the leader; it cannot remove itself")
        if node.role == pb.MANAGER and not request.force:
            raise Conflict(f"node {name} is a manager; demote it first or use --force")
        running = sum(1 for t in self._store.tasks_on_node(node.id)
                      if t.status.state == pb.RUNNING and t.desired_state <= pb.RUNNING)
        if node.status.state == pb.READY and not request.force:
            extra = f" and runs {running} tasks (drain it first)" if running else ""
            raise Conflict(f"node {name} is not down{extra}; use --force to remove it anyway")
        if node.role == pb.MANAGER:
            self._leave_raft(node)
        self._commit(pb.Command(remove_node=node.id))
        self._on_node_removed(node.id)
        return pb.Empty()

    def _leave_raft(self, node: pb.Node) -> None:
        """Take a manager out of the Raft group, refusing when that would lose quorum."""
        name = node.description.hostname or node.id
        managers = [n for n in self._store.all_nodes() if n.role == pb.MANAGER]
        if len(managers) <= 1:
            raise Conflict(f"node {name} is the last manager of the cluster")
        if self._raft is None:
            return
        # connection state lags a leadership change by a moment: look again before refusing
        for attempt in range(15):
            reachable, total = self._raft.members()
            key = f"partner_node_status_server_{node.manager_status.raft_addr}"
            if self._raft.status().get(key) == 2:
                reachable -= 1
            if reachable >= (total - 1) // 2 + 1:
                break
            if attempt < 14:
                time.sleep(0.2)
        else:
            raise Conflict(
                f"removing manager {name} would leave the cluster without quorum "
                f"({reachable} of {total - 1} remaining managers reachable)"
            )
        self._raft.change_membership("rem", node.manager_status.raft_addr)

    @grpc_errors
    def PromoteNode(self, request: pb.PromoteRequest, context: Any) -> Any:  # noqa: N802
        node = resolve_node(self._store, request.id)
        name = node.description.hostname or node.id
        new = pb.Node()
        new.CopyFrom(node)
        if request.role == pb.MANAGER:
            if node.role == pb.MANAGER or node.spec.desired_role == pb.MANAGER:
                raise Conflict(f"node {name} is already a manager")
            if node.status.state != pb.READY:
                raise Conflict(f"node {name} is not ready; it can be promoted once it is up")
            new.spec.desired_role = pb.MANAGER  # the node renews its certificate and joins Raft
        else:
            if node.role != pb.MANAGER:
                raise Conflict(f"node {name} is not a manager")
            if node.id == self._leader_node_id():
                raise Conflict(
                    f"node {name} is the leader and cannot demote itself; stop it or demote "
                    "the other managers first"
                )
            self._leave_raft(node)
            new.role = pb.WORKER
            new.spec.desired_role = pb.WORKER
            new.ClearField("manager_status")
        self._commit(pb.Command(update_node=new, expected_version=node.meta.version))
        return pb.NodeResponse(node=self._store.nodes[node.id])

    @grpc_errors
    def GetClusterStatus(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        reachable, total = self._raft.members() if self._raft is not None else (1, 1)
        return pb.ClusterStatus(
            leader_id=self._leader_node_id() or "", managers=total, reachable=reachable,
            raft_entries=self._proposer.entries, raft_commands=self._proposer.commands,
        )

    # ------------------------------------------------------------------ cluster

    @grpc_errors
    def JoinToken(self, request: pb.JoinTokenRequest, context: Any) -> Any:  # noqa: N802
        if request.role not in ("worker", "manager"):
            raise SpecError("role", f"must be worker or manager, not {request.role!r}")
        cluster = self._store.cluster
        if cluster is None:
            raise ManagerError("cluster is not initialised yet")
        if request.rotate:
            new = pb.Cluster()
            new.CopyFrom(cluster)
            token = new_token(cluster.ca_cert_pem.encode())
            setattr(new.join_tokens, request.role, token)
            self._commit(pb.Command(put_cluster=new, expected_version=cluster.meta.version))
            cluster = self._store.cluster
            assert cluster is not None
        addr = ""
        leader = self._store.nodes.get(self._leader_node_id() or "")
        if leader is not None:
            addr = leader.manager_status.addr
        return pb.JoinTokenResponse(token=getattr(cluster.join_tokens, request.role),
                                    manager_addr=addr)
