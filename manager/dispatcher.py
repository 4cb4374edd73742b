"""Dispatcher (leader only): one long-lived session stream per worker.

It pushes each node the full set of its tasks with their desired states, and the network
tables it needs (`dispatch_networks`: built once per change, shared by every session),
whenever either changes, receives batched status updates and heartbeats, and marks a node DOWN
after `misses` heartbeat periods without word from it. Heartbeats stay in memory (as in
SwarmKit); only state changes go through Raft.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from manager.auth import peer_identity
from manager.dispatch_networks import EndpointCache, NetworkTables
from manager.errors import ManagerError
from manager.heartbeats import silent_nodes
from manager.proposer import Proposer
from manager.secretbox import delivery
from manager.store import Event, Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.clock import Clock
from swarmlet.states import ASSIGNED, is_terminal

_ASSIGN = "assign"
_SERIALS = itertools.count(1)


class _Session:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.serial = next(_SERIALS)  # tells this session from the node's later ones
        self.q: queue.Queue[Any] = queue.Queue()
        self.dirty = False
        self.lock = threading.Lock()
        self.sequence = 0
        self.last: tuple[object, ...] | None = None
        self.networked = False  # the last push carried networks, endpoints or bindings
        self.closed = threading.Event()

    def mark(self) -> None:
        with self.lock:
            if self.dirty:
                return
            self.dirty = True
        self.q.put(_ASSIGN)

    def close(self, msg: pb.ManagerMessage | None = None) -> None:
        if msg is not None:
            self.q.put(msg)
        self.closed.set()
        self.q.put(None)


def _serialize(msg: pb.ManagerMessage | bytes) -> bytes:
    return msg if isinstance(msg, bytes) else bytes(msg.SerializeToString())


def add_to_server(dispatcher: Dispatcher, server: grpc.Server) -> None:
    """Register Session like the generated code does, except that the stream may also
    yield ManagerMessages already serialized: a node's Assignments are assembled from
    bytes (the shared network tables are serialized once per change), never parsed back."""
    handler = grpc.stream_stream_rpc_method_handler(
        dispatcher.Session, request_deserializer=pb.WorkerMessage.FromString,
        response_serializer=_serialize)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("swarmlet.Dispatcher", {"Session": handler}),))


class Dispatcher(pbg.DispatcherServicer):
    def __init__(
        self,
        store: Store,
        proposer: Proposer,
        clock: Clock,
        is_leader: Callable[[], bool],
        managers: Callable[[], list[str]],
        heartbeat_period: float = 1.0,
        misses: int = 3,
    ) -> None:
        self._store = store
        self._proposer = proposer
        self._clock = clock
        self._is_leader = is_leader
        self._managers = managers
        self.period = heartbeat_period
        self.misses = misses
        self._sessions: dict[str, _Session] = {}
        self._seen: dict[str, float] = {}
        self._task_node: dict[str, str] = {}
        # network tables: rebuilt (once, lazily) after a change that can affect them
        self._net_tasks: set[str] = set()  # tasks with attachments
        self._net_gen = 0
        self._tables: tuple[int, NetworkTables] | None = None
        self._endpoint_cache: EndpointCache = {}
        self._tables_lock = threading.Lock()
        self._net_lock = threading.Lock()  # guards _net_tasks
        self._lock = threading.Lock()
        self._active = threading.Event()
        self._halt = threading.Event()
        self._started_at = 0.0
        self._held = 0  # nodes held back from being marked down (a mass silence)
        self._log = log.get("dispatcher")
        self._monitor: threading.Thread | None = None
        self.leader_hint: Callable[[], str] = lambda: ""
        # service logs (manager.logs.LogBroker): workers' LogBatches, and session ends
        self.on_logs: Callable[[str, pb.LogBatch], None] = lambda node, batch: None
        self.on_session_end: Callable[[str, int], None] = lambda node, serial: None

    # ------------------------------------------------------------------ leadership

    def start(self) -> None:
        """Begin serving sessions. Every known node gets a grace period of twice the usual
        timeout: its agent must first notice the old leader is gone and find this one."""
        self._started_at = self._clock.monotonic() + self.period * self.misses
        with self._lock:
            self._seen.clear()
        self._reset_networks()
        self._active.set()
        self._halt.clear()
        self._monitor = threading.Thread(target=self._watch, name="hb-monitor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        self._active.clear()
        self._halt.set()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close()

    def kick(self, node_id: str, reason: str) -> None:
        """Tell a node it was removed, then end its session."""
        with self._lock:
            sess = self._sessions.pop(node_id, None)
        if sess is not None:
            sess.close(pb.ManagerMessage(leave=pb.Leave(reason=reason)))

    def send_to_node(self, node_id: str, msg: pb.ManagerMessage) -> int | None:
        """Queue a message on the node's session; its serial, or None if not connected."""
        with self._lock:
            sess = self._sessions.get(node_id)
        if sess is None or sess.closed.is_set():
            return None
        sess.q.put(msg)
        return sess.serial

    # ------------------------------------------------------------------ store events

    def _reset_networks(self) -> None:
        with self._store.lock:
            ids = {t.id for t in self._store.tasks.values() if t.networks}
        with self._net_lock:
            self._net_tasks = ids
            self._net_gen += 1

    def on_events(self, events: list[Event]) -> None:
        touched: set[str] = set()
        everyone = networked = False
        for e in events:
            if e.kind == "node" and e.op == "update":
                self._maybe_role_change(e.id)
            if e.kind in ("service", "network") or e.op == "restore":
                everyone = True  # bindings, or the ingress network, may reach every node
            elif e.kind == "node":
                networked = True  # node addresses / ingress endpoints
            if e.kind != "task":
                continue
            task = self._store.tasks.get(e.id)
            if (task is not None and task.networks) or e.id in self._net_tasks:
                networked = True  # endpoints changed (serving too: progress counts)
                with self._net_lock:
                    if task is not None and task.networks:
                        self._net_tasks.add(e.id)
                    else:
                        self._net_tasks.discard(e.id)
            if e.op == "progress":
                continue  # progress reports never change a node's task set
            old = self._task_node.get(e.id)
            if task is not None and task.node_id:
                self._task_node[e.id] = task.node_id
                touched.add(task.node_id)
            elif e.op == "remove":
                self._task_node.pop(e.id, None)
            if old:
                touched.add(old)
        if any(e.op == "restore" for e in events):
            self._reset_networks()
        elif everyone or networked:
            with self._net_lock:
                self._net_gen += 1
        if not (touched or everyone or networked):
            return
        with self._lock:
            targets = [s for n, s in self._sessions.items()
                       if n in touched or everyone or (networked and s.networked)]
        for s in targets:
            s.mark()

    def _network_tables(self) -> NetworkTables:
        """The shared tables of the current change, built by the first session to ask."""
        with self._tables_lock:
            with self._net_lock:
                gen = self._net_gen
                stale = self._tables is None or self._tables[0] != gen
                ids = list(self._net_tasks) if stale else []
            if self._tables is None or self._tables[0] != gen:
                self._tables = (gen, NetworkTables.build(self._store, ids,
                                                         self._endpoint_cache))
            return self._tables[1]

    # ------------------------------------------------------------------ heartbeats

    def _watch(self) -> None:
        tick = self.period / 4
        expected = self._clock.monotonic() + tick
        while not self._halt.wait(max(0.0, expected - self._clock.monotonic())):
            stalled = self._clock.monotonic() - expected
            if stalled > self.period / 2:
                # this manager was not running (overloaded or paused): silence was ours,
                # not the workers'; give everyone the lost time back
                self._forgive(stalled)
            self._check_heartbeats()
            expected = self._clock.monotonic() + tick

    def _forgive(self, seconds: float) -> None:
        self._log.warning("dispatcher.stalled", seconds=round(seconds, 2))
        with self._lock:
            for node_id in self._seen:
                self._seen[node_id] += seconds
            self._started_at += seconds

    def _check_heartbeats(self) -> None:
        ready = [n.id for n in self._store.all_nodes() if n.status.state == pb.READY]
        with self._lock:
            seen = dict(self._seen)
        decision = silent_nodes(ready, seen, self._started_at, self._clock.monotonic(),
                                self.period * self.misses)
        if len(decision.held) != self._held:
            self._held = len(decision.held)
            self._log.warning("dispatcher.mass_silence", nodes=self._held, ready=len(ready))
        down = decision.down
        if not down:
            return
        cmds = [
            pb.Command(
                node_status=pb.UpdateNodeStatus(
                    node_id=n,
                    status=pb.NodeStatus(
                        state=pb.DOWN,
                        message="heartbeat failure",
                        addr=self._store.nodes[n].status.addr if n in self._store.nodes else "",
                        timestamp=self._clock.now(),
                    ),
                )
            )
            for n in down
        ]
        self._log.warning("dispatcher.nodes_down", nodes=down)
        try:
            self._proposer.propose(cmds)
        except ManagerError as e:
            self._log.warning("dispatcher.mark_down_failed", error=str(e))

    # ------------------------------------------------------------------ session

    def Session(  # noqa: N802 (gRPC method name)
        self, request_iterator: Iterator[pb.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ManagerMessage | bytes]:
        ident = peer_identity(context, self._store)
        if not self._active.is_set() or not self._is_leader():
            hint = self.leader_hint()
            if hint:
                context.set_trailing_metadata((("swarmlet-leader", hint),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "this manager is not the leader")
        node = self._store.nodes.get(ident.node_id)
        if node is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "node is not part of this cluster")
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session must start with hello")
            return
        sess = self._register(ident.node_id)
        try:
            self._ready(ident.node_id, first.hello)
            yield pb.ManagerMessage(
                session=pb.SessionInfo(
                    node_id=ident.node_id,
                    heartbeat_period_s=self.period,
                    managers=self._managers(),
                )
            )
            threading.Thread(
                target=self._read, args=(sess, request_iterator), daemon=True,
                name=f"session-{ident.node_id[:8]}",
            ).start()
            sess.mark()
            self._maybe_role_change(ident.node_id)
            yield from self._pump(sess, context)
        finally:
            with self._lock:
                if self._sessions.get(ident.node_id) is sess:
                    del self._sessions[ident.node_id]
            self.on_session_end(ident.node_id, sess.serial)

    def _maybe_role_change(self, node_id: str) -> None:
        node = self._store.nodes.get(node_id)
        if node is None or node.spec.desired_role == node.role:
            return
        with self._lock:
            sess = self._sessions.get(node_id)
        if sess is not None:
            sess.q.put(pb.ManagerMessage(role=pb.RoleChange(role=node.spec.desired_role)))

    def _register(self, node_id: str) -> _Session:
        sess = _Session(node_id)
        with self._lock:
            old = self._sessions.get(node_id)
            self._sessions[node_id] = sess
            self._seen[node_id] = self._clock.monotonic()
        if old is not None:
            old.close()
        return sess

    def _ready(self, node_id: str, hello: pb.Hello) -> None:
        status = pb.NodeStatus(state=pb.READY, addr=hello.addr, timestamp=self._clock.now())
        cmd = pb.Command(
            node_status=pb.UpdateNodeStatus(
                node_id=node_id, status=status, description=hello.description
            )
        )
        self._proposer.propose([cmd])
        self._log.info("dispatcher.session", **{"node.id": node_id, "addr": hello.addr})

    def _pump(
        self, sess: _Session, context: grpc.ServicerContext
    ) -> Iterator[pb.ManagerMessage | bytes]:
        while context.is_active() and self._active.is_set():
            try:
                item = sess.q.get(timeout=self.period)
            except queue.Empty:
                continue
            if item is None:
                return
            if item == _ASSIGN:
                with sess.lock:
                    sess.dirty = False
                msg = self._assignments(sess)
                if msg is not None:
                    yield msg
            else:
                yield item

    def _assignments(self, sess: _Session) -> bytes | None:
        """The node's Assignments as a serialized ManagerMessage (see `add_to_server`),
        or None when nothing it was sent has changed."""
        tasks = [
            t
            for t in self._store.tasks_on_node(sess.node_id)
            if t.status.state >= ASSIGNED and not is_terminal(t.status.state)
        ]
        tasks.sort(key=lambda t: t.id)
        net = self._network_tables().for_node(self._store.nodes.get(sess.node_id), tasks)
        fingerprint = (
            tuple((t.id, t.desired_state) for t in tasks),
            tuple(sorted({r.secret_id for t in tasks for r in t.spec.container.secrets})),
            tuple(sorted({r.config_id for t in tasks for r in t.spec.container.configs})),
            net.fingerprint,
        )
        sess.networked = net.sent
        if fingerprint == sess.last:
            return None
        # only the secrets/configs this node's tasks use, secrets decrypted
        secrets, configs, problems = delivery(
            self._store.cluster, self._store.secrets, self._store.configs, tasks
        )
        for problem in problems:
            self._log.warning("dispatcher.delivery_failed", problem=problem,
                              **{"node.id": sess.node_id})
        sess.last = fingerprint
        sess.sequence += 1
        out = pb.Assignments(sequence=sess.sequence, tasks=tasks, secrets=secrets,
                             configs=configs)
        return net.message(out)

    def _read(self, sess: _Session, it: Iterator[pb.WorkerMessage]) -> None:
        try:
            for msg in it:
                with self._lock:
                    self._seen[sess.node_id] = self._clock.monotonic()
                kind = msg.WhichOneof("msg")
                if kind == "statuses":
                    self._statuses(sess.node_id, msg.statuses)
                elif kind == "logs":
                    self.on_logs(sess.node_id, msg.logs)
        except grpc.RpcError:
            pass
        except Exception:
            self._log.exception("dispatcher.read_failed", **{"node.id": sess.node_id})
        finally:
            sess.close()

    def _statuses(self, node_id: str, batch: pb.StatusBatch) -> None:
        cmds = []
        for upd in batch.updates:
            task = self._store.tasks.get(upd.task_id)
            if task is None or task.node_id != node_id:
                continue  # only a task's own node reports its status
            if upd.status.state <= task.status.state:
                continue
            cmds.append(pb.Command(task_status=upd))
        if cmds:
            fut = self._proposer.propose_async(cmds)
            fut.add_done_callback(self._status_done)

    def _status_done(self, fut: Any) -> None:
        exc = fut.exception()
        if exc is not None:
            self._log.warning("dispatcher.status_write_failed", error=str(exc))
