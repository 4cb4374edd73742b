"""Find objects the way users name them: full id, name (or hostname), or unique id prefix."""

from __future__ import annotations

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import NotFound, SpecError


def _by_prefix(kind: str, ref: str, ids: list[str]) -> str:
    hits = [i for i in ids if i.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise SpecError(kind, f"{ref!r} matches {len(hits)} {kind}s; use more of the id")
    raise NotFound(f"{kind} {ref} not found")


def resolve_service(store: Store, ref: str) -> pb.Service:
    if not ref:
        raise SpecError("service", "a service name or id is required")
    with store.lock:
        if ref in store.services:
            return store.services[ref]
        svc = store.service_by_name(ref)
        if svc is not None:
            return svc
        return store.services[_by_prefix("service", ref, list(store.services))]


def resolve_node(store: Store, ref: str) -> pb.Node:
    if not ref:
        raise SpecError("node", "a node hostname or id is required")
    with store.lock:
        if ref in store.nodes:
            return store.nodes[ref]
        named = [n for n in store.nodes.values() if n.description.hostname == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise SpecError("node", f"hostname {ref!r} is shared by {len(named)} nodes; use the id")
        return store.nodes[_by_prefix("node", ref, list(store.nodes))]
