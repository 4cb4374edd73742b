"""Rolling updates and rollbacks decided in `reconcile`, against a real Store.

Each test drives the cluster by hand: `step` runs one reconcile pass and applies it (every
command must be accepted), `b.run` / `b.report` play the scheduler and the workers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from manager.orchestrator import Decision, reconcile
from manager.store import Store
from manager.updater import rolled_back
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.store_builder import StoreBuilder


def step(b: StoreBuilder) -> Decision:
    decision = reconcile(b.store, b.now, b.new_id, 5)
    if decision.commands:
        b.apply(decision.commands)
    return decision


def ops(d: Decision) -> list[str]:
    return [str(c.WhichOneof("op")) for c in d.commands]


def shut(d: Decision) -> list[str]:
    return [
        c.set_task_desired.task_id
        for c in d.commands
        if c.WhichOneof("op") == "set_task_desired" and c.set_task_desired.desired_state
        == pb.SHUTDOWN
    ]


def made(d: Decision) -> list[pb.Task]:
    return [c.create_task for c in d.commands if c.WhichOneof("op") == "create_task"]


def svc_of(b: StoreBuilder, sid: str) -> pb.Service:
    return b.store.services[sid]


def status(b: StoreBuilder, sid: str) -> str:
    return svc_of(b, sid).update_status.state


def update(b: StoreBuilder, sid: str, change: Callable[[pb.ServiceSpec], None]) -> None:
    """What the control API's UpdateService does: a new spec starts a new update (and the
    store records the replaced spec as previous); an unchanged one resumes a paused one."""
    old = svc_of(b, sid)
    new = pb.Service()
    new.CopyFrom(old)
    change(new.spec)
    if new.spec != old.spec:
        new.ClearField("update_status")
        new.ClearField("previous_spec")
    elif old.update_status.state in ("paused", "rollback_paused"):
        new.ClearField("update_status")
    b.apply([pb.Command(update_service=new, expected_version=old.meta.version)])


def image(tag: str) -> Callable[[pb.ServiceSpec], None]:
    def change(spec: pb.ServiceSpec) -> None:
        spec.task_template.container.image = tag

    return change


def configure(b: StoreBuilder, sid: str, **cfg: object) -> None:
    """Set update_config fields (this alone replaces no task)."""

    def change(spec: pb.ServiceSpec) -> None:
        for k, v in cfg.items():
            setattr(spec.update_config, k, v)

    update(b, sid, change)


def running_service(b: StoreBuilder, replicas: int, nodes: int = 3, **cfg: object) -> str:
    for i in range(1, nodes + 1):
        if f"n{i}" not in b.store.nodes:
            b.node(f"n{i}")
    sid = b.service("web", replicas).id
    step(b)
    run_all(b, sid)
    if cfg:
        configure(b, sid, **cfg)
    b.tick()
    assert step(b).commands == []
    return sid


def run_all(b: StoreBuilder, sid: str) -> None:
    """Workers: start what is placed or placeable, stop what was told to stop."""
    for i, t in enumerate(b.tasks(sid)):
        if t.desired_state > pb.RUNNING and pb.ASSIGNED <= t.status.state < pb.COMPLETE:
            b.report(t.id, pb.SHUTDOWN)
        elif t.desired_state <= pb.RUNNING and t.status.state < pb.RUNNING:
            b.run(t.id, t.node_id or f"n{i % 3 + 1}")


def live_versions(b: StoreBuilder, sid: str) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for t in b.live(sid):
        out.setdefault(t.slot, []).append(t.spec_version)
    return out


# ---------------------------------------------------------------- what triggers an update


def test_scale_and_update_config_changes_replace_nothing() -> None:
    b = StoreBuilder()
    sid = running_service(b, 4)
    before = {t.id for t in b.live(sid)}
    b.scale(sid, 6)
    d = step(b)
    assert ops(d) == ["create_task", "create_task"]
    assert sorted(t.slot for t in made(d)) == [5, 6]
    configure(b, sid, parallelism=2, order="start-first")
    run_all(b, sid)
    assert step(b).commands == []
    assert before <= {t.id for t in b.live(sid)}
    assert svc_of(b, sid).spec_version == 1 and status(b, sid) == ""


def test_force_update_replaces_every_task() -> None:
    b = StoreBuilder()
    sid = running_service(b, 3, parallelism=0, monitor_s=0.0)

    def force(spec: pb.ServiceSpec) -> None:
        spec.task_template.force_update += 1

    update(b, sid, force)
    d = step(b)
    assert len(shut(d)) == 3 and status(b, sid) == "updating"
    run_all(b, sid)
    assert len(made(step(b))) == 3
    run_all(b, sid)
    step(b)
    assert status(b, sid) == "completed"
    assert all(v == [2] for v in live_versions(b, sid).values())


# ---------------------------------------------------------------- batches and ordering


def test_stop_first_replaces_in_batches_of_parallelism() -> None:
    b = StoreBuilder()
    sid = running_service(b, 5, parallelism=2, monitor_s=1.0)
    old = {t.slot: t.id for t in b.live(sid)}
    update(b, sid, image("busybox:2"))
    d = step(b)
    assert sorted(shut(d)) == [old[1], old[2]] and made(d) == []
    st = svc_of(b, sid).update_status
    assert (st.state, st.started_at, st.message) == ("updating", b.now, "update in progress")
    assert d.watching
    assert step(b).commands == []  # old tasks still stopping: the slots wait
    b.tick()
    run_all(b, sid)  # the old tasks of slots 1, 2 report SHUTDOWN
    d = step(b)
    assert sorted(t.slot for t in made(d)) == [1, 2] and shut(d) == []
    assert all(t.spec_version == 2 for t in made(d))
    assert step(b).commands == []  # the new tasks are not RUNNING yet
    run_all(b, sid)  # ... now they are
    d = step(b)
    assert sorted(shut(d)) == [old[3], old[4]]
    for _ in range(4):
        b.tick()
        run_all(b, sid)
        step(b)
    assert live_versions(b, sid) == {s: [2] for s in range(1, 6)}
    assert status(b, sid) == "updating"  # the last batch is watched for `monitor` seconds
    b.tick(1.0)
    step(b)
    assert status(b, sid) == "completed"
    st = svc_of(b, sid).update_status
    assert st.message == "update completed" and st.completed_at == b.now


def test_parallelism_zero_replaces_all_at_once() -> None:
    b = StoreBuilder()
    sid = running_service(b, 4, parallelism=0)
    update(b, sid, image("busybox:2"))
    assert len(shut(step(b))) == 4


def test_start_first_keeps_the_old_task_until_the_new_one_runs() -> None:
    b = StoreBuilder()
    sid = running_service(b, 3, parallelism=1, order="start-first", monitor_s=0.0)
    old = {t.slot: t.id for t in b.live(sid)}
    update(b, sid, image("busybox:2"))
    d = step(b)
    assert shut(d) == [] and [t.slot for t in made(d)] == [1]
    assert live_versions(b, sid)[1] == [1, 2]  # two live tasks in slot 1 for now
    assert step(b).commands == []
    new1 = made(d)[0].id
    b.assign(new1, "n2")
    assert step(b).commands == []  # assigned is not running
    b.report(new1, pb.RUNNING)
    d = step(b)
    assert shut(d) == [old[1]] and [t.slot for t in made(d)] == [2]
    for _ in range(4):
        run_all(b, sid)
        step(b)
    assert live_versions(b, sid) == {1: [2], 2: [2], 3: [2]}
    assert status(b, sid) == "completed"


def test_delay_between_batches_is_a_wake_up_time() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2, parallelism=1, delay_s=10.0, order="start-first")
    update(b, sid, image("busybox:2"))
    first = made(step(b))[0]
    b.tick(2)
    b.run(first.id, "n1")
    ran_at = b.now
    d = step(b)
    assert made(d) == [] and len(shut(d)) == 1  # batch 1 done; batch 2 waits for the delay
    assert d.wake_at == pytest.approx(ran_at + 10.0)
    b.tick(9)
    d = step(b)
    assert d.commands == [] and d.wake_at == pytest.approx(ran_at + 10.0)
    b.tick(1)
    assert [t.slot for t in made(step(b))] == [2]


# ---------------------------------------------------------------- monitor and failures


def test_monitor_window_then_completed() -> None:
    b = StoreBuilder()
    sid = running_service(b, 1, monitor_s=5.0, order="start-first")
    update(b, sid, image("busybox:2"))
    new = made(step(b))[0]
    b.tick()
    b.run(new.id, "n1")
    d = step(b)
    assert status(b, sid) == "updating" and d.wake_at == pytest.approx(b.now + 5.0)
    b.tick(4.9)
    assert step(b).commands == [] and status(b, sid) == "updating"
    b.tick(0.1)
    step(b)
    assert status(b, sid) == "completed"
    b.tick()
    b.report(new.id, pb.FAILED, exit_code=1)  # after the window: the restart policy's job
    d = step(b)
    assert status(b, sid) == "completed" and len(made(d)) == 1


def test_failure_within_monitor_pauses_the_update() -> None:
    b = StoreBuilder()
    sid = running_service(b, 4, parallelism=2, monitor_s=5.0)
    update(b, sid, image("bad"))
    step(b)
    run_all(b, sid)
    batch = made(step(b))
    run_all(b, sid)
    b.tick(2)
    b.report(batch[0].id, pb.FAILED, exit_code=3)
    step(b)
    st = svc_of(b, sid).update_status
    assert st.state == "paused"
    assert st.message == f"update paused due to failure or early termination of task {batch[0].id}"
    for _ in range(3):  # paused: slots 3 and 4 keep their old tasks
        b.tick(10)
        run_all(b, sid)
        step(b)
    assert live_versions(b, sid)[3] == [1] and live_versions(b, sid)[4] == [1]
    assert status(b, sid) == "paused"
    update(b, sid, lambda spec: None)  # a new UpdateService resumes (as in Swarm)
    step(b)
    assert status(b, sid) == "updating"


def test_failure_ratio_tolerates_then_pauses() -> None:
    b = StoreBuilder()
    sid = running_service(b, 4, parallelism=0, max_failure_ratio=0.5, monitor_s=30.0)
    update(b, sid, image("flaky"))
    step(b)
    run_all(b, sid)
    new = made(step(b))
    run_all(b, sid)
    b.report(new[0].id, pb.FAILED, exit_code=1)
    b.report(new[1].id, pb.COMPLETE, exit_code=0)  # an early exit counts too
    step(b)  # 2 ended / 4 tasks of the update = 0.5, not above the ratio
    assert status(b, sid) == "updating"
    b.report(new[2].id, pb.REJECTED)
    step(b)
    assert status(b, sid) == "updating"  # 3 / 6 (the 2 restarts count as tasks too)
    b.report(new[3].id, pb.FAILED, exit_code=1)
    step(b)
    assert status(b, sid) == "paused"  # 4 / 7 > 0.5


def test_failure_action_continue_finishes_the_update() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2, parallelism=1, failure_action="continue", monitor_s=0.0)
    update(b, sid, image("bad"))
    step(b)
    run_all(b, sid)
    first = made(step(b))[0]
    b.run(first.id, "n1")
    b.report(first.id, pb.FAILED, exit_code=1)
    d = step(b)  # the restart of slot 1 does not hold the next batch back
    assert len(shut(d)) >= 1 and status(b, sid) == "updating"
    for _ in range(4):
        b.tick(10)
        run_all(b, sid)
        step(b)
    assert status(b, sid) == "completed"


def test_failure_action_rollback_returns_to_the_previous_spec() -> None:
    b = StoreBuilder()
    sid = running_service(b, 3, parallelism=1, failure_action="rollback", monitor_s=1.0)
    good = pb.ServiceSpec()
    good.CopyFrom(svc_of(b, sid).spec)
    untouched = {t.slot: t.id for t in b.live(sid)}
    update(b, sid, image("bad"))
    step(b)
    run_all(b, sid)
    bad = made(step(b))[0]
    b.tick()
    b.run(bad.id, "n1")
    b.report(bad.id, pb.FAILED, exit_code=1)
    step(b)
    svc = svc_of(b, sid)
    assert svc.spec == good and svc.previous_spec.task_template.container.image == "bad"
    assert svc.update_status.state == "rollback_started"
    assert svc.update_status.message == (
        f"update rolled back due to failure or early termination of task {bad.id}"
    )
    for _ in range(6):
        b.tick(2)
        run_all(b, sid)
        step(b)
    svc = svc_of(b, sid)
    assert svc.update_status.state == "rollback_completed"
    assert svc.update_status.message == "rollback completed"
    live = {t.slot: t for t in b.live(sid)}
    assert all(t.spec.container.image == "busybox" for t in live.values())
    assert live[2].id == untouched[2] and live[3].id == untouched[3]  # never replaced


def test_manual_rollback_uses_rollback_config() -> None:
    b = StoreBuilder()
    sid = running_service(b, 4, parallelism=0, monitor_s=0.0)
    update(b, sid, image("busybox:2"))
    for _ in range(3):
        run_all(b, sid)
        step(b)
    assert status(b, sid) == "completed"

    def rb_config(spec: pb.ServiceSpec) -> None:
        spec.rollback_config.parallelism = 3
        spec.rollback_config.monitor_s = 0.0
        spec.rollback_config.order = "start-first"

    # the previous spec is what a rollback returns to: give that one a rollback_config
    svc = pb.Service()
    svc.CopyFrom(svc_of(b, sid))
    rb_config(svc.previous_spec)
    b.apply([pb.Command(update_service=svc, expected_version=svc.meta.version)])
    svc = svc_of(b, sid)
    b.apply([pb.Command(update_service=rolled_back(svc, "manually requested rollback"),
                        expected_version=svc.meta.version)])
    d = step(b)
    assert len(made(d)) == 3 and shut(d) == []  # start-first, 3 at a time
    assert svc_of(b, sid).update_status.started_at == b.now  # stamped by the first pass
    for _ in range(4):
        run_all(b, sid)
        step(b)
    svc = svc_of(b, sid)
    assert svc.update_status.state == "rollback_completed"
    assert svc.spec.task_template.container.image == "busybox"
    assert svc.previous_spec.task_template.container.image == "busybox:2"
    assert all(t.spec.container.image == "busybox" for t in b.live(sid))


def test_failing_rollback_pauses() -> None:
    b = StoreBuilder()
    sid = running_service(b, 2, parallelism=1, monitor_s=0.0)
    update(b, sid, image("busybox:2"))
    for _ in range(5):
        run_all(b, sid)
        step(b)
    svc = svc_of(b, sid)
    b.apply([pb.Command(update_service=rolled_back(svc, "manually requested rollback"),
                        expected_version=svc.meta.version)])
    step(b)
    run_all(b, sid)
    back = made(step(b))[0]
    b.run(back.id, "n1")
    b.report(back.id, pb.FAILED, exit_code=1)
    step(b)
    st = svc_of(b, sid).update_status
    assert st.state == "rollback_paused" and st.message.startswith("rollback paused due to")


# ---------------------------------------------------------------- global services, leaders


def test_global_service_rolls_node_by_node() -> None:
    b = StoreBuilder()
    for n in ("n1", "n2", "n3"):
        b.node(n)
    sid = b.service("agent", global_mode=True).id
    step(b)
    run_all(b, sid)
    configure(b, sid, parallelism=1, monitor_s=0.0)
    update(b, sid, image("agent:2"))
    seen = []
    for _ in range(8):
        d = step(b)
        seen += [t.node_id for t in made(d)]
        run_all(b, sid)
    assert sorted(seen) == ["n1", "n2", "n3"]
    assert status(b, sid) == "completed"
    assert sorted(t.node_id for t in b.live(sid) if t.spec_version == 2) == ["n1", "n2", "n3"]


def test_global_task_on_a_down_node_waits_for_the_node_without_churn() -> None:
    b = StoreBuilder()
    for n in ("n1", "n2"):
        b.node(n)
    sid = b.service("agent", global_mode=True).id
    step(b)
    run_all(b, sid)
    configure(b, sid, parallelism=0, monitor_s=0.0)
    b.set_node_state("n2", pb.DOWN)
    step(b)
    update(b, sid, image("agent:2"))
    for _ in range(4):
        run_all(b, sid)
        step(b)
    assert status(b, sid) == "completed"
    d = step(b)
    assert d.commands == [] and not d.watching  # a fixed point: no status flapping
    b.set_node_state("n2", pb.READY)
    for _ in range(4):
        run_all(b, sid)
        step(b)
    assert status(b, sid) == "completed"
    assert sorted(t.node_id for t in b.live(sid) if t.spec_version == 2) == ["n1", "n2"]
    assert step(b).commands == []


def test_new_leader_continues_from_a_restored_snapshot() -> None:
    b = StoreBuilder()
    sid = running_service(b, 6, parallelism=2, order="start-first", monitor_s=0.0)
    update(b, sid, image("busybox:2"))
    step(b)
    run_all(b, sid)
    step(b)  # batch 1 done, batch 2 created but not running
    other = StoreBuilder(now=b.now)
    other.store = Store()
    other.store.restore(b.store.snapshot())
    other._seq = 1000
    here, there = step(b), step(other)
    assert ops(here) == ops(there) == []  # both wait for batch 2
    run_all(other, sid)
    d = step(other)
    assert len(shut(d)) == 2 and len(made(d)) == 2  # batch 2 done, batch 3 starts
    for _ in range(4):
        run_all(other, sid)
        step(other)
    assert status(other, sid) == "completed"
    assert live_versions(other, sid) == {s: [2] for s in range(1, 7)}
