"""worker.state: the sqlite store of assignments and statuses, and the reporter/backoff."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from worker.reporter import Reporter
from worker.session import Backoff
from worker.state import StateStore


def _task(tid: str, desired: int = S.RUNNING) -> pb.Task:
    t = pb.Task(id=tid, service_name="web", slot=2, desired_state=desired)  # type: ignore[arg-type]
    t.spec.container.command.extend(["sh", "-c", "true"])
    return t


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "w" / "worker.db"
    store = StateStore(db)
    store.put_task(_task("a"))
    store.put_task(_task("b"))
    store.put_status("a", pb.TaskStatus(state=S.RUNNING, message="started", pid=42))
    store.put_task(_task("a", S.SHUTDOWN))  # desired changes; status is kept
    store.set_meta("managers", '["m1:2377"]')
    store.close()

    store = StateStore(db)
    loaded = {s.task.id: s for s in store.load()}
    assert set(loaded) == {"a", "b"}
    a = loaded["a"]
    assert a.task.desired_state == S.SHUTDOWN
    assert list(a.task.spec.container.command) == ["sh", "-c", "true"]
    assert a.status is not None and (a.status.state, a.status.pid) == (S.RUNNING, 42)
    assert loaded["b"].status is None
    assert store.get_meta("managers") == '["m1:2377"]'
    assert store.get_meta("nope") is None
    store.delete_task("a")
    assert [s.task.id for s in store.load()] == ["b"]
    store.close()


def test_wal_mode(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "worker.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_transaction_rolls_back_on_error() -> None:
    store = StateStore(":memory:")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_task(_task("a"))
        with store.transaction():
            store.put_task(_task("b"))
        raise RuntimeError("boom")
    assert store.load() == []
    with store.transaction():
        store.put_task(_task("c"))
    assert [s.task.id for s in store.load()] == ["c"]


def test_reporter_coalesces_and_rate_limits() -> None:
    r = Reporter(interval_s=0.05)
    assert r.take(0.0) is None and r.due_at() is None
    r.add("a", pb.TaskStatus(state=S.ACCEPTED))
    first = r.take(10.0)  # first change after idle goes at once
    assert first is not None and [u.task_id for u in first.updates] == ["a"]
    r.add("a", pb.TaskStatus(state=S.PREPARING))
    r.add("b", pb.TaskStatus(state=S.ACCEPTED))
    r.add("a", pb.TaskStatus(state=S.RUNNING))
    assert r.take(10.01) is None  # within 50 ms of the last batch
    assert r.due_at() == pytest.approx(10.05)
    batch = r.take(10.05)
    assert batch is not None
    assert [(u.task_id, u.status.state) for u in batch.updates] == [
        ("a", S.RUNNING),
        ("b", S.ACCEPTED),
    ]
    assert len(r) == 0
    r.add("c", pb.TaskStatus(state=S.ACCEPTED))
    assert r.take(10.06, force=True) is not None


def test_backoff_doubles_to_cap_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=8.0, jitter=0.0)
    seq = [round(b.next(), 3) for _ in range(9)]
    assert seq == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 8.0, 8.0]
    b.reset()
    assert b.next() == 0.1


def test_backoff_jitter_only_shortens() -> None:
    b = Backoff(initial=1.0, maximum=1.0, jitter=0.2, rng=random.Random(7))
    for _ in range(50):
        assert 0.8 <= b.next() <= 1.0
