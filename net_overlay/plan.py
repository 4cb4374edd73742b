"""What the node's data plane should look like, derived from one `Assignments` (pure).

Everything here is a function of the message and this node's identity: the remote
endpoints each sandbox programs as FDB/neighbour entries, the backends of each service's
VIP on a network, the routing-mesh ports and their backends. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from net_overlay.names import ip_of, mac_for
from swarmlet.api import swarmlet_pb2 as pb


@dataclass(frozen=True, order=True, slots=True)
class Remote:
    """An endpoint hosted on another node: its MAC lives behind VTEP `vtep`."""

    ip: str
    mac: str
    vtep: str


@dataclass(frozen=True, order=True, slots=True)
class Vip:
    """Connections to `vip` are spread over `backends` (task addresses, no prefix)."""

    vip: str
    backends: tuple[str, ...]


@dataclass(frozen=True, order=True, slots=True)
class MeshPort:
    """A published port: `protocol` `published` on this node goes to backends:`target`."""

    protocol: str
    published: int
    target: int
    backends: tuple[str, ...]


def ingress_network_id(a: pb.Assignments) -> str:
    if a.ingress.network.id:
        return a.ingress.network.id
    return next((n.id for n in a.networks if n.spec.ingress), "")


def remotes(a: pb.Assignments, network_id: str, node_id: str, underlay_ip: str) -> set[Remote]:
    """Endpoints (tasks and node ingress endpoints) of the network on other nodes."""
    out = set()
    for e in a.endpoints:
        if e.network_id != network_id or not e.address or not e.node_addr:
            continue
        if e.node_id == node_id or (not e.node_id and e.node_addr == underlay_ip):
            continue
        out.add(Remote(ip_of(e.address), e.mac or mac_for(e.address), e.node_addr))
    return out


def serving(a: pb.Assignments, service_id: str, network_id: str,
            node_id: str | None = None) -> tuple[str, ...]:
    """Addresses of the service's serving tasks on the network (only this node's when
    node_id is given), sorted for stable rulesets."""
    return tuple(sorted(
        {ip_of(e.address) for e in a.endpoints
         if e.task_id and e.serving and e.service_id == service_id
         and e.network_id == network_id and e.address
         and (node_id is None or e.node_id == node_id)},
        key=_ip_key,
    ))


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def task_vips(a: pb.Assignments, network_ids: set[str]) -> list[Vip]:
    """The VIPs a task on those networks reaches, each with its backends."""
    out = []
    for s in a.services:
        if s.endpoint_mode == "dnsrr":
            continue
        for v in s.virtual_ips:
            if v.network_id in network_ids and v.addr:
                out.append(Vip(ip_of(v.addr), serving(a, s.service_id, v.network_id)))
    return sorted(set(out))


def mesh_ports(a: pb.Assignments, node_id: str) -> list[MeshPort]:
    """The ports this node publishes: ingress mode to every serving task on the ingress
    network, host mode to this node's serving tasks only."""
    ingress = ingress_network_id(a)
    out = []
    for s in a.services:
        for p in s.ports:
            if not p.published_port:
                continue
            host = p.publish_mode == "host"
            backends = serving(a, s.service_id, ingress, node_id if host else None)
            if host and not backends:
                continue  # mode=host publishes only where the task runs
            out.append(MeshPort(p.protocol or "tcp", p.published_port,
                                p.target_port or p.published_port, backends))
    return sorted(set(out))


def network_by_id(a: pb.Assignments) -> dict[str, pb.Network]:
    nets = {n.id: n for n in a.networks}
    if a.ingress.network.id:
        nets.setdefault(a.ingress.network.id, a.ingress.network)
    return nets
