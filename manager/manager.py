"""A manager: store + Raft + proposer, the gRPC endpoints, and the leader-only loops.

Ports: `listen` (mutual TLS: dispatcher sessions, control API for manager certs),
`listen + 1` (join endpoint, server-only TLS), `listen + 2` (Raft, encrypted by the
cluster's raft secret). The leader loop and the dispatcher start when this manager
becomes leader and stop when it is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from manager import recovery
from manager.auth import manager_only
from manager.ca_server import CAService
from manager.control import ControlService
from manager.control_networks import new_ingress
from manager.dispatcher import Dispatcher
from manager.dispatcher import add_to_server as add_dispatcher
from manager.errors import ManagerError, NotLeader
from manager.forward import ForwardingControl, LeaderLink, forward_issue
from manager.leader import LeaderLoop
from manager.logs import LogBroker
from manager.proposer import Proposer
from manager.raft import RaftNode, RaftSettings
from manager.store import Event, Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.clock import Clock
from swarmlet.pki import new_id


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def host_of(addr: str) -> str:
    return addr.rpartition(":")[0]


def with_port(addr: str, delta: int) -> str:
    return f"{host_of(addr)}:{port_of(addr) + delta}"


@dataclass
class ManagerConfig:
    node_id: str
    state_dir: Path
    listen_addr: str          # host:port for the mTLS endpoint
    advertise_addr: str       # host:port others use to reach listen_addr
    raft_secret: str
    server_key: bytes
    server_cert_chain: bytes  # node cert + CA cert
    ca_pem: bytes
    raft_peers: list[str] = field(default_factory=list)
    bootstrap: pb.CommandBatch | None = None
    heartbeat_period: float = 1.0
    heartbeat_misses: int = 3
    raft: RaftSettings = field(default_factory=RaftSettings)
    max_sessions: int = 2048
    # mutual-TLS client channels to other managers (forwarding to the leader)
    channel_factory: Callable[[str], grpc.Channel] | None = None


class Manager:
    def __init__(self, cfg: ManagerConfig, clock: Clock) -> None:
        self.cfg = cfg
        self._clock = clock
        self._log = log.get("manager", **{"node.id": cfg.node_id})
        self.store = Store()
        self.raft: RaftNode | None = None
        self.proposer: Proposer | None = None
        self._leading = False
        self._lock = threading.Lock()
        self._servers: list[grpc.Server] = []
        self.ready = threading.Event()  # leader with every committed entry applied
        self._recovered = False  # started from recovered.pb (force-new-cluster)

    # ------------------------------------------------------------------ wiring

    def start(self) -> None:
        cfg = self.cfg
        self_raft = with_port(cfg.advertise_addr, 2)
        self._recovered = recovery.initial_state(cfg.state_dir, self.store)
        self.raft = RaftNode(
            self.store,
            self_raft,
            [p for p in cfg.raft_peers if p != self_raft],
            cfg.state_dir / "raft",
            cfg.raft_secret,
            on_state_change=self._leadership,
            settings=cfg.raft,
        )
        self.proposer = Proposer(self.raft, self._clock)
        self.leader_loop = LeaderLoop(
            self.store, self.proposer, self._clock, new_id, self._history_limit
        )
        self.dispatcher = Dispatcher(
            self.store, self.proposer, self._clock, self.is_leader, self.manager_addrs,
            cfg.heartbeat_period, cfg.heartbeat_misses,
        )
        self.logs = LogBroker(self.store, self.dispatcher.send_to_node, new_id, self._clock,
                              active=self.ready.is_set)
        self.dispatcher.on_logs = self.logs.deliver
        self.dispatcher.on_session_end = self.logs.session_ended
        self.control_local = ControlService(
            self.store, self.proposer, self.leader_node_id, self._node_removed,
            self._check_ready, self.raft, logs=self.logs,
        )
        factory = cfg.channel_factory or (lambda addr: grpc.insecure_channel(addr))
        self.link = LeaderLink(self.store, lambda: self.raft, factory, cfg.ca_pem)
        self.control = ForwardingControl(
            self.control_local, self.ready.is_set, self.link, cfg.node_id
        )
        self.dispatcher.leader_hint = self._leader_addr
        self.store.subscribe(self._on_events)
        self._serve()
        if self.raft.is_leader():
            self._leadership(True)

    def _serve(self) -> None:
        cfg = self.cfg
        creds = grpc.ssl_server_credentials(
            [(cfg.server_key, cfg.server_cert_chain)], root_certificates=cfg.ca_pem,
            require_client_auth=True,
        )
        main = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_sessions + 32),
            options=[("grpc.so_reuseport", 0)],
        )
        add_dispatcher(self.dispatcher, main)
        pbg.add_ControlServicer_to_server(manager_only(self.control, self.store), main)  # type: ignore[arg-type]
        main.add_secure_port(cfg.listen_addr, creds)
        join = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                           options=[("grpc.so_reuseport", 0)])
        ca = CAService(
            self.store, self._proposer(), self.manager_addrs, self._check_ready,
            add_member=self._add_member,
            forward=forward_issue(self.link, self.ready.is_set, cfg.node_id),
        )
        ca.is_leader = self.ready.is_set
        ca.leader_hint = self._leader_addr
        ca.listen_port = port_of(cfg.advertise_addr)
        pbg.add_CAServicer_to_server(ca, join)  # type: ignore[arg-type]
        pbg.add_CAServicer_to_server(ca, main)  # type: ignore[arg-type]
        join.add_secure_port(
            with_port(cfg.listen_addr, 1),
            grpc.ssl_server_credentials([(cfg.server_key, cfg.server_cert_chain)]),
        )
        for s in (main, join):
            s.start()
            self._servers.append(s)

    def _proposer(self) -> Proposer:
        assert self.proposer is not None, "start() first"
        return self.proposer

    def stop(self) -> None:
        self._leadership(False)
        for s in self._servers:
            s.stop(grace=0.5)
        self.link.close()
        if self.proposer is not None:
            self.proposer.stop()
        if self.raft is not None:
            self.raft.destroy()

    # ------------------------------------------------------------------ leadership

    def is_leader(self) -> bool:
        return self._leading

    def leader_node_id(self) -> str | None:
        if self._leading:
            return self.cfg.node_id
        node = self.link.leader_node()
        return node.id if node is not None else None

    def manager_addrs(self) -> list[str]:
        return [
            n.manager_status.addr for n in self.store.all_nodes()
            if n.role == pb.MANAGER and n.manager_status.addr
        ]

    def _leader_addr(self) -> str:
        node = self.link.leader_node()
        return node.manager_status.addr if node is not None else ""

    def _add_member(self, raft_addr: str) -> None:
        assert self.raft is not None
        self.raft.compact()  # the newcomer catches up from a snapshot, not the whole log
        self.raft.change_membership("add", raft_addr, timeout=None)

    def _check_ready(self) -> None:
        if not self.ready.is_set():
            raise NotLeader(
                "manager is starting: the cluster state is not loaded yet"
                if self._leading or (self.raft is not None and self.raft.leader() is None)
                else "this manager is not the leader"
            )

    def _history_limit(self) -> int:
        c = self.store.cluster
        return int(c.spec.task_history_limit) if c and c.spec.task_history_limit else 5

    def _leadership(self, leading: bool) -> None:
        with self._lock:
            if leading == self._leading:
                return
            self._leading = leading
        self._log.info("manager.leadership", leader=leading)
        if leading:
            threading.Thread(target=self._become_leader, daemon=True, name="take-lead").start()
        else:
            self.ready.clear()
            self.leader_loop.stop()
            self.dispatcher.stop()

    def _barrier(self, timeout: float = 30.0) -> bool:
        """Commit an empty entry: once it applies, every earlier entry has applied too."""
        assert self.raft is not None
        done = threading.Event()
        ok: list[bool] = []

        def cb(_result: object, error: object) -> None:
            ok.append(error == 0)
            done.set()

        self.raft.submit(pb.CommandBatch(timestamp=self._clock.now()).SerializeToString(), cb)
        return done.wait(timeout) and ok == [True]

    def _become_leader(self) -> None:
        while not self._barrier(timeout=10):
            if not self._leading:
                return
            self._log.warning("manager.barrier_retry")
        if self.store.cluster is None and self.cfg.bootstrap is not None:
            assert self.proposer is not None
            try:
                self.proposer.propose(list(self.cfg.bootstrap.commands))
            except ManagerError as e:
                self._log.error("manager.bootstrap_failed", error=str(e))
                return
        if self._recovered and self.raft is not None:
            self.raft.compact()  # force-new-cluster: the recovered state into Raft's snapshot
            self._recovered = False
        if self._leading:
            self._ensure_ingress()
        if self._leading:
            self.ready.set()
            self.dispatcher.start()
            self.leader_loop.start()

    def _ensure_ingress(self) -> None:
        """Every cluster has an ingress network: made with the cluster at `swarm init`
        (right after the bootstrap commands), and by the leader of an older cluster."""
        if self.store.cluster is None or self.store.ingress_network() is not None:
            return
        assert self.proposer is not None
        with self.store.lock:
            net = new_ingress(list(self.store.networks.values()), new_id())
        try:
            result = self.proposer.propose([pb.Command(create_network=net)])[0]
        except ManagerError as e:
            self._log.error("manager.ingress_failed", error=str(e))
            return
        if result.ok:
            self._log.info("manager.ingress_created", **{"network.id": net.id,
                                                         "network.subnet": net.subnet})

    def _on_events(self, events: list[Event]) -> None:
        if self._leading:
            self.dispatcher.on_events(events)
            self.leader_loop.on_events(events)

    def _node_removed(self, node_id: str) -> None:
        self.dispatcher.kick(node_id, "node was removed from the cluster")
