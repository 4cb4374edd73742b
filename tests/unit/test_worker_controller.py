"""The task state table (worker.controller) as tables: no threads, no runtime."""

from __future__ import annotations

import pytest

from swarmlet import states as S
from worker import controller as C
from worker.controller import Facts, Op
from worker.runtime.base import EXIT_UNKNOWN, ExitInfo

R = S.RUNNING

# (observed, desired, listed) -> (op, state reached)
STEPS = [
    # the start chain
    (S.ASSIGNED, R, True, Op.REPORT, S.ACCEPTED),
    (S.ACCEPTED, R, True, Op.REPORT, S.PREPARING),
    (S.PREPARING, R, True, Op.PREPARE, S.STARTING),
    (S.STARTING, R, True, Op.START, S.RUNNING),
    (S.RUNNING, R, True, Op.POLL, 0),
    # desired only this far
    (S.ASSIGNED, S.ASSIGNED, True, Op.NONE, 0),
    (S.ACCEPTED, S.PREPARING, True, Op.REPORT, S.PREPARING),
    (S.PREPARING, S.PREPARING, True, Op.NONE, 0),
    # stop requested: desired SHUTDOWN / REMOVE, or absent from the set
    (S.ASSIGNED, S.SHUTDOWN, True, Op.SHUTDOWN, S.SHUTDOWN),
    (S.PREPARING, S.REMOVE, True, Op.SHUTDOWN, S.SHUTDOWN),
    (S.RUNNING, S.SHUTDOWN, True, Op.SHUTDOWN, S.SHUTDOWN),
    (S.RUNNING, S.REMOVE, True, Op.SHUTDOWN, S.SHUTDOWN),
    (S.RUNNING, R, False, Op.SHUTDOWN, S.SHUTDOWN),
    (S.STARTING, R, False, Op.SHUTDOWN, S.SHUTDOWN),
    # terminal: kept while listed, removed once the manager no longer lists it
    (S.COMPLETE, R, True, Op.NONE, 0),
    (S.FAILED, S.SHUTDOWN, True, Op.NONE, 0),
    (S.SHUTDOWN, S.REMOVE, True, Op.NONE, 0),
    (S.REJECTED, R, True, Op.NONE, 0),
    (S.SHUTDOWN, S.SHUTDOWN, False, Op.REMOVE, 0),
    (S.FAILED, R, False, Op.REMOVE, 0),
    (S.COMPLETE, R, False, Op.REMOVE, 0),
    (S.REJECTED, R, False, Op.REMOVE, 0),
]


@pytest.mark.parametrize(("observed", "desired", "listed", "op", "state"), STEPS)
def test_next_step(observed: int, desired: int, listed: bool, op: Op, state: int) -> None:
    step = C.next_step(Facts(observed, desired, listed))
    assert step.op is op
    assert step.state == state
    if op is not Op.NONE and state:
        assert state > observed  # forward only


def test_start_waits_for_not_before() -> None:
    step = C.next_step(Facts(S.STARTING, R, True, now=100.0, not_before=105.0))
    assert (step.op, step.wake_at) == (Op.NONE, 105.0)
    assert C.next_step(Facts(S.STARTING, R, True, now=105.0, not_before=105.0)).op is Op.START


def test_walking_the_chain_only_moves_forward() -> None:
    observed, seen = S.ASSIGNED, []
    while True:
        step = C.next_step(Facts(observed, R, True))
        if step.op is Op.POLL:
            break
        assert step.state > observed
        observed = step.state
        seen.append(observed)
    assert seen == [S.ACCEPTED, S.PREPARING, S.STARTING, S.RUNNING]


EXITS = [
    (ExitInfo(0), S.COMPLETE, "", 0),
    (ExitInfo(3), S.FAILED, "exit 3", 3),
    (ExitInfo(137, oom=True), S.FAILED, "exit 137 (out of memory)", 137),
    (ExitInfo(143, message="killed by SIGTERM"), S.FAILED, "exit 143", 143),
    (ExitInfo(0, oom=True), S.FAILED, "exit 0 (out of memory)", 0),
]


@pytest.mark.parametrize(("info", "state", "err", "code"), EXITS)
def test_exited(info: ExitInfo, state: int, err: str, code: int) -> None:
    st = C.exited(info, 1.0)
    assert (st.state, st.err, st.has_exit_code, st.exit_code) == (state, err, True, code)
    assert st.timestamp == 1.0


def test_exit_code_lost() -> None:
    msg = "exit status lost across agent restart"
    st = C.exited(ExitInfo(EXIT_UNKNOWN, False, msg), 1.0)
    assert (st.state, st.err, st.has_exit_code) == (S.FAILED, msg, False)


def test_failure_statuses() -> None:
    assert C.rejected("no command given", 1).state == S.REJECTED
    assert C.rejected("no command given", 1).err == "no command given"
    assert C.start_failed("boom", 1).state == S.FAILED
    st = C.shut_down(ExitInfo(143), 1)
    assert (st.state, st.exit_code, st.has_exit_code) == (S.SHUTDOWN, 143, True)
    assert not C.shut_down(None, 1).has_exit_code


RECOVER = [
    (S.STARTING, True, S.RUNNING),
    (S.STARTING, False, None),
    (S.RUNNING, True, None),
    (S.RUNNING, False, S.FAILED),
    (S.PREPARING, False, None),
    (S.COMPLETE, True, None),
]


@pytest.mark.parametrize(("observed", "known", "state"), RECOVER)
def test_recover(observed: int, known: bool, state: int | None) -> None:
    st = C.recover(observed, known, 1.0)
    assert (st.state if st is not None else None) == state
