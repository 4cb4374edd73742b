"""VIP load balancing and the routing mesh across two hosts (namespaces, no route out):
a VIP spreads connections over every serving backend and drops one the moment it stops
serving; a port published in ingress mode answers on a host that runs no task of the
service; mode=host answers only where the task runs."""

from __future__ import annotations

import pytest

from net_overlay import dns
from swarmlet.api import swarmlet_pb2 as pb
from tests.system.net_support import (
    Lab,
    Svc,
    dns_query,
    fetch,
    network,
    requires_net,
)

pytestmark = requires_net


def test_vip_spreads_over_backends_and_drops_one_not_serving(lab: Lab) -> None:
    net = lab.add_network(network("net" + lab.tag + "b" * 18, 4102, "10.31.2.0/24",
                                  "10.31.2.1"))
    web = Svc("svcweb" + lab.tag, "web", vips={net.id: "10.31.2.2/24"})
    cli = Svc("svccli" + lab.tag, "cli", vips={net.id: "10.31.2.3/24"})
    lab.services += [web, cli]
    backends = [lab.add_task(h, web, {net.id: f"10.31.2.{10 + i}/24"})
                for i, h in enumerate((0, 0, 1))]
    client = lab.add_task(1, cli, {net.id: "10.31.2.50/24"})
    lab.update()
    lab.attach_all()
    for b in backends:
        lab.serve(b.path, 80, b.id.encode())
    seen = [fetch(client.path, "10.31.2.2", 80).decode() for _ in range(30)]
    assert sorted(set(seen)) == sorted(b.id for b in backends)
    assert all(seen.count(b.id) == 10 for b in backends)  # round robin

    backends[2].serving = False
    lab.update()
    seen = [fetch(client.path, "10.31.2.2", 80).decode() for _ in range(20)]
    assert backends[2].id not in seen
    assert set(seen) == {backends[0].id, backends[1].id}

    for b in backends:
        b.serving = False
    lab.update()
    with pytest.raises(OSError):  # no backend: the VIP rejects at once
        fetch(client.path, "10.31.2.2", 80, timeout=2.0)


def test_mesh_answers_on_a_host_without_tasks(lab: Lab) -> None:
    ingress = lab.add_network(network("ing" + lab.tag + "c" * 18, 4096, "10.32.0.0/24",
                                      "10.32.0.1", name="ingress", ingress=True))
    lab.ingress_addrs = ["10.32.0.250/24", "10.32.0.251/24"]
    ports = [pb.PortConfig(protocol="tcp", target_port=80, published_port=8080,
                           publish_mode="ingress"),
             pb.PortConfig(protocol="tcp", target_port=80, published_port=9090,
                           publish_mode="host")]
    web = Svc("svcweb" + lab.tag, "web", vips={ingress.id: "10.32.0.2/24"}, ports=ports)
    lab.services.append(web)
    tasks = [lab.add_task(0, web, {ingress.id: f"10.32.0.{10 + i}/24"}) for i in range(2)]
    lab.update()
    lab.attach_all()
    for t in tasks:
        lab.serve(t.path, 80, t.id.encode())
    ids = {t.id for t in tasks}
    h1, h2 = lab.host_paths
    # made on host 2 itself (output chain), arriving at host 2 (prerouting), on host 1
    for origin, target in ((h2, "192.168.250.2"), (h1, "192.168.250.2"),
                           (h1, "192.168.250.1")):
        seen = {fetch(origin, target, 8080).decode() for _ in range(6)}
        assert seen == ids, (origin, target)
    assert fetch(h2, "192.168.250.1", 9090).decode() in ids  # host mode: where tasks run
    with pytest.raises(OSError):
        fetch(h1, "192.168.250.2", 9090, timeout=2.0)  # and only there

    for t in tasks:
        t.serving = False
    lab.update()
    with pytest.raises(OSError):
        fetch(h1, "192.168.250.2", 8080, timeout=2.0)


def test_a_task_on_two_networks_reaches_a_service_of_its_second_one(lab: Lab) -> None:
    front = lab.add_network(network("fro" + lab.tag + "h" * 18, 4107, "10.31.7.0/24",
                                    "10.31.7.1"))
    back = lab.add_network(network("bak" + lab.tag + "i" * 18, 4108, "10.31.8.0/24",
                                   "10.31.8.1"))
    api = Svc("svcapi" + lab.tag, "api", vips={back.id: "10.31.8.2/24"})
    app = Svc("svcapp" + lab.tag, "app", vips={front.id: "10.31.7.2/24"})
    lab.services += [api, app]
    backend = lab.add_task(1, api, {back.id: "10.31.8.10/24"})
    client = lab.add_task(0, app, {front.id: "10.31.7.10/24", back.id: "10.31.8.20/24"})
    lab.update()
    lab.attach_all()
    lab.serve(backend.path, 80, b"api")
    # the client's resolver is the gateway of its first network
    reply = dns_query(client.path, "10.31.7.1", dns.encode_query("api"))
    assert dns.parse_response(reply)[1:] == (dns.NOERROR, ["10.31.8.2"])
    assert fetch(client.path, "10.31.8.2", 80) == b"api"
