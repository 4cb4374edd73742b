"""The leader's reconcile loop: orchestrator, then allocator/scheduler, then propose.

Runs only while this manager leads. It wakes on store changes (debounced) and at the
earliest time a decision asked for (a restart delay expiring, an update's delay or
monitor period), and -- while a rolling update waits for new tasks -- on tasks reaching
RUNNING; it reads the store, and
proposes what the pure decision functions return. A proposal is waited for before the
next pass, so every pass sees the effects of the previous one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from manager import orchestrator
from manager.allocator import allocate
from manager.errors import ManagerError
from manager.proposer import Proposer
from manager.store import Event, Store
from swarmlet import log
from swarmlet.clock import Clock


class LeaderLoop:
    def __init__(
        self,
        store: Store,
        proposer: Proposer,
        clock: Clock,
        new_id: Callable[[], str],
        history_limit: Callable[[], int],
        strategy: str = "binpack",
        idle_period: float = 1.0,
    ) -> None:
        self._store = store
        self._proposer = proposer
        self._clock = clock
        self._new_id = new_id
        self._history_limit = history_limit
        self._strategy = strategy
        self._idle = idle_period
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log.get("leader")
        self.passes = 0
        self._watching = False  # a rolling update waits for tasks to reach RUNNING

    def on_events(self, events: list[Event]) -> None:
        # a task making progress towards RUNNING needs no decision -- unless an update
        # waits for it; anything else may
        if self._watching or any(e.op != "progress" for e in events):
            self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="leader-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        wake_at: float | None = None
        while not self._stop.is_set():
            timeout = self._idle
            if wake_at is not None:
                timeout = max(0.0, min(timeout, wake_at - self._clock.now()))
            self._wake.wait(timeout)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                wake_at = self.run_once()
            except ManagerError as e:
                self._log.warning("leader.pass_failed", error=str(e))
                self._stop.wait(0.2)
                self._wake.set()
            except Exception:
                self._log.exception("leader.pass_crashed")
                self._stop.wait(0.5)
                self._wake.set()

    def run_once(self) -> float | None:
        """One reconcile pass; returns when the next timed pass is due (or None)."""
        self.passes += 1
        now = self._clock.now()
        decision = orchestrator.reconcile(self._store, now, self._new_id, self._history_limit())
        self._watching = decision.watching
        if decision.commands:
            self._propose(decision.commands, "orchestrator")
        alloc = allocate(self._store, self._clock.now(), self._strategy)
        if alloc.commands:
            self._propose(alloc.commands, "allocator")
        times = [t for t in (decision.wake_at, alloc.wake_at) if t is not None]
        return min(times) if times else None

    def _propose(self, commands: list, source: str) -> None:  # type: ignore[type-arg]
        results = self._proposer.propose(commands, timeout=30)
        rejected = [r.error for r in results if not r.ok]
        if rejected:
            self._log.info(
                "leader.rejected", source=source, count=len(rejected), first=rejected[0]
            )
