"""Network step of the allocator (pure): task attachments, node ingress endpoints, and
service endpoints that no longer match their spec.

Each unassigned task that is wanted and has no attachments yet gets one SetTaskNetworks:
one attachment per network of its spec (aliases: the service name, then the spec's
aliases) plus one on the ingress network when its service publishes any port (in either
mode: the data plane routes host-mode ports through the task's ingress address too). A
task given its attachments is scheduled in the next pass, never in the same one, so a
rejected SetTaskNetworks cannot leave an assigned task without addresses. A task that
cannot get an address stays PENDING with the reason.

Node ingress endpoints are given lazily: once any service publishes a port, every READY
node without one gets one (SetNodeIngress); it stays the node's until the node is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manager.endpoints import allocate_endpoint, endpoint_is_current
from manager.ipam import NetworkFull, Pools, used_addresses
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import SwarmletError


@dataclass
class NetworkStep:
    commands: list[pb.Command] = field(default_factory=list)
    schedulable: list[pb.Task] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # task id -> reason


def _publishes(svc: pb.Service | None) -> bool:
    return svc is not None and bool(svc.spec.endpoint_spec.ports)


def _wanted(task: pb.Task, svc: pb.Service | None, ingress: pb.Network | None) -> list[str]:
    ids = [a.target for a in task.spec.networks]
    if _publishes(svc) and ingress is not None and ingress.id not in ids:
        ids.append(ingress.id)
    return ids


def _attachments(store: Store, pools: Pools, task: pb.Task, svc: pb.Service | None,
                 wanted: list[str]) -> list[pb.NetworkAttachment]:
    """Raises NetworkFull (or KeyError for a network that is gone)."""
    aliases = {a.target: list(a.aliases) for a in task.spec.networks}
    out = []
    for nid in wanted:
        net = store.networks[nid]
        att = pb.NetworkAttachment(addresses=[pools.pool(nid).take()])
        att.network.CopyFrom(net)
        if not net.spec.ingress:
            names = [task.service_name, *aliases.get(nid, ())]
            att.aliases.extend(dict.fromkeys(n for n in names if n))
        out.append(att)
    return out


class PassPools:
    """The address pools of one allocator pass, built from the store when first needed
    and shared by every step of the pass (so no two steps hand out one address)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pools: Pools | None = None

    def get(self) -> Pools:
        if self._pools is None:
            s = self._store
            self._pools = Pools(s.networks, used_addresses(s.tasks.values(),
                                                           s.services.values(),
                                                           s.nodes.values()))
        return self._pools


def attach_networks(store: Store, tasks: list[pb.Task], pools: PassPools) -> NetworkStep:
    """Split `tasks` (unassigned, wanted, in a stable order) into those that may be
    scheduled now and those that get their attachments (or a pending reason) first."""
    step = NetworkStep()
    ingress = store.ingress_network()
    for t in tasks:
        svc = store.services.get(t.service_id)
        wanted = [] if t.networks else _wanted(t, svc, ingress)
        if not wanted:
            step.schedulable.append(t)
            continue
        try:
            atts = _attachments(store, pools.get(), t, svc, wanted)
        except NetworkFull as e:
            step.pending[t.id] = str(e)
            continue
        except KeyError as e:
            step.pending[t.id] = f"network {e.args[0]} not found"
            continue
        step.commands.append(pb.Command(
            set_task_networks=pb.SetTaskNetworks(task_id=t.id, networks=atts)))
    return step


def node_ingress(store: Store, pools: PassPools) -> list[pb.Command]:
    """SetNodeIngress for READY nodes without one, once any service publishes a port."""
    ingress = store.ingress_network()
    if ingress is None or not any(_publishes(s) for s in store.services.values()):
        return []
    missing = [n for n in store.nodes.values()
               if n.status.state == pb.READY and not n.HasField("ingress")]
    if not missing:
        return []
    pool = pools.get().pool(ingress.id)
    out = []
    for n in sorted(missing, key=lambda n: n.id):
        try:
            addr = pool.take()
        except NetworkFull:
            break
        att = pb.NetworkAttachment(addresses=[addr])
        att.network.CopyFrom(ingress)
        out.append(pb.Command(set_node_ingress=pb.SetNodeIngress(node_id=n.id, ingress=att)))
    return out


def stale_endpoints(store: Store) -> list[pb.Command]:
    """Services whose endpoint no longer matches their spec (a rollback swapped the spec
    back without the control API's allocation): reallocated, with the version read."""
    out = []
    for svc in store.services.values():
        if any(a.target not in store.networks for a in svc.spec.task_template.networks):
            continue  # names a network that does not exist (a spec recorded before networks)
        if endpoint_is_current(store, svc):
            continue
        new = pb.Service()
        new.CopyFrom(svc)
        try:
            new.endpoint.CopyFrom(allocate_endpoint(store, svc.id, svc.spec, svc.endpoint))
        except SwarmletError:
            continue  # a port or address that does not fit: left as it is
        out.append(pb.Command(update_service=new, expected_version=svc.meta.version))
    return out
