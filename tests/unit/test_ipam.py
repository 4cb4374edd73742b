"""IPAM (manager/ipam.py): subnets, VNIs, address pools; pure, no Raft."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager import ipam
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import Conflict, SpecError
from tests.harness.store_builder import StoreBuilder


def _net(name: str, subnet: str = "", vni: int = 0) -> pb.Network:
    spec = pb.NetworkSpec(driver="overlay", subnet=subnet)
    spec.annotations.name = name
    return pb.Network(id=name, spec=spec, subnet=subnet, vni=vni)


def test_subnets_are_carved_in_24s_skipping_taken_ones() -> None:
    assert str(ipam.pick_subnet([])) == "10.0.0.0/24"
    taken = [_net("a", "10.0.0.0/24"), _net("b", "10.0.1.0/25"), _net("c", "10.0.3.0/24")]
    assert str(ipam.pick_subnet(taken)) == "10.0.2.0/24"
    assert str(ipam.pick_subnet([_net("big", "10.0.0.0/16")])) == "10.1.0.0/24"
    assert str(ipam.pick_subnet([_net("other", "192.168.0.0/24")])) == "10.0.0.0/24"


def test_vnis_start_at_4096_and_fill_gaps() -> None:
    assert ipam.pick_vni([]) == 4096
    assert ipam.pick_vni([_net("a", vni=4096), _net("b", vni=4098)]) == 4097


@pytest.mark.parametrize(("text", "message"), [
    ("nonsense", 'subnet: invalid subnet "nonsense" (use CIDR, e.g. 10.0.9.0/24)'),
    ("fd00::/64", "subnet: subnet fd00::/64 is not IPv4 (only IPv4 overlays are supported)"),
    ("8.8.8.0/24", "subnet: subnet 8.8.8.0/24 is not inside a private range (10.0.0.0/8, "
                   "172.16.0.0/12, 192.168.0.0/16)"),
    ("10.0.9.0/30", "subnet: subnet 10.0.9.0/30 is too small (at most a /29)"),
])
def test_bad_subnets(text: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        ipam.parse_subnet(text, [])
    assert str(e.value) == message


def test_overlapping_subnet_names_the_network() -> None:
    with pytest.raises(Conflict) as e:
        ipam.parse_subnet("10.0.1.0/24", [_net("web_net", "10.0.1.0/24")])
    assert str(e.value) == "subnet 10.0.1.0/24 overlaps network web_net (10.0.1.0/24)"


def test_pool_reserves_network_broadcast_and_gateway() -> None:
    net = ipam.allocate_network(pb.NetworkSpec(subnet="10.0.9.0/29"), [], "n1")
    assert (net.subnet, net.gateway, net.vni) == ("10.0.9.0/29", "10.0.9.1", 4096)
    pool = ipam.AddressPool(net)
    assert pool.free() == 5
    got = [pool.take() for _ in range(5)]
    assert got == [f"10.0.9.{i}/29" for i in range(2, 7)]
    with pytest.raises(ipam.NetworkFull):
        pool.take()


def test_addresses_are_released_when_the_task_ends() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("ingress", ingress=True)
    b.network("front")
    svc = b.networked_service("web", 1, networks=["front"])
    task = pb.Task(id="t1", service_id=svc.id, service_name="web", slot=1,
                   desired_state=pb.RUNNING)
    att = task.networks.add(addresses=["10.0.1.7/24"])
    att.network.CopyFrom(b.store.networks["net-front"])
    b.apply([pb.Command(create_task=task)])
    used = ipam.used_addresses(b.store.tasks.values(), b.store.services.values(),
                               b.store.nodes.values())
    ip = ipaddress.IPv4Address
    assert used["net-front"] == {ip("10.0.1.7"), ip("10.0.1.2")}  # the task and the VIP
    b.run("t1", "n1")
    b.report("t1", pb.FAILED)
    used = ipam.used_addresses(b.store.tasks.values(), b.store.services.values(),
                               b.store.nodes.values())
    assert used["net-front"] == {ip("10.0.1.2")}
    assert b.store.address_holder("net-front", "10.0.1.7") is None
    assert b.store.address_holder("net-front", "10.0.1.2") == "service:svc-web"


def test_mac_is_derived_from_the_address() -> None:
    assert ipam.mac_of("10.0.1.5/24") == "02:42:0a:00:01:05"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=16, max_value=28)),
                min_size=1, max_size=12))
def test_subnets_never_overlap(prefixes: list[int | None]) -> None:
    """Networks made one after another, pool-carved (None) or user-given of any size."""
    nets: list[pb.Network] = []
    for i, prefix in enumerate(prefixes):
        if prefix is None:
            subnet = ipam.pick_subnet(nets)
        else:
            # the lowest aligned candidate at that size past what exists, or skip on overlap
            candidate = ipaddress.IPv4Network((0x0A000000 + i * 0x40000, prefix))
            try:
                subnet = ipam.parse_subnet(str(candidate), nets)
            except Conflict:
                continue
        nets.append(_net(f"n{i}", str(subnet), vni=ipam.pick_vni(nets)))
    subnets = [ipam.network_of(n.subnet) for n in nets]
    for i, a in enumerate(subnets):
        assert all(not a.overlaps(b) for b in subnets[i + 1:])
    assert len({n.vni for n in nets}) == len(nets)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "end"]), st.integers(0, 50)),
                min_size=1, max_size=60))
def test_no_two_live_endpoints_share_an_address(steps: list[tuple[str, int]]) -> None:
    """Tasks get addresses from pools rebuilt from the store each time, while others end."""
    b = StoreBuilder()
    b.node("n1")
    b.network("small", "10.0.9.0/27")
    svc = b.networked_service("web", 1, networks=["small"])
    live: list[str] = []
    for n, (op, pick) in enumerate(steps):
        if op == "end" and live:
            tid = live.pop(pick % len(live))
            b.run(tid, "n1")
            b.report(tid, pb.COMPLETE)
            continue
        used = ipam.used_addresses(b.store.tasks.values(), b.store.services.values(),
                                   b.store.nodes.values())
        pool = ipam.Pools(b.store.networks, used).pool("net-small")
        try:
            addr = pool.take()
        except ipam.NetworkFull:
            continue
        task = pb.Task(id=f"x{n}", service_id=svc.id, service_name="web", slot=n + 10,
                       desired_state=pb.RUNNING)
        b.apply([pb.Command(create_task=task)])
        att = pb.NetworkAttachment(addresses=[addr])
        att.network.CopyFrom(b.store.networks["net-small"])
        b.apply([pb.Command(set_task_networks=pb.SetTaskNetworks(task_id=task.id,
                                                                 networks=[att]))])
        live.append(task.id)
    held = [a for t in b.store.tasks.values() if ipam.holds_addresses(t)
            for att in t.networks for a in att.addresses]
    held += [v.addr for v in b.store.services[svc.id].endpoint.virtual_ips]
    assert len(held) == len(set(held))
