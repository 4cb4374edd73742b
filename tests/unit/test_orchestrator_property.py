"""Property test: random scale / failure / node events, simulated scheduler and workers.

After every reconcile the decision was accepted whole by the store, a second reconcile is
empty, each replicated slot 1..N holds exactly one live task, each eligible node that is
not DOWN holds exactly one live global task, and the reaper left nothing it should take.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.orchestrator import reconcile
from manager.store import is_live
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.store_builder import StoreBuilder

NODES = ("n0", "n1", "n2", "n3")
LIMIT = 2

events = st.one_of(
    st.tuples(st.just("scale"), st.integers(0, 6)),
    st.tuples(st.sampled_from(["fail", "complete", "reject"]), st.integers(0, 20)),
    st.tuples(
        st.sampled_from(["down", "up", "drain", "activate", "pause", "remove", "add"]),
        st.sampled_from(NODES),
    ),
    st.tuples(st.just("work"), st.just(0)),
)


def converge(b: StoreBuilder) -> None:
    decision = reconcile(b.store, b.now, b.new_id, LIMIT)
    if decision.commands:
        b.apply(decision.commands)  # asserts every command was accepted
    assert reconcile(b.store, b.now, b.new_id, LIMIT).commands == []


def work(b: StoreBuilder) -> None:
    """The scheduler places live tasks; workers on READY nodes start and stop tasks."""
    ready = [
        n.id
        for n in b.store.all_nodes()
        if n.status.state == pb.READY and n.spec.availability == pb.ACTIVE
    ]
    for i, t in enumerate(sorted(b.store.all_tasks(), key=lambda t: t.id)):
        node = b.store.nodes.get(t.node_id)
        if is_live(t) and t.status.state < pb.ASSIGNED:
            target = t.node_id or (ready[i % len(ready)] if ready else "")
            if target in ready:
                b.assign(t.id, target)
                b.report(t.id, pb.RUNNING)
        elif node is None or node.status.state != pb.READY or t.status.state >= pb.COMPLETE:
            continue
        elif t.desired_state > pb.RUNNING:
            b.report(t.id, pb.SHUTDOWN)
        elif t.status.state < pb.RUNNING:
            b.report(t.id, pb.RUNNING)


def end_task(b: StoreBuilder, kind: str, pick: int) -> None:
    """A running task on a reachable node ends by itself."""
    candidates = [
        t
        for t in sorted(b.store.all_tasks(), key=lambda t: t.id)
        if is_live(t)
        and t.status.state >= pb.ASSIGNED
        and b.store.nodes[t.node_id].status.state == pb.READY
    ]
    if candidates:
        state = {"fail": pb.FAILED, "complete": pb.COMPLETE, "reject": pb.REJECTED}[kind]
        b.report(candidates[pick % len(candidates)].id, state)


def node_event(b: StoreBuilder, kind: str, nid: str) -> None:
    exists = nid in b.store.nodes
    if kind == "add":
        if not exists:
            b.node(nid)
    elif not exists:
        return
    elif kind == "remove":
        b.remove_node(nid)
    elif kind in ("down", "up"):
        b.set_node_state(nid, pb.DOWN if kind == "down" else pb.READY)
    else:
        avail = {"drain": pb.DRAIN, "activate": pb.ACTIVE, "pause": pb.PAUSE}[kind]
        b.set_availability(nid, avail)


def check(b: StoreBuilder, web: str, agent: str, replicas: int) -> None:
    tasks = b.store.all_tasks()
    live = [t for t in tasks if is_live(t)]
    web_slots = sorted(t.slot for t in live if t.service_id == web)
    assert web_slots == list(range(1, replicas + 1))
    for t in live:  # replicated tasks never stay on a DOWN or drained node
        node = b.store.nodes.get(t.node_id)
        if t.service_id == web and node is not None:
            assert node.status.state != pb.DOWN and node.spec.availability != pb.DRAIN
    agent_nodes = sorted(t.node_id for t in live if t.service_id == agent)
    assert len(agent_nodes) == len(set(agent_nodes))
    for n in b.store.all_nodes():
        has = n.id in agent_nodes
        if n.spec.availability == pb.DRAIN:
            assert not has
        elif n.status.state != pb.DOWN:
            assert has
    assert all(not t.node_id or t.node_id in b.store.nodes for t in tasks)
    _check_reaped(b, tasks)


def _check_reaped(b: StoreBuilder, tasks: list[pb.Task]) -> None:
    slots: dict[tuple[str, int | str], list[pb.Task]] = {}
    for t in tasks:
        slots.setdefault((t.service_id, t.slot or t.node_id), []).append(t)
        if t.desired_state == pb.REMOVE:  # still running somewhere reachable
            assert pb.ASSIGNED <= t.status.state < pb.COMPLETE
            assert b.store.nodes[t.node_id].status.state != pb.DOWN
    for group in slots.values():
        group.sort(key=lambda t: (t.meta.created_at, t.id), reverse=True)
        assert all(t.status.state < pb.COMPLETE for t in group[LIMIT:])


@settings(max_examples=150, deadline=None)
@given(initial=st.integers(0, 6), steps=st.lists(events, max_size=40))
def test_random_events_keep_one_live_task_per_slot(
    initial: int, steps: list[tuple[str, object]]
) -> None:
    b = StoreBuilder()
    for nid in NODES[:3]:
        b.node(nid)
    web = b.service("web", initial, delay_s=0.0).id
    agent = b.service("agent", global_mode=True).id
    replicas = initial
    converge(b)
    for kind, arg in steps:
        b.tick()
        if kind == "scale":
            assert isinstance(arg, int)
            replicas = arg
            b.scale(web, replicas)
        elif kind in ("fail", "complete", "reject"):
            assert isinstance(arg, int)
            end_task(b, kind, arg)
        elif kind == "work":
            work(b)
        else:
            assert isinstance(arg, str)
            node_event(b, kind, arg)
        converge(b)
        check(b, web, agent, replicas)
    for _ in range(3):  # let the workers finish what they were told
        b.tick()
        work(b)
        converge(b)
        check(b, web, agent, replicas)
