"""Error hierarchy of the worker package.

Runtimes raise these; the agent turns them into task states (REJECTED / FAILED) at the
edge, and logs the rest. Nothing here crosses the wire as an exception.
"""

from __future__ import annotations

from swarmlet.errors import SwarmletError


class WorkerError(SwarmletError):
    """Base of worker errors."""


class RejectError(WorkerError):
    """The task cannot run on this node as specified (empty command, command not found).

    Raised by `Runtime.prepare` (or `start`, when the runtime only finds out then); the
    task is reported REJECTED with str(error) as its message.
    """


class RuntimeFailure(WorkerError):
    """A runtime operation failed for a reason other than the task's spec."""


class TaskNotFound(WorkerError):
    """The runtime has no record of the task id."""


class StateError(WorkerError):
    """The local state database cannot be read or written."""
