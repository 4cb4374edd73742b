"""The worker's local memory: a sqlite3 database of assignments and observed statuses.

Holds, per task, the last assignment received from the manager (the serialized pb.Task,
its desired state) and the last observed status this node produced, plus a few meta
values (the known managers list). An agent restarting on the same state directory reads
it back to know which tasks it had and what it last reported. WAL journal, one
connection guarded by a lock; ":memory:" gives a throwaway store (sim agents).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import StateError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id      TEXT PRIMARY KEY,
    task    BLOB NOT NULL,
    desired INTEGER NOT NULL,
    status  BLOB,
    state   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredTask:
    """One task as persisted: the assignment and the last observed status (or None)."""

    task: pb.Task
    status: pb.TaskStatus | None


class StateStore:
    """Assignments and statuses of one worker, in sqlite. Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (nestable; the outermost one commits)."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN")
            self._depth += 1
            ok = False
            try:
                yield
                ok = True
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("COMMIT" if ok else "ROLLBACK")

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: {e}") from e

    def put_task(self, task: pb.Task) -> None:
        """Record (or replace) a task's assignment; keeps its observed status."""
        self._exec(
            "INSERT INTO tasks (id, task, desired) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET task=excluded.task, desired=excluded.desired",
            (task.id, task.SerializeToString(), int(task.desired_state)),
        )

    def put_status(self, task_id: str, status: pb.TaskStatus) -> None:
        """Record the last observed status of a known task."""
        self._exec(
            "UPDATE tasks SET status=?, state=? WHERE id=?",
            (status.SerializeToString(), int(status.state), task_id),
        )

    def delete_task(self, task_id: str) -> None:
        self._exec("DELETE FROM tasks WHERE id=?", (task_id,))

    def load(self) -> list[StoredTask]:
        """Every stored task, in id order."""
        with self._lock:
            rows = self._exec("SELECT task, desired, status FROM tasks ORDER BY id").fetchall()
        out = []
        for blob, desired, status_blob in rows:
            task = pb.Task.FromString(blob)
            task.desired_state = desired
            status = pb.TaskStatus.FromString(status_blob) if status_blob is not None else None
            out.append(StoredTask(task, status))
        return out

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._exec("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
