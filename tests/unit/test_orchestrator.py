"""Orchestrator decisions against a real Store: slots, scaling, restarts, nodes, reaping."""

from __future__ import annotations

import pytest

from manager.orchestrator import Decision, reconcile
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.specs import DEFAULT_RESTART_DELAY_S
from tests.harness.store_builder import StoreBuilder


def step(b: StoreBuilder, history_limit: int = 5) -> list[pb.Command]:
    """Reconcile, apply the decision as one batch (all must be accepted), check fixed point."""
    decision = reconcile(b.store, b.now, b.new_id, history_limit)
    assert isinstance(decision, Decision)
    assert decision.wake_at is None
    if decision.commands:
        b.apply(decision.commands)
    again = reconcile(b.store, b.now, b.new_id, history_limit)
    assert again.commands == [], [c.WhichOneof("op") for c in again.commands]
    return decision.commands


def ops(commands: list[pb.Command]) -> list[str]:
    return [str(c.WhichOneof("op")) for c in commands]


def desired(commands: list[pb.Command]) -> dict[str, int]:
    return {
        c.set_task_desired.task_id: c.set_task_desired.desired_state
        for c in commands
        if c.WhichOneof("op") == "set_task_desired"
    }


def created(commands: list[pb.Command]) -> list[pb.Task]:
    return [c.create_task for c in commands if c.WhichOneof("op") == "create_task"]


def removed(commands: list[pb.Command]) -> set[str]:
    return {c.remove_task for c in commands if c.WhichOneof("op") == "remove_task"}


def live_by_slot(b: StoreBuilder, sid: str) -> dict[int, pb.Task]:
    out: dict[int, pb.Task] = {}
    for t in b.live(sid):
        assert t.slot not in out, f"two live tasks in slot {t.slot}"
        out[t.slot] = t
    return out


def running_service(b: StoreBuilder, replicas: int, node: str = "n1", **kw: object) -> str:
    """A service whose tasks all run on `node` (created if missing)."""
    if node not in b.store.nodes:
        b.node(node)
    sid = b.service("web", replicas, **kw).id  # type: ignore[arg-type]
    step(b)
    for t in b.live(sid):
        b.run(t.id, node)
    b.tick()
    assert step(b) == []
    return sid


# ---------------------------------------------------------------- replicated scaling


def test_scale_up_from_zero_creates_each_slot_once() -> None:
    b = StoreBuilder()
    sid = b.service("web", 0).id
    assert step(b) == []
    b.tick()
    b.scale(sid, 6)
    cmds = step(b)
    assert ops(cmds) == ["create_task"] * 6
    svc = b.store.services[sid]
    new = created(cmds)
    assert sorted(t.slot for t in new) == [1, 2, 3, 4, 5, 6]
    for t in new:
        assert t.service_id == sid and t.service_name == "web"
        assert t.spec == svc.spec.task_template and t.spec_version == svc.spec_version
        assert t.desired_state == pb.RUNNING and t.node_id == ""
        assert t.status.state == pb.NEW and t.status.message == "created"
        assert t.status.timestamp == b.now
        assert t.restart_attempt == 0 and t.not_before == 0
    assert sorted(live_by_slot(b, sid)) == [1, 2, 3, 4, 5, 6]


def test_scale_down_removes_highest_slots_then_reaps_them() -> None:
    b = StoreBuilder()
    sid = running_service(b, 6)
    b.scale(sid, 3)
    cmds = step(b)
    by_slot = {t.id: t.slot for t in b.tasks(sid)}
    assert ops(cmds) == ["set_task_desired"] * 3
    assert {by_slot[t]: s for t, s in desired(cmds).items()} == {
        4: pb.REMOVE,
        5: pb.REMOVE,
        6: pb.REMOVE,
    }
    assert sorted(live_by_slot(b, sid)) == [1, 2, 3]
    going = [t.id for t in b.tasks(sid) if t.slot > 3]
    b.tick()
    for tid in going[:2]:
        b.report(tid, pb.SHUTDOWN)
    assert removed(step(b)) == set(going[:2])
    b.report(going[2], pb.SHUTDOWN)
    assert removed(step(b)) == {going[2]}
    assert sorted(t.slot for t in b.tasks(sid)) == [1, 2, 3]


def test_scale_down_removes_never_placed_tasks_at_once() -> None:
    b = StoreBuilder()
    sid = b.service("web", 4).id
    step(b)
    b.scale(sid, 1)
    cmds = step(b)
    assert ops(cmds) == ["remove_task"] * 3
    assert [t.slot for t in b.tasks(sid)] == [1]


def test_scale_back_up_while_old_task_still_stops() -> None:
    b = StoreBuilder()
    sid = running_service(b, 3)
    b.scale(sid, 2)
    step(b)
    b.scale(sid, 3)
    cmds = step(b)
    assert ops(cmds) == ["create_task"]
    assert created(cmds)[0].slot == 3 and created(cmds)[0].restart_attempt == 0
    old = [t for t in b.tasks(sid) if t.desired_state == pb.REMOVE]
    b.report(old[0].id, pb.SHUTDOWN)
    assert removed(step(b)) == {old[0].id}
    assert sorted(live_by_slot(b, sid)) == [1, 2, 3]


# ---------------------------------------------------------------- restart policy


def test_failed_task_restarts_after_delay_counted_from_failure() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2, delay_s=7.0)
    victim = live_by_slot(b, sid)[2]
    failed_at = b.tick(3)
    b.report(victim.id, pb.FAILED, exit_code=1)
    b.tick(2)  # the orchestrator runs a little later; the delay still counts from the failure
    cmds = step(b)
    assert ops(cmds) == ["set_task_desired", "create_task"]
    assert desired(cmds) == {victim.id: pb.SHUTDOWN}
    new = created(cmds)[0]
    assert new.slot == 2 and new.restart_attempt == 1
    assert new.not_before == pytest.approx(failed_at + 7.0)
    assert live_by_slot(b, sid)[2].id == new.id


def test_rejected_task_restarts_like_a_failure() -> None:
    b = StoreBuilder()
    b.node("n1")
    sid = b.service("web", 1, condition=pb.RESTART_ON_FAILURE).id
    step(b)
    t = b.live(sid)[0]
    b.report(t.id, pb.REJECTED)
    cmds = step(b)
    assert created(cmds)[0].restart_attempt == 1


def test_on_failure_does_not_restart_a_completed_task() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2, condition=pb.RESTART_ON_FAILURE)
    done, crashed = live_by_slot(b, sid)[1], live_by_slot(b, sid)[2]
    b.tick()
    b.report(done.id, pb.COMPLETE, exit_code=0)
    assert step(b) == []
    b.tick()
    assert step(b) == []
    b.report(crashed.id, pb.FAILED, exit_code=2)
    cmds = step(b)
    assert [t.slot for t in created(cmds)] == [2]
    assert 1 not in live_by_slot(b, sid)


def test_restart_none_never_restarts() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1, condition=pb.RESTART_NONE)
    t = b.live(sid)[0]
    b.report(t.id, pb.FAILED, exit_code=1)
    for _ in range(3):
        b.tick(60)
        assert step(b) == []
    assert [x.id for x in b.tasks(sid)] == [t.id]


def test_max_attempts_stops_restarting() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1, max_attempts=2)
    attempts = []
    for _ in range(4):
        current = b.live(sid)
        if not current:
            break
        t = current[0]
        attempts.append(t.restart_attempt)
        if t.status.state < pb.RUNNING:
            b.run(t.id, "n1")
        b.tick()
        b.report(t.id, pb.FAILED, exit_code=1)
        step(b)
    assert attempts == [0, 1, 2]
    assert b.live(sid) == []
    assert step(b) == []


def test_history_is_trimmed_to_the_newest_per_slot() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2)
    for _ in range(8):
        t = live_by_slot(b, sid)[1]
        if t.status.state < pb.RUNNING:
            b.run(t.id, "n1")
        b.tick()
        b.report(t.id, pb.FAILED)
        step(b)
    slot1 = [t for t in b.tasks(sid) if t.slot == 1]
    assert len(slot1) == 5
    assert sorted(t.restart_attempt for t in slot1) == [4, 5, 6, 7, 8]
    assert len([t for t in b.tasks(sid) if t.slot == 2]) == 1
    # a smaller limit trims further, keeping the live task
    cmds = step(b, history_limit=2)
    assert len(removed(cmds)) == 3
    assert sorted(t.restart_attempt for t in b.tasks(sid) if t.slot == 1) == [7, 8]


# ---------------------------------------------------------------- nodes


def test_node_down_replaces_its_tasks_immediately() -> None:
    b = StoreBuilder()
    b.node("n2")
    sid = running_service(b, 3)
    moved = live_by_slot(b, sid)[2]
    b.tick()
    b.set_node_state("n1", pb.DOWN)
    cmds = step(b)
    assert set(desired(cmds).values()) == {pb.SHUTDOWN} and len(desired(cmds)) == 3
    new = created(cmds)
    assert sorted(t.slot for t in new) == [1, 2, 3]
    assert all(t.not_before == 0 and t.restart_attempt == 0 and t.node_id == "" for t in new)
    assert b.task(moved.id).desired_state == pb.SHUTDOWN
    # the node returns and its worker stops the old tasks: they stay as history
    b.tick()
    b.set_node_state("n1", pb.READY)
    assert step(b) == []
    b.report(moved.id, pb.SHUTDOWN)
    assert step(b) == []
    assert sorted(live_by_slot(b, sid)) == [1, 2, 3]


def test_node_down_keeps_restart_attempt() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1)
    first = b.live(sid)[0]
    b.report(first.id, pb.FAILED)
    step(b)
    second = b.live(sid)[0]
    b.run(second.id, "n1")
    b.set_node_state("n1", pb.DOWN)
    cmds = step(b)
    assert [t.restart_attempt for t in created(cmds)] == [1]


def test_drain_replaces_and_pause_keeps() -> None:
    b = StoreBuilder()
    b.node("n2")
    sid = running_service(b, 2)
    b.set_availability("n1", pb.PAUSE)
    assert step(b) == []
    b.set_availability("n1", pb.DRAIN)
    cmds = step(b)
    assert len(desired(cmds)) == 2 and set(desired(cmds).values()) == {pb.SHUTDOWN}
    assert sorted(t.slot for t in created(cmds)) == [1, 2]
    assert all(not t.node_id for t in live_by_slot(b, sid).values())


def test_removed_node_tasks_are_replaced_and_removed() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2)
    old = {t.id for t in b.live(sid)}
    b.remove_node("n1")
    cmds = step(b)
    assert removed(cmds) == old
    assert sorted(t.slot for t in created(cmds)) == [1, 2]
    assert all(not t.node_id for t in b.tasks(sid))


def test_finished_slot_on_removed_node_is_not_refilled() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1, condition=pb.RESTART_NONE)
    t = b.live(sid)[0]
    b.report(t.id, pb.COMPLETE)
    step(b)
    b.remove_node("n1")
    assert step(b) == []
    assert [x.id for x in b.tasks(sid)] == [t.id]


# ---------------------------------------------------------------- global services


def global_by_node(b: StoreBuilder, sid: str) -> dict[str, pb.Task]:
    out: dict[str, pb.Task] = {}
    for t in b.live(sid):
        assert t.slot == 0 and t.node_id not in out
        out[t.node_id] = t
    return out


def test_global_one_task_per_eligible_node() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.node("n2")
    b.node("n3", state=pb.DOWN)
    b.node("n4", availability=pb.DRAIN)
    sid = b.service("agent", global_mode=True).id
    cmds = step(b)
    assert sorted(t.node_id for t in created(cmds)) == ["n1", "n2"]
    assert all(t.slot == 0 for t in created(cmds))
    b.tick()
    b.node("n5")
    assert [t.node_id for t in created(step(b))] == ["n5"]
    b.set_node_state("n3", pb.READY)
    assert [t.node_id for t in created(step(b))] == ["n3"]
    assert sorted(global_by_node(b, sid)) == ["n1", "n2", "n3", "n5"]


def test_global_task_on_drained_node_is_removed() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.node("n2")
    sid = b.service("agent", global_mode=True).id
    step(b)
    for t in b.live(sid):
        b.run(t.id)
    on_n2 = global_by_node(b, sid)["n2"]
    b.set_availability("n2", pb.DRAIN)
    assert desired(step(b)) == {on_n2.id: pb.REMOVE}
    b.report(on_n2.id, pb.SHUTDOWN)
    assert removed(step(b)) == {on_n2.id}
    b.set_availability("n2", pb.ACTIVE)
    assert [t.node_id for t in created(step(b))] == ["n2"]


def test_global_down_node_keeps_its_task_and_waits() -> None:
    b = StoreBuilder()
    b.node("n1")
    sid = b.service("agent", global_mode=True).id
    step(b)
    t = b.live(sid)[0]
    b.run(t.id)
    b.set_node_state("n1", pb.DOWN)
    assert step(b) == []
    b.report(t.id, pb.FAILED)  # learned before the node went quiet: no restart while DOWN
    assert step(b) == []
    b.tick()
    b.set_node_state("n1", pb.READY)
    cmds = step(b)
    assert [(x.node_id, x.restart_attempt) for x in created(cmds)] == [("n1", 1)]


def test_global_respects_constraints() -> None:
    b = StoreBuilder()
    b.node("n1", labels={"zone": "a"})
    b.node("n2", labels={"zone": "b"})
    b.node("n3", labels={"zone": "A"})
    sid = b.service("agent", global_mode=True, constraints=["node.labels.zone==a"]).id
    cmds = step(b)
    assert sorted(t.node_id for t in created(cmds)) == ["n1", "n3"]
    b.run(global_by_node(b, sid)["n1"].id)
    b.set_labels("n1", {"zone": "b"})
    cmds = step(b)
    assert ops(cmds) == ["set_task_desired"] and list(desired(cmds).values()) == [pb.REMOVE]
    b.set_labels("n2", {"zone": "a"})
    assert [t.node_id for t in created(step(b))] == ["n2"]


def test_global_task_of_removed_node_is_reaped() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.node("n2")
    sid = b.service("agent", global_mode=True).id
    step(b)
    for t in b.live(sid):
        b.run(t.id)
    gone = global_by_node(b, sid)["n2"]
    b.remove_node("n2")
    assert removed(step(b)) == {gone.id}
    assert sorted(global_by_node(b, sid)) == ["n1"]


# ---------------------------------------------------------------- removed services


def test_removed_service_tasks_are_removed_then_reaped() -> None:
    b = StoreBuilder()
    b.node("n1")
    sid = b.service("web", 3).id
    step(b)
    tasks = b.tasks(sid)
    b.run(tasks[0].id, "n1")
    b.run(tasks[1].id, "n1")
    b.remove_service(sid)
    cmds = step(b)
    assert removed(cmds) == {tasks[2].id}  # never placed: gone at once
    assert desired(cmds) == {tasks[0].id: pb.REMOVE, tasks[1].id: pb.REMOVE}
    b.report(tasks[0].id, pb.SHUTDOWN)
    assert removed(step(b)) == {tasks[0].id}
    b.set_node_state("n1", pb.DOWN)  # nobody will report the last one: reaped too
    assert removed(step(b)) == {tasks[1].id}
    assert b.store.tasks == {}


def test_converged_store_emits_nothing() -> None:
    b = StoreBuilder()
    b.node("n1")
    b.node("n2")
    sid = running_service(b, 5)
    b.service("agent", global_mode=True)
    step(b)
    for _ in range(3):
        b.tick(30)
        assert step(b) == []
    assert len(live_by_slot(b, sid)) == 5


def test_unset_restart_delay_uses_the_default() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1)
    svc = pb.Service()
    svc.CopyFrom(b.store.services[sid])
    svc.spec.task_template.restart_policy.delay_set = False
    svc.spec.task_template.restart_policy.delay_s = 0
    b.apply([pb.Command(update_service=svc)])
    t = b.live(sid)[0]
    b.report(t.id, pb.FAILED)
    assert created(step(b))[0].not_before == b.now + DEFAULT_RESTART_DELAY_S


def test_mode_change_retires_old_tasks_and_fills_new_slots() -> None:
    b = StoreBuilder()
    b.node("n2")
    sid = running_service(b, 2)
    svc = pb.Service()
    svc.CopyFrom(b.store.services[sid])
    getattr(svc.spec.mode, "global").SetInParent()
    b.apply([pb.Command(update_service=svc)])
    cmds = step(b)
    assert set(desired(cmds).values()) == {pb.REMOVE} and len(desired(cmds)) == 2
    global_ids = {t.id for t in created(cmds)}
    assert sorted(t.node_id for t in created(cmds)) == ["n1", "n2"]
    svc.CopyFrom(b.store.services[sid])
    svc.spec.mode.replicated.replicas = 1
    b.apply([pb.Command(update_service=svc)])
    cmds = step(b)
    assert removed(cmds) == global_ids  # never placed: removed at once
    assert [t.slot for t in created(cmds)] == [1]
    assert [t.slot for t in b.live(sid)] == [1]
