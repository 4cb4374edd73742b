"""Control API for networks (a mixin of `ControlService`), and the network half of
service create/update/scale.

CreateNetwork takes the overlay driver only, names follow the secret/config rules, a
`subnet` must be IPv4 inside a private range, at most a /29 and overlap no network (else
one is carved from 10.0.0.0/8); the ingress network is made by the leader, never by users.
RemoveNetwork is refused while a service uses the network (the store checks again).
`prepare_networking` resolves a service spec's networks and allocates its endpoint (VIPs,
published ports) into the Service sent in the same command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from manager.control_secrets import _rpc, check_object_name
from manager.endpoints import allocate_endpoint, check_capacity, resolve_networks
from manager.ipam import allocate_network
from manager.lookup import resolve_network
from manager.store import Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import Conflict, SpecError
from swarmlet.pki import new_id

DRIVERS = ("overlay",)
INGRESS_SUBNET = "10.255.0.0/16"


def checked_network_spec(spec: pb.NetworkSpec) -> pb.NetworkSpec:
    out = pb.NetworkSpec()
    out.CopyFrom(spec)
    check_object_name("network", out.annotations.name)
    out.driver = out.driver or "overlay"
    if out.driver not in DRIVERS:
        raise SpecError("driver", f'driver "{out.driver}" is not supported (use overlay)')
    if out.ingress:
        raise SpecError("ingress", "the cluster has its ingress network; another cannot be made")
    return out


def ingress_spec(subnet: str = INGRESS_SUBNET) -> pb.NetworkSpec:
    spec = pb.NetworkSpec(driver="overlay", ingress=True, subnet=subnet)
    spec.annotations.name = "ingress"
    return spec


def new_ingress(networks: list[pb.Network], net_id: str) -> pb.Network:
    """The cluster's ingress network: 10.255.0.0/16 (every task of a publishing service
    and every node holds an address on it, more than a /24 can hold), or a /24 of the pool
    where a network overlaps that already."""
    try:
        return allocate_network(ingress_spec(), networks, net_id)
    except Conflict:
        return allocate_network(ingress_spec(""), networks, net_id)


class NetworksControl:
    """CreateNetwork/GetNetwork/ListNetworks/RemoveNetwork; service endpoint allocation."""

    _store: Store
    _commit: Callable[..., None]
    _networks_log = log.get("control", area="networks")

    @_rpc
    def CreateNetwork(self, request: pb.CreateNetworkRequest, context: Any) -> Any:  # noqa: N802
        spec = checked_network_spec(request.spec)
        name = spec.annotations.name
        if self._store.network_by_name(name) is not None:
            raise Conflict(f"network {name} already exists")
        with self._store.lock:
            net = allocate_network(spec, list(self._store.networks.values()), new_id())
        self._commit(pb.Command(create_network=net), f"network {name} already exists")
        self._networks_log.info("network.created", **{"network.id": net.id,
                                                      "network.name": name,
                                                      "network.subnet": net.subnet})
        return pb.NetworkResponse(network=self._store.networks[net.id])

    @_rpc
    def GetNetwork(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        return pb.NetworkResponse(network=resolve_network(self._store, request.id))

    @_rpc
    def ListNetworks(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        found = sorted(self._store.networks.values(), key=lambda n: n.spec.annotations.name)
        return pb.ListNetworksResponse(networks=found)

    @_rpc
    def RemoveNetwork(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        net = resolve_network(self._store, request.id)
        users = self._store.network_users(net.id)
        if users:
            raise Conflict(f"network {net.spec.annotations.name} is in use by service "
                           f"{', '.join(users)}")
        self._commit(pb.Command(remove_network=net.id))
        return pb.Empty()

    # ------------------------------------------------------------------ services

    def prepare_networking(self, svc: pb.Service, old: pb.Service | None = None) -> None:
        """Resolve svc.spec's networks to ids and set svc.endpoint (VIPs, ports); keeps
        what `old` held where it still fits. Conflict/NotFound/SpecError on bad input."""
        resolve_networks(self._store, svc.spec)
        check_capacity(self._store, svc.id, svc.spec)
        endpoint = allocate_endpoint(self._store, svc.id, svc.spec,
                                     old.endpoint if old is not None else None)
        svc.endpoint.CopyFrom(endpoint)
