"""Names of everything the data plane makes, in one place (pure).

Several nodes may share one machine (and so /run/netns and, in production, one host
namespace), so every name carries the node id; link names stay within 15 characters.
All start with `swl`; tests use `swt` for their own namespaces and links.
"""

from __future__ import annotations

import ipaddress

PREFIX = "swl"
BRIDGE = "br0"  # inside a sandbox
VXLAN = "vxlan0"  # inside a sandbox
INGRESS_PEER = "ighost"  # inside the ingress sandbox: the host namespace's veth end
TASK_TABLE = "swarmlet"  # `table ip swarmlet` in each task namespace
MESH_TABLE = "swarmlet-mesh"  # `table ip swarmlet-mesh` in the host namespace
MTU = 1450
VXLAN_PORT = 4789


def sandbox_ns(node_id: str, network_id: str) -> str:
    """Named netns of one network's sandbox on one node."""
    return f"{PREFIX}-sb-{node_id[:6]}-{network_id[:6]}"


def sandbox_prefix(node_id: str) -> str:
    return f"{PREFIX}-sb-{node_id[:6]}-"


def ingress_host_link(node_id: str) -> str:
    """The host namespace's end of the veth into the ingress sandbox."""
    return f"{PREFIX}h{node_id[:8]}"


def task_port(task_id: str, index: int) -> str:
    """The sandbox end of a task's veth on its index-th network."""
    return f"{PREFIX}t{task_id[:8]}{index}"


def mac_for(address: str) -> str:
    """02:42 followed by the IPv4 address bytes (the manager allocates MACs this way)."""
    ip = ipaddress.IPv4Interface(address).ip if "/" in address else ipaddress.IPv4Address(address)
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def ip_of(cidr: str) -> str:
    """The address without its prefix length."""
    return cidr.split("/", 1)[0]


def prefix_len(cidr: str) -> int:
    return ipaddress.IPv4Network(cidr, strict=False).prefixlen
