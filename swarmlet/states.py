"""Task state vocabulary shared by manager and worker: names, order, terminal checks."""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb

NEW = pb.NEW
PENDING = pb.PENDING
ASSIGNED = pb.ASSIGNED
ACCEPTED = pb.ACCEPTED
PREPARING = pb.PREPARING
STARTING = pb.STARTING
RUNNING = pb.RUNNING
COMPLETE = pb.COMPLETE
SHUTDOWN = pb.SHUTDOWN
FAILED = pb.FAILED
REJECTED = pb.REJECTED
REMOVE = pb.REMOVE
ORPHANED = pb.ORPHANED

TERMINAL = frozenset({COMPLETE, SHUTDOWN, FAILED, REJECTED, ORPHANED})


def name(state: int) -> str:
    """Lower-case state name as users see it ("running")."""
    return str(pb.TaskState.Name(state)).lower()  # type: ignore[arg-type]


def is_terminal(state: int) -> bool:
    """True once a task has stopped for good (it never runs again)."""
    return state >= COMPLETE


def is_forward(current: int, new: int) -> bool:
    """Observed states only move forward."""
    return new > current
