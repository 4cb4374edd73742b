"""What the data plane derives from Assignments, and the nftables text it applies (pure)."""

from __future__ import annotations

from net_overlay import names, plan, rules
from swarmlet.api import swarmlet_pb2 as pb


def _a() -> pb.Assignments:
    a = pb.Assignments()
    ing = pb.Network(id="ing", vni=4096, subnet="10.255.0.0/24", gateway="10.255.0.1")
    ing.spec.ingress = True
    a.networks.append(ing)
    a.ingress.network.CopyFrom(ing)
    a.ingress.addresses.append("10.255.0.250/24")
    a.services.append(pb.ServiceBinding(
        service_id="s1", service_name="web", endpoint_mode="vip",
        virtual_ips=[pb.VirtualIP(network_id="n1", addr="10.0.1.2/24")],
        ports=[pb.PortConfig(protocol="tcp", target_port=80, published_port=8080,
                             publish_mode="ingress"),
               pb.PortConfig(protocol="udp", target_port=53, published_port=5353,
                             publish_mode="host")]))
    for tid, node, net, addr, serving in (
        ("t1", "me", "n1", "10.0.1.5/24", True),
        ("t2", "other", "n1", "10.0.1.6/24", True),
        ("t3", "other", "n1", "10.0.1.7/24", False),
        ("t1", "me", "ing", "10.255.0.5/24", True),
        ("t2", "other", "ing", "10.255.0.6/24", True),
    ):
        a.endpoints.append(pb.NetworkEndpoint(
            network_id=net, task_id=tid, node_id=node, address=addr,
            node_addr="192.0.2.1" if node == "me" else "192.0.2.2",
            mac=names.mac_for(addr), service_id="s1", service_name="web", serving=serving))
    a.endpoints.append(pb.NetworkEndpoint(network_id="ing", node_id="other",
                                          node_addr="192.0.2.2", address="10.255.0.251/24",
                                          mac=names.mac_for("10.255.0.251")))
    return a


def test_names_fit_linux_limits() -> None:
    node, net, task = "n" * 25, "x" * 25, "t" * 25
    assert names.sandbox_ns(node, net) == "swl-sb-nnnnnn-xxxxxx"
    for link in (names.ingress_host_link(node), names.task_port(task, 3)):
        assert len(link) <= 15 and link.startswith("swl")
    assert names.mac_for("10.0.1.5/24") == "02:42:0a:00:01:05"


def test_remotes_are_other_nodes_endpoints_including_ingress_ones() -> None:
    a = _a()
    assert plan.remotes(a, "n1", "me", "192.0.2.1") == {
        plan.Remote("10.0.1.6", "02:42:0a:00:01:06", "192.0.2.2"),
        plan.Remote("10.0.1.7", "02:42:0a:00:01:07", "192.0.2.2"),  # FDB even when idle
    }
    assert {r.ip for r in plan.remotes(a, "ing", "me", "192.0.2.1")} == {
        "10.255.0.6", "10.255.0.251"}


def test_vips_and_mesh_ports_use_serving_backends() -> None:
    a = _a()
    vips = plan.all_vips(a, plan.serving_index(a))
    assert plan.task_vips(vips, {"n1"}) == [plan.Vip("10.0.1.2", ("10.0.1.5", "10.0.1.6"))]
    assert plan.task_vips(vips, {"other"}) == []
    assert plan.mesh_ports(a, "me") == [
        plan.MeshPort("tcp", 8080, 80, ("10.255.0.5", "10.255.0.6")),
        plan.MeshPort("udp", 5353, 53, ("10.255.0.5",)),  # host mode: this node's only
    ]
    assert [p.published for p in plan.mesh_ports(a, "nobody")] == [8080]


def test_task_ruleset_replaces_the_table_in_one_transaction() -> None:
    text = rules.task_ruleset([plan.Vip("10.0.1.2", ("10.0.1.5", "10.0.1.6")),
                               plan.Vip("10.0.1.3", ())])
    lines = text.splitlines()
    assert lines[:3] == ["table ip swarmlet", "delete table ip swarmlet",
                         "table ip swarmlet {"]
    assert "    elements = { 0 : 10.0.1.5, 1 : 10.0.1.6 }" in lines
    assert "    ip daddr 10.0.1.2 dnat to numgen inc mod 2 map @vip0" in lines
    assert "    ip daddr 10.0.1.3 reject" in lines


def test_mesh_ruleset_dnats_published_ports_and_masquerades() -> None:
    text = rules.mesh_ruleset([plan.MeshPort("tcp", 8080, 80, ("10.255.0.5",)),
                               plan.MeshPort("tcp", 8081, 80, ())], "swlhabc")
    assert "    elements = { 0 : 10.255.0.5 . 80 }" in text
    assert text.count("fib daddr type local tcp dport 8080 dnat ip to numgen inc mod 1 "
                      "map @port0") == 2  # prerouting and output
    assert "8081" not in text  # nothing serves: the port stays closed
    assert 'ct status dnat oifname "swlhabc" masquerade' in text
