"""The runtime interface: how the agent runs one task, container-shaped.

A runtime owns everything about a task's execution (process, container, log file, pid
file) under its state directory, keyed by task id. The agent drives it one step at a
time: prepare -> start -> wait (polled) -> shutdown -> remove; after an agent restart it
calls `adopt` to find out which tasks are still known. Implementations: `process`
(a child process), `sim` (no process at all), later `runc`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RuntimeFailure

# ExitInfo.exit_code when the code cannot be known (the process ended while no agent was
# its parent). Known codes are >= 0: a death by signal N is reported as 128 + N.
EXIT_UNKNOWN = -1

# Default stop grace period when the spec gives none (Docker's default).
DEFAULT_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a task's main process ended."""

    exit_code: int
    oom: bool = False
    message: str = ""

    @property
    def code_known(self) -> bool:
        return self.exit_code >= 0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe: its exit code (None when it timed out) and its output."""

    exit_code: int | None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class RuntimeState:
    """What the runtime knows about a task right now."""

    running: bool
    pid: int = 0
    exit: ExitInfo | None = None


class Runtime(abc.ABC):
    """Runs tasks. Methods are safe to call from several threads for different tasks."""

    name: str = ""
    # True when prepare/start/shutdown/remove may block (the agent then runs them on a
    # small thread pool); False for runtimes whose every call returns at once (sim).
    blocking: bool = True
    # How often the agent polls wait(task_id, 0) for a running task, in seconds.
    poll_interval_s: float = 0.1

    @abc.abstractmethod
    def prepare(self, task: pb.Task) -> None:
        """Make everything ready to start the task; RejectError if it can never run."""

    @abc.abstractmethod
    def start(self, task_id: str) -> int:
        """Start a prepared task; returns its pid, or 0 when there is none."""

    @abc.abstractmethod
    def wait(self, task_id: str, timeout: float) -> ExitInfo | None:
        """The task's exit, or None if it is still running after `timeout` seconds."""

    @abc.abstractmethod
    def shutdown(self, task_id: str, grace_s: float) -> None:
        """Send the stop signal, then SIGKILL after `grace_s`; returns once it has stopped."""

    @abc.abstractmethod
    def remove(self, task_id: str) -> None:
        """Kill the task if needed and forget everything about it; idempotent."""

    @abc.abstractmethod
    def inspect(self, task_id: str) -> RuntimeState | None:
        """Current facts about a task, or None if the runtime does not know it."""

    @abc.abstractmethod
    def logs(self, task_id: str) -> Iterator[str]:
        """The task's output lines, oldest first (empty when there is none)."""

    @abc.abstractmethod
    def adopt(self, task_id: str) -> bool:
        """After an agent restart: True if this task was started here and is still known
        (running, or ended with whatever exit information survived)."""

    def probe(self, task_id: str, argv: list[str], timeout_s: float) -> ProbeResult:
        """Run a health probe command for a running task (inside its container, where
        there is one) and return how it ended; blocks up to `timeout_s`."""
        raise RuntimeFailure(f"the {self.name} runtime cannot run health checks")

    def next_check(self, task_id: str, now: float) -> float | None:
        """Monotonic time at which wait(task_id, 0) should next be asked, or None if the
        task can only change through shutdown (no polling needed)."""
        return now + self.poll_interval_s

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release runtime-wide resources; running tasks keep running."""


def task_argv(task: pb.Task) -> list[str]:
    """The command line a task asks for: container command followed by args."""
    return list(task.spec.container.command) + list(task.spec.container.args)


def grace_period(task: pb.Task) -> float:
    """The task's stop grace period in seconds."""
    g = task.spec.container.stop_grace_period_s
    return g if g > 0 else DEFAULT_GRACE_S
