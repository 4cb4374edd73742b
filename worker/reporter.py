"""Status reporting: coalesces observed-status changes into StatusBatch messages.

Changes are keyed by task (a newer status of a task replaces an unsent older one, as
SwarmKit's reporter does: the manager only needs the latest, and forward-only checks
make a skipped intermediate state harmless). A batch goes out at most every
`interval_s` (50 ms); the first change after an idle period goes out at once.
"""

from __future__ import annotations

import math

from swarmlet.api import swarmlet_pb2 as pb

MAX_BATCH = 2000  # updates per message (keeps messages far below gRPC's 4 MiB limit)


class Reporter:
    """Pending status updates of one agent. Used from the agent's loop thread only."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._pending: dict[str, pb.TaskStatus] = {}
        self._last_flush = -math.inf

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, task_id: str, status: pb.TaskStatus) -> None:
        """Queue a task's status; replaces an unsent older status of the same task."""
        self._pending[task_id] = status

    def due_at(self) -> float | None:
        """Monotonic time the next batch may go out, or None if nothing is pending."""
        if not self._pending:
            return None
        return self._last_flush + self.interval_s

    def take(self, now: float, force: bool = False) -> pb.StatusBatch | None:
        """The next batch if one is due at monotonic time `now` (or `force`), else None."""
        due = self.due_at()
        if due is None or (now < due and not force):
            return None
        ids = list(self._pending)[:MAX_BATCH]
        batch = pb.StatusBatch(
            updates=[pb.TaskStatusUpdate(task_id=i, status=self._pending.pop(i)) for i in ids]
        )
        self._last_flush = now
        return batch
