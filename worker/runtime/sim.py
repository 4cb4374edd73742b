"""Sim runtime: tasks "run" with no process at all, for scale tests and benchmarks.

Hundreds of simulated workers live in one process, so a task costs a dict entry and
nothing else: no thread, no process, no file. start() returns at once; the task runs
until shut down (exit 0). Knobs, read from the task's env:
  SIM_RUN_S=<seconds>  the task exits by itself after that long (injected clock)
  SIM_EXIT=<code>      ...with that exit code (alone: exits at once with it)
  SIM_REJECT=<text>    prepare() rejects the task with that message
  SIM_UNHEALTHY=<text> every health probe fails with that output (else probes pass)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker.errors import RejectError, RuntimeFailure, TaskNotFound
from worker.runtime.base import ExitInfo, ProbeResult, Runtime, RuntimeState


@dataclass
class _SimTask:
    image: str
    run_s: float | None
    exit_code: int
    unhealthy: str | None = None
    started_at: float | None = None
    exit: ExitInfo | None = None


class SimRuntime(Runtime):
    """Simulated tasks: state in memory, time from the injected clock."""

    name = "sim"
    blocking = False

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, _SimTask] = {}

    def prepare(self, task: pb.Task) -> None:
        env: dict[str, str] = {}
        for item in task.spec.container.env:
            key, _, value = item.partition("=")
            env[key] = value
        if "SIM_REJECT" in env:
            raise RejectError(env["SIM_REJECT"] or "rejected by SIM_REJECT")
        try:
            code = int(env.get("SIM_EXIT", "0"))
            run_s = float(env["SIM_RUN_S"]) if "SIM_RUN_S" in env else None
        except ValueError as e:
            raise RejectError(f"env: bad SIM_EXIT/SIM_RUN_S: {e}") from e
        if run_s is None and "SIM_EXIT" in env:
            run_s = 0.0
        with self._lock:
            if task.id not in self._tasks:
                self._tasks[task.id] = _SimTask(task.spec.container.image, run_s, code,
                                                env.get("SIM_UNHEALTHY"))

    def start(self, task_id: str) -> int:
        with self._lock:
            t = self._get(task_id)
            if t.started_at is None:
                t.started_at = self._clock.monotonic()
        return 0

    def wait(self, task_id: str, timeout: float) -> ExitInfo | None:
        with self._lock:
            t = self._get(task_id)
            if t.started_at is None:
                raise RuntimeFailure(f"task {task_id} was never started")
            info = self._check(t)
            if info is not None or timeout <= 0:
                return info
            ends = t.started_at + t.run_s if t.run_s is not None else None
        now = self._clock.monotonic()
        if ends is not None and ends - now <= timeout:
            self._clock.sleep(max(0.0, ends - now))
        else:
            self._clock.sleep(timeout)
        with self._lock:
            return self._check(t)

    def _check(self, t: _SimTask) -> ExitInfo | None:
        if (
            t.exit is None
            and t.run_s is not None
            and t.started_at is not None
            and self._clock.monotonic() >= t.started_at + t.run_s
        ):
            t.exit = ExitInfo(t.exit_code)
        return t.exit

    def shutdown(self, task_id: str, grace_s: float) -> None:
        with self._lock:
            t = self._tasks.get(task_id)
            if t is not None and t.started_at is not None and self._check(t) is None:
                t.exit = ExitInfo(0)

    def probe(self, task_id: str, argv: list[str], timeout_s: float) -> ProbeResult:
        with self._lock:
            t = self._get(task_id)
        if t.unhealthy is not None:
            return ProbeResult(1, t.unhealthy)
        return ProbeResult(0)

    def remove(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def inspect(self, task_id: str) -> RuntimeState | None:
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None:
                return None
            info = self._check(t) if t.started_at is not None else None
            return RuntimeState(running=t.started_at is not None and info is None, exit=info)

    def logs(self, task_id: str) -> Iterator[str]:
        with self._lock:
            self._get(task_id)
        return iter(())

    def adopt(self, task_id: str) -> bool:
        with self._lock:
            t = self._tasks.get(task_id)
            return t is not None and t.started_at is not None

    def next_check(self, task_id: str, now: float) -> float | None:
        with self._lock:
            t = self._tasks.get(task_id)
            if t is None or t.exit is not None or t.started_at is None or t.run_s is None:
                return None
            return t.started_at + t.run_s

    def _get(self, task_id: str) -> _SimTask:
        t = self._tasks.get(task_id)
        if t is None:
            raise TaskNotFound(task_id)
        return t
