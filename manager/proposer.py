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
        self, raft: Submitter, clock: Clock, max_batch: int = 4000, max_inflight: int = 4
    ) -> None:
        self._raft = raft
        self._clock = clock
        self._max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._slots = threading.Semaphore(max_inflight)
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
            self._queue.put((commands, fut))
        return fut

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
        first = self._queue.get()
        if first is None:
            return None
        items, count = [first], len(first[0])
        while count < self._max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            items.append(nxt)
            count += len(nxt[0])
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
