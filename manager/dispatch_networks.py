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


def _task_endpoints(t: pb.Task, node_addr: str) -> list[pb.NetworkEndpoint]:
    serving = t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
    return [pb.NetworkEndpoint(
        network_id=att.network.id, task_id=t.id, node_addr=node_addr, address=addr,
        mac=mac_of(addr), service_name=t.service_name, aliases=att.aliases,
        service_id=t.service_id, node_id=t.node_id, serving=serving)
        for att in t.networks for addr in att.addresses]


def _hosted(task: pb.Task) -> bool:
    return bool(task.node_id) and task.status.state >= pb.ASSIGNED and \
        not is_terminal(task.status.state)


_ASSIGNMENTS_TAG = bytes([(2 << 3) | 2])  # ManagerMessage.assignments: field 2, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _blob(endpoints: Iterable[pb.NetworkEndpoint] = (),
          services: Iterable[pb.ServiceBinding] = ()) -> bytes:
    """Serialized Assignments holding only these endpoints/bindings: such pieces
    concatenate into one message (repeated fields append), so each table is serialized
    once per change and a node's message is assembled from bytes, not message copies."""
    return bytes(pb.Assignments(endpoints=endpoints, services=services).SerializeToString())


@dataclass
class NodeNetworking:
    networks: list[pb.Network] = field(default_factory=list)
    blob: bytes = b""  # the node's endpoints and service bindings, serialized
    ingress: pb.NetworkAttachment | None = None
    fingerprint: tuple[object, ...] = ()

    def message(self, out: pb.Assignments) -> bytes:
        """The serialized ManagerMessage carrying `out` (tasks, secrets, configs) with this
        network state added: `out` serialized, then the blob (repeated fields append)."""
        out.networks.extend(self.networks)
        if self.ingress is not None:
            out.ingress.CopyFrom(self.ingress)
        inner = bytes(out.SerializeToString()) + self.blob
        return _ASSIGNMENTS_TAG + _varint(len(inner)) + inner

    @property
    def sent(self) -> bool:
        """Whether the node gets any network state at all."""
        return bool(self.networks or self.blob or self.ingress is not None)


# task id -> (the task object, its node's address, its endpoints): tasks are replaced,
# never mutated, so an entry holds while the store still has that very object
EndpointCache = dict[str, tuple[pb.Task, str, list[pb.NetworkEndpoint]]]


@dataclass
class NetworkTables:
    networks: dict[str, pb.Network] = field(default_factory=dict)
    ingress_id: str = ""
    endpoints: dict[str, list[pb.NetworkEndpoint]] = field(default_factory=dict)
    node_ingress: dict[str, pb.NetworkEndpoint] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)  # network/node/service id -> bytes
    bindings: dict[str, pb.ServiceBinding] = field(default_factory=dict)
    vip_services: dict[str, list[str]] = field(default_factory=dict)  # network -> services
    ingress_services: list[str] = field(default_factory=list)
    host_services: set[str] = field(default_factory=set)
    digests: dict[str, bytes] = field(default_factory=dict)  # network or service id -> digest

    @classmethod
    def build(cls, store: Store, task_ids: Iterable[str],
              cache: EndpointCache | None = None) -> NetworkTables:
        """From the store, under its lock; `task_ids`: the tasks that have attachments;
        `cache` (kept by the caller between builds) spares rebuilding unchanged tasks'
        endpoints, and is left holding exactly the tasks of this build."""
        out = cls()
        old = cache.copy() if cache is not None else {}
        fresh: EndpointCache = {}
        with store.lock:
            out.networks = dict(store.networks)
            ingress = store.ingress_network()
            out.ingress_id = ingress.id if ingress is not None else ""
            nodes = store.nodes
            for tid in task_ids:
                t = store.tasks.get(tid)
                if t is None or not t.networks or not _hosted(t):
                    continue
                node = nodes.get(t.node_id)
                node_addr = underlay_ip(node.status.addr) if node is not None else ""
                hit = old.get(tid)
                eps = hit[2] if hit is not None and hit[0] is t and hit[1] == node_addr \
                    else _task_endpoints(t, node_addr)
                fresh[tid] = (t, node_addr, eps)
                for e in eps:
                    out.endpoints.setdefault(e.network_id, []).append(e)
            for n in nodes.values():
                if n.HasField("ingress") and n.ingress.addresses:
                    out.node_ingress[n.id] = pb.NetworkEndpoint(
                        network_id=n.ingress.network.id, node_id=n.id,
                        node_addr=underlay_ip(n.status.addr), address=n.ingress.addresses[0],
                        mac=mac_of(n.ingress.addresses[0]), serving=False)
            for svc in store.services.values():
                out._add_service(svc)
        if cache is not None:
            cache.clear()
            cache.update(fresh)
        out._serialize()
        return out

    def _serialize(self) -> None:
        for nid, eps in self.endpoints.items():
            eps.sort(key=lambda e: (e.address, e.task_id))
            self.blobs[nid] = _blob(eps)
        for node_id, e in self.node_ingress.items():
            self.blobs[node_id] = _blob([e])
        for sid, b in self.bindings.items():
            self.blobs[sid] = _blob(services=[b])
        for key, blob in self.blobs.items():
            self.digests[key] = hashlib.blake2b(blob, digest_size=12).digest()

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
        keys: list[str] = []
        for nid in ordered:
            out.networks.append(self.networks[nid])
            keys.append(nid)
            svc_ids.update(self.vip_services.get(nid, ()))
            if nid == self.ingress_id:
                keys.extend(k for k in sorted(self.node_ingress) if k != node_id)
        keys.extend(sorted(svc_ids & self.bindings.keys()))
        out.blob = b"".join(self.blobs.get(k, b"") for k in keys)
        own = tuple(out.ingress.addresses) if out.ingress is not None else ()
        out.fingerprint = (tuple((k, self.digests.get(k)) for k in keys), own)
        return out
