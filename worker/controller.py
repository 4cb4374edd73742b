"""The task state table: pure decisions about what to do next with one task.

No threads, no sleeps, no I/O: given the last observed state, the desired state and a
few facts, `next_step` says which runtime operation comes next and which observed state
it leads to; the other functions turn runtime outcomes into TaskStatus values. The agent
(the imperative shell) executes the steps.

    ASSIGNED -> ACCEPTED -> PREPARING --prepare--> STARTING --start--> RUNNING
    RUNNING --exit 0--> COMPLETE,  --exit N--> FAILED
    error in prepare -> REJECTED;  error in start -> FAILED (REJECTED if the runtime says so)
    desired > RUNNING or no longer listed -> shutdown -> SHUTDOWN
    with a health check: started stays STARTING (polled) until healthy -> RUNNING;
    unhealthy -> shutdown -> FAILED "unhealthy: <probe output>"
    terminal and no longer listed -> remove (and forget)

Observed state only moves forward: every transition produced here is to a higher state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from worker.runtime.base import ExitInfo


class Op(enum.Enum):
    NONE = "none"  # nothing to do until something changes (or wake_at)
    REPORT = "report"  # move to `state` without touching the runtime
    PREPARE = "prepare"  # runtime.prepare, then `state` (STARTING); RejectError -> REJECTED
    START = "start"  # runtime.start, then `state` (RUNNING); error -> FAILED
    POLL = "poll"  # running: ask runtime.wait(task, 0) for an exit
    SHUTDOWN = "shutdown"  # runtime.shutdown, then SHUTDOWN
    REMOVE = "remove"  # runtime.remove, then forget the task


@dataclass(frozen=True, slots=True)
class Facts:
    """What the agent knows about one task."""

    observed: int
    desired: int
    listed: bool = True  # present in the manager's latest assignment set
    now: float = 0.0  # wall clock, compared with not_before
    not_before: float = 0.0  # restart delay: do not start before this time
    started: bool = False  # started but held in STARTING until its health check passes
    unhealthy: str | None = None  # the health check failed: this is the error text


@dataclass(frozen=True, slots=True)
class Step:
    op: Op
    state: int = 0  # observed state reached when the step succeeds
    message: str = ""
    wake_at: float = 0.0  # Op.NONE only: wall-clock time worth looking again (0 = never)


NOTHING = Step(Op.NONE)

# The start chain: from observed state -> (op, state reached, message).
# Anything below ACCEPTED (ASSIGNED) first reports ACCEPTED.
_CHAIN: dict[int, tuple[Op, int, str]] = {
    S.ACCEPTED: (Op.REPORT, S.PREPARING, "preparing"),
    S.PREPARING: (Op.PREPARE, S.STARTING, "starting"),
    S.STARTING: (Op.START, S.RUNNING, "started"),
}


def wants_stop(f: Facts) -> bool:
    """The manager wants this task stopped (or has forgotten it)."""
    return not f.listed or f.desired > S.RUNNING


def next_step(f: Facts) -> Step:
    """The next thing to do with a task, from its facts alone."""
    if S.is_terminal(f.observed):
        return NOTHING if f.listed else Step(Op.REMOVE)
    if wants_stop(f):
        return Step(Op.SHUTDOWN, S.SHUTDOWN, "shutdown")
    if f.unhealthy is not None:
        return Step(Op.SHUTDOWN, S.FAILED, f.unhealthy)
    if f.observed == S.RUNNING or (f.started and f.observed == S.STARTING):
        return Step(Op.POLL)
    op, state, msg = _CHAIN.get(int(f.observed), (Op.REPORT, int(S.ACCEPTED), "accepted"))
    if state > f.desired:
        return NOTHING  # the manager wants it only this far (for now)
    if op is Op.START and f.now < f.not_before:
        return Step(Op.NONE, wake_at=f.not_before)
    return Step(op, state, msg)


# ---------------------------------------------------------------------- statuses


def status(
    state: int,
    message: str,
    now: float,
    *,
    err: str = "",
    exit_code: int | None = None,
    pid: int = 0,
    health: str = "",
    oom_killed: bool = False,
) -> pb.TaskStatus:
    """A TaskStatus value (timestamped with `now`)."""
    st = pb.TaskStatus(
        timestamp=now, state=state, message=message, err=err, pid=pid,  # type: ignore[arg-type]
        health=health, oom_killed=oom_killed,
    )
    if exit_code is not None:
        st.exit_code = exit_code
        st.has_exit_code = True
    return st


def rejected(err: str, now: float) -> pb.TaskStatus:
    """prepare (or start) found the task cannot run here."""
    return status(S.REJECTED, "rejected", now, err=err)


def start_failed(err: str, now: float) -> pb.TaskStatus:
    return status(S.FAILED, "starting failed", now, err=err)


def exit_text(info: ExitInfo) -> str:
    """ "exit 3", "exit 137 (out of memory)"; the runtime's message when the code is lost."""
    if not info.code_known:
        return info.message or "exit status unknown"
    return f"exit {info.exit_code}" + (" (out of memory)" if info.oom else "")


def exited(info: ExitInfo, now: float) -> pb.TaskStatus:
    """A running task's main process ended by itself."""
    if info.code_known and info.exit_code == 0 and not info.oom:
        return status(S.COMPLETE, "finished", now, exit_code=0)
    text = exit_text(info)
    code = info.exit_code if info.code_known else None
    detail = f"{text}: {info.message}" if info.code_known and info.message else text
    return status(S.FAILED, detail, now, err=text, exit_code=code, oom_killed=info.oom)


def unhealthy(err: str, info: ExitInfo | None, now: float) -> pb.TaskStatus:
    """The task was stopped because its health check failed."""
    code = info.exit_code if info is not None and info.code_known else None
    return status(S.FAILED, err, now, err=err, exit_code=code, health="unhealthy")


def shut_down(info: ExitInfo | None, now: float) -> pb.TaskStatus:
    """The task was stopped on the manager's request."""
    code = info.exit_code if info is not None and info.code_known else None
    return status(S.SHUTDOWN, "shutdown", now, exit_code=code)


def recover(observed: int, started_here: bool, now: float) -> pb.TaskStatus | None:
    """After an agent restart: the status a reloaded task moves to, given whether the
    runtime still knows it as started (`Runtime.adopt`), or None to leave it as it was.

    STARTING + known  -> RUNNING (it was started just before the agent went away)
    STARTING + unknown -> stays STARTING (start() runs again)
    RUNNING + unknown -> FAILED (the runtime lost it)
    """
    if observed == S.STARTING and started_here:
        return status(S.RUNNING, "started (adopted after agent restart)", now)
    if observed == S.RUNNING and not started_here:
        return status(S.FAILED, "task lost across agent restart", now, err="task lost")
    return None
