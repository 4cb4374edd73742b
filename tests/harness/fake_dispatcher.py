"""A fake Dispatcher service for worker tests: an in-process insecure gRPC server.

It answers `Dispatcher.Session` like a manager would (hello first, then SessionInfo),
records every WorkerMessage received, lets the test push assignment sets (the full set
each time, with increasing sequence numbers; the current set is sent again to every new
session), can drop streams and refuse sessions. Also holds `wait_for`, the polling helper
worker tests use instead of fixed sleeps.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pb_grpc


def wait_for(cond: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `cond` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {cond}")
        time.sleep(interval)


@dataclass
class FakeSession:
    """One worker stream as the fake manager saw it."""

    index: int
    hello: pb.Hello
    opened_at: float
    received: list[pb.WorkerMessage] = field(default_factory=list)
    out: queue.SimpleQueue[pb.ManagerMessage | tuple[str, grpc.StatusCode] | None] = field(
        default_factory=queue.SimpleQueue
    )
    ended: threading.Event = field(default_factory=threading.Event)

    def heartbeats(self) -> int:
        return sum(1 for m in self.received if m.WhichOneof("msg") == "heartbeat")

    def updates(self) -> list[pb.TaskStatusUpdate]:
        return [u for m in self.received if m.WhichOneof("msg") == "statuses"
                for u in m.statuses.updates]


class FakeDispatcher(pb_grpc.DispatcherServicer):
    """Serves Dispatcher.Session on 127.0.0.1:<random port>."""

    def __init__(
        self,
        node_id: str = "node-1",
        heartbeat_period_s: float = 0.2,
        managers: Iterable[str] = (),
        max_workers: int = 64,
    ) -> None:
        self.node_id = node_id
        self.heartbeat_period_s = heartbeat_period_s
        self.extra_managers = list(managers)
        self.refuse: grpc.StatusCode | None = None  # abort new sessions with this code
        self.attempts: list[float] = []  # monotonic time of every Session call
        self.sessions: list[FakeSession] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._current: pb.Assignments | None = None
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        pb_grpc.add_DispatcherServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{port}"

    def start(self) -> FakeDispatcher:
        self._server.start()
        return self

    def stop(self) -> None:
        for s in list(self.sessions):
            s.out.put(None)
        self._server.stop(grace=0.2).wait()

    # ------------------------------------------------------------------ test controls

    @property
    def session(self) -> FakeSession:
        """The latest session (wait for one first)."""
        return self.sessions[-1]

    def received(self) -> list[pb.WorkerMessage]:
        with self._lock:
            return [m for s in self.sessions for m in s.received]

    def updates(self) -> list[pb.TaskStatusUpdate]:
        """Every status update received, over all sessions, in arrival order."""
        with self._lock:
            return [u for s in self.sessions for u in s.updates()]

    def latest(self) -> dict[str, pb.TaskStatus]:
        """task id -> the last status received for it."""
        return {u.task_id: u.status for u in self.updates()}

    def assign(self, tasks: Iterable[pb.Task], sequence: int | None = None) -> pb.Assignments:
        """Make `tasks` the full assignment set and push it to the live session."""
        with self._lock:
            self._seq = sequence if sequence is not None else self._seq + 1
            a = pb.Assignments(sequence=self._seq, tasks=list(tasks))
            self._current = a
            live = [s for s in self.sessions if not s.ended.is_set()]
        for s in live:
            s.out.put(pb.ManagerMessage(assignments=a))
        return a

    def send(self, msg: pb.ManagerMessage) -> None:
        """Send a raw message on every live session."""
        for s in self.sessions:
            if not s.ended.is_set():
                s.out.put(msg)

    def send_leave(self, reason: str = "node removed") -> None:
        self.send(pb.ManagerMessage(leave=pb.Leave(reason=reason)))

    def drop(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Abort every live stream with `code`."""
        for s in self.sessions:
            if not s.ended.is_set():
                s.out.put(("drop", code))

    # ------------------------------------------------------------------ servicer

    def Session(  # noqa: N802 (gRPC method name)
        self, request_iterator: Iterator[pb.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ManagerMessage]:
        self.attempts.append(time.monotonic())
        if self.refuse is not None:
            context.abort(self.refuse, "refused by the test")
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session must start with hello")
        with self._lock:
            sess = FakeSession(len(self.sessions), first.hello, time.monotonic())
            sess.received.append(first)
            self.sessions.append(sess)
            current = self._current
        threading.Thread(target=self._read, args=(sess, request_iterator), daemon=True).start()
        try:
            yield pb.ManagerMessage(
                session=pb.SessionInfo(
                    node_id=self.node_id,
                    heartbeat_period_s=self.heartbeat_period_s,
                    managers=[self.addr, *self.extra_managers],
                )
            )
            if current is not None:
                yield pb.ManagerMessage(assignments=current)
            yield from self._pump(sess, context)
        finally:
            sess.ended.set()

    def _pump(
        self, sess: FakeSession, context: grpc.ServicerContext
    ) -> Iterator[pb.ManagerMessage]:
        while context.is_active():
            try:
                item = sess.out.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, tuple):
                context.abort(item[1], "dropped by the test")
            yield item

    def _read(self, sess: FakeSession, it: Iterator[pb.WorkerMessage]) -> None:
        try:
            for msg in it:
                with self._lock:
                    sess.received.append(msg)
        except grpc.RpcError:
            pass
        finally:
            sess.out.put(None)
