"""Overlay networking on a node: sandboxes with a bridge and a VXLAN device per network,
veths into task namespaces, static FDB/neighbour entries, the per-node DNS server, VIP
load balancing and the routing mesh (nftables). Programmed from the `Assignments` the
dispatcher sends (networks, endpoints, service bindings, this node's ingress address).

The worker uses it through `TaskNetworking` (net_overlay.api); `manager/` never imports
this package (IPAM lives with the manager's allocator).
"""
