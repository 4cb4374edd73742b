"""The network tables of each node's Assignments (dispatcher + dispatch_networks), built
from store states made with the StoreBuilder and the real allocator (no gRPC, no Raft)."""

from __future__ import annotations

from typing import Any

import pytest

from manager import dispatch_networks
from manager.allocator import allocate
from manager.dispatcher import Dispatcher, _Session
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import FakeClock
from tests.harness.store_builder import StoreBuilder

ADDRS = {"n1": "192.168.5.1", "n2": "192.168.5.2:2377", "n3": "192.168.5.3"}


def _settle(b: StoreBuilder) -> None:
    """Allocator passes until nothing is left to do (attachments, then placement)."""
    for _ in range(5):
        cmds = allocate(b.store, b.now).commands
        if not cmds:
            return
        b.apply(cmds)


@pytest.fixture
def cluster() -> StoreBuilder:
    b = StoreBuilder()
    for n in ("n1", "n2", "n3"):
        b.node(n)
        b.apply([pb.Command(node_status=pb.UpdateNodeStatus(
            node_id=n, status=pb.NodeStatus(state=pb.READY, addr=ADDRS[n])))])
    b.network("ingress", ingress=True)
    b.network("front")
    svc = b.networked_service("web", 2, networks=["front"], ports=[(8080, 80)])
    for slot in (1, 2):
        b.apply([pb.Command(create_task=pb.Task(
            id=f"web.{slot}", service_id=svc.id, service_name="web", slot=slot,
            spec=svc.spec.task_template, desired_state=pb.RUNNING))])
    _settle(b)
    b.store.tasks["web.1"]  # placed by the scheduler; pin them for a stable test
    return b


def _dispatcher(b: StoreBuilder) -> tuple[Dispatcher, dict[str, _Session]]:
    d = Dispatcher(b.store, None, FakeClock(), lambda: True, lambda: [])  # type: ignore[arg-type]
    d._reset_networks()
    b.store.subscribe(d.on_events)
    sessions = {n: _Session(n) for n in ADDRS}
    d._sessions.update(sessions)
    return d, sessions


def _push(d: Dispatcher, sess: _Session) -> pb.Assignments | None:
    raw = d._assignments(sess)
    return pb.ManagerMessage.FromString(raw).assignments if raw is not None else None


def _run_all(b: StoreBuilder) -> None:
    for t in list(b.store.tasks.values()):
        if t.status.state == pb.ASSIGNED:
            b.report(t.id, pb.RUNNING)


def test_tasks_get_attachments_and_nodes_ingress(cluster: StoreBuilder) -> None:
    b = cluster
    t1 = b.store.tasks["web.1"]
    assert t1.status.state == pb.ASSIGNED
    assert [(a.network.id, list(a.aliases)) for a in t1.networks] == [
        ("net-front", ["web"]), ("net-ingress", [])]
    addrs = {a.addresses[0] for t in b.store.tasks.values() for a in t.networks}
    vips = {v.addr for v in b.store.services["svc-web"].endpoint.virtual_ips}
    assert len(addrs) == 4 and not addrs & vips
    for n in ADDRS:
        assert b.store.nodes[n].ingress.network.id == "net-ingress"


def test_assignment_tables(cluster: StoreBuilder) -> None:
    b = cluster
    _run_all(b)
    d, sessions = _dispatcher(b)
    hosting = b.store.tasks["web.1"].node_id
    a = _push(d, sessions[hosting])
    assert a is not None
    assert [n.id for n in a.networks] == ["net-front", "net-ingress"]
    front = [e for e in a.endpoints if e.network_id == "net-front"]
    assert sorted(e.task_id for e in front) == ["web.1", "web.2"]
    for e in front:
        task = b.store.tasks[e.task_id]
        assert e.address == task.networks[0].addresses[0]
        assert e.node_id == task.node_id
        assert e.node_addr == ADDRS[task.node_id].split(":")[0]
        octets = e.address.split("/")[0].split(".")
        assert e.mac == "02:42:" + ":".join(f"{int(o):02x}" for o in octets)
        assert (e.service_name, e.service_id, list(e.aliases), e.serving) == (
            "web", "svc-web", ["web"], True)
    node_eps = [e for e in a.endpoints if e.network_id == "net-ingress" and not e.task_id]
    assert sorted(e.node_id for e in node_eps) == sorted(n for n in ADDRS if n != hosting)
    assert [s.service_name for s in a.services] == ["web"]
    binding = a.services[0]
    assert binding.endpoint_mode == "vip"
    assert [v.network_id for v in binding.virtual_ips] == ["net-front", "net-ingress"]
    assert [(p.published_port, p.target_port) for p in binding.ports] == [(8080, 80)]
    assert a.ingress == b.store.nodes[hosting].ingress
    # a node with no task still gets ingress and every ingress-publishing service
    idle = next(n for n in ADDRS if n not in {t.node_id for t in b.store.tasks.values()})
    other = _push(d, sessions[idle])
    assert other is not None
    assert [n.id for n in other.networks] == ["net-ingress"]
    assert [s.service_name for s in other.services] == ["web"]
    assert {e.task_id for e in other.endpoints if e.task_id} == {"web.1", "web.2"}


def test_serving_change_pushes_every_affected_node(cluster: StoreBuilder) -> None:
    b = cluster
    _run_all(b)
    d, sessions = _dispatcher(b)
    for s in sessions.values():
        assert _push(d, s) is not None
        s.q.queue.clear()
        s.dirty = False
    assert all(_push(d, s) is None for s in sessions.values())  # nothing changed
    b.apply([pb.Command(set_task_desired=pb.SetTaskDesired(task_id="web.2",
                                                           desired_state=pb.SHUTDOWN))])
    assert all(s.dirty for s in sessions.values())  # every node was marked
    for s in sessions.values():
        a = _push(d, s)
        assert a is not None
        eps = {e.task_id: e.serving for e in a.endpoints if e.task_id}
        assert eps["web.2"] is False and eps["web.1"] is True


def test_tables_are_built_once_per_change(cluster: StoreBuilder,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    b = cluster
    d, sessions = _dispatcher(b)
    builds: list[Any] = []
    real = dispatch_networks.NetworkTables.build.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, store: Any, ids: Any, cache: Any = None) -> Any:
        builds.append(1)
        return real(cls, store, ids, cache)

    monkeypatch.setattr(dispatch_networks.NetworkTables, "build", classmethod(counting))
    for s in sessions.values():
        _push(d, s)
    assert len(builds) == 1
    b.report("web.1", pb.RUNNING)
    for s in sessions.values():
        _push(d, s)
    assert len(builds) == 2


def test_nodes_without_networks_get_no_tables() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("ingress", ingress=True)
    b.service("plain", 1)
    b.apply([pb.Command(create_task=pb.Task(id="p1", service_id="svc-plain", slot=1,
                                            desired_state=pb.RUNNING))])
    _settle(b)
    d, _ = _dispatcher(b)
    sess = _Session("n1")
    a = _push(d, sess)
    assert a is not None and [t.id for t in a.tasks] == ["p1"]
    assert (list(a.networks), list(a.endpoints), list(a.services)) == ([], [], [])
    assert not a.HasField("ingress") and not b.store.nodes["n1"].HasField("ingress")
    assert not sess.networked
