"""NetworkAgent: the worker-side data plane of one node (implements TaskNetworking).

It keeps one sandbox per network that has a task on this node (plus the ingress sandbox
while the node has an ingress address), programs their FDB/neighbour entries from the
other nodes' endpoints, serves DNS on each sandbox's gateway, keeps each task's VIP
table and the host namespace's routing-mesh table in line with the serving backends.
Everything is driven by `update(assignments)` and the runtime's attach/detach calls,
serialized by one lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from net_overlay import names, nsutil, plan, rules
from net_overlay.api import Attached
from net_overlay.dns import build_records, build_scopes
from net_overlay.dns_server import DnsServer
from net_overlay.errors import AttachError, NetworkError
from net_overlay.sandbox import Sandbox
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb

_FAILURES = (NetworkError, NetlinkError, OSError)


@dataclass
class _Plugged:
    ns_path: str
    ports: list[tuple[str, str]] = field(default_factory=list)  # (network id, port name)
    ruleset: str = ""  # the VIP table last applied in the task's namespace

    @property
    def network_ids(self) -> set[str]:
        return {net for net, _ in self.ports}


class NetworkAgent:
    def __init__(self, node_id: str, underlay_ip: str, state_dir: Path | str,
                 host_netns: str | None = None, *, upstreams: list[str] | None = None,
                 dns_timeout_s: float = 2.0) -> None:
        self.node_id = node_id
        self.underlay_ip = underlay_ip
        self._state_dir = Path(state_dir)
        self._host_ns = host_netns
        # the host namespace by path even when it is our own (veth peers are made in it)
        self._host_path = host_netns or f"/proc/{os.getpid()}/ns/net"
        self._lock = threading.RLock()
        self._a = pb.Assignments()
        self._vips: dict[str, list[plan.Vip]] = {}  # network id -> VIPs with backends
        self._sandboxes: dict[str, Sandbox] = {}
        self._tasks: dict[str, _Plugged] = {}
        self._ingress_addr = ""  # the host veth's address while it is plugged
        self._ingress_net = ""  # and the ingress network's id
        self._mesh_ruleset = ""
        self._log = log.get("net.agent", **{"node.id": node_id})
        self._cleanup_leftovers()
        self._dns = DnsServer(host_netns, upstreams, dns_timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="net-nft")

    # ------------------------------------------------------------------ TaskNetworking

    def update(self, assignments: pb.Assignments) -> None:
        with self._lock:
            a = pb.Assignments()
            a.CopyFrom(assignments)
            self._a = a
            self._vips = plan.all_vips(a, plan.serving_index(a))
            self._dns.set_records(build_records(a), build_scopes(a))
            self._step("ingress", self._sync_ingress)
            for net_id, sb in list(self._sandboxes.items()):
                self._step(f"endpoints of {net_id}", sb.sync,
                           plan.remotes(a, net_id, self.node_id, self.underlay_ip))
            # one nft run per changed task table: run a few at once (each is a process)
            list(self._pool.map(lambda t: self._step(f"VIPs of {t}", self._apply_task_rules, t),
                                list(self._tasks)))
            self._step("mesh", self._apply_mesh)
            self._record()

    def attach(self, task: pb.Task, netns_path: str) -> Attached | None:
        if not task.networks:
            return None
        with self._lock:
            plugged = self._tasks[task.id] = _Plugged(netns_path)
            addresses: list[str] = []
            for i, att in enumerate(task.networks):
                net = self._network(att.network)
                try:
                    if not att.addresses:
                        raise AttachError("no address allocated")
                    sb = self._sandbox(net)
                    port = names.task_port(task.id, i)
                    plugged.ports.append((net.id, port))
                    sb.plug(port, netns_path, f"eth{i}", att.addresses[0],
                            self._mac(task.id, net.id, att.addresses[0]),
                            default_route=(i == 0))
                    addresses.append(att.addresses[0])
                except _FAILURES as e:
                    self._detach_locked(task.id)
                    raise AttachError(
                        f"network {net.spec.annotations.name or net.id}: {e}") from e
            try:
                self._apply_task_rules(task.id)
            except _FAILURES as e:
                self._detach_locked(task.id)
                raise AttachError(f"VIP table: {e}") from e
            self._record()
            self._log.info("net.attached", **{"task.id": task.id, "addresses": addresses})
            gateway = names.ip_of(self._network(task.networks[0].network).gateway)
            return Attached(nameservers=[gateway], search=[], addresses=addresses)

    def detach(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._tasks:
                self._detach_locked(task_id)
                self._record()
                self._log.info("net.detached", **{"task.id": task_id})

    def close(self) -> None:
        with self._lock:
            for task_id in list(self._tasks):
                self._step(f"detach {task_id}", self._detach_locked, task_id)
            self._a = pb.Assignments()
            self._vips = {}
            self._step("ingress", self._sync_ingress)
            self._step("mesh", self._apply_mesh)
            for net_id in list(self._sandboxes):
                self._step(f"sandbox {net_id}", self._drop_sandbox, net_id)
            self._dns.close()
            self._pool.shutdown()
            self._record()
            self._log.info("net.closed")

    # ------------------------------------------------------------------ for tests

    def sandbox(self, network_id: str) -> Sandbox | None:
        return self._sandboxes.get(network_id)

    # ------------------------------------------------------------------ internals

    def _step(self, what: str, fn: Callable[..., object], *args: Any) -> None:
        """Run one part of an update; a failure is logged and the rest goes on."""
        try:
            fn(*args)
        except _FAILURES as e:
            self._log.error("net.update_failed", part=what, error=str(e))

    def _network(self, net: pb.Network) -> pb.Network:
        """The full network object (the attachment's, else the assignments')."""
        if net.vni and net.subnet:
            return net
        return plan.network_by_id(self._a).get(net.id, net)

    def _mac(self, task_id: str, network_id: str, address: str) -> str:
        """The MAC the manager gave the task's endpoint (what other nodes' FDBs point
        at), else the same 02:42:<IP> rule it uses."""
        for e in self._a.endpoints:
            if e.task_id == task_id and e.network_id == network_id and e.mac:
                return e.mac
        return names.mac_for(address)

    def _sandbox(self, net: pb.Network) -> Sandbox:
        sb = self._sandboxes.get(net.id)
        if sb is None:
            if not net.vni or not net.subnet or not net.gateway:
                raise AttachError("network has no VNI, subnet or gateway")
            sb = Sandbox(self.node_id, self.underlay_ip, self._host_ns, net.id, net.vni,
                         net.subnet, net.gateway)
            try:
                sb.ensure()
                sb.sync(plan.remotes(self._a, net.id, self.node_id, self.underlay_ip))
                self._dns.listen(net.id, sb.path, sb.gateway)
            except _FAILURES:
                self._dns.unlisten(net.id)
                sb.remove()
                raise
            self._sandboxes[net.id] = sb
        return sb

    def _drop_sandbox(self, net_id: str) -> None:
        sb = self._sandboxes.pop(net_id, None)
        if sb is not None:
            self._dns.unlisten(net_id)  # its socket pins the namespace
            sb.remove()

    def _detach_locked(self, task_id: str) -> None:
        p = self._tasks.pop(task_id)
        for net_id, port in p.ports:
            sb = self._sandboxes.get(net_id)
            if sb is not None:
                self._step(f"unplug {port}", sb.unplug, port)
        if p.ruleset and os.path.exists(p.ns_path):
            self._step("VIP table", lambda: nsutil.nft_delete_table(
                p.ns_path, "ip", names.TASK_TABLE))
        self._gc_sandboxes()

    def _gc_sandboxes(self) -> None:
        used = {net for p in self._tasks.values() for net in p.network_ids}
        if self._ingress_addr:
            used.add(self._ingress_net)
        for net_id in list(self._sandboxes):
            if net_id not in used:
                self._drop_sandbox(net_id)

    def _apply_task_rules(self, task_id: str) -> None:
        p = self._tasks[task_id]
        vips = plan.task_vips(self._vips, p.network_ids)
        if not vips and not p.ruleset:
            return  # no VIP to reach: no table at all
        text = rules.task_ruleset(vips)
        if text != p.ruleset:
            nsutil.nft_apply(p.ns_path, text)
            p.ruleset = text

    # ------------------------------------------------------------------ ingress and mesh

    def _sync_ingress(self) -> None:
        """The veth between the host namespace and the ingress sandbox, carrying this
        node's own ingress address, exactly while the node has one."""
        want = self._a.ingress.addresses[0] if self._a.ingress.addresses else ""
        net = self._network(self._a.ingress.network) if want else None
        if want == self._ingress_addr:
            return
        if self._ingress_addr:
            old = self._sandboxes.get(self._ingress_net)
            if old is not None:
                old.unplug(names.INGRESS_PEER)
            self._ingress_addr = self._ingress_net = ""
            self._gc_sandboxes()
        if net is not None:
            sb = self._sandbox(net)
            sb.plug(names.INGRESS_PEER, self._host_path, names.ingress_host_link(self.node_id),
                    want, names.mac_for(want))
            nsutil.sysctl(self._host_ns, "net.ipv4.ip_forward", "1")
            self._ingress_addr, self._ingress_net = want, net.id
            self._log.info("net.ingress_plugged", **{"network.id": net.id, "addr": want})

    def _apply_mesh(self) -> None:
        ports = plan.mesh_ports(self._a, self.node_id) if self._ingress_addr else []
        if not ports:
            if self._mesh_ruleset:
                nsutil.nft_delete_table(self._host_ns, "ip", names.MESH_TABLE)
                self._mesh_ruleset = ""
            return
        text = rules.mesh_ruleset(ports, names.ingress_host_link(self.node_id))
        if text != self._mesh_ruleset:
            nsutil.nft_apply(self._host_ns, text)
            self._mesh_ruleset = text

    def _record(self) -> None:
        """What this node has made, in <state>/made.json: for operators, and for the
        next start to clean up after a crash."""
        made = {"sandboxes": sorted(sb.name for sb in self._sandboxes.values()),
                "ingress_link": names.ingress_host_link(self.node_id)
                if self._ingress_addr else "",
                "mesh_table": bool(self._mesh_ruleset),
                "tasks": sorted(self._tasks)}
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._state_dir / "made.json.tmp"
            tmp.write_text(json.dumps(made, indent=1) + "\n")
            tmp.replace(self._state_dir / "made.json")
        except OSError as e:
            self._log.warning("net.record_failed", error=str(e))

    def _cleanup_leftovers(self) -> None:
        """Sandboxes, the host link and the mesh table a previous run of this node left
        (a crash): found by their names and by <state>/made.json."""
        try:
            made = json.loads((self._state_dir / "made.json").read_text())
        except (OSError, ValueError):
            made = {}
        if made.get("mesh_table"):
            self._step("leftover mesh table", nsutil.nft_delete_table, self._host_ns, "ip",
                       names.MESH_TABLE)
        for name in nsutil.listed(names.sandbox_prefix(self.node_id)):
            p = nsutil.path_of(name)
            self._step(f"leftover {name}", nsutil.netlink, p, _drop_vxlan)
            nsutil.remove(name)
        host_links = {names.ingress_host_link(self.node_id)}

        def drop_host(ip: IPRoute) -> None:
            for link in ip.get_links():
                n = link.get("ifname") or ""
                if n in host_links:
                    ip.link("del", index=link["index"])

        self._step("leftover host links", lambda: nsutil.netlink(self._host_ns, drop_host))


def _drop_vxlan(ip: IPRoute) -> None:
    found = ip.link_lookup(ifname=names.VXLAN)
    if found:
        ip.link("del", index=found[0])
