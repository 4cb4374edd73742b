"""Property tests: rolling updates under random worker progress and repeated updates.

Workers advance random tasks one step at a time (assign, run, stop) between reconcile
passes; the operator changes the image at random moments, even mid-update. Whatever the
interleaving:
- start-first: the number of tasks RUNNING and meant to run never drops below the
  replica count, and a slot never holds more than two live tasks;
- stop-first: a slot never holds more than one live task;
- both: every decision is accepted whole by the store, and once the workers catch up
  every slot runs exactly one task of the newest spec and the update is completed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.orchestrator import reconcile
from manager.store import is_live
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.store_builder import StoreBuilder

NODES = ("n1", "n2", "n3")

actions = st.lists(
    st.one_of(
        st.tuples(st.just("work"), st.lists(st.integers(0, 40), max_size=8)),
        st.tuples(st.just("update"), st.just([])),
        st.tuples(st.just("tick"), st.just([])),
    ),
    max_size=40,
)


def advance(b: StoreBuilder, task: pb.Task) -> None:
    """One worker/scheduler step for this task."""
    state = task.status.state
    if task.desired_state > pb.RUNNING:
        if pb.ASSIGNED <= state < pb.COMPLETE:
            b.report(task.id, pb.SHUTDOWN)
    elif state < pb.ASSIGNED:
        b.assign(task.id, task.node_id or NODES[hash(task.id) % len(NODES)])
    elif state < pb.RUNNING:
        b.report(task.id, pb.RUNNING)


def step(b: StoreBuilder) -> None:
    decision = reconcile(b.store, b.now, b.new_id, 3)
    if decision.commands:
        b.apply(decision.commands)  # asserts every command was accepted


def check(b: StoreBuilder, sid: str, replicas: int, start_first: bool) -> None:
    tasks = b.store.tasks_of_service(sid)
    per_slot: dict[int, int] = {}
    for t in tasks:
        if is_live(t):
            per_slot[t.slot] = per_slot.get(t.slot, 0) + 1
    running = sum(1 for t in tasks if t.status.state == pb.RUNNING and t.desired_state
                  == pb.RUNNING)
    if start_first:
        assert running >= replicas, f"{running} running of {replicas}"
        assert all(n <= 2 for n in per_slot.values())
    else:
        assert all(n == 1 for n in per_slot.values())


@settings(max_examples=120, deadline=None)
@given(
    replicas=st.integers(1, 6),
    parallelism=st.integers(0, 3),
    start_first=st.booleans(),
    delay=st.sampled_from([0.0, 2.0]),
    script=actions,
)
def test_rolling_update_keeps_capacity_and_converges(
    replicas: int, parallelism: int, start_first: bool, delay: float,
    script: list[tuple[str, list[int]]],
) -> None:
    b = StoreBuilder()
    for n in NODES:
        b.node(n)
    sid = b.service("web", replicas).id
    for _ in range(3):
        step(b)
        for t in b.tasks(sid):
            advance(b, t)
    spec = b.store.services[sid]
    new = pb.Service()
    new.CopyFrom(spec)
    new.spec.update_config.parallelism = parallelism
    new.spec.update_config.order = "start-first" if start_first else "stop-first"
    new.spec.update_config.delay_s = delay
    new.spec.update_config.monitor_s = 1.0
    b.apply([pb.Command(update_service=new, expected_version=new.meta.version)])
    version = 0
    for kind, picks in script:
        if kind == "update":
            version += 1
            svc = pb.Service()
            svc.CopyFrom(b.store.services[sid])
            svc.spec.task_template.container.image = f"busybox:{version}"
            svc.ClearField("update_status")
            svc.ClearField("previous_spec")
            b.apply([pb.Command(update_service=svc, expected_version=svc.meta.version)])
        elif kind == "tick":
            b.tick(1.0)
        else:
            tasks = sorted(b.store.tasks_of_service(sid), key=lambda t: t.id)
            for i in picks:
                if tasks:
                    advance(b, b.store.tasks[tasks[i % len(tasks)].id])
        step(b)
        check(b, sid, replicas, start_first)
    for _ in range(12 + 4 * replicas):  # the workers catch up
        b.tick(1.0)
        for t in b.tasks(sid):
            advance(b, t)
        step(b)
        check(b, sid, replicas, start_first)
    svc = b.store.services[sid]
    live = [t for t in b.store.tasks_of_service(sid) if is_live(t)]
    assert sorted(t.slot for t in live) == list(range(1, replicas + 1))
    assert all(t.spec_version == svc.spec_version for t in live)
    assert all(t.status.state == pb.RUNNING for t in live)
    assert svc.update_status.state in ("", "completed")
