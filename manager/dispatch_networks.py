"""The network half of a node's Assignments (pure): built once per store change, then
cut per node.

`NetworkTables.build` reads the store once: for every network, the endpoints of every
live assigned task attached to it (node_addr = the hosting node's underlay IP, mac derived
from the address, serving = observed and desired RUNNING), each node's own ingress
endpoint, and a ServiceBinding per service that has VIPs or publishes ports.
`for_node` then picks what one node needs: the networks its tasks attach to (plus ingress
while any service publishes in ingress mode), every endpoint on those networks (plus the
other nodes' ingress endpoints), the bindings of the services with a VIP on them, of every
service publishing in ingress mode and of host-mode publishers running on the node, and the
node's own ingress attachment. Each table carries a digest, so a node's fingerprint says
whether anything it was sent changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from manager.ipam import mac_of
from manager.store import Store
from manager.store_networks import publishes_ingress
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.states import is_terminal


def underlay_ip(addr: str) -> str:
    """The IP of a node address ("10.1.2.3", "10.1.2.3:2377", "[::1]:2377")."""
    if addr.startswith("["):
        return addr[1:].split("]", 1)[0]
    host, sep, port = addr.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return addr


def _digest(messages: Iterable[pb.NetworkEndpoint | pb.ServiceBinding]) -> bytes:
    h = hashlib.blake2b(digest_size=12)
    for m in messages:
        h.update(m.SerializeToString(deterministic=True))
    return h.digest()


def _hosted(task: pb.Task) -> bool:
    return bool(task.node_id) and task.status.state >= pb.ASSIGNED and \
        not is_terminal(task.status.state)


@dataclass
class NodeNetworking:
    networks: list[pb.Network] = field(default_factory=list)
    endpoints: list[pb.NetworkEndpoint] = field(default_factory=list)
    services: list[pb.ServiceBinding] = field(default_factory=list)
    ingress: pb.NetworkAttachment | None = None
    fingerprint: tuple[object, ...] = ()

    def fill(self, out: pb.Assignments) -> None:
        out.networks.extend(self.networks)
        out.endpoints.extend(self.endpoints)
        out.services.extend(self.services)
        if self.ingress is not None:
            out.ingress.CopyFrom(self.ingress)


@dataclass
class NetworkTables:
    networks: dict[str, pb.Network] = field(default_factory=dict)
    ingress_id: str = ""
    endpoints: dict[str, list[pb.NetworkEndpoint]] = field(default_factory=dict)
    node_ingress: dict[str, pb.NetworkEndpoint] = field(default_factory=dict)
    bindings: dict[str, pb.ServiceBinding] = field(default_factory=dict)
    vip_services: dict[str, list[str]] = field(default_factory=dict)  # network -> services
    ingress_services: list[str] = field(default_factory=list)
    host_services: set[str] = field(default_factory=set)
    digests: dict[str, bytes] = field(default_factory=dict)  # network or service id -> digest

    @classmethod
    def build(cls, store: Store, task_ids: Iterable[str]) -> NetworkTables:
        """From the store, under its lock; `task_ids`: the tasks that have attachments."""
        out = cls()
        with store.lock:
            out.networks = dict(store.networks)
            ingress = store.ingress_network()
            out.ingress_id = ingress.id if ingress is not None else ""
            nodes = store.nodes
            for tid in task_ids:
                t = store.tasks.get(tid)
                if t is not None and t.networks and _hosted(t):
                    out._add_task(t, nodes)
            for n in nodes.values():
                if n.HasField("ingress") and n.ingress.addresses:
                    out.node_ingress[n.id] = pb.NetworkEndpoint(
                        network_id=n.ingress.network.id, node_id=n.id,
                        node_addr=underlay_ip(n.status.addr), address=n.ingress.addresses[0],
                        mac=mac_of(n.ingress.addresses[0]), serving=False)
            for svc in store.services.values():
                out._add_service(svc)
        for eps in out.endpoints.values():
            eps.sort(key=lambda e: (e.address, e.task_id))
        for nid, eps in out.endpoints.items():
            out.digests[nid] = _digest(eps)
        out.digests[out.ingress_id + "/nodes"] = _digest(
            out.node_ingress[k] for k in sorted(out.node_ingress))
        for sid, b in out.bindings.items():
            out.digests[sid] = _digest([b])
        return out

    def _add_task(self, t: pb.Task, nodes: dict[str, pb.Node]) -> None:
        node = nodes.get(t.node_id)
        node_addr = underlay_ip(node.status.addr) if node is not None else ""
        serving = t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
        for att in t.networks:
            for addr in att.addresses:
                self.endpoints.setdefault(att.network.id, []).append(pb.NetworkEndpoint(
                    network_id=att.network.id, task_id=t.id, node_addr=node_addr,
                    address=addr, mac=mac_of(addr), service_name=t.service_name,
                    aliases=att.aliases, service_id=t.service_id, node_id=t.node_id,
                    serving=serving))

    def _add_service(self, svc: pb.Service) -> None:
        ep = svc.endpoint
        if not ep.virtual_ips and not ep.ports:
            return
        self.bindings[svc.id] = pb.ServiceBinding(
            service_id=svc.id, service_name=svc.spec.annotations.name,
            endpoint_mode=ep.spec.mode or "vip", virtual_ips=ep.virtual_ips, ports=ep.ports)
        for vip in ep.virtual_ips:
            if vip.network_id != self.ingress_id:
                self.vip_services.setdefault(vip.network_id, []).append(svc.id)
        if publishes_ingress(svc):
            self.ingress_services.append(svc.id)
        if any(p.publish_mode == "host" for p in ep.ports):
            self.host_services.add(svc.id)

    def for_node(self, node: pb.Node | None, tasks: list[pb.Task]) -> NodeNetworking:
        """What `node`, running `tasks` (its assignment set), is sent."""
        nets = {att.network.id for t in tasks for att in t.networks}
        if self.ingress_services and self.ingress_id:
            nets.add(self.ingress_id)
        node_id = node.id if node is not None else ""
        out = NodeNetworking()
        if node is not None and node.HasField("ingress"):
            out.ingress = node.ingress
        ordered = sorted(n for n in nets if n in self.networks)
        svc_ids: set[str] = set(self.ingress_services)
        svc_ids.update(t.service_id for t in tasks if t.service_id in self.host_services)
        for nid in ordered:
            out.networks.append(self.networks[nid])
            out.endpoints.extend(self.endpoints.get(nid, ()))
            svc_ids.update(self.vip_services.get(nid, ()))
            if nid == self.ingress_id:
                out.endpoints.extend(e for k, e in sorted(self.node_ingress.items())
                                     if k != node_id)
        services = sorted(svc_ids & self.bindings.keys())
        out.services = [self.bindings[s] for s in services]
        keys = [*ordered, *(self.ingress_id + "/nodes" for n in ordered if n == self.ingress_id),
                *services]
        own = tuple(out.ingress.addresses) if out.ingress is not None else ()
        out.fingerprint = (tuple((k, self.digests.get(k)) for k in keys), own)
        return out
