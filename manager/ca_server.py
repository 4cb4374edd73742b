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


class CAService(pbg.CAServicer):
    def __init__(
        self,
        store: Store,
        proposer: Proposer,
        managers: Callable[[], list[str]],
        ready: Callable[[], None] = lambda: None,
    ) -> None:
        self._ready = ready
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
            return self._issue(request)
        except _Refused as e:
            context.abort(e.code, str(e))
            raise  # not reached: abort raises

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
        if role == "manager":
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "joining as a manager is not supported yet: this cluster runs a single manager",
            )
        node_id = new_id()
        node = pb.Node(
            id=node_id,
            role=pb.WORKER,
            spec=pb.NodeSpec(desired_role=pb.WORKER, availability=pb.ACTIVE),
            description=pb.NodeDescription(hostname=request.hostname),
            status=pb.NodeStatus(state=pb.UNKNOWN, addr=request.advertise_addr),
        )
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
        self._log.info("ca.joined", **{"node.id": node_id, "node.hostname": request.hostname})
        return pb.IssueResponse(
            cert_pem=cert,
            ca_pem=cluster.ca_cert_pem.encode(),
            node_id=node_id,
            role=pb.WORKER,
            cluster_id=cluster.id,
            managers=self._managers(),
        )


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
