"""IP address management for overlay networks: subnets, VNIs and addresses (pure).

Subnets come from the cluster pool 10.0.0.0/8 carved in /24s (the lowest /24 that overlaps
no existing network); a user-given subnet must be IPv4, inside a private range, at most a
/29, and overlap no other network. VNIs count from 4096 up, the lowest unused first.

Within a network the network address, the broadcast address and the gateway (the first
host, unless the spec names one) are reserved; every other address belongs to at most one
holder: a task's attachment (while the task may still run: see `holds_addresses`), a
service's VIP, or a node's own ingress endpoint. The used sets are derived from those
objects each time, so an address is free again as soon as its holder is gone. This lives in
`manager/` (not `net_overlay/`) because the manager never imports the data plane.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import Conflict, SpecError
from swarmlet.states import RUNNING, is_terminal

POOL = ipaddress.IPv4Network("10.0.0.0/8")
POOL_PREFIX = 24
VNI_FIRST = 4096
VNI_LAST = (1 << 24) - 1
MAX_PREFIX = 29
_PRIVATE = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


class NetworkFull(Conflict):
    """A network has no free address left for a holder that needs one."""


def holds_addresses(task: pb.Task) -> bool:
    """Whether a task's attachments still hold their addresses: until the task is
    terminal (or removed); a task that was never assigned and is no longer wanted will
    not run, so it holds nothing either."""
    if not task.networks or is_terminal(task.status.state):
        return False
    return not (task.status.state < pb.ASSIGNED and task.desired_state > RUNNING)


def network_of(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr, strict=False)


def address_of(cidr: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Interface(cidr).ip


# ---------------------------------------------------------------------- subnets and VNIs


def parse_subnet(text: str, networks: Iterable[pb.Network]) -> ipaddress.IPv4Network:
    """A user-given subnet, checked; SpecError or Conflict (overlap) says what is wrong."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise SpecError("subnet", f'invalid subnet "{text}" (use CIDR, e.g. 10.0.9.0/24)') from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise SpecError("subnet", f"subnet {net} is not IPv4 (only IPv4 overlays are supported)")
    if not any(net.subnet_of(p) for p in _PRIVATE):
        raise SpecError("subnet", f"subnet {net} is not inside a private range "
                                  "(10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
    if net.prefixlen > MAX_PREFIX:
        raise SpecError("subnet", f"subnet {net} is too small (at most a /{MAX_PREFIX})")
    for other in networks:
        if other.subnet and net.overlaps(network_of(other.subnet)):
            raise Conflict(f"subnet {net} overlaps network {other.spec.annotations.name} "
                           f"({other.subnet})")
    return net


def pick_subnet(networks: Iterable[pb.Network]) -> ipaddress.IPv4Network:
    """The lowest /24 of the pool that overlaps no existing network."""
    taken = sorted((network_of(n.subnet) for n in networks if n.subnet),
                   key=lambda n: int(n.network_address))
    step = 1 << (32 - POOL_PREFIX)
    candidate = int(POOL.network_address)
    end = int(POOL.broadcast_address)
    for net in taken:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if hi < candidate:
            continue
        if lo >= candidate + step:
            break  # the candidate fits before this network
        candidate = ((hi + 1 + step - 1) // step) * step  # next /24 boundary past it
    if candidate + step - 1 > end:
        raise NetworkFull(f"the address pool {POOL} has no free /{POOL_PREFIX} left")
    return ipaddress.IPv4Network((candidate, POOL_PREFIX))


def pick_vni(networks: Iterable[pb.Network]) -> int:
    used = {n.vni for n in networks}
    vni = VNI_FIRST
    while vni in used:
        vni += 1
    if vni > VNI_LAST:
        raise NetworkFull("no free VXLAN id left")
    return vni


def gateway_of(subnet: ipaddress.IPv4Network, spec_gateway: str = "") -> ipaddress.IPv4Address:
    if spec_gateway:
        try:
            gw = ipaddress.IPv4Address(spec_gateway)
        except ValueError:
            raise SpecError("gateway", f'invalid gateway "{spec_gateway}"') from None
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise SpecError("gateway", f"gateway {gw} is not a host address of {subnet}")
        return gw
    return subnet.network_address + 1


def allocate_network(spec: pb.NetworkSpec, networks: list[pb.Network], net_id: str) -> pb.Network:
    """A new Network for `spec`: subnet (given, checked, or picked), gateway and VNI."""
    subnet = parse_subnet(spec.subnet, networks) if spec.subnet else pick_subnet(networks)
    gateway = gateway_of(subnet, spec.gateway)
    out = pb.Network(id=net_id, vni=pick_vni(networks), subnet=str(subnet),
                     gateway=str(gateway))
    out.spec.CopyFrom(spec)
    return out


# ---------------------------------------------------------------------- addresses


def reserved(network: pb.Network) -> set[ipaddress.IPv4Address]:
    subnet = network_of(network.subnet)
    out = {subnet.network_address, subnet.broadcast_address}
    if network.gateway:
        out.add(ipaddress.IPv4Address(network.gateway))
    return out


def host_count(network: pb.Network) -> int:
    """Addresses of the network any holder may get (all but the reserved ones)."""
    return network_of(network.subnet).num_addresses - len(reserved(network))


def used_addresses(
    tasks: Iterable[pb.Task], services: Iterable[pb.Service], nodes: Iterable[pb.Node]
) -> dict[str, set[ipaddress.IPv4Address]]:
    """network id -> addresses held by tasks (that still hold them), VIPs and nodes."""
    used: dict[str, set[ipaddress.IPv4Address]] = {}
    for t in tasks:
        if holds_addresses(t):
            for att in t.networks:
                used.setdefault(att.network.id, set()).update(
                    address_of(a) for a in att.addresses)
    for s in services:
        for vip in s.endpoint.virtual_ips:
            used.setdefault(vip.network_id, set()).add(address_of(vip.addr))
    for n in nodes:
        if n.HasField("ingress"):
            for a in n.ingress.addresses:
                used.setdefault(n.ingress.network.id, set()).add(address_of(a))
    return used


@dataclass
class AddressPool:
    """Free addresses of one network, handed out lowest first (deterministic)."""

    network: pb.Network
    used: set[ipaddress.IPv4Address] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._subnet = network_of(self.network.subnet)
        self._taken = {ip for ip in self.used if ip in self._subnet} | reserved(self.network)
        self._cursor = int(self._subnet.network_address)

    def free(self) -> int:
        return self._subnet.num_addresses - len(self._taken)

    def take(self) -> str:
        """The next free address as CIDR ("10.0.1.5/24"); NetworkFull when none is left."""
        last = int(self._subnet.broadcast_address)
        while self._cursor <= last:
            ip = ipaddress.IPv4Address(self._cursor)
            self._cursor += 1
            if ip not in self._taken:
                self._taken.add(ip)
                return f"{ip}/{self._subnet.prefixlen}"
        raise NetworkFull(self.full_message())

    def claim(self, cidr: str) -> bool:
        """Mark an address as held (one kept from before); False if it is taken already."""
        ip = address_of(cidr)
        if ip in self._taken or ip not in self._subnet:
            return False
        self._taken.add(ip)
        return True

    def full_message(self) -> str:
        return (f"network {self.network.spec.annotations.name}: subnet {self.network.subnet} "
                "has no free address")


class Pools:
    """An AddressPool per network, built once from the store's objects for one pass."""

    def __init__(self, networks: dict[str, pb.Network],
                 used: dict[str, set[ipaddress.IPv4Address]]) -> None:
        self._networks = networks
        self._used = used
        self._pools: dict[str, AddressPool] = {}

    def pool(self, network_id: str) -> AddressPool:
        p = self._pools.get(network_id)
        if p is None:
            p = AddressPool(self._networks[network_id], set(self._used.get(network_id, ())))
            self._pools[network_id] = p
        return p


def mac_of(cidr: str) -> str:
    """The deterministic MAC of an overlay address: 02:42 and the four IPv4 octets."""
    octets = address_of(cidr).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)
