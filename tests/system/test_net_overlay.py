"""The overlay across two hosts (namespaces joined by a veth, no route out): tasks on
different hosts reach each other through the VXLAN devices, DNS on the gateway answers
service names, and nothing is left once the agents are closed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from net_overlay import dns, names, nsutil
from net_overlay.agent import NetworkAgent
from swarmlet.api import swarmlet_pb2 as pb
from tests.system.net_support import (
    UNDERLAY,
    Lab,
    Svc,
    dns_query,
    fetch,
    in_host,
    network,
    requires_net,
)

pytestmark = requires_net


def _one_network(lab: Lab) -> tuple[str, Svc]:
    net = lab.add_network(network("net" + lab.tag + "a" * 18, 4101, "10.31.1.0/24",
                                  "10.31.1.1", name="front"))
    web = Svc("svcweb" + lab.tag, "web", vips={net.id: "10.31.1.2/24"})
    lab.services.append(web)
    return net.id, web


def test_tasks_on_two_hosts_reach_each_other(lab: Lab) -> None:
    net, web = _one_network(lab)
    t1 = lab.add_task(0, web, {net: "10.31.1.10/24"})
    t2 = lab.add_task(1, web, {net: "10.31.1.20/24"})
    lab.update()
    got = lab.agents[0].attach(lab.task_pb(t1), t1.path)
    lab.agents[1].attach(lab.task_pb(t2), t2.path)
    assert got is not None and got.nameservers == ["10.31.1.1"]
    assert got.addresses == ["10.31.1.10/24"]
    sb = lab.agents[0].sandbox(net)
    assert sb is not None
    tx0, rx0 = sb.tx_rx()
    lab.serve(t2.path, 7000, b"hello from t2")
    assert fetch(t1.path, "10.31.1.20", 7000) == b"hello from t2"
    tx1, rx1 = sb.tx_rx()
    assert tx1 > tx0 and rx1 > rx0
    assert programmed(sb.name) == (["02:42:0a:1f:01:14 dst 192.168.250.2"],
                                   ["10.31.1.20 lladdr 02:42:0a:1f:01:14"])

    lab.agents[1].detach(t2.id)
    assert lab.agents[1].sandbox(net) is None  # its last task left
    lab.tasks.remove(t2)
    lab.update()
    assert programmed(sb.name) == ([], [])  # stale entries go with the endpoint


def programmed(sandbox: str) -> tuple[list[str], list[str]]:
    """Static FDB entries (MAC dst VTEP) and neighbours (IP lladdr MAC) on vxlan0."""
    fdb = subprocess.run(["bridge", "-n", sandbox, "fdb", "show", "dev", "vxlan0"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    neigh = subprocess.run(["ip", "-n", sandbox, "neigh", "show", "dev", "vxlan0"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return ([" ".join(ln.split()[:3]) for ln in fdb if " dst " in ln],
            [" ".join(ln.split()[:3]) for ln in neigh])


def test_dns_answers_vip_tasks_and_denies_unknown(lab: Lab) -> None:
    net, web = _one_network(lab)
    t1 = lab.add_task(0, web, {net: "10.31.1.10/24"})
    t2 = lab.add_task(1, web, {net: "10.31.1.20/24"})
    t1.aliases = ["www"]
    lab.update()
    lab.attach_all()

    def ask(name: str) -> tuple[int, list[str]]:
        _, rcode, addrs = dns.parse_response(dns_query(t2.path, "10.31.1.1",
                                                       dns.encode_query(name)))
        return rcode, addrs

    assert ask("web") == (dns.NOERROR, ["10.31.1.2"])
    assert ask("www") == (dns.NOERROR, ["10.31.1.2"])
    rcode, addrs = ask("tasks.web")
    assert rcode == dns.NOERROR and sorted(addrs) == ["10.31.1.10", "10.31.1.20"]
    assert ask("nosuch")[0] == dns.NXDOMAIN
    assert ask("example.org")[0] == dns.SERVFAIL  # no upstream in the lab


def test_a_restarted_agent_removes_what_a_crashed_one_left(lab: Lab, tmp_path: Path) -> None:
    ingress = lab.add_network(network("ing" + lab.tag + "e" * 18, 4104, "10.33.0.0/24",
                                      "10.33.0.1", name="ingress", ingress=True))
    lab.ingress_addrs = ["10.33.0.250/24", "10.33.0.251/24"]
    web = Svc("svcweb" + lab.tag, "web", vips={ingress.id: "10.33.0.2/24"}, ports=[
        pb.PortConfig(protocol="tcp", target_port=80, published_port=8080)])
    lab.services.append(web)
    t = lab.add_task(0, web, {ingress.id: "10.33.0.10/24"})
    lab.update()
    lab.attach_all()
    assert in_host(lab.hosts[0])  # the ingress veth and the mesh table
    crashed = lab.agents[0]
    crashed._dns.close()  # the process "died": its sockets are gone
    lab.agents[0] = NetworkAgent(lab.node_ids[0], UNDERLAY[0], tmp_path / "node1",
                                 host_netns=lab.host_paths[0], upstreams=[])
    assert nsutil.listed(names.sandbox_prefix(lab.node_ids[0])) == []
    assert in_host(lab.hosts[0]) == []
    assert t.path  # the task's namespace is the runtime's (here the lab's) to remove
