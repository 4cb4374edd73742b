"""Task runtimes and the factory that picks one by name (process | sim; runc later)."""

from __future__ import annotations

from pathlib import Path

from swarmlet.clock import Clock
from worker.errors import WorkerError
from worker.runtime.base import EXIT_UNKNOWN, ExitInfo, Runtime, RuntimeState
from worker.runtime.process import ProcessRuntime
from worker.runtime.sim import SimRuntime

__all__ = [
    "EXIT_UNKNOWN",
    "ExitInfo",
    "ProcessRuntime",
    "Runtime",
    "RuntimeState",
    "SimRuntime",
    "make_runtime",
]

NAMES = ("process", "sim")


def make_runtime(
    name: str, state_dir: Path, clock: Clock, *, hostname: str | None = None
) -> Runtime:
    """The runtime called `name`, keeping its per-task state under `state_dir`.

    `hostname` is the node's hostname as tasks see it (SWARMLET_NODE_HOSTNAME)."""
    if name == "process":
        return ProcessRuntime(state_dir, clock, hostname=hostname)
    if name == "sim":
        return SimRuntime(clock)
    raise WorkerError(f"unknown runtime {name!r} (known: {', '.join(NAMES)})")
