"""The store state machine: commands apply or are rejected on their own, deterministically."""

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb


def svc(sid: str = "s1", name: str = "web") -> pb.Service:
    s = pb.Service(id=sid)
    s.spec.annotations.name = name
    s.spec.mode.replicated.replicas = 2
    return s


def task(tid: str, slot: int = 1, sid: str = "s1", node: str = "") -> pb.Task:
    return pb.Task(id=tid, service_id=sid, slot=slot, node_id=node, desired_state=pb.RUNNING)


def apply(store: Store, *cmds: pb.Command, ts: float = 100.0) -> list[pb.CommandResult]:
    return list(store.apply_batch(pb.CommandBatch(commands=cmds, timestamp=ts)).results)


def ok(results: list[pb.CommandResult]) -> list[bool]:
    return [r.ok for r in results]


def test_create_service_and_duplicate_name_rejected() -> None:
    st = Store()
    res = apply(st, pb.Command(create_service=svc()), pb.Command(create_service=svc("s2")))
    assert ok(res) == [True, False]
    assert "already exists" in res[1].error
    assert st.services["s1"].meta.version == 1
    assert st.services["s1"].meta.created_at == 100.0


def test_update_checks_version_and_bumps_spec_version() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()))
    new = svc()
    new.spec.mode.replicated.replicas = 5
    assert ok(apply(st, pb.Command(update_service=new, expected_version=7))) == [False]
    assert ok(apply(st, pb.Command(update_service=new, expected_version=1))) == [True]
    got = st.services["s1"]
    assert got.spec.mode.replicated.replicas == 5
    assert got.spec_version == 1 and got.meta.version == 2  # a scale changes no task
    assert got.previous_spec.mode.replicated.replicas == 2
    new.spec.task_template.container.image = "busybox:2"
    assert ok(apply(st, pb.Command(update_service=new, expected_version=2))) == [True]
    assert st.services["s1"].spec_version == 2


def test_task_needs_its_service_and_a_free_slot() -> None:
    st = Store()
    assert ok(apply(st, pb.Command(create_task=task("t0")))) == [False]
    apply(st, pb.Command(create_service=svc()))
    res = apply(st, pb.Command(create_task=task("t1")), pb.Command(create_task=task("t2")))
    assert ok(res) == [True, False]
    assert "slot already held" in res[1].error


def test_removed_service_cannot_be_resurrected_by_stale_task_create() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()))
    apply(st, pb.Command(remove_service="s1"))
    assert ok(apply(st, pb.Command(create_task=task("t1")))) == [False]


def test_status_moves_forward_only() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()), pb.Command(create_task=task("t1")))
    running = pb.TaskStatusUpdate(task_id="t1", status=pb.TaskStatus(state=pb.RUNNING))
    back = pb.TaskStatusUpdate(task_id="t1", status=pb.TaskStatus(state=pb.STARTING))
    assert ok(apply(st, pb.Command(task_status=running), pb.Command(task_status=back))) == [
        True, False]
    assert st.tasks["t1"].status.state == pb.RUNNING


def test_assign_only_once_and_only_to_known_nodes() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()), pb.Command(create_task=task("t1")),
          pb.Command(create_node=pb.Node(id="n1")))
    res = apply(
        st,
        pb.Command(assign_task=pb.AssignTask(task_id="t1", node_id="nX")),
        pb.Command(assign_task=pb.AssignTask(task_id="t1", node_id="n1")),
        pb.Command(assign_task=pb.AssignTask(task_id="t1", node_id="n1")),
    )
    assert ok(res) == [False, True, False]
    assert [t.id for t in st.tasks_on_node("n1")] == ["t1"]
    assert st.tasks["t1"].status.state == pb.ASSIGNED


def test_failed_task_frees_its_slot() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()), pb.Command(create_task=task("t1")))
    failed = pb.TaskStatusUpdate(task_id="t1", status=pb.TaskStatus(state=pb.FAILED))
    apply(st, pb.Command(task_status=failed))
    assert ok(apply(st, pb.Command(create_task=task("t2")))) == [True]


def test_desired_state_moves_forward_and_frees_slot() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()), pb.Command(create_task=task("t1")))
    shut = pb.SetTaskDesired(task_id="t1", desired_state=pb.SHUTDOWN)
    back = pb.SetTaskDesired(task_id="t1", desired_state=pb.RUNNING)
    assert ok(apply(st, pb.Command(set_task_desired=shut), pb.Command(set_task_desired=back))) == [
        True, False]
    assert ok(apply(st, pb.Command(create_task=task("t2")))) == [True]


def test_snapshot_restore_round_trip_is_identical() -> None:
    st = Store()
    apply(st, pb.Command(create_service=svc()), pb.Command(create_task=task("t1")),
          pb.Command(create_node=pb.Node(id="n1")),
          pb.Command(assign_task=pb.AssignTask(task_id="t1", node_id="n1")))
    other = Store()
    other.restore(st.snapshot())
    assert other.digest() == st.digest()
    assert [t.id for t in other.tasks_on_node("n1")] == ["t1"]
    assert ok(apply(other, pb.Command(create_task=task("t9")))) == [False]  # slot index rebuilt


def test_same_batches_give_same_state() -> None:
    a, b = Store(), Store()
    batches = [
        [pb.Command(create_service=svc())],
        [pb.Command(create_task=task("t1")), pb.Command(create_task=task("t2", slot=2))],
        [pb.Command(remove_task="t1")],
    ]
    for cmds in batches:
        apply(a, *cmds)
        apply(b, *cmds)
    assert a.digest() == b.digest()


def test_listeners_get_events() -> None:
    st = Store()
    seen = []
    st.subscribe(lambda evs: seen.extend((e.kind, e.id, e.op) for e in evs))
    apply(st, pb.Command(create_service=svc()), pb.Command(remove_service="nope"))
    assert seen == [("service", "s1", "create")]
