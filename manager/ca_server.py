"""The join endpoint: a new node proves a join token and gets its certificate.

Served on its own port with server-only TLS (the joiner has no certificate yet; gRPC's
Python server cannot ask for a client certificate without requiring one). The joiner
pins the CA by the digest in its token before it sends the token's secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from manager.errors import ManagerError
from manager.proposer import Proposer
from manager.store import Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.errors import SpecError
from swarmlet.pki import Identity, PKIError, new_id, parse_token, sign_csr


class RenewMixin:
    """CA.Renew on the mutual-TLS port: a node gets a certificate for its desired role.
    Promotion happens here: the node becomes a manager and a Raft member."""

    _store: Store
    _proposer: Proposer
    _managers: Callable[[], list[str]]
    _add_member: Callable[[str], None] | None
    is_leader: Callable[[], bool]
    leader_hint: Callable[[], str]
    listen_port: int

    def Renew(self, request: pb.RenewRequest, context: Any) -> pb.IssueResponse:  # noqa: N802
        from manager.auth import peer_identity

        ident = peer_identity(context, self._store)
        if not self.is_leader():
            hint = self.leader_hint()
            if hint:
                context.set_trailing_metadata((("swarmlet-leader", hint),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "this manager is not the leader")
        try:
            return self._renew(ident.node_id, request)
        except _Refused as e:
            context.abort(e.code, str(e))
            raise
        except ManagerError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
            raise

    def _renew(self, node_id: str, request: pb.RenewRequest) -> pb.IssueResponse:
        node = self._store.nodes.get(node_id)
        cluster = self._store.cluster
        if node is None or cluster is None:
            raise _Refused(grpc.StatusCode.NOT_FOUND, "node is not part of this cluster")
        want = node.spec.desired_role
        resp = pb.IssueResponse(node_id=node_id, ca_pem=cluster.ca_cert_pem.encode(),
                                cluster_id=cluster.id, role=want)
        if want == pb.MANAGER:
            peers = [n.manager_status.raft_addr for n in self._store.all_nodes()
                     if n.role == pb.MANAGER and n.id != node_id]
            if node.role != pb.MANAGER:
                self._promote(node)
            resp.raft_secret = cluster.raft_secret
            resp.raft_peers.extend(peers)
        role = "manager" if want == pb.MANAGER else "worker"
        resp.cert_pem = sign_csr(cluster.ca_cert_pem.encode(), cluster.ca_key_pem.encode(),
                                 request.csr_pem, Identity(node_id, role, cluster.id))
        resp.managers.extend(self._managers())
        return resp

    def _promote(self, node: pb.Node) -> None:
        host = node.status.addr
        new = pb.Node()
        new.CopyFrom(node)
        new.role = pb.MANAGER
        new.manager_status.CopyFrom(pb.ManagerStatus(
            addr=f"{host}:{self.listen_port}", raft_addr=f"{host}:{self.listen_port + 2}",
            reachability="unreachable"))
        cmd = pb.Command(update_node=new, expected_version=node.meta.version)
        result = self._proposer.propose([cmd])[0]
        if not result.ok:
            raise _Refused(grpc.StatusCode.ABORTED, result.error)
        assert self._add_member is not None
        self._add_member(new.manager_status.raft_addr)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class CAService(RenewMixin, pbg.CAServicer):
    def __init__(
        self,
        store: Store,
        proposer: Proposer,
        managers: Callable[[], list[str]],
        ready: Callable[[], None] = lambda: None,
        add_member: Callable[[str], None] | None = None,
        forward: Callable[[str, pb.IssueRequest], pb.IssueResponse | None] | None = None,
    ) -> None:
        self._ready = ready
        self._add_member = add_member
        self.is_leader: Callable[[], bool] = lambda: True
        self.leader_hint: Callable[[], str] = lambda: ""
        self.listen_port = 2377
        self._forward = forward
        self._store = store
        self._proposer = proposer
        self._managers = managers
        self._log = log.get("ca")

    def _role_for(self, token: str, cluster: pb.Cluster) -> str | None:
        for role in ("worker", "manager"):
            if hmac.compare_digest(token.strip(), getattr(cluster.join_tokens, role)):
                return role
        return None

    def Issue(self, request: pb.IssueRequest, context: Any) -> pb.IssueResponse:  # noqa: N802
        try:
            if self._forward is not None:
                forwarded = self._forward("Issue", request)
                if forwarded is not None:
                    return forwarded
            return self._issue(request)
        except _Refused as e:
            context.abort(e.code, str(e))
            raise  # not reached: abort raises
        except grpc.RpcError as e:
            context.abort(e.code(), e.details())
            raise
        except ManagerError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
            raise

    def _issue(self, request: pb.IssueRequest) -> pb.IssueResponse:
        try:
            self._ready()
        except ManagerError as e:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        cluster = self._store.cluster
        if cluster is None:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "cluster is not initialised yet")
        try:
            parse_token(request.token)
        except SpecError as e:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        role = self._role_for(request.token, cluster)
        if role is None:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "invalid join token (it may have been rotated; ask a manager for the current "
                "one with: swarm join-token worker)",
            )
        node_id = new_id()
        node = self._new_node(node_id, role, request)
        try:
            cert = sign_csr(
                cluster.ca_cert_pem.encode(),
                cluster.ca_key_pem.encode(),
                request.csr_pem,
                Identity(node_id, role, cluster.id),
            )
            result = self._proposer.propose([pb.Command(create_node=node)])[0]
        except (PKIError, ValueError) as e:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"csr: {e}") from None
        except ManagerError as e:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        if not result.ok:
            raise _Refused(grpc.StatusCode.ABORTED, result.error)
        resp = pb.IssueResponse(
            cert_pem=cert,
            ca_pem=cluster.ca_cert_pem.encode(),
            node_id=node_id,
            role=node.role,
            cluster_id=cluster.id,
        )
        if role == "manager":
            self._join_raft(node, resp, cluster)
        resp.managers.extend(self._managers())
        self._log.info("ca.joined", role=role,
                       **{"node.id": node_id, "node.hostname": request.hostname})
        return resp

    def _new_node(self, node_id: str, role: str, request: pb.IssueRequest) -> pb.Node:
        host, _, port = request.advertise_addr.rpartition(":")
        if role == "worker":
            return pb.Node(
                id=node_id, role=pb.WORKER,
                spec=pb.NodeSpec(desired_role=pb.WORKER, availability=pb.ACTIVE),
                description=pb.NodeDescription(hostname=request.hostname),
                status=pb.NodeStatus(state=pb.UNKNOWN, addr=host or request.advertise_addr),
            )
        if not host or not port.isdigit():
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT,
                           "advertise-addr: a manager needs IP:PORT")
        return pb.Node(
            id=node_id, role=pb.MANAGER,
            spec=pb.NodeSpec(desired_role=pb.MANAGER, availability=pb.ACTIVE),
            description=pb.NodeDescription(hostname=request.hostname),
            status=pb.NodeStatus(state=pb.UNKNOWN, addr=host),
            manager_status=pb.ManagerStatus(
                addr=request.advertise_addr, raft_addr=f"{host}:{int(port) + 2}",
                reachability="unreachable",
            ),
        )

    def _join_raft(self, node: pb.Node, resp: pb.IssueResponse, cluster: pb.Cluster) -> None:
        raft_addr = node.manager_status.raft_addr
        peers = [
            n.manager_status.raft_addr for n in self._store.all_nodes()
            if n.role == pb.MANAGER and n.id != node.id and n.manager_status.raft_addr
        ]
        try:
            assert self._add_member is not None
            self._add_member(raft_addr)
        except ManagerError as e:
            self._proposer.propose([pb.Command(remove_node=node.id)])
            raise _Refused(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        resp.raft_secret = cluster.raft_secret
        resp.raft_peers.extend(peers)
