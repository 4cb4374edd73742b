"""Service logs: the worker's LogStreamer over real files, and the manager's LogBroker
with a stand-in dispatcher (fan-out per node, merging, done, disconnects, close)."""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.logs import ERROR_STREAM, LogBroker
from manager.orchestrator import reconcile
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from tests.harness.store_builder import StoreBuilder
from worker.logs import MAX_LINE, LogStreamer

DEADLINE_S = 10.0


class Collector:
    """The session's send(): collects LogBatches."""

    def __init__(self) -> None:
        self.batches: queue.Queue[pb.LogBatch] = queue.Queue()

    def __call__(self, msg: pb.WorkerMessage) -> None:
        self.batches.put(msg.logs)

    def lines_until(self, pred: object, timeout: float = DEADLINE_S) -> list[bytes]:
        """Lines received until a batch satisfies pred(batch, lines) (or the deadline)."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = self.batches.get(timeout=0.1)
            except queue.Empty:
                continue
            out += [line.data for line in b.lines]
            if pred(b, out):  # type: ignore[operator]
                return out
        raise AssertionError(f"timed out; got {out!r}")


def _sub(tail: int, follow: bool, *tasks: str) -> pb.LogSubscription:
    return pb.LogSubscription(id="s1", task_ids=list(tasks), tail=tail, follow=follow)


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    (tmp_path / "t1").mkdir()
    return tmp_path


def _streamer(logdir: Path) -> LogStreamer:
    return LogStreamer(lambda tid: logdir / tid / "output.log", RealClock(), poll_s=0.02)


def test_tail_reads_the_last_lines_across_the_rotated_file(logdir: Path) -> None:
    (logdir / "t1" / "output.log.1").write_bytes(b"".join(b"old %d\n" % i for i in range(5)))
    (logdir / "t1" / "output.log").write_bytes(b"new 0\nnew 1\npartial")
    got = Collector()
    _streamer(logdir).handle(_sub(3, False, "t1"), got)
    assert got.lines_until(lambda b, _: b.done) == [b"old 4", b"new 0", b"new 1", b"partial"]

    got = Collector()
    _streamer(logdir).handle(_sub(-1, False, "t1", "unknown-task"), got)
    lines = got.lines_until(lambda b, _: b.done)
    assert lines == [b"old %d" % i for i in range(5)] + [b"new 0", b"new 1", b"partial"]


def test_follow_sees_new_lines_and_survives_copy_truncate_rotation(logdir: Path) -> None:
    log = logdir / "t1" / "output.log"
    log.write_bytes(b"before\n")
    got = Collector()
    streamer = _streamer(logdir)
    streamer.handle(_sub(1, True, "t1"), got)
    assert got.lines_until(lambda _b, out: out == [b"before"]) == [b"before"]
    with open(log, "ab") as f:
        f.write(b"one\ntw")
        f.flush()
        assert got.lines_until(lambda _b, out: out == [b"one"]) == [b"one"]
        f.write(b"o\nthree\n")
        f.flush()
        # rotate as the runtimes do: copy to .1, truncate in place, writer keeps appending
        shutil.copyfile(log, f"{log}.1")
        os.truncate(log, 0)
        f.write(b"four\n")
        f.flush()
        rest = got.lines_until(lambda _b, out: b"four" in out)
    assert rest == [b"two", b"three", b"four"]
    streamer.handle(pb.LogSubscription(id="s1", close=True), got)
    got.lines_until(lambda b, _: b.done)
    deadline = time.monotonic() + DEADLINE_S
    while streamer.active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert streamer.active() == 0


def test_long_lines_are_split(logdir: Path) -> None:
    (logdir / "t1" / "output.log").write_bytes(b"x" * (MAX_LINE + 10) + b"\nend\n")
    got = Collector()
    _streamer(logdir).handle(_sub(-1, False, "t1"), got)
    lines = got.lines_until(lambda b, _: b.done)
    assert [len(x) for x in lines] == [MAX_LINE, 10, 3]


# ---------------------------------------------------------------------- broker


class FakeDispatcher:
    """Records subscriptions sent to nodes; workers answer through broker.deliver."""

    def __init__(self, connected: set[str]) -> None:
        self.connected = connected
        self.sent: list[tuple[str, pb.LogSubscription]] = []
        self.event = threading.Event()

    def send(self, node_id: str, msg: pb.ManagerMessage) -> int | None:
        if node_id not in self.connected:
            return None
        self.sent.append((node_id, msg.logs))
        self.event.set()
        return 7

    def wait_subs(self, n: int) -> list[tuple[str, pb.LogSubscription]]:
        deadline = time.monotonic() + DEADLINE_S
        while len([s for s in self.sent if not s[1].close]) < n:
            assert time.monotonic() < deadline, self.sent
            self.event.wait(0.05)
            self.event.clear()
        return [s for s in self.sent if not s[1].close]


def _cluster() -> tuple[StoreBuilder, pb.Service]:
    b = StoreBuilder()
    for n in ("n1", "n2", "n3"):
        b.node(n)
    svc = b.service("web", replicas=3)
    b.apply(reconcile(b.store, b.now, b.new_id).commands)
    for task, node in zip(b.tasks(svc.id), ("n1", "n2", "n2"), strict=True):
        b.run(task.id, node)
    return b, svc


def _run_stream(broker: LogBroker, req: pb.LogsRequest, svc: pb.Service,
                active: threading.Event) -> tuple[list[pb.LogLine], threading.Thread]:
    out: list[pb.LogLine] = []

    def consume() -> None:
        it: Iterator[pb.LogLine] = broker.stream(req, svc, active.is_set)
        for line in it:
            out.append(line)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    return out, t


def _batch(sub: pb.LogSubscription, task: str, *data: bytes, done: bool = False,
           error: str = "") -> pb.LogBatch:
    return pb.LogBatch(subscription_id=sub.id, done=done, error=error,
                       lines=[pb.LogLine(task_id=task, data=d, timestamp=1.0) for d in data])


def test_broker_fans_out_per_node_and_ends_when_every_node_is_done() -> None:
    b, svc = _cluster()
    disp = FakeDispatcher({"n1", "n2"})
    broker = LogBroker(b.store, disp.send, b.new_id, RealClock(), poll_s=0.02)
    active = threading.Event()
    active.set()
    out, t = _run_stream(broker, pb.LogsRequest(service="web", tail=10), svc, active)
    subs = dict(disp.wait_subs(2))
    assert len(subs["n1"].task_ids) == 1 and len(subs["n2"].task_ids) == 2
    assert subs["n2"].tail == 10 and not subs["n2"].follow
    t1, t2 = subs["n1"].task_ids[0], subs["n2"].task_ids[0]
    broker.deliver("n3", _batch(subs["n1"], t1, b"forged"))  # not n1: ignored
    broker.deliver("n1", _batch(subs["n1"], t1, b"a", done=True))
    broker.deliver("n2", _batch(subs["n2"], t2, b"b"))
    broker.deliver("n2", _batch(subs["n2"], t2, done=True))
    t.join(DEADLINE_S)
    assert not t.is_alive()
    assert [(x.data, x.node_id, x.service_name) for x in out] == [
        (b"a", "n1", "web"), (b"b", "n2", "web")]
    assert out[0].slot == b.task(t1).slot
    assert broker.open_subscriptions() == 0


def test_broker_reports_unconnected_and_disconnected_nodes() -> None:
    b, svc = _cluster()
    disp = FakeDispatcher({"n2"})
    broker = LogBroker(b.store, disp.send, b.new_id, RealClock(), poll_s=0.02)
    active = threading.Event()
    active.set()
    out, t = _run_stream(broker, pb.LogsRequest(service="web", tail=-1), svc, active)
    (node, sub), = disp.wait_subs(1)
    broker.session_ended("n2", 7)
    t.join(DEADLINE_S)
    assert not t.is_alive()
    errors = [(x.node_id, x.data.decode()) for x in out if x.stream == ERROR_STREAM]
    assert errors == [("n1", "node is not connected; its tasks' logs are not available now"),
                      ("n2", "node disconnected before sending all logs")]


def test_follow_subscribes_new_tasks_and_closes_everything_when_the_client_leaves() -> None:
    b, svc = _cluster()
    disp = FakeDispatcher({"n1", "n2", "n3"})
    broker = LogBroker(b.store, disp.send, b.new_id, RealClock(), poll_s=0.02)
    active = threading.Event()
    active.set()
    out, t = _run_stream(broker, pb.LogsRequest(service="web", tail=0, follow=True), svc,
                         active)
    disp.wait_subs(2)
    b.scale(svc.id, 4)
    b.apply(reconcile(b.store, b.now, b.new_id).commands)
    new = next(x for x in b.tasks(svc.id) if not x.node_id)
    b.run(new.id, "n3")
    subs = disp.wait_subs(3)
    node, third = subs[2]
    assert node == "n3" and list(third.task_ids) == [new.id] and third.follow
    broker.deliver("n3", _batch(third, new.id, b"hello"))
    deadline = time.monotonic() + DEADLINE_S
    while not out and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [x.data for x in out] == [b"hello"]
    active.clear()  # the client went away
    t.join(DEADLINE_S)
    closed = {s.id for _, s in disp.sent if s.close}
    assert closed == {s.id for _, s in subs}
    assert broker.open_subscriptions() == 0
