"""Drives every task of one agent toward its desired state through the runtime.

The imperative shell around `worker.controller`: holds one TaskRecord per task, asks
the controller for the next step, executes it, persists each observed status in the
StateStore and queues it on the Reporter. Used from the agent's loop thread only (except
the read-only `snapshot`).

Runtime calls that may block (prepare/start/shutdown/remove of the process and runc
runtimes) run on a small thread pool and come back as OpDone events through the agent's
inbox; for a non-blocking runtime (sim) they run inline, so a simulated task costs no
thread. Exit detection is by polling: a RUNNING task is due again at
`runtime.next_check()` (every 100 ms for process; never for sim unless SIM_RUN_S is set),
when `runtime.wait(task_id, 0)` is asked.

Health checks (worker.health): a task with one is held in STARTING after start() and
probed every interval (Runtime.probe, on a separate small pool; the result comes back as
a ProbeDone event); it is reported RUNNING once healthy, and shut down as FAILED
"unhealthy: ..." once unhealthy. The health state is kept in memory only: after an agent
restart an adopted task starts over as "starting" (or "healthy" if it was RUNNING).
"""

from __future__ import annotations

import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker import controller as C
from worker import health as H
from worker.controller import Facts, Op, Step
from worker.errors import RejectError, WorkerError
from worker.reporter import Reporter
from worker.runtime.base import EXIT_UNKNOWN, ExitInfo, ProbeResult, Runtime, grace_period
from worker.secrets import FileCache, prepare_with_files
from worker.state import StateStore
from worker.templates import expand_task

RETRY_S = 2.0  # a failed shutdown/remove is tried again after this long
POOL_SIZE = 8
PROBE_POOL_SIZE = 4
TOMBSTONES = 1000  # removed task ids remembered, so that a task never runs twice


@dataclass(frozen=True, slots=True)
class OpDone:
    """A runtime operation finished: the status it leads to, or an error to retry."""

    task_id: str
    op: Op
    status: pb.TaskStatus | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProbeDone(OpDone):
    """A health probe finished (posted like OpDone; the agent hands both to on_op_done)."""

    result: ProbeResult | None = None


@dataclass
class TaskRecord:
    task: pb.Task  # the latest assignment (desired state lives here)
    status: pb.TaskStatus  # the last observed status
    listed: bool = True
    busy: bool = False  # a runtime operation is in flight
    due: float | None = None  # monotonic time to drive it again
    check: H.HealthCheck | None = None  # the task's health check, if any
    health: H.HealthState | None = None  # set once started (with a check)
    started: bool = False  # started, held in STARTING until healthy
    start_pid: int = 0
    probing: bool = False
    unhealthy: str | None = None


class TaskDriver:
    """All tasks of one agent and the runtime operations on them."""

    def __init__(
        self,
        runtime: Runtime,
        store: StateStore,
        reporter: Reporter,
        clock: Clock,
        post: Callable[[Any], None],
        log: Any,
        *,
        hostname: str = "",
    ) -> None:
        self._rt = runtime
        self._hostname = hostname or socket.gethostname()  # for templates ({{.Node.Hostname}})
        self._files = FileCache()  # secrets/configs of the latest assignment set
        self._store = store
        self._reporter = reporter
        self._clock = clock
        self._post = post
        self._log = log
        self._tasks: dict[str, TaskRecord] = {}
        self._dirty: set[str] = set()
        self._removed: OrderedDict[str, pb.TaskStatus] = OrderedDict()
        self._lock = threading.Lock()  # guards _tasks membership for snapshot()
        self._pool: ThreadPoolExecutor | None = None
        self._probe_pool: ThreadPoolExecutor | None = None
        if runtime.blocking:
            self._pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="agent-op")

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._tasks)

    def snapshot(self) -> dict[str, pb.TaskStatus]:
        """task id -> last observed status (safe from any thread)."""
        with self._lock:
            return {i: r.status for i, r in self._tasks.items()}

    def statuses(self) -> list[tuple[str, pb.TaskStatus]]:
        return [(i, r.status) for i, r in self._tasks.items()]

    def next_deadline(self) -> float | None:
        """Earliest monotonic time a task needs driving, or None."""
        dues = [r.due for r in self._tasks.values() if r.due is not None and not r.busy]
        return min(dues) if dues else None

    # ------------------------------------------------------------------ inputs

    def load(self) -> None:
        """Reload tasks from the store after a restart; adopt those that had started."""
        now = self._clock.now()
        for stored in self._store.load():
            st = stored.status or C.status(S.ASSIGNED, "assigned", now)
            rec = TaskRecord(stored.task, st)
            self._add(rec)
            self._recover(rec)
        self._log.info("agent.loaded", tasks=len(self._tasks))

    def apply(
        self,
        tasks: Iterable[pb.Task],
        secrets: Iterable[pb.Secret] = (),
        configs: Iterable[pb.Config] = (),
    ) -> None:
        """Apply the manager's full assignment set: new tasks, desired-state changes, and
        every task absent from the set is shut down and forgotten. `secrets` (decrypted)
        and `configs` are those the set's tasks use; they are kept in memory only."""
        self._files.update(secrets, configs)
        seen: set[str] = set()
        with self._store.transaction():
            for t in tasks:
                seen.add(t.id)
                rec = self._tasks.get(t.id)
                if rec is None and t.id in self._removed:
                    # listed again by a manager whose view lags: repeat the final status
                    self._reporter.add(t.id, self._removed[t.id])
                elif rec is None:
                    self._new(t)
                elif t.desired_state != rec.task.desired_state or not rec.listed:
                    rec.task = t
                    rec.listed = True
                    self._store.put_task(t)
                    self._dirty.add(t.id)
        for tid, rec in self._tasks.items():
            if tid not in seen and rec.listed:
                rec.listed = False
                self._dirty.add(tid)

    def unlist_all(self) -> None:
        """Leave: every task is to be stopped and removed."""
        for tid, rec in self._tasks.items():
            rec.listed = False
            self._dirty.add(tid)

    def on_op_done(self, done: OpDone) -> None:
        rec = self._tasks.get(done.task_id)
        if rec is None:
            return
        if isinstance(done, ProbeDone):
            self._on_probe(rec, done)
            return
        rec.busy = False
        if self._hold_until_healthy(rec, done):
            return
        if done.error:
            self._log.warning(
                "task.op_failed", op=done.op.value, error=done.error, **_keys(rec.task)
            )
            rec.due = self._clock.monotonic() + RETRY_S
            return
        if done.op is Op.REMOVE:
            self._forget(rec)
            return
        if done.status is not None:
            self._observe(rec, done.status)
        self._dirty.add(done.task_id)

    # ------------------------------------------------------------------ driving

    def run_due(self) -> None:
        """Drive every task that changed or whose time has come."""
        mono = self._clock.monotonic()
        for tid, rec in self._tasks.items():
            if rec.due is not None and rec.due <= mono and not rec.busy:
                rec.due = None
                self._dirty.add(tid)
        if not self._dirty:
            return
        with self._store.transaction():
            while self._dirty:
                found = self._tasks.get(self._dirty.pop())
                if found is not None:
                    self._drive(found)

    def _drive(self, rec: TaskRecord) -> None:
        if rec.busy:
            return
        for _ in range(8):  # REPORT steps chain; anything else ends the pass
            now = self._clock.now()
            step = C.next_step(
                Facts(
                    observed=rec.status.state,
                    desired=rec.task.desired_state,
                    listed=rec.listed,
                    now=now,
                    not_before=rec.task.not_before,
                    started=rec.started,
                    unhealthy=rec.unhealthy,
                )
            )
            if step.op is Op.NONE:
                rec.due = None
                if step.wake_at:
                    rec.due = self._clock.monotonic() + max(0.0, step.wake_at - now)
                return
            if step.op is Op.REPORT:
                self._observe(rec, C.status(step.state, step.message, now))
                continue
            if step.op is Op.POLL:
                self._poll(rec)
                return
            rec.busy, rec.due = True, None
            self._submit(rec.task, step)
            return

    def _poll(self, rec: TaskRecord) -> None:
        try:
            info = self._rt.wait(rec.task.id, 0)
        except WorkerError as e:
            info = ExitInfo(EXIT_UNKNOWN, False, f"task lost by the runtime: {e}")
        if info is None:
            mono = self._clock.monotonic()
            rec.due = self._rt.next_check(rec.task.id, mono)
            if rec.health is not None and rec.unhealthy is None:
                if not rec.probing and mono >= rec.health.next_probe_at:
                    self._submit_probe(rec)
                if not rec.probing:
                    nxt = rec.health.next_probe_at
                    rec.due = nxt if rec.due is None else min(rec.due, nxt)
            return
        self._observe(rec, C.exited(info, self._clock.now()))
        self._dirty.add(rec.task.id)

    # ------------------------------------------------------------------ health

    def _hold_until_healthy(self, rec: TaskRecord, done: OpDone) -> bool:
        """A task with a health check that has just started stays STARTING (probed)."""
        st = done.status
        if done.op is not Op.START or rec.check is None or st is None or st.state != S.RUNNING:
            return False
        rec.started, rec.start_pid = True, st.pid
        rec.health = H.initial(rec.check, self._clock.monotonic())
        self._dirty.add(done.task_id)
        return True

    def _submit_probe(self, rec: TaskRecord) -> None:
        assert rec.check is not None
        rec.probing = True
        if not self._rt.blocking:
            self.on_op_done(self._run_probe(rec.task.id, rec.check))
            return
        if self._probe_pool is None:
            self._probe_pool = ThreadPoolExecutor(PROBE_POOL_SIZE, thread_name_prefix="probe")
        fut: Future[OpDone] = self._probe_pool.submit(self._run_probe, rec.task.id, rec.check)
        fut.add_done_callback(self._op_finished)

    def _run_probe(self, task_id: str, check: H.HealthCheck) -> ProbeDone:
        """Runs on the probe pool; never raises (a probe that cannot run has failed)."""
        try:
            res = self._rt.probe(task_id, list(check.argv), check.timeout_s)
        except Exception as e:  # noqa: BLE001
            res = ProbeResult(None, f"health check could not run: {e}")
        return ProbeDone(task_id, Op.POLL, None, result=res)

    def _on_probe(self, rec: TaskRecord, done: ProbeDone) -> None:
        rec.probing = False
        if rec.check is None or rec.health is None or S.is_terminal(rec.status.state):
            return
        res = done.result or ProbeResult(None, "")
        old = rec.health.status
        rec.health = H.on_result(rec.check, rec.health, res.ok, res.output,
                                 self._clock.monotonic())
        if rec.health.status != old:
            self._log.info("task.health", health=rec.health.status, **_keys(rec.task))
        if rec.health.status == H.HEALTHY and rec.status.state == S.STARTING:
            self._observe(rec, C.status(S.RUNNING, "started (healthy)", self._clock.now(),
                                        pid=rec.start_pid))
        elif rec.health.status == H.UNHEALTHY:
            rec.unhealthy = H.unhealthy_message(rec.health)
        self._dirty.add(rec.task.id)

    def _submit(self, task: pb.Task, step: Step) -> None:
        if self._pool is None:
            self.on_op_done(self._run_op(task, step))
            return
        fut = self._pool.submit(self._run_op, task, step)
        fut.add_done_callback(self._op_finished)

    def _op_finished(self, fut: Future[OpDone]) -> None:
        if not fut.cancelled():
            self._post(fut.result())

    def _run_op(self, task: pb.Task, step: Step) -> OpDone:
        """Runs on a pool thread (blocking runtimes) or inline; never raises."""
        tid, op = task.id, step.op
        try:
            if op is Op.PREPARE:
                files = self._files.for_task(task)
                prepare_with_files(self._rt, expand_task(task, self._hostname), files)
                return OpDone(tid, op, C.status(step.state, step.message, self._clock.now()))
            if op is Op.START:
                pid = self._rt.start(tid)
                st = C.status(step.state, step.message, self._clock.now(), pid=pid)
                return OpDone(tid, op, st)
            if op is Op.SHUTDOWN:
                self._rt.shutdown(tid, grace_period(task))
                rs = self._rt.inspect(tid)
                if step.state == S.FAILED:  # stopped for failing its health check
                    return OpDone(tid, op, C.unhealthy(step.message, rs.exit if rs else None,
                                                       self._clock.now()))
                return OpDone(tid, op, C.shut_down(rs.exit if rs else None, self._clock.now()))
            self._rt.remove(tid)
            return OpDone(tid, op, None)
        except RejectError as e:
            return OpDone(tid, op, C.rejected(str(e), self._clock.now()))
        except Exception as e:  # noqa: BLE001 (every failure becomes a task state or a retry)
            if op is Op.PREPARE:
                return OpDone(tid, op, C.rejected(f"preparing failed: {e}", self._clock.now()))
            if op is Op.START:
                return OpDone(tid, op, C.start_failed(str(e), self._clock.now()))
            return OpDone(tid, op, None, error=str(e) or type(e).__name__)

    # ------------------------------------------------------------------ records

    def _new(self, t: pb.Task) -> None:
        now = self._clock.now()
        st = pb.TaskStatus()
        st.CopyFrom(t.status)
        if st.state < S.ASSIGNED:
            st = C.status(S.ASSIGNED, "assigned", now)
        rec = TaskRecord(t, st)
        self._store.put_task(t)
        self._store.put_status(t.id, st)
        self._add(rec)
        if st.state > S.ASSIGNED:
            self._recover(rec)  # the manager knows more than we do: local state was lost
        self._log.debug("task.assigned", **_keys(t))

    def _add(self, rec: TaskRecord) -> None:
        rec.check = H.health_check(rec.task)
        with self._lock:
            self._tasks[rec.task.id] = rec
        self._dirty.add(rec.task.id)

    def _forget(self, rec: TaskRecord) -> None:
        with self._lock:
            self._tasks.pop(rec.task.id, None)
        self._dirty.discard(rec.task.id)
        self._store.delete_task(rec.task.id)
        self._removed[rec.task.id] = rec.status
        while len(self._removed) > TOMBSTONES:
            self._removed.popitem(last=False)
        self._log.debug("task.removed", **_keys(rec.task))

    def _recover(self, rec: TaskRecord) -> None:
        if not (S.STARTING <= rec.status.state <= S.RUNNING):
            return
        try:
            known = self._rt.adopt(rec.task.id)
        except WorkerError as e:
            self._log.warning("task.adopt_failed", error=str(e), **_keys(rec.task))
            known = False
        self._log.info("task.adopt", adopted=known, **_keys(rec.task))
        if known and rec.check is not None:  # probe it again; RUNNING means it was healthy
            was = H.HEALTHY if rec.status.state == S.RUNNING else H.STARTING
            rec.started, rec.start_pid = True, rec.status.pid
            rec.health = H.initial(rec.check, self._clock.monotonic(), was)
            return
        new = C.recover(rec.status.state, known, self._clock.now())
        if new is not None:
            self._observe(rec, new)

    def _observe(self, rec: TaskRecord, st: pb.TaskStatus) -> None:
        """Record a new observed status: forward only, persisted, then queued for report."""
        if not S.is_forward(rec.status.state, st.state):
            return
        if not st.pid and rec.status.pid and not S.is_terminal(st.state):
            st.pid = rec.status.pid
        if rec.check is not None and not st.health and st.state >= S.STARTING:
            st.health = rec.health.status if rec.health is not None else H.STARTING
        rec.status = st
        self._store.put_status(rec.task.id, st)
        self._reporter.add(rec.task.id, st)
        level = "info" if S.is_terminal(st.state) else "debug"
        getattr(self._log, level)(
            "task.state", state=S.name(st.state), message=st.err or st.message, **_keys(rec.task)
        )

    def close(self) -> None:
        for pool in (self._pool, self._probe_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def _keys(task: pb.Task) -> dict[str, Any]:
    return {"task.id": task.id, "service.name": task.service_name, "task.slot": task.slot}
