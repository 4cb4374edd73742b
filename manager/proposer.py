"""Batching writer: many callers' commands ride in one Raft entry; every write waits.

Callers hand in lists of commands and get per-command results back once the entry
commits (or an error if it did not). At most `max_inflight` entries are in flight, so the
library's queue can never overflow and drop a command silently.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Protocol

from pysyncobj import FAIL_REASON  # type: ignore

from manager.errors import NotLeader, ProposalTimeout
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock

_Item = tuple[list[pb.Command], "Future[list[pb.CommandResult]]"]


class Submitter(Protocol):
    def submit(self, data: bytes, callback: Any) -> None: ...


class Proposer:
    def __init__(
        self,
        raft: Submitter,
        clock: Clock,
        max_batch: int = 2000,
        max_inflight: int = 4,
        max_bytes: int = 512 * 1024,
    ) -> None:
        self._max_bytes = max_bytes
        self._raft = raft
        self._clock = clock
        self._max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._slots = threading.Semaphore(max_inflight)
        self._held: _Item | None = None
        self._log = log.get("proposer")
        self._thread = threading.Thread(target=self._run, name="proposer", daemon=True)
        self._stopped = False
        self.entries = 0
        self.commands = 0
        self._thread.start()

    def propose_async(self, commands: list[pb.Command]) -> Future[list[pb.CommandResult]]:
        fut: Future[list[pb.CommandResult]] = Future()
        if not commands:
            fut.set_result([])
        elif self._stopped:
            fut.set_exception(NotLeader("manager is shutting down"))
        else:
            parts = self._split(commands)
            if len(parts) == 1:
                self._queue.put((commands, fut))
            else:
                _gather(parts, fut, self._queue)
        return fut

    def _split(self, commands: list[pb.Command]) -> list[list[pb.Command]]:
        """Chunks that each fit in one entry (count and bytes), in order."""
        parts: list[list[pb.Command]] = [[]]
        size = 0
        for c in commands:
            n = c.ByteSize()
            if parts[-1] and (len(parts[-1]) >= self._max_batch or size + n > self._max_bytes):
                parts.append([])
                size = 0
            parts[-1].append(c)
            size += n
        return parts

    def propose(self, commands: list[pb.Command], timeout: float = 10.0) -> list[pb.CommandResult]:
        """Commit commands and return one result per command (ok or the rejection)."""
        fut = self.propose_async(commands)
        try:
            return fut.result(timeout)
        except TimeoutError:
            raise ProposalTimeout(f"write not committed within {timeout:.0f}s") from None

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)

    def _take(self) -> list[_Item] | None:
        first: _Item | None
        if self._held is not None:
            first, self._held = self._held, None
        else:
            first = self._queue.get()
        if first is None:
            return None
        items, count = [first], len(first[0])
        size = sum(c.ByteSize() for c in first[0])
        while count < self._max_batch and size < self._max_bytes:
            if self._held is not None:
                nxt, self._held = self._held, None
            else:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
            if nxt is None:
                self._queue.put(None)
                break
            more = sum(c.ByteSize() for c in nxt[0])
            if size + more > self._max_bytes or count + len(nxt[0]) > self._max_batch:
                self._held = nxt  # starts the next entry
                break
            items.append(nxt)
            count += len(nxt[0])
            size += more
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            batch = pb.CommandBatch(timestamp=self._clock.now())
            for cmds, _ in items:
                batch.commands.extend(cmds)
            self._slots.acquire()
            self.entries += 1
            self.commands += len(batch.commands)
            try:
                self._raft.submit(batch.SerializeToString(), self._callback(items))
            except Exception as e:  # the library refused outright
                self._slots.release()
                for _, fut in items:
                    fut.set_exception(NotLeader(f"cannot propose: {e}"))

    def _callback(self, items: list[_Item]) -> Any:
        def done(result: Any, error: Any) -> None:
            self._slots.release()
            if error != FAIL_REASON.SUCCESS:
                exc = NotLeader(_reason(error))
                for _, fut in items:
                    fut.set_exception(exc)
                return
            results = list(pb.BatchResult.FromString(result).results)
            pos = 0
            for cmds, fut in items:
                fut.set_result(results[pos : pos + len(cmds)])
                pos += len(cmds)

        return done


def _reason(error: int) -> str:
    return {
        FAIL_REASON.MISSING_LEADER: "cluster has no leader",
        FAIL_REASON.NOT_LEADER: "this manager is not the leader",
        FAIL_REASON.LEADER_CHANGED: "leader changed before the write committed",
        FAIL_REASON.DISCARDED: "write discarded by a new leader",
        FAIL_REASON.QUEUE_FULL: "raft queue full",
    }.get(error, f"write failed (raft error {error})")


def _gather(
    parts: list[list[pb.Command]],
    fut: Future[list[pb.CommandResult]],
    q: queue.Queue[_Item | None],
) -> None:
    """Queue each part with its own future; complete `fut` with all results in order."""
    subs: list[Future[list[pb.CommandResult]]] = [Future() for _ in parts]
    remaining = [len(parts)]
    lock = threading.Lock()

    def done(_: Future[list[pb.CommandResult]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        errors = [f.exception() for f in subs if f.exception() is not None]
        if errors:
            fut.set_exception(errors[0])  # type: ignore[arg-type]
        else:
            fut.set_result([r for f in subs for r in f.result()])

    for part, sub in zip(parts, subs, strict=True):
        sub.add_done_callback(done)
        q.put((part, sub))
