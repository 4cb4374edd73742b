"""Who is calling: the node identity carried by a peer's verified client certificate."""

from __future__ import annotations

import grpc

from manager.store import Store
from swarmlet.pki import Identity, identity_of


def peer_identity(context: grpc.ServicerContext, store: Store) -> Identity:
    """The caller's identity; aborts UNAUTHENTICATED when it is not a node of this cluster."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "a node certificate is required")
    ident = identity_of(bytes(pems[0]))
    cluster = store.cluster
    if cluster is not None and ident.cluster_id != cluster.id:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate is for another cluster")
    return ident


def require_manager(context: grpc.ServicerContext, store: Store) -> Identity:
    ident = peer_identity(context, store)
    if ident.role != "manager":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "only managers may call this")
    return ident


def manager_only(servicer: object, store: Store) -> object:
    """Wrap a servicer so every call first checks the caller holds a manager certificate."""

    class _Guarded:
        def __getattr__(self, name: str) -> object:
            method = getattr(servicer, name)
            if not callable(method) or name.startswith("_"):
                return method

            def guarded(request: object, context: grpc.ServicerContext) -> object:
                require_manager(context, store)
                return method(request, context)

            return guarded

    return _Guarded()
