"""Any manager serves the control API: a follower forwards each call to the leader.

Forwarding goes over the mutual-TLS control port with this manager's own certificate
(managers may call the control API). Reads are forwarded too, so every answer is the
leader's current view. When no leader is known the call fails at once with
`cluster has no leader: 1 of 3 managers reachable` instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from manager.errors import NotLeader
from manager.raft import RaftNode
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg

FORWARD_TIMEOUT_S = 30.0
STREAMING = frozenset({"ServiceLogs"})  # response streams: relayed, no deadline


class LeaderLink:
    """Finds the leader's addresses and keeps a channel to it."""

    def __init__(
        self,
        store: Store,
        raft: Callable[[], RaftNode | None],
        channel_factory: Callable[[str], grpc.Channel],
        ca_pem: bytes,
    ) -> None:
        self._store = store
        self._raft = raft
        self._factory = channel_factory
        self._ca = ca_pem
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}

    def leader_node(self) -> pb.Node | None:
        raft = self._raft()
        addr = raft.leader() if raft else None
        if not addr:
            return None
        for n in self._store.all_nodes():
            if n.manager_status.raft_addr == addr:
                return n
        return None

    def no_leader(self) -> NotLeader:
        raft = self._raft()
        reachable, total = raft.members() if raft else (1, 1)
        return NotLeader(f"cluster has no leader: {reachable} of {total} managers reachable")

    def channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(addr)
            if ch is None:
                ch = self._channels[addr] = self._factory(addr)
            return ch

    def join_channel(self, addr: str) -> grpc.Channel:
        from swarmlet.pki import MANAGER_SERVER_NAME

        host, _, port = addr.rpartition(":")
        key = f"join:{addr}"
        with self._lock:
            ch = self._channels.get(key)
            if ch is None:
                ch = self._channels[key] = grpc.secure_channel(
                    f"{host}:{int(port) + 1}", grpc.ssl_channel_credentials(self._ca),
                    options=[("grpc.ssl_target_name_override", MANAGER_SERVER_NAME)],
                )
            return ch

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


class ForwardingControl:
    """The control servicer every endpoint uses: local when this manager leads and has
    loaded its state, otherwise a pass-through to the leader."""

    def __init__(self, local: Any, is_ready: Callable[[], bool], link: LeaderLink,
                 self_id: str) -> None:
        self._local = local
        self._is_ready = is_ready
        self._link = link
        self._self_id = self_id

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        local = getattr(self._local, name)

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if self._is_ready():
                return local(request, context)
            leader = self._link.leader_node()
            if leader is None or leader.id == self._self_id or not leader.manager_status.addr:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(self._link.no_leader()))
                return None
            stub = pbg.ControlStub(self._link.channel(leader.manager_status.addr))
            if name in STREAMING:
                return _relay(getattr(stub, name)(request), context)
            try:
                return getattr(stub, name)(request, timeout=_deadline(context))
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())

        return call


def _deadline(context: grpc.ServicerContext) -> float:
    """The caller's own deadline travels on: the leader gives up when our caller does."""
    left = context.time_remaining()
    return FORWARD_TIMEOUT_S if left is None else max(0.05, min(FORWARD_TIMEOUT_S, left))


def _relay(call: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    """A leader's response stream passed through; cancelled when our caller goes away."""
    context.add_callback(call.cancel)
    try:
        yield from call
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            context.abort(e.code(), e.details())


def forward_issue(link: LeaderLink, is_ready: Callable[[], bool], self_id: str) -> Any:
    """A CA forwarder: None when this manager should answer itself."""

    def forward(method: str, request: pb.IssueRequest) -> pb.IssueResponse | None:
        if is_ready():
            return None
        leader = link.leader_node()
        if leader is None or leader.id == self_id:
            raise NotLeader(str(link.no_leader()))
        stub = pbg.CAStub(link.join_channel(leader.manager_status.addr))
        resp: pb.IssueResponse = getattr(stub, method)(request, timeout=FORWARD_TIMEOUT_S)
        return resp

    return forward
