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


Serving = dict[tuple[str, str], tuple[str, ...]]  # (service id, network id) -> addresses


def serving_index(a: pb.Assignments, node_id: str | None = None) -> Serving:
    """Addresses of each service's serving tasks per network (only this node's tasks
    when node_id is given), sorted for stable rulesets; built once per update, so the
    lookups below stay linear in the endpoints."""
    found: dict[tuple[str, str], set[str]] = {}
    for e in a.endpoints:
        if e.task_id and e.serving and e.service_id and e.address and (
                node_id is None or e.node_id == node_id):
            found.setdefault((e.service_id, e.network_id), set()).add(ip_of(e.address))
    return {k: tuple(sorted(v, key=_ip_key)) for k, v in found.items()}


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def all_vips(a: pb.Assignments, index: Serving) -> dict[str, list[Vip]]:
    """Per network, the VIPs on it with their backends."""
    out: dict[str, list[Vip]] = {}
    for s in a.services:
        if s.endpoint_mode == "dnsrr":
            continue
        for v in s.virtual_ips:
            if v.addr:
                out.setdefault(v.network_id, []).append(
                    Vip(ip_of(v.addr), index.get((s.service_id, v.network_id), ())))
    return out


def task_vips(vips: dict[str, list[Vip]], network_ids: set[str]) -> list[Vip]:
    """The VIPs a task on those networks reaches, each with its backends."""
    return sorted({v for n in network_ids for v in vips.get(n, ())})


def mesh_ports(a: pb.Assignments, node_id: str) -> list[MeshPort]:
    """The ports this node publishes: ingress mode to every serving task on the ingress
    network, host mode to this node's serving tasks only."""
    ingress = ingress_network_id(a)
    every, mine = serving_index(a), serving_index(a, node_id)
    out = []
    for s in a.services:
        for p in s.ports:
            if not p.published_port:
                continue
            host = p.publish_mode == "host"
            backends = (mine if host else every).get((s.service_id, ingress), ())
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
