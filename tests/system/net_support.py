"""A two-host lab for the data-plane system tests (and bench/net.py).

Two "hosts" are network namespaces (`swt-h1-<tag>`, `swt-h2-<tag>`) joined by a veth
pair with 192.168.250.1/24 and .2/24 and no other route: nothing can leave the machine.
Each host has a NetworkAgent whose host namespace is that host's namespace. Tasks are
plain namespaces (`swt-t-<tag>-<n>`); tiny TCP servers and clients run in them through
sockets made inside the namespace (a socket stays where it was made).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from net_overlay import nsutil
from net_overlay.agent import NetworkAgent
from net_overlay.names import mac_for
from swarmlet.api import swarmlet_pb2 as pb


def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, VXLAN, nftables)"
    for tool, pkg in (("nft", "nftables"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {pkg}; scripts/bootstrap.sh)"
    return ""


requires_net = [
    pytest.mark.root,
    pytest.mark.skipif(bool(skip_reason()), reason=skip_reason() or "available"),
]

UNDERLAY = ("192.168.250.1", "192.168.250.2")


def network(net_id: str, vni: int, subnet: str, gateway: str, name: str = "",
            ingress: bool = False) -> pb.Network:
    n = pb.Network(id=net_id, vni=vni, subnet=subnet, gateway=gateway)
    n.spec.annotations.name = name or net_id
    n.spec.ingress = ingress
    return n


@dataclass
class Svc:
    """A service as the tests describe it: one VIP per network (vip mode), ports."""

    id: str
    name: str
    vips: dict[str, str] = field(default_factory=dict)  # network id -> VIP CIDR
    mode: str = "vip"
    ports: list[pb.PortConfig] = field(default_factory=list)


@dataclass
class TaskNs:
    """A task: its namespace, host index (0/1), addresses per network, serving flag."""

    id: str
    host: int
    service: Svc
    addrs: dict[str, str]  # network id -> CIDR
    path: str = ""
    serving: bool = True
    aliases: list[str] = field(default_factory=list)


class Lab:
    def __init__(self, tmp: Path, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(2)
        self.hosts = [f"swt-h{i + 1}-{self.tag}" for i in range(2)]
        self.host_paths = [nsutil.create(h) for h in self.hosts]
        self.node_ids = [f"n{i + 1}{self.tag}{secrets.token_hex(6)}" for i in range(2)]
        self.networks: dict[str, pb.Network] = {}
        self.services: list[Svc] = []
        self.tasks: list[TaskNs] = []
        self.ingress_addrs: list[str] = []
        self._task_ns: list[str] = []
        self.servers: list[Server] = []
        self.residue: list[str] = []  # what close() left in the host namespaces
        self._link(f"swt{self.tag}a", f"swt{self.tag}b")
        self.agents = [
            NetworkAgent(self.node_ids[i], UNDERLAY[i], tmp / f"node{i + 1}",
                         host_netns=self.host_paths[i], upstreams=[], dns_timeout_s=0.5)
            for i in range(2)
        ]

    def _link(self, a: str, b: str) -> None:
        ip(self.hosts[0], "link", "add", a, "type", "veth", "peer", "name", b,
           "netns", self.hosts[1])
        for i, dev in ((0, a), (1, b)):
            ip(self.hosts[i], "addr", "add", f"{UNDERLAY[i]}/24", "dev", dev)
            ip(self.hosts[i], "link", "set", dev, "up")

    # ------------------------------------------------------------------ the model

    def add_network(self, net: pb.Network) -> pb.Network:
        self.networks[net.id] = net
        return net

    def add_task(self, host: int, service: Svc, addrs: dict[str, str],
                 serving: bool = True, make_ns: bool = True) -> TaskNs:
        """A task in the model; with make_ns, also its namespace (else a runtime makes
        one)."""
        n = len(self.tasks) + 1
        t = TaskNs(f"t{self.tag}{n:02d}{secrets.token_hex(10)}", host, service, addrs,
                   serving=serving)
        if make_ns:
            name = f"swt-t-{self.tag}-{n}"
            t.path = nsutil.create(name)
            self._task_ns.append(name)
        self.tasks.append(t)
        return t

    def task_pb(self, t: TaskNs) -> pb.Task:
        task = pb.Task(id=t.id, service_id=t.service.id, service_name=t.service.name,
                       node_id=self.node_ids[t.host])
        for net_id, addr in t.addrs.items():
            task.networks.append(pb.NetworkAttachment(
                network=self.networks[net_id], addresses=[addr], aliases=t.aliases))
        return task

    def assignments(self, host: int) -> pb.Assignments:
        a = pb.Assignments(sequence=1)
        a.networks.extend(self.networks.values())
        for t in self.tasks:
            for net_id, addr in t.addrs.items():
                a.endpoints.append(pb.NetworkEndpoint(
                    network_id=net_id, task_id=t.id, node_addr=UNDERLAY[t.host],
                    address=addr, mac=mac_for(addr), service_name=t.service.name,
                    aliases=t.aliases, service_id=t.service.id,
                    node_id=self.node_ids[t.host], serving=t.serving))
        ingress = next((n for n in self.networks.values() if n.spec.ingress), None)
        if ingress is not None:
            for i, addr in enumerate(self.ingress_addrs):
                a.endpoints.append(pb.NetworkEndpoint(
                    network_id=ingress.id, node_addr=UNDERLAY[i], address=addr,
                    mac=mac_for(addr), node_id=self.node_ids[i]))
            if host < len(self.ingress_addrs):
                a.ingress.network.CopyFrom(ingress)
                a.ingress.addresses.append(self.ingress_addrs[host])
        for s in self.services:
            a.services.append(pb.ServiceBinding(
                service_id=s.id, service_name=s.name, endpoint_mode=s.mode,
                virtual_ips=[pb.VirtualIP(network_id=n, addr=v) for n, v in s.vips.items()],
                ports=s.ports))
        return a

    def update(self) -> None:
        for i, agent in enumerate(self.agents):
            agent.update(self.assignments(i))

    def serve(self, ns_path: str, port: int, reply: bytes) -> Server:
        server = Server(ns_path, port, reply)
        self.servers.append(server)
        return server

    def attach_all(self) -> None:
        for t in self.tasks:
            self.agents[t.host].attach(self.task_pb(t), t.path)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for agent in self.agents:
            agent.close()
        self.residue = [f"{h}: {x}" for h in self.hosts for x in in_host(h)]
        for name in self._task_ns:
            nsutil.remove(name)
        for h in self.hosts:
            nsutil.remove(h)


def lab_fixture(tmp: Path) -> Iterator[Lab]:
    """Body of the tests' `lab` fixture: a lab, closed after the test, then checked for
    anything left behind."""
    lab = Lab(tmp)
    try:
        yield lab
    finally:
        lab.close()
        assert lab.residue == []
        assert leftovers() == []


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


# ---------------------------------------------------------------------- traffic

def socket_in(ns_path: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    return nsutil.run_in(ns_path, lambda: socket.socket(socket.AF_INET, kind))


class Server:
    """A TCP server in a namespace that answers each connection with `reply`."""

    def __init__(self, ns_path: str, port: int, reply: bytes) -> None:
        self.sock = socket_in(ns_path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(128)
        self.reply = reply
        self.count = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.count += 1
                try:
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._t.join(timeout=2)


def fetch(ns_path: str, addr: str, port: int, timeout: float = 3.0) -> bytes:
    """What the server at addr:port says to a connection made from the namespace."""
    s = socket_in(ns_path)
    with s:
        s.settimeout(timeout)
        s.connect((addr, port))
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def dns_query(ns_path: str, server: str, payload: bytes, timeout: float = 3.0) -> bytes:
    s = socket_in(ns_path, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        s.sendto(payload, (server, 53))
        return s.recv(4096)


# ---------------------------------------------------------------------- leftovers

def in_host(ns: str) -> list[str]:
    """Data-plane links and nft tables left in a host namespace."""
    links = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True,
                           text=True).stdout
    out = [f"link {ln.split()[1]}" for ln in links.splitlines()
           if ln.split()[1].startswith("swl")]
    tables = subprocess.run(["nsenter", f"--net={nsutil.path_of(ns)}", "nft", "list",
                             "tables"], capture_output=True, text=True).stdout
    return out + [f"nft {t}" for t in tables.splitlines() if "swarmlet" in t]


def leftovers() -> list[str]:
    """Namespaces, mounts, links (in this namespace) and nft tables with our prefixes."""
    out = [f"netns {n}" for n in nsutil.listed("swt") + nsutil.listed("swl-sb")]
    with open("/proc/self/mountinfo") as f:
        out += [f"mount {line.split()[4]}" for line in f
                if "/run/netns/swt" in line or "/run/netns/swl-sb" in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out += [f"link {ln.split()[1]}" for ln in links.splitlines()
            if ln.split()[1].startswith(("swt", "swlh", "swlt"))]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    out += [f"nft {t}" for t in tables.splitlines() if "swarmlet" in t]
    return out
