"""Runtime test doubles and helpers for worker tests.

StubRuntime: the sim runtime with a count of every call, so tests can check that the
agent never starts a task twice, shuts each down once, etc. `kill_process_tasks` and
`pid_alive` let tests clean up after the process runtime: every test that starts real
processes kills them all in its teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker.runtime.base import ExitInfo, RuntimeState
from worker.runtime.sim import SimRuntime


class StubRuntime(SimRuntime):
    """SimRuntime that counts calls per (method, task id)."""

    name = "sim"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._count_lock = threading.Lock()

    def _count(self, method: str, task_id: str) -> None:
        with self._count_lock:
            self.calls[(method, task_id)] += 1

    def count(self, method: str) -> int:
        """Calls of `method` over all tasks."""
        with self._count_lock:
            return sum(n for (m, _), n in self.calls.items() if m == method)

    def prepare(self, task: pb.Task) -> None:
        self._count("prepare", task.id)
        super().prepare(task)

    def start(self, task_id: str) -> int:
        self._count("start", task_id)
        return super().start(task_id)

    def wait(self, task_id: str, timeout: float) -> ExitInfo | None:
        self._count("wait", task_id)
        return super().wait(task_id, timeout)

    def shutdown(self, task_id: str, grace_s: float) -> None:
        self._count("shutdown", task_id)
        super().shutdown(task_id, grace_s)

    def remove(self, task_id: str) -> None:
        self._count("remove", task_id)
        super().remove(task_id)

    def inspect(self, task_id: str) -> RuntimeState | None:
        self._count("inspect", task_id)
        return super().inspect(task_id)

    def logs(self, task_id: str) -> Iterator[str]:
        self._count("logs", task_id)
        return super().logs(task_id)

    def adopt(self, task_id: str) -> bool:
        self._count("adopt", task_id)
        return super().adopt(task_id)


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def kill_process_tasks(runtime_dir: Path) -> None:
    """SIGKILL the process group of every task with a pid file under a process runtime's
    state directory."""
    for pid_file in Path(runtime_dir).glob("*/pid.json"):
        try:
            pid = int(json.loads(pid_file.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
