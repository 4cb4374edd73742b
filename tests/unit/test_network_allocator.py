"""The allocator's network step: attachments before scheduling, ingress for publishers,
node ingress endpoints, PENDING when a network is full, stale endpoints reallocated."""

from __future__ import annotations

from manager.allocator import allocate
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.store_builder import StoreBuilder


def _tasks(b: StoreBuilder, svc: pb.Service, count: int) -> None:
    b.apply([pb.Command(create_task=pb.Task(
        id=f"{svc.spec.annotations.name}.{i}", service_id=svc.id,
        service_name=svc.spec.annotations.name, slot=i, spec=svc.spec.task_template,
        desired_state=pb.RUNNING)) for i in range(1, count + 1)])


def _ops(cmds: list[pb.Command]) -> list[str]:
    return [str(c.WhichOneof("op")) for c in cmds]


def test_attachments_first_then_placement_in_the_next_pass() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("ingress", ingress=True)
    b.network("front")
    spec_alias = b.networked_service("web", 3, networks=["front"])
    svc = pb.Service()
    svc.CopyFrom(spec_alias)
    _tasks(b, svc, 3)
    first = allocate(b.store, b.now).commands
    assert _ops(first) == ["set_task_networks"] * 3  # one batch, nothing placed yet
    b.apply(first)
    assert [t.networks[0].addresses[0] for t in b.tasks(svc.id)] == [
        "10.0.1.3/24", "10.0.1.4/24", "10.0.1.5/24"]  # .2 is the VIP
    second = allocate(b.store, b.now).commands
    assert _ops(second) == ["assign_task"] * 3


def test_publishers_get_ingress_in_both_modes_and_nodes_get_theirs() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.node("n2", state=pb.DOWN)
    b.network("ingress", ingress=True)
    plain = b.networked_service("plain", 1)
    _tasks(b, plain, 1)
    assert _ops(allocate(b.store, b.now).commands) == ["assign_task"]  # nothing to allocate
    hosted = b.networked_service("hosted", 1, ports=[(9000, 80)], host_ports=True)
    _tasks(b, hosted, 1)
    cmds = allocate(b.store, b.now).commands
    assert _ops(cmds) == ["set_node_ingress", "set_task_networks", "assign_task"]
    assert cmds[0].set_node_ingress.node_id == "n1"  # READY nodes only
    att = cmds[1].set_task_networks.networks
    assert [a.network.id for a in att] == ["net-ingress"] and list(att[0].aliases) == []
    assert not hosted.endpoint.virtual_ips  # host mode: no ingress VIP
    b.apply(cmds)
    assert b.store.nodes["n1"].ingress.addresses[0] != att[0].addresses[0]


def test_aliases_are_the_service_name_and_the_specs() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("back")
    svc = b.networked_service("db", 1, networks=["back"])
    spec = pb.TaskSpec()
    spec.CopyFrom(svc.spec.task_template)
    spec.networks[0].aliases.extend(["database", "db"])
    b.apply([pb.Command(create_task=pb.Task(id="db.1", service_id=svc.id, service_name="db",
                                            slot=1, spec=spec, desired_state=pb.RUNNING))])
    cmd = allocate(b.store, b.now).commands[0]
    assert list(cmd.set_task_networks.networks[0].aliases) == ["db", "database"]


def test_full_network_leaves_tasks_pending_with_the_reason() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.network("small", "10.0.9.0/29")  # 5 addresses; the VIP takes one
    svc = b.networked_service("web", 4, networks=["small"])
    _tasks(b, svc, 6)
    b.apply(allocate(b.store, b.now).commands)
    pending = [t for t in b.tasks(svc.id) if not t.networks]
    assert [t.id for t in pending] == ["web.5", "web.6"]
    assert {t.status.state for t in pending} == {pb.PENDING}
    assert pending[0].status.err == "network small: subnet 10.0.9.0/29 has no free address"
    # a task that ends gives its address back; the next pass allocates it
    b.run("web.1", "n1")
    b.report("web.1", pb.FAILED)
    b.apply(allocate(b.store, b.now).commands)
    assert b.task("web.5").networks[0].addresses == ["10.0.9.3/29"]


def test_stale_endpoint_is_reallocated() -> None:
    b = StoreBuilder()
    b.network("ingress", ingress=True)
    b.network("front")
    svc = b.networked_service("web", 0, networks=["front"])
    rolled = pb.Service()
    rolled.CopyFrom(svc)
    del rolled.spec.task_template.networks[:]  # as a rollback to an older spec would
    b.apply([pb.Command(update_service=rolled, expected_version=svc.meta.version)])
    cmds = allocate(b.store, b.now).commands
    assert _ops(cmds) == ["update_service"]
    assert list(cmds[0].update_service.endpoint.virtual_ips) == []
    b.apply(cmds)
    assert allocate(b.store, b.now).commands == []


def test_spec_naming_a_missing_network_leaves_tasks_pending() -> None:
    """Stack deploys before networks existed recorded network names in the task specs."""
    b = StoreBuilder()
    b.node("n1")
    spec = pb.ServiceSpec()
    spec.annotations.name = "old"
    spec.mode.replicated.replicas = 1
    spec.task_template.networks.add(target="shop_default")
    svc = pb.Service(id="svc-old", spec=spec)
    snap = pb.StoreSnapshot.FromString(b.store.snapshot())
    snap.services.append(svc)  # as an older store holds it (the store refuses it now)
    b.store.restore(snap.SerializeToString())
    _tasks(b, svc, 1)
    b.apply(allocate(b.store, b.now).commands)
    task = b.task("old.1")
    assert (task.status.state, task.status.err) == (pb.PENDING, "network shop_default not found")
