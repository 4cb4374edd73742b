"""Network commands in the store: apply-time checks, snapshots, digest, attachments."""

from __future__ import annotations

from manager.ipam import allocate_network
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.store_builder import StoreBuilder


def _apply(b: StoreBuilder, *cmds: pb.Command) -> list[str]:
    """Apply one batch; the error of each command ("" when applied)."""
    res = b.store.apply_batch(pb.CommandBatch(commands=list(cmds), timestamp=b.now))
    return [r.error for r in res.results]


def _spec(name: str, subnet: str = "") -> pb.NetworkSpec:
    spec = pb.NetworkSpec(driver="overlay", subnet=subnet)
    spec.annotations.name = name
    return spec


def test_create_rejects_duplicate_name_vni_and_overlap() -> None:
    b = StoreBuilder()
    net = b.network("front", "10.0.5.0/24")
    twin = pb.Network()
    twin.CopyFrom(net)
    twin.id = "other"
    assert _apply(b, pb.Command(create_network=twin)) == ["network front already exists"]
    twin.spec.annotations.name = "back"
    assert _apply(b, pb.Command(create_network=twin)) == [
        "VXLAN id 4096 is used by network front"]
    twin.vni = 5000
    assert _apply(b, pb.Command(create_network=twin)) == [
        "subnet 10.0.5.0/24 overlaps network front (10.0.5.0/24)"]
    assert b.store.network_by_name("front") is net


def test_update_checks_version_and_keeps_addressing() -> None:
    b = StoreBuilder()
    net = b.network("front")
    new = pb.Network()
    new.CopyFrom(net)
    new.spec.annotations.labels["a"] = "b"
    assert _apply(b, pb.Command(update_network=new, expected_version=7)) == [
        "network changed since it was read (version 1, expected 7)"]
    new.subnet = "10.9.0.0/24"
    assert "cannot change" in _apply(b, pb.Command(update_network=new, expected_version=1))[0]
    new.subnet = net.subnet
    new.spec.annotations.name = "renamed"
    assert _apply(b, pb.Command(update_network=new, expected_version=1)) == [""]
    assert b.store.network_by_name("renamed").meta.version == 2  # type: ignore[union-attr]
    assert b.store.network_by_name("front") is None


def test_remove_refused_while_a_service_uses_it() -> None:
    b = StoreBuilder()
    b.network("ingress", ingress=True)
    b.network("front")
    b.networked_service("web", networks=["front"], ports=[(8080, 80)])
    assert _apply(b, pb.Command(remove_network="net-front")) == [
        "network front is in use by service web"]
    assert _apply(b, pb.Command(remove_network="net-ingress")) == [
        "network ingress is in use by service web"]
    b.remove_service("svc-web")
    assert _apply(b, pb.Command(remove_network="net-front")) == [""]
    assert "net-front" not in b.store.networks


def test_snapshot_and_digest_include_networks() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("ingress", ingress=True)
    b.network("front")
    b.networked_service("web", networks=["front"])
    copy = Store()
    copy.restore(b.store.snapshot())
    assert copy.digest() == b.store.digest()
    assert copy.network_by_name("front") == b.store.networks["net-front"]
    # the address index is rebuilt: the VIP is still held
    vip = b.store.services["svc-web"].endpoint.virtual_ips[0].addr.split("/")[0]
    assert copy.address_holder("net-front", vip) == "service:svc-web"
    before = b.store.digest()
    b.network("back")
    assert b.store.digest() != before


def _task(b: StoreBuilder, tid: str, slot: int) -> pb.Task:
    task = pb.Task(id=tid, service_id="svc-web", service_name="web", slot=slot,
                   desired_state=pb.RUNNING)
    b.apply([pb.Command(create_task=task)])
    return b.store.tasks[tid]


def _attach(b: StoreBuilder, tid: str, addr: str, net: str = "net-front") -> pb.Command:
    att = pb.NetworkAttachment(addresses=[addr])
    att.network.CopyFrom(b.store.networks[net])
    return pb.Command(set_task_networks=pb.SetTaskNetworks(task_id=tid, networks=[att]))


def test_set_task_networks_preconditions() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("front", "10.0.1.0/24")
    b.networked_service("web", networks=["front"])  # VIP 10.0.1.2
    _task(b, "t1", 1)
    _task(b, "t2", 2)
    _task(b, "t3", 3)
    assert _apply(b, _attach(b, "t1", "10.0.1.2/24")) == [
        "address 10.0.1.2 of network front is held by service:svc-web"]
    assert _apply(b, _attach(b, "t1", "10.0.1.1/24")) == [
        "address 10.0.1.1/24 is not free in network front"]
    assert _apply(b, _attach(b, "t1", "10.0.1.3/24"), _attach(b, "t2", "10.0.1.3/24")) == [
        "", "address 10.0.1.3 of network front is held by task:t1"]
    assert _apply(b, _attach(b, "t1", "10.0.1.4/24")) == ["task t1 has its networks already"]
    b.assign("t3", "n1")
    assert _apply(b, _attach(b, "t3", "10.0.1.5/24")) == ["task t3 is already assigned"]
    t1 = b.store.tasks["t1"]
    assert t1.networks[0].addresses == ["10.0.1.3/24"]
    assert t1.endpoint == b.store.services["svc-web"].endpoint


def test_node_ingress_is_set_once() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("ingress", ingress=True)
    att = pb.NetworkAttachment(addresses=["10.0.0.2/24"])
    att.network.CopyFrom(b.store.networks["net-ingress"])
    cmd = pb.Command(set_node_ingress=pb.SetNodeIngress(node_id="n1", ingress=att))
    assert _apply(b, cmd, cmd) == ["", "node n1 has its ingress endpoint already"]
    assert b.store.address_holder("net-ingress", "10.0.0.2") == "node:n1"
    b.remove_node("n1")
    assert b.store.address_holder("net-ingress", "10.0.0.2") is None


def test_published_port_conflict_rechecked_at_apply() -> None:
    b = StoreBuilder()
    b.network("ingress", ingress=True)
    b.networked_service("web", ports=[(8080, 80)])
    clash = pb.Service(id="svc-api")
    clash.spec.annotations.name = "api"
    clash.endpoint.ports.add(published_port=8080, target_port=81, protocol="tcp",
                             publish_mode="ingress")
    assert _apply(b, pb.Command(create_service=clash)) == [
        "port 8080/tcp is already published by service web"]


def test_second_ingress_network_rejected() -> None:
    b = StoreBuilder()
    b.network("ingress", ingress=True)
    spec = _spec("ingress2")
    spec.ingress = True
    net = allocate_network(spec, list(b.store.networks.values()), "x")
    assert _apply(b, pb.Command(create_network=net)) == ["an ingress network exists already"]
