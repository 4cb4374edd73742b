"""The worker agent: keeps a session with a manager and runs the tasks it assigns.

One loop thread per agent does everything stateful -- connecting and reconnecting
(backoff 100 ms -> 8 s over the known managers), heartbeats, applying assignment sets
(by sequence number, older ones ignored), driving tasks (worker.driver), flushing status
batches (worker.reporter). It sleeps on its inbox, which receives session events from
the session's reader thread, finished runtime operations from the pool, and commands
from stop()/leave()/poke(). Threads per agent: the loop and one session reader (plus
gRPC's own two per stream: request consumer and channel poller), and a small op pool
for blocking runtimes only -- a sim task costs no thread.

stop() ends the session but leaves tasks running (they outlive the agent; a new agent
on the same state directory re-adopts them). leave() stops and removes every task first.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from net_overlay.api import TaskNetworking
from swarmlet import log as slog
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker.driver import OpDone, TaskDriver
from worker.errors import WorkerError
from worker.logs import LogStreamer, runtime_log_path
from worker.reporter import Reporter
from worker.runtime.base import Runtime
from worker.session import Backoff, Session, SessionEvent
from worker.state import StateStore

DEFAULT_HEARTBEAT_S = 1.0
MAX_WAIT_S = 1.0  # the loop looks around at least this often (fake clocks, safety)
CONNECT_TIMEOUT_S = 10.0  # no SessionInfo within this long -> try the next manager


@dataclass(frozen=True, slots=True)
class _Cmd:
    """A command from another thread: stop | leave | poke."""

    kind: str


class Agent:
    """A worker node's agent. start() returns at once; the work happens on a thread."""

    def __init__(
        self,
        state_dir: Path,
        managers: list[str],
        credentials_factory: Callable[[str], grpc.Channel],
        runtime: Runtime,
        description: pb.NodeDescription,
        addr: str,
        clock: Clock,
        node_id: str,
        *,
        on_leave: Callable[[str], None] | None = None,
        db_path: str | Path | None = None,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
        status_interval_s: float = 0.05,
        networking: TaskNetworking | None = None,
    ) -> None:
        if not managers:
            raise WorkerError("agent: no manager addresses given")
        self.state_dir = Path(state_dir)
        self.node_id = node_id
        self.runtime = runtime
        self.networking = networking  # overlay data plane (container runtimes only)
        self._managers = list(dict.fromkeys(managers))
        self._initial_managers = list(self._managers)
        self._factory = credentials_factory
        self._description = pb.NodeDescription()
        self._description.CopyFrom(description)
        if not self._description.runtime:
            self._description.runtime = runtime.name
        self._addr = addr
        self._clock = clock
        self._on_leave = on_leave
        # called (in its own thread) when a manager says this node's role changed
        self.on_role_change: Callable[[int], None] | None = None
        if db_path is None:
            db_path = ":memory:" if runtime.name == "sim" else self.state_dir / "worker.db"
        self._db_path = db_path
        self._log = slog.get("agent", **{"node.id": node_id})
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reporter = Reporter(status_interval_s)
        self._backoff = backoff or Backoff(rng=rng)
        self._logs = LogStreamer(runtime_log_path(runtime), clock)  # service logs
        self._thread: threading.Thread | None = None
        self._store: StateStore | None = None
        self._driver: TaskDriver | None = None
        # loop-thread state
        self._session: Session | None = None
        self._gen = 0
        self._mgr_idx = 0
        self._next_addr = ""
        self._ready = False
        self._last_seq = 0
        self._hb_period = DEFAULT_HEARTBEAT_S
        self._next_hb = 0.0
        self._next_connect = 0.0
        self._connect_deadline = 0.0
        self._done = False
        self._leaving = False
        self._leave_reason = ""
        self._remote_leave = False
        self.connected = threading.Event()  # set while a session is established
        self.sessions = 0  # sessions established so far (for tests and metrics)

    # ------------------------------------------------------------------ public API

    @property
    def managers(self) -> list[str]:
        return list(self._managers)

    def start(self) -> None:
        """Open the state, re-adopt tasks from a previous run, and start the loop thread."""
        if self._thread is not None:
            raise WorkerError("agent already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._store = StateStore(self._db_path)
        stored = self._store.get_meta("managers")
        if stored:
            self._merge_managers(json.loads(stored))
        self._driver = TaskDriver(
            self.runtime, self._store, self._reporter, self._clock, self._inbox.put, self._log,
            hostname=self._description.hostname,
        )
        self._driver.load()
        self._thread = threading.Thread(
            target=self._run, name=f"agent-{self.node_id[:12]}", daemon=True
        )
        self._thread.start()
        self._log.info("agent.started", managers=self._managers, runtime=self.runtime.name)

    def stop(self, timeout: float = 10.0) -> None:
        """End the session and the loop; running tasks keep running."""
        self._inbox.put(_Cmd("stop"))
        self._join(timeout)

    def leave(self, timeout: float | None = None) -> None:
        """Stop and remove every task, then stop the agent."""
        self._inbox.put(_Cmd("leave"))
        self._join(timeout)

    def poke(self) -> None:
        """Wake the loop now (after advancing a fake clock, for instance)."""
        self._inbox.put(_Cmd("poke"))

    def task_statuses(self) -> dict[str, pb.TaskStatus]:
        """task id -> last observed status, for inspection from any thread."""
        return self._driver.snapshot() if self._driver is not None else {}

    def _join(self, timeout: float | None) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        assert self._driver is not None
        try:
            while not self._done:
                self._maybe_connect()
                self._wait_and_handle(self._wait_timeout())
                self._driver.run_due()
                self._tick_session()
                if self._leaving and len(self._driver) == 0:
                    self._flush(force=True)
                    self._done = True
        except Exception:
            self._log.exception("agent.loop_crashed")
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._close_session(drain_s=0.5)
        if self._driver is not None:
            self._driver.close()
        if self._store is not None:
            self._store.close()
        self._log.info("agent.stopped", leaving=self._leaving)
        if self._remote_leave and self._on_leave is not None:
            try:
                self._on_leave(self._leave_reason)
            except Exception:
                self._log.exception("agent.on_leave_failed")

    def _wait_timeout(self) -> float:
        assert self._driver is not None
        now = self._clock.monotonic()
        cands = [now + MAX_WAIT_S, self._driver.next_deadline()]
        if self._session is None:
            cands.append(self._next_connect if not self._leaving else None)
        elif not self._ready:
            cands.append(self._connect_deadline)
        else:
            cands += [self._next_hb, self._reporter.due_at()]
        return max(0.0, min(c for c in cands if c is not None) - now)

    def _wait_and_handle(self, timeout: float) -> None:
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: Any) -> None:
        assert self._driver is not None
        if isinstance(item, SessionEvent):
            self._on_session_event(item)
        elif isinstance(item, OpDone):
            self._driver.on_op_done(item)
        elif isinstance(item, _Cmd):
            if item.kind == "stop":
                self._done = True
            elif item.kind == "leave":
                self._begin_leave("local leave", remote=False)

    def _begin_leave(self, reason: str, remote: bool) -> None:
        assert self._driver is not None
        if not self._leaving:
            self._log.info("agent.leaving", reason=reason, tasks=len(self._driver))
        self._leaving = True
        self._remote_leave = self._remote_leave or remote
        self._leave_reason = reason
        self._driver.unlist_all()

    # ------------------------------------------------------------------ session

    def _maybe_connect(self) -> None:
        if self._session is not None or self._leaving or self._done:
            return
        if self._clock.monotonic() < self._next_connect:
            return
        addr = self._next_addr or self._managers[self._mgr_idx % len(self._managers)]
        self._next_addr = ""
        self._gen += 1
        try:
            channel = self._factory(addr)
            hello = pb.Hello(description=self._description, addr=self._addr)
            self._session = Session(self._gen, addr, channel, hello, self._inbox.put)
        except Exception as e:  # noqa: BLE001 (a bad address or credentials: try the next)
            self._disconnected(f"connecting to {addr}: {e}", "")
            return
        self._ready = False
        self._connect_deadline = self._clock.monotonic() + CONNECT_TIMEOUT_S
        self._log.debug("agent.connecting", manager=addr)

    def _on_session_event(self, ev: SessionEvent) -> None:
        if self._session is None or ev.gen != self._session.gen:
            return  # from a session already given up
        if ev.msg is None:
            self._disconnected(ev.error, ev.leader)
            return
        kind = ev.msg.WhichOneof("msg")
        if kind == "session":
            self._on_session_info(ev.msg.session)
        elif not self._ready:
            self._disconnected(f"manager sent {kind} before session info", "")
        elif kind == "assignments":
            self._on_assignments(ev.msg.assignments)
        elif kind == "logs":
            self._logs.handle(ev.msg.logs, self._session.send)
        elif kind == "leave":
            self._begin_leave(ev.msg.leave.reason or "removed by the manager", remote=True)
        elif kind == "role" and self.on_role_change is not None:
            role = ev.msg.role.role
            threading.Thread(target=self.on_role_change, args=(role,), daemon=True,
                             name="role-change").start()

    def _on_session_info(self, info: pb.SessionInfo) -> None:
        assert self._driver is not None and self._session is not None
        self._ready = True
        self.connected.set()
        self.sessions += 1
        self._backoff.reset()
        self._last_seq = 0
        self._hb_period = info.heartbeat_period_s or DEFAULT_HEARTBEAT_S
        self._next_hb = self._clock.monotonic() + self._hb_period
        if info.node_id and info.node_id != self.node_id:
            self._log.warning("agent.node_id_differs", manager_says=info.node_id)
        if info.managers:
            self._managers = []
            self._merge_managers(list(info.managers) + self._initial_managers)
        self._mgr_idx = self._managers.index(self._session.addr) if (
            self._session.addr in self._managers
        ) else 0
        for tid, st in self._driver.statuses():
            self._reporter.add(tid, st)  # resend: the manager ignores non-forward updates
        self._flush(force=True)
        self._log.info("agent.session", manager=self._session.addr, tasks=len(self._driver))

    def _on_assignments(self, a: pb.Assignments) -> None:
        assert self._driver is not None
        if a.sequence <= self._last_seq:
            self._log.debug("agent.assignments_stale", sequence=a.sequence)
            return
        self._last_seq = a.sequence
        if self._leaving:
            return
        if self.networking is not None:
            # first: a task about to stop leaves the load-balancing maps before it stops
            try:
                self.networking.update(a)
            except Exception:  # noqa: BLE001 (networking must never stop the agent)
                self._log.exception("agent.networking_update_failed", sequence=a.sequence)
        self._driver.apply(a.tasks, a.secrets, a.configs)

    def _disconnected(self, reason: str, leader: str) -> None:
        was_ready = self._ready
        self._close_session()
        if was_ready:
            self._backoff.reset()  # a session that worked just broke: retry quickly
        if leader:
            self._next_addr = leader
            delay = 0.05  # a manager named the leader: go there now
        else:
            self._mgr_idx = (self._mgr_idx + 1) % len(self._managers)
            delay = self._backoff.next()
            if "leader" in reason:
                delay = min(delay, 0.5)  # an election is under way: it ends within seconds
        self._next_connect = self._clock.monotonic() + delay
        self._log.warning(
            "agent.disconnected", reason=reason, was_connected=was_ready, retry_in=round(delay, 3)
        )

    def _close_session(self, drain_s: float = 0.0) -> None:
        self._logs.close_all()
        if self._session is not None:
            self._session.close(drain_s)
        self._session = None
        self._ready = False
        self.connected.clear()

    def _tick_session(self) -> None:
        if self._session is None:
            return
        now = self._clock.monotonic()
        if not self._ready:
            if now >= self._connect_deadline:
                self._disconnected("no session info from the manager in time", "")
            return
        if now >= self._next_hb:
            self._session.send(pb.WorkerMessage(heartbeat=pb.Heartbeat()))
            self._next_hb = now + self._hb_period
        self._flush()

    def _flush(self, force: bool = False) -> None:
        if self._session is None or not self._ready:
            return
        batch = self._reporter.take(self._clock.monotonic(), force=force)
        if batch is not None:
            self._session.send(pb.WorkerMessage(statuses=batch))

    def _merge_managers(self, addrs: list[str]) -> None:
        self._managers = list(dict.fromkeys(self._managers + [a for a in addrs if a]))
        if self._store is not None:
            self._store.set_meta("managers", json.dumps(self._managers))
