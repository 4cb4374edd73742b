"""Networks through the control servicer (store applied directly, no Raft): network
validation, service network resolution, VIP and published-port allocation, capacity."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from manager.control import ControlService
from manager.control_networks import new_ingress
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.direct_control import Aborted, DirectProposer, call
from tests.harness.store_builder import service_spec


@pytest.fixture
def control() -> ControlService:
    store = Store()
    store.apply_batch(pb.CommandBatch(commands=[
        pb.Command(put_cluster=pb.Cluster(id="c1", raft_secret="s")),
        pb.Command(create_network=new_ingress([], "ingress0")),
    ]))
    return ControlService(store, DirectProposer(store), lambda: None, lambda _n: None)  # type: ignore[arg-type]



def net(control: ControlService, name: str, subnet: str = "", driver: str = "overlay") -> Any:
    spec = pb.NetworkSpec(driver=driver, subnet=subnet)
    spec.annotations.name = name
    return call(control, "CreateNetwork", pb.CreateNetworkRequest(spec=spec)).network


def create(control: ControlService, spec: pb.ServiceSpec) -> pb.Service:
    return call(control, "CreateService", pb.CreateServiceRequest(spec=spec)).service  # type: ignore[no-any-return]


def test_ingress_and_pool_carving(control: ControlService) -> None:
    ingress = control._store.ingress_network()
    assert ingress is not None and ingress.subnet == "10.255.0.0/16" and ingress.vni == 4096
    web = net(control, "web_net")
    assert (web.subnet, web.gateway, web.vni, web.spec.driver) == (
        "10.0.0.0/24", "10.0.0.1", 4097, "overlay")
    assert net(control, "next").subnet == "10.0.1.0/24"
    listed = call(control, "ListNetworks", pb.Empty()).networks
    assert [n.spec.annotations.name for n in listed] == ["ingress", "next", "web_net"]
    assert call(control, "GetNetwork", pb.IdRequest(id=web.id[:6])).network == web


BAD_NETWORKS = [
    ({"name": "web_net"}, grpc.StatusCode.FAILED_PRECONDITION, "network web_net already exists"),
    ({"name": "x", "subnet": "10.0.1.0/24"}, grpc.StatusCode.FAILED_PRECONDITION,
     "subnet 10.0.1.0/24 overlaps network web_net (10.0.1.0/24)"),
    ({"name": "x", "subnet": "10.0.1.128/25"}, grpc.StatusCode.FAILED_PRECONDITION,
     "subnet 10.0.1.128/25 overlaps network web_net (10.0.1.0/24)"),
    ({"name": "x", "driver": "bridge"}, grpc.StatusCode.INVALID_ARGUMENT,
     'driver: driver "bridge" is not supported (use overlay)'),
    ({"name": "x", "subnet": "10.0.9.0/30"}, grpc.StatusCode.INVALID_ARGUMENT,
     "subnet: subnet 10.0.9.0/30 is too small (at most a /29)"),
    ({"name": "x", "subnet": "8.8.8.0/24"}, grpc.StatusCode.INVALID_ARGUMENT,
     "subnet: subnet 8.8.8.0/24 is not inside a private range (10.0.0.0/8, 172.16.0.0/12, "
     "192.168.0.0/16)"),
    ({"name": "x", "subnet": "fd00::/64"}, grpc.StatusCode.INVALID_ARGUMENT,
     "subnet: subnet fd00::/64 is not IPv4 (only IPv4 overlays are supported)"),
    ({"name": "x", "subnet": "10.0.300.0/24"}, grpc.StatusCode.INVALID_ARGUMENT,
     'subnet: invalid subnet "10.0.300.0/24" (use CIDR, e.g. 10.0.9.0/24)'),
    ({"name": "bad name"}, grpc.StatusCode.INVALID_ARGUMENT,
     'name: invalid network name "bad name" (use 1-64 letters, digits, "_", "." or "-", '
     'starting and ending with a letter or digit)'),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_NETWORKS)
def test_bad_networks(control: ControlService, args: dict[str, str], code: grpc.StatusCode,
                      message: str) -> None:
    net(control, "web_net", "10.0.1.0/24")
    before = control._store.digest()
    with pytest.raises(Aborted) as e:
        net(control, **args)
    assert (e.value.code, e.value.details) == (code, message)
    assert control._store.digest() == before  # nothing written


def test_service_networks_vips_and_ports(control: ControlService) -> None:
    web_net = net(control, "web_net")
    svc = create(control, service_spec("web", 2, ("web_net",), ((8080, 80, ""), (0, 443, ""))))
    assert [a.target for a in svc.spec.task_template.networks] == [web_net.id]
    ep = svc.endpoint
    assert [(v.network_id, v.addr) for v in ep.virtual_ips] == [
        (web_net.id, "10.0.0.2/24"), ("ingress0", "10.255.0.2/16")]
    assert [(p.published_port, p.target_port) for p in ep.ports] == [(8080, 80), (30000, 443)]
    assert [p.published_port for p in ep.spec.ports] == [8080, 30000]
    # an update keeps what still fits; dropping the network releases its VIP
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    del spec.task_template.networks[:]
    new = call(control, "UpdateService", pb.UpdateServiceRequest(
        id=svc.id, spec=spec, version=svc.meta.version)).service
    assert [(v.network_id, v.addr) for v in new.endpoint.virtual_ips] == [
        ("ingress0", "10.255.0.2/16")]
    assert [p.published_port for p in new.endpoint.ports] == [8080, 30000]
    call(control, "RemoveService", pb.IdRequest(id="web"))
    again = create(control, service_spec("api", 1, ("web_net",), ((0, 80, ""),)))
    assert again.endpoint.virtual_ips[0].addr == "10.0.0.2/24"  # released, handed out again
    assert again.endpoint.ports[0].published_port == 30000


def test_dnsrr_gets_no_vip(control: ControlService) -> None:
    net(control, "web_net")
    svc = create(control, service_spec("db", 1, ("web_net",), mode="dnsrr"))
    assert list(svc.endpoint.virtual_ips) == []


def _bad_service(control: ControlService) -> list[tuple[pb.ServiceSpec, grpc.StatusCode, str]]:
    return [
        (service_spec("x", networks=("foo",)), grpc.StatusCode.NOT_FOUND, "network foo not found"),
        (service_spec("x", networks=("ingress",)), grpc.StatusCode.INVALID_ARGUMENT,
         "network: network ingress is the ingress network; services reach it by publishing "
         "ports (--publish)"),
        (service_spec("x", networks=("web_net", "web_net")), grpc.StatusCode.INVALID_ARGUMENT,
         "network: network web_net is named twice"),
        (service_spec("x", ports=((8080, 81, ""),)), grpc.StatusCode.FAILED_PRECONDITION,
         "port 8080/tcp is already published by service web"),
        (service_spec("x", ports=((8080, 81, "host"),)), grpc.StatusCode.FAILED_PRECONDITION,
         "port 8080/tcp is already published by service web"),
        (service_spec("x", ports=((9000, 81, "host"),)), grpc.StatusCode.FAILED_PRECONDITION,
         "port 9000/tcp is already published by service hosted"),
        (service_spec("x", 5, ("small",)), grpc.StatusCode.FAILED_PRECONDITION,
         "network small: subnet 10.0.9.0/29 has room for 4 more addresses, service needs 6"),
    ]


def test_bad_services(control: ControlService) -> None:
    net(control, "web_net")
    net(control, "small", "10.0.9.0/29")
    create(control, service_spec("web", 1, (), ((8080, 80, ""),)))
    create(control, service_spec("hosted", 1, (), ((9000, 80, "host"),)))
    create(control, service_spec("tiny", 0, ("small",)))  # holds a VIP: 4 addresses left
    for spec, code, message in _bad_service(control):
        before = control._store.digest()
        with pytest.raises(Aborted) as e:
            create(control, spec)
        assert (e.value.code, e.value.details) == (code, message), spec
        assert control._store.digest() == before


def test_scale_checks_capacity(control: ControlService) -> None:
    net(control, "small", "10.0.9.0/29")
    create(control, service_spec("web", 2, ("small",)))
    with pytest.raises(Aborted) as e:
        call(control, "ScaleService", pb.ScaleRequest(id="web", replicas=5))
    # the service's own VIP is given back and needed again
    assert e.value.details == ("network small: subnet 10.0.9.0/29 has room for 5 more "
                               "addresses, service needs 6")
    call(control, "ScaleService", pb.ScaleRequest(id="web", replicas=4))


def test_remove_network_in_use(control: ControlService) -> None:
    net(control, "web_net")
    create(control, service_spec("web", 1, ("web_net",), ((8080, 80, ""),)))
    for name in ("web_net", "ingress"):
        with pytest.raises(Aborted) as e:
            call(control, "RemoveNetwork", pb.IdRequest(id=name))
        assert e.value.details == f"network {name} is in use by service web"
    call(control, "RemoveService", pb.IdRequest(id="web"))
    call(control, "RemoveNetwork", pb.IdRequest(id="web_net"))
    assert control._store.network_by_name("web_net") is None


def test_ingress_cannot_be_made_by_users(control: ControlService) -> None:
    spec = pb.NetworkSpec(driver="overlay", ingress=True)
    spec.annotations.name = "ingress2"
    with pytest.raises(Aborted) as e:
        call(control, "CreateNetwork", pb.CreateNetworkRequest(spec=spec))
    assert e.value.details == ("ingress: the cluster has its ingress network; another cannot "
                               "be made")


def test_leader_gives_a_cluster_without_one_its_ingress_network() -> None:
    from manager.manager import Manager
    from swarmlet import log

    store = Store()
    store.apply_batch(pb.CommandBatch(commands=[
        pb.Command(put_cluster=pb.Cluster(id="c1", raft_secret="s"))]))
    m = Manager.__new__(Manager)  # only what _ensure_ingress uses
    m.store, m.proposer, m._log = store, DirectProposer(store), log.get("test")  # type: ignore[assignment]
    m._ensure_ingress()
    m._ensure_ingress()  # idempotent
    ingress = store.ingress_network()
    assert ingress is not None and ingress.spec.annotations.name == "ingress"
    assert (ingress.subnet, ingress.vni) == ("10.255.0.0/16", 4096)
    assert len(store.networks) == 1
