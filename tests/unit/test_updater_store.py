"""Store rules that rolling updates rely on: spec_version bumps, and slot occupancy with a
second live task only for a start-first replacement."""

from __future__ import annotations

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb


def apply(store: Store, *cmds: pb.Command) -> list[pb.CommandResult]:
    return list(store.apply_batch(pb.CommandBatch(commands=cmds, timestamp=10.0)).results)


def service(store: Store) -> pb.Service:
    s = pb.Service(id="s1")
    s.spec.annotations.name = "web"
    s.spec.task_template.container.image = "busybox:1"
    s.spec.mode.replicated.replicas = 1
    assert apply(store, pb.Command(create_service=s))[0].ok
    return store.services["s1"]


def task(tid: str, version: int, slot: int = 1, node: str = "") -> pb.Command:
    t = pb.Task(id=tid, service_id="s1", slot=slot, node_id=node, spec_version=version,
                desired_state=pb.RUNNING)
    return pb.Command(create_task=t)


def change(store: Store, edit: object) -> pb.Service:
    new = pb.Service()
    new.CopyFrom(store.services["s1"])
    edit(new)  # type: ignore[operator]
    assert apply(store, pb.Command(update_service=new))[0].ok
    return store.services["s1"]


def test_spec_version_bumps_only_for_what_tasks_are_made_of() -> None:
    st = Store()
    assert service(st).spec_version == 1
    got = change(st, lambda s: setattr(s.spec.mode.replicated, "replicas", 5))
    assert got.spec_version == 1
    got = change(st, lambda s: setattr(s.spec.update_config, "parallelism", 3))
    assert got.spec_version == 1
    got = change(st, lambda s: s.spec.annotations.labels.update({"a": "b"}))
    assert got.spec_version == 1
    got = change(st, lambda s: setattr(s.spec.task_template, "force_update", 1))
    assert got.spec_version == 2
    assert got.previous_spec.task_template.force_update == 0
    got = change(st, lambda s: getattr(s.spec.mode, "global").SetInParent())
    assert got.spec_version == 3


def test_second_live_task_only_when_the_first_is_older() -> None:
    st = Store()
    service(st)
    res = apply(st, task("a", 1), task("b", 1), task("c", 2), task("d", 3), task("e", 2))
    assert [r.ok for r in res] == [True, False, True, False, False]
    assert all("slot already held" in r.error for r in res if not r.ok)


def test_newer_task_first_does_not_let_an_older_one_in() -> None:
    st = Store()
    service(st)
    res = apply(st, task("new", 2), task("old", 1))
    assert [r.ok for r in res] == [True, False]


def test_shutting_the_old_one_frees_room_for_the_next() -> None:
    st = Store()
    service(st)
    apply(st, task("a", 1), task("b", 2))
    res = apply(
        st,
        pb.Command(set_task_desired=pb.SetTaskDesired(task_id="a", desired_state=pb.SHUTDOWN)),
        task("c", 3),  # b (v2) is still live and older: c may join it
        task("d", 4),  # ...but never a third live task
    )
    assert [r.ok for r in res] == [True, True, False]


def test_global_slots_are_per_node_and_survive_a_snapshot() -> None:
    st = Store()
    service(st)
    assert [r.ok for r in apply(st, task("g1", 1, 0, "n1"), task("g2", 1, 0, "n2"))] == [
        True,
        True,
    ]
    assert apply(st, task("g3", 2, 0, "n1"))[0].ok
    copy = Store()
    copy.restore(st.snapshot())
    res = apply(copy, task("g4", 3, 0, "n1"), task("g5", 1, 0, "n2"), task("g6", 2, 0, "n2"))
    assert [r.ok for r in res] == [False, False, True]
    for tid in ("g1", "g3"):
        apply(copy, pb.Command(remove_task=tid))
    assert apply(copy, task("g7", 1, 0, "n1"))[0].ok  # the node's slot is empty again
