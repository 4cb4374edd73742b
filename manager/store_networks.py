"""Networks in the store: the network commands and the apply-time checks of addresses,
VIPs and published ports (a mixin of `manager.store.Store`).

Checked when applied, so a stale leader's or a racing API call's allocation that no longer
fits is rejected: network names and VNIs are unique and subnets never overlap; a network is
removed only while no service refers to it (the ingress network: while no service publishes
a port in ingress mode); a task gets its attachments only while it has none and is not yet
assigned; no address is held twice (tasks, service VIPs, node ingress endpoints, indexed in
`_holders`), and no published port is taken twice.
"""

from __future__ import annotations

from typing import Any

from manager.errors import Rejected
from manager.events import Event
from manager.ipam import address_of, holds_addresses, network_of, reserved
from swarmlet.api import swarmlet_pb2 as pb


def _ips(att: pb.NetworkAttachment) -> list[tuple[str, str]]:
    return [(att.network.id, str(address_of(a))) for a in att.addresses]


def holder_addresses(kind: str, obj: Any) -> list[tuple[str, str]]:
    """(network id, ip) pairs an object holds now; kind is task|service|node."""
    if obj is None:
        return []
    if kind == "task":
        return [p for att in obj.networks for p in _ips(att)] if holds_addresses(obj) else []
    if kind == "service":
        return [(v.network_id, str(address_of(v.addr))) for v in obj.endpoint.virtual_ips]
    return _ips(obj.ingress) if obj.HasField("ingress") else []


def publishes_ingress(svc: pb.Service) -> bool:
    return any(p.publish_mode != "host" and p.published_port for p in svc.endpoint.ports)


class NetworkStore:
    """Network state of the store: `networks`, by-name index and the address holders."""

    networks: dict[str, pb.Network]
    services: dict[str, pb.Service]
    tasks: dict[str, pb.Task]
    nodes: dict[str, pb.Node]
    _object_names: dict[str, dict[str, str]]
    _holders: dict[tuple[str, str], str]
    lock: Any

    # ------------------------------------------------------------------ reads

    def network_by_name(self, name: str) -> pb.Network | None:
        with self.lock:
            nid = self._object_names["network"].get(name)
            return self.networks.get(nid) if nid else None

    def ingress_network(self) -> pb.Network | None:
        with self.lock:
            return next((n for n in self.networks.values() if n.spec.ingress), None)

    def network_users(self, network_id: str) -> list[str]:
        """Names of the services attached to the network (for ingress: publishing on it)."""
        with self.lock:
            net = self.networks.get(network_id)
            ingress = net is not None and net.spec.ingress
            return sorted(
                s.spec.annotations.name for s in self.services.values()
                if any(a.target == network_id for a in s.spec.task_template.networks)
                or (ingress and publishes_ingress(s))
            )

    def address_holder(self, network_id: str, ip: str) -> str | None:
        with self.lock:
            return self._holders.get((network_id, ip))

    # ------------------------------------------------------------------ index

    def _reindex(self, kind: str, old: Any, new: Any) -> None:
        """Move the addresses an object holds from `old` to `new` (either may be None)."""
        before = holder_addresses(kind, old)
        after = holder_addresses(kind, new)
        if not before and not after:
            return
        owner = f"{kind}:{(new or old).id}"
        for key in before:
            if self._holders.get(key) == owner:
                del self._holders[key]
        for key in after:
            self._holders[key] = owner

    def _rebuild_holders(self) -> None:
        self._holders = {}
        for kind, table in (("task", self.tasks), ("service", self.services),
                            ("node", self.nodes)):
            for obj in table.values():
                self._reindex(kind, None, obj)

    def _check_free(self, owner: str, att_net: str, cidr: str) -> None:
        net = self.networks.get(att_net)
        if net is None:
            raise Rejected(f"network {att_net} not found")
        ip = address_of(cidr)
        if ip not in network_of(net.subnet) or ip in reserved(net):
            raise Rejected(f"address {cidr} is not free in network {net.spec.annotations.name}")
        holder = self._holders.get((att_net, str(ip)))
        if holder is not None and holder != owner:
            raise Rejected(f"address {ip} of network {net.spec.annotations.name} is held by "
                           f"{holder}")

    # ------------------------------------------------------------------ networks

    def _op_create_network(self, net: pb.Network, _v: int, now: float) -> list[Event]:
        name = net.spec.annotations.name
        if net.id in self.networks:
            raise Rejected(f"network id {net.id} exists")
        if name in self._object_names["network"]:
            raise Rejected(f"network {name} already exists")
        if net.spec.ingress and self.ingress_network() is not None:
            raise Rejected("an ingress network exists already")
        subnet = network_of(net.subnet)
        for other in self.networks.values():
            if other.vni == net.vni:
                raise Rejected(f"VXLAN id {net.vni} is used by network "
                               f"{other.spec.annotations.name}")
            if subnet.overlaps(network_of(other.subnet)):
                raise Rejected(f"subnet {net.subnet} overlaps network "
                               f"{other.spec.annotations.name} ({other.subnet})")
        new = pb.Network()
        new.CopyFrom(net)
        self._stamp(new, now, True)  # type: ignore[attr-defined]
        self.networks[new.id] = new
        self._object_names["network"][name] = new.id
        return [Event("network", new.id, "create")]

    def _op_update_network(self, net: pb.Network, expected: int, now: float) -> list[Event]:
        old = self.networks.get(net.id)
        if old is None:
            raise Rejected(f"network {net.id} not found")
        self._check_version("network", old.meta, expected)  # type: ignore[attr-defined]
        name, old_name = net.spec.annotations.name, old.spec.annotations.name
        if name != old_name and name in self._object_names["network"]:
            raise Rejected(f"network {name} already exists")
        if (net.vni, net.subnet, net.gateway, net.spec.driver, net.spec.ingress) != (
                old.vni, old.subnet, old.gateway, old.spec.driver, old.spec.ingress):
            raise Rejected(f"network {old_name}: driver, subnet, gateway and VXLAN id cannot "
                           "change")
        new = pb.Network()
        new.CopyFrom(net)
        new.meta.CopyFrom(old.meta)
        self._stamp(new, now, False)  # type: ignore[attr-defined]
        self.networks[new.id] = new
        del self._object_names["network"][old_name]
        self._object_names["network"][name] = new.id
        return [Event("network", new.id, "update")]

    def _op_remove_network(self, nid: str, _v: int, _now: float) -> list[Event]:
        old = self.networks.get(nid)
        if old is None:
            raise Rejected(f"network {nid} not found")
        users = self.network_users(nid)
        if users:
            raise Rejected(f"network {old.spec.annotations.name} is in use by service "
                           f"{', '.join(users)}")
        del self.networks[nid]
        self._object_names["network"].pop(old.spec.annotations.name, None)
        return [Event("network", nid, "remove")]

    # ------------------------------------------------------------------ attachments

    def _op_set_task_networks(self, s: pb.SetTaskNetworks, _v: int, now: float) -> list[Event]:
        old = self.tasks.get(s.task_id)
        if old is None:
            raise Rejected(f"task {s.task_id} not found")
        if old.networks:
            raise Rejected(f"task {s.task_id} has its networks already")
        if old.status.state >= pb.ASSIGNED:
            raise Rejected(f"task {s.task_id} is already assigned")
        owner = f"task:{old.id}"
        for att in s.networks:
            for cidr in att.addresses:
                self._check_free(owner, att.network.id, cidr)
        new = pb.Task()
        new.CopyFrom(old)
        new.networks.extend(s.networks)
        svc = self.services.get(old.service_id)
        if svc is not None:
            new.endpoint.CopyFrom(svc.endpoint)
        self._stamp(new, now, False)  # type: ignore[attr-defined]
        self._put_task(new)  # type: ignore[attr-defined]
        return [Event("task", new.id, "update")]

    def _op_set_node_ingress(self, s: pb.SetNodeIngress, _v: int, now: float) -> list[Event]:
        old = self.nodes.get(s.node_id)
        if old is None:
            raise Rejected(f"node {s.node_id} not found")
        if old.HasField("ingress"):
            raise Rejected(f"node {s.node_id} has its ingress endpoint already")
        owner = f"node:{old.id}"
        for cidr in s.ingress.addresses:
            self._check_free(owner, s.ingress.network.id, cidr)
        new = pb.Node()
        new.CopyFrom(old)
        new.ingress.CopyFrom(s.ingress)
        self._stamp(new, now, False)  # type: ignore[attr-defined]
        self._reindex("node", old, new)
        self.nodes[new.id] = new
        return [Event("node", new.id, "update")]

    # ------------------------------------------------------------------ services

    def _check_service_endpoint(self, svc: pb.Service) -> None:
        """Networks exist; VIPs are free; no published port is another service's."""
        for att in svc.spec.task_template.networks:
            if att.target not in self.networks:
                raise Rejected(f"network {att.target} not found")
        owner = f"service:{svc.id}"
        for vip in svc.endpoint.virtual_ips:
            self._check_free(owner, vip.network_id, vip.addr)
        mine = {(p.published_port, p.protocol) for p in svc.endpoint.ports if p.published_port}
        if not mine:
            return
        for other in self.services.values():
            if other.id == svc.id:
                continue
            for p in other.endpoint.ports:
                if (p.published_port, p.protocol) not in mine:
                    continue
                # host-mode ports too: the scheduler has no host-port filter, so two
                # services may not share one even in host mode
                raise Rejected(f"port {p.published_port}/{p.protocol} is already published "
                               f"by service {other.spec.annotations.name}")
