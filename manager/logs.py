"""Manager side of `swarm service logs` (leader only): fan out, merge, stream back.

Control.ServiceLogs hands the request to `LogBroker.stream`, which groups the service's
tasks by node and sends each node one LogSubscription over its dispatcher session. The
dispatcher feeds the workers' LogBatch answers to `deliver` and tells `session_ended`
when a session goes away; the stream turns batches into LogLines (filling in node,
service and slot) as they arrive. Without --follow it ends once every node has sent its
last batch (done) or fell silent for `quiet_s`; with --follow it keeps going, subscribes
tasks that appear later (a new task: all its lines; a task whose node reconnected: only
new lines), until the client goes away or this manager stops leading. On the way out
every open subscription is closed (LogSubscription close=True), so workers stop reading.

Problems are sent to the client in-band as LogLines with stream "error" (node not
connected, node disconnected, a worker's read error, lines dropped because the client
reads too slowly), so that a partial answer still arrives in full.

Memory is bounded per stream (`max_buffered` bytes): past it, lines are dropped and
counted rather than holding up the dispatcher's session reader.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from manager.store import Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock

ERROR_STREAM = "error"
POLL_S = 0.5
QUIET_S = 30.0
MAX_BUFFERED = 8 << 20

Send = Callable[[str, pb.ManagerMessage], "int | None"]


@dataclass
class _Sub:
    id: str
    node_id: str
    serial: int
    task_ids: list[str]
    stream: _Stream
    done: bool = False


@dataclass
class _Stream:
    request: pb.LogsRequest
    service: pb.Service
    cond: threading.Condition = field(default_factory=threading.Condition)
    items: deque[tuple[_Sub, pb.LogBatch | None]] = field(default_factory=deque)
    buffered: int = 0
    dropped: int = 0
    subs: dict[str, _Sub] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)       # tasks ever subscribed
    failed: set[str] = field(default_factory=set)     # tasks whose worker reported an error
    warned: set[str] = field(default_factory=set)     # nodes already reported unreachable
    slots: dict[str, int] = field(default_factory=dict)

    def covered(self) -> set[str]:
        return {t for s in self.subs.values() if not s.done for t in s.task_ids}


class LogBroker:
    def __init__(self, store: Store, send: Send, new_id: Callable[[], str], clock: Clock,
                 active: Callable[[], bool] = lambda: True, poll_s: float = POLL_S,
                 quiet_s: float = QUIET_S, max_buffered: int = MAX_BUFFERED) -> None:
        self._store = store
        self._send = send
        self._new_id = new_id
        self._clock = clock
        self._active = active
        self._poll_s = poll_s
        self._quiet_s = quiet_s
        self._max = max_buffered
        self._lock = threading.Lock()
        self._subs: dict[str, _Sub] = {}
        self._log = log.get("logs")

    # ------------------------------------------------------------------ from the dispatcher

    def deliver(self, node_id: str, batch: pb.LogBatch) -> None:
        """A worker's batch (dispatcher read thread): queue it, never block."""
        with self._lock:
            sub = self._subs.get(batch.subscription_id)
        if sub is None or sub.node_id != node_id:
            return  # a closed subscription, or not this node's
        st = sub.stream
        size = sum(len(line.data) for line in batch.lines)
        with st.cond:
            if st.buffered + size > self._max:
                st.dropped += len(batch.lines)
                del batch.lines[:]  # keep done / error, drop the lines
                size = 0
            st.buffered += size
            st.items.append((sub, batch))
            st.cond.notify()

    def session_ended(self, node_id: str, serial: int) -> None:
        with self._lock:
            subs = [s for s in self._subs.values()
                    if s.node_id == node_id and s.serial == serial]
        for sub in subs:
            with sub.stream.cond:
                sub.stream.items.append((sub, None))
                sub.stream.cond.notify()

    # ------------------------------------------------------------------ the stream

    def stream(self, request: pb.LogsRequest, service: pb.Service,
               client_active: Callable[[], bool]) -> Iterator[pb.LogLine]:
        """The merged lines of the service's tasks, as a gRPC response stream."""
        st = _Stream(request, service)
        try:
            yield from self._subscribe(st)
            last_news = self._clock.monotonic()
            next_scan = last_news + self._poll_s
            while client_active():
                if not self._active():
                    yield self._error(st, "", "this manager stopped leading; logs end here")
                    return
                got = False
                for line in self._drain(st):
                    got = True
                    yield line
                now = self._clock.monotonic()
                if got:
                    last_news = now
                if request.follow and now >= next_scan:
                    next_scan = now + self._poll_s
                    yield from self._subscribe(st)
                elif not request.follow:
                    if all(s.done for s in st.subs.values()):
                        return
                    if now - last_news > self._quiet_s:
                        yield from self._give_up(st)
                        return
        finally:
            self._close(st)

    def _drain(self, st: _Stream) -> Iterator[pb.LogLine]:
        with st.cond:
            if not st.items:
                st.cond.wait(self._poll_s)
            items = list(st.items)
            st.items.clear()
            st.buffered = 0
            dropped, st.dropped = st.dropped, 0
        for sub, batch in items:
            yield from self._lines(st, sub, batch)
        if dropped:
            yield self._error(st, "", f"{dropped} log lines dropped: the client reads too slowly")

    def _lines(self, st: _Stream, sub: _Sub, batch: pb.LogBatch | None) -> Iterator[pb.LogLine]:
        if sub.done:
            return
        if batch is None:
            sub.done = True
            self._forget(sub)
            if not st.request.follow:
                yield self._error(st, sub.node_id, "node disconnected before sending all logs")
            return
        name = st.service.spec.annotations.name
        for line in batch.lines:
            out = pb.LogLine()
            out.CopyFrom(line)
            out.node_id, out.service_name = sub.node_id, name
            out.slot = st.slots.get(line.task_id, 0)
            yield out
        if batch.error:
            st.failed.update(sub.task_ids)
            yield self._error(st, sub.node_id, batch.error)
        if batch.done:
            sub.done = True
            self._forget(sub)

    def _tasks(self, st: _Stream) -> list[pb.Task]:
        want = st.request.task
        return [t for t in self._store.tasks_of_service(st.service.id)
                if t.node_id and (not want or t.id.startswith(want))]

    def _subscribe(self, st: _Stream) -> Iterator[pb.LogLine]:
        """Subscribe every task of the service not covered yet, one message per node."""
        covered = st.covered()
        groups: dict[tuple[str, bool], list[str]] = {}
        for t in self._tasks(st):
            st.slots[t.id] = t.slot
            if t.id in covered or t.id in st.failed:
                continue
            groups.setdefault((t.node_id, t.id in st.seen), []).append(t.id)
        for (node_id, seen), task_ids in sorted(groups.items()):
            tail = 0 if seen else st.request.tail
            sub = _Sub(self._new_id(), node_id, 0, sorted(task_ids), st)
            with self._lock:
                self._subs[sub.id] = sub
            msg = pb.LogSubscription(id=sub.id, task_ids=sub.task_ids, tail=tail,
                                     follow=st.request.follow)
            serial = self._send(node_id, pb.ManagerMessage(logs=msg))
            if serial is None:
                self._forget(sub)
                if node_id not in st.warned:
                    st.warned.add(node_id)
                    yield self._error(st, node_id, "node is not connected; its tasks' logs "
                                      "are not available now")
                continue
            sub.serial = serial
            st.subs[sub.id] = sub
            st.seen.update(task_ids)
            st.warned.discard(node_id)

    def _give_up(self, st: _Stream) -> Iterator[pb.LogLine]:
        for sub in st.subs.values():
            if not sub.done:
                yield self._error(st, sub.node_id,
                                  f"node sent no logs for {self._quiet_s:g}s; giving up")

    def _error(self, st: _Stream, node_id: str, text: str) -> pb.LogLine:
        return pb.LogLine(node_id=node_id, service_name=st.service.spec.annotations.name,
                          stream=ERROR_STREAM, data=text.encode(),
                          timestamp=self._clock.now())

    def _forget(self, sub: _Sub) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)

    def _close(self, st: _Stream) -> None:
        for sub in st.subs.values():
            self._forget(sub)
            if not sub.done and st.request.follow:
                msg = pb.LogSubscription(id=sub.id, close=True)
                self._send(sub.node_id, pb.ManagerMessage(logs=msg))

    def open_subscriptions(self) -> int:
        with self._lock:
            return len(self._subs)
