"""A service's endpoint: its VIPs and published ports, allocated from the store (pure).

`resolve_networks` turns the network names of a spec into ids; `allocate_endpoint` gives a
service one VIP per network in endpoint mode vip (plus one on the ingress network when it
publishes a port in ingress mode) and fills in published port 0 from 30000-32767, keeping
what the service held before where that still fits; `check_capacity` refuses a service
whose networks cannot hold its replicas. Used by the control API (create, update, scale)
and by the allocator (an endpoint that no longer matches its spec, after a rollback).
"""

from __future__ import annotations

from manager.ipam import Pools, holds_addresses, used_addresses
from manager.store import Store
from manager.store_networks import publishes_ingress
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import Conflict, NotFound, SpecError

PORT_FIRST, PORT_LAST = 30000, 32767


def _network_ref(store: Store, ref: str) -> pb.Network:
    if ref in store.networks:
        return store.networks[ref]
    found = store.network_by_name(ref)
    if found is not None:
        return found
    hits = [n for i, n in store.networks.items() if i.startswith(ref)] if len(ref) >= 4 else []
    if len(hits) == 1:
        return hits[0]
    raise NotFound(f"network {ref} not found")


def resolve_networks(store: Store, spec: pb.ServiceSpec) -> None:
    """Replace each network target (name, id or id prefix) by the network's id."""
    seen: set[str] = set()
    with store.lock:
        for att in spec.task_template.networks:
            if not att.target:
                raise SpecError("network", "a network name is required")
            net = _network_ref(store, att.target)
            name = net.spec.annotations.name
            if net.spec.ingress:
                raise SpecError("network", f"network {name} is the ingress network; services "
                                           "reach it by publishing ports (--publish)")
            if net.id in seen:
                raise SpecError("network", f"network {name} is named twice")
            seen.add(net.id)
            att.target = net.id


def service_networks(store: Store, spec: pb.ServiceSpec) -> list[str]:
    """Ids of the networks the service's tasks attach to: the spec's, then ingress when it
    publishes any port (host-mode tasks get an ingress address too)."""
    ids = [a.target for a in spec.task_template.networks]
    ingress = store.ingress_network()
    if spec.endpoint_spec.ports and ingress is not None and ingress.id not in ids:
        ids.append(ingress.id)
    return ids


def _vip_networks(store: Store, spec: pb.ServiceSpec) -> list[str]:
    ids = [] if spec.endpoint_spec.mode == "dnsrr" else [a.target for a in
                                                          spec.task_template.networks]
    if any(p.publish_mode != "host" for p in spec.endpoint_spec.ports):
        ingress = store.ingress_network()
        if ingress is None:
            raise Conflict("the cluster has no ingress network (it was removed); ports can be "
                           "published in ingress mode again once a newly started leader "
                           "has made it (or use mode=host)")
        ids.append(ingress.id)
    return ids


def _taken_ports(store: Store, service_id: str) -> dict[tuple[int, str], str]:
    return {(p.published_port, p.protocol): s.spec.annotations.name
            for s in store.services.values() if s.id != service_id
            for p in s.endpoint.ports if p.published_port}


def _fill_ports(store: Store, spec: pb.ServiceSpec, service_id: str,
                old: pb.Endpoint | None) -> list[pb.PortConfig]:
    taken = _taken_ports(store, service_id)
    dynamic = {}  # (target, protocol, mode) -> published port given before
    if old is not None:
        asked = {(p.target_port, p.protocol, p.publish_mode) for p in old.spec.ports
                 if not p.published_port}
        dynamic = {(p.target_port, p.protocol, p.publish_mode): p.published_port
                   for p in old.ports
                   if (p.target_port, p.protocol, p.publish_mode) in asked}
    ports = [pb.PortConfig() for _ in spec.endpoint_spec.ports]
    for port, given in zip(ports, spec.endpoint_spec.ports, strict=True):
        port.CopyFrom(given)
        if port.published_port:
            owner = taken.get((port.published_port, port.protocol))
            if owner is not None:
                raise Conflict(f"port {port.published_port}/{port.protocol} is already "
                               f"published by service {owner}")
            taken[(port.published_port, port.protocol)] = spec.annotations.name
    for port in ports:
        if port.published_port:
            continue
        kept = dynamic.get((port.target_port, port.protocol, port.publish_mode))
        if kept and (kept, port.protocol) not in taken:
            port.published_port = kept
        else:
            port.published_port = next(
                (n for n in range(PORT_FIRST, PORT_LAST + 1) if (n, port.protocol) not in taken),
                0)
            if not port.published_port:
                raise Conflict(f"no free port left in {PORT_FIRST}-{PORT_LAST} to publish "
                               f"{port.target_port}/{port.protocol}")
        taken[(port.published_port, port.protocol)] = spec.annotations.name
    return ports


def _pools(store: Store, exclude_service: str = "") -> Pools:
    others = [s for s in store.services.values() if s.id != exclude_service]
    return Pools(store.networks, used_addresses(store.tasks.values(), others,
                                                store.nodes.values()))


def allocate_endpoint(store: Store, service_id: str, spec: pb.ServiceSpec,
                      old: pb.Endpoint | None = None) -> pb.Endpoint:
    """The endpoint for a (validated, resolved) spec; Conflict when a port is taken or a
    network is full. VIPs the service held on networks it keeps are kept."""
    with store.lock:
        ports = _fill_ports(store, spec, service_id, old)
        pools = _pools(store)  # the service's own VIPs count as used: kept ones stay its own
        kept = {v.network_id: v.addr for v in (old.virtual_ips if old is not None else ())}
        out = pb.Endpoint(ports=ports)
        out.spec.CopyFrom(spec.endpoint_spec)
        del out.spec.ports[:]
        out.spec.ports.extend(ports)
        for nid in _vip_networks(store, spec):
            addr = kept.get(nid) or pools.pool(nid).take()
            out.virtual_ips.add(network_id=nid, addr=addr)
        return out


def wanted_tasks(store: Store, spec: pb.ServiceSpec) -> int:
    if spec.mode.WhichOneof("mode") == "global":
        return len(store.nodes)
    return int(spec.mode.replicated.replicas)


def check_capacity(store: Store, service_id: str, spec: pb.ServiceSpec) -> None:
    """Conflict naming the first network that cannot hold the service's tasks and VIP.

    The service's own VIPs count as free (it gets them back), addresses its live tasks hold
    as kept (up to the replicas wanted); every other holder's as used."""
    replicas = wanted_tasks(store, spec)
    with store.lock:
        pools = _pools(store, exclude_service=service_id)
        held: dict[str, int] = {}
        for t in store.tasks_of_service(service_id):
            if holds_addresses(t) and t.desired_state <= pb.RUNNING:
                for att in t.networks:
                    held[att.network.id] = held.get(att.network.id, 0) + 1
        vips = set(_vip_networks(store, spec))
        for nid in service_networks(store, spec):
            net = store.networks[nid]
            free = pools.pool(nid).free()
            need = max(0, replicas - held.get(nid, 0)) + (1 if nid in vips else 0)
            if need > free:
                raise Conflict(f"network {net.spec.annotations.name}: subnet {net.subnet} has "
                               f"room for {free} more addresses, service needs {need}")


def endpoint_is_current(store: Store, svc: pb.Service) -> bool:
    """Whether the service's endpoint still matches its spec (networks, mode and ports)."""
    spec, ep = svc.spec, svc.endpoint
    try:
        want_vips = _vip_networks(store, spec)
    except Conflict:
        return True  # nothing to do until the ingress network exists
    if [v.network_id for v in ep.virtual_ips] != want_vips:
        return False
    if (ep.spec.mode or "vip") != (spec.endpoint_spec.mode or "vip") or \
            len(ep.ports) != len(spec.endpoint_spec.ports):
        return False
    for have, want in zip(ep.ports, spec.endpoint_spec.ports, strict=True):
        if (have.target_port, have.protocol or "tcp", have.publish_mode or "ingress") != (
                want.target_port, want.protocol or "tcp", want.publish_mode or "ingress"):
            return False
        if want.published_port and have.published_port != want.published_port:
            return False
    return True


__all__ = ["allocate_endpoint", "check_capacity", "endpoint_is_current", "publishes_ingress",
           "resolve_networks", "service_networks", "wanted_tasks"]
