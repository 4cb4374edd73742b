"""Find objects the way users name them: full id, name (or hostname), or unique id prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import NotFound, SpecError

T = TypeVar("T")


def _by_prefix(kind: str, ref: str, ids: list[str]) -> str:
    hits = [i for i in ids if i.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise SpecError(kind, f"{ref!r} matches {len(hits)} {kind}s; use more of the id")
    raise NotFound(f"{kind} {ref} not found")


def resolve_named(store: Store, kind: str, ref: str, table: dict[str, T],
                  by_name: Callable[[str], T | None]) -> T:
    """An object of `table` by id, name (`by_name`) or unique id prefix."""
    if not ref:
        raise SpecError(kind, f"a {kind} name or id is required")
    with store.lock:
        if ref in table:
            return table[ref]
        found = by_name(ref)
        if found is not None:
            return found
        return table[_by_prefix(kind, ref, list(table))]


def resolve_service(store: Store, ref: str) -> pb.Service:
    return resolve_named(store, "service", ref, store.services, store.service_by_name)


def resolve_network(store: Store, ref: str) -> pb.Network:
    return resolve_named(store, "network", ref, store.networks, store.network_by_name)


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
