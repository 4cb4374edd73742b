"""Raft replication of the store through pysyncobj, with a journal on disk.

The replicated method is a one-line call into `Store.apply_batch`; snapshots are the
store's own protobuf snapshot. Raft traffic is encrypted and authenticated with the
cluster's raft secret (pysyncobj's `password`), so nothing unauthenticated is unpickled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated  # type: ignore
from pysyncobj.syncobj import _RAFT_STATE  # type: ignore

from manager.errors import NotLeader
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb


class StoreConsumer(SyncObjConsumer):  # type: ignore[misc]
    """The replicated part: batches in, per-command results out."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    @replicated  # type: ignore[misc]
    def apply(self, data: bytes) -> bytes:
        return bytes(self.store.apply_batch(pb.CommandBatch.FromString(data)).SerializeToString())

    def _serialize(self) -> bytes:
        return self.store.snapshot()

    def _deserialize(self, data: Any) -> None:
        self.store.restore(data)


MAX_APPEND_BYTES = 8 * 1024 * 1024
MAX_ENTRY_BYTES = 512 * 1024


@dataclass
class RaftSettings:
    """Timing knobs; defaults from DESIGN.md section 9 (leader fallback lowered to seconds)."""

    min_timeout: float = 0.4
    max_timeout: float = 1.2
    append_entries_period: float = 0.05
    leader_fallback: float = 4.0
    tick_period: float = 0.01
    compaction_min_entries: int = 5000
    compaction_min_time: float = 60.0


class RaftNode:
    """One manager's Raft member, owning the pysyncobj instance."""

    def __init__(
        self,
        store: Store,
        self_addr: str,
        peers: list[str],
        state_dir: Path,
        secret: str,
        on_state_change: Callable[[bool], None] | None = None,
        settings: RaftSettings | None = None,
    ) -> None:
        s = settings or RaftSettings()
        state_dir.mkdir(parents=True, exist_ok=True)
        self._on_state_change = on_state_change
        conf = SyncObjConf(
            password=secret,
            journalFile=str(state_dir / "raft.journal"),
            fullDumpFile=str(state_dir / "raft.dump"),
            dynamicMembershipChange=True,
            raftMinTimeout=s.min_timeout,
            raftMaxTimeout=s.max_timeout,
            appendEntriesPeriod=s.append_entries_period,
            leaderFallbackTimeout=s.leader_fallback,
            autoTickPeriod=s.tick_period,
            logCompactionMinEntries=s.compaction_min_entries,
            logCompactionMinTime=s.compaction_min_time,
            onStateChanged=self._state_changed,
            commandsWaitLeader=False,
            bindAddress=self_addr,
            # pysyncobj 0.3.17 splits an entry larger than this into chunks and ends the
            # split too early (it compares the pickled entry's offset against the raw
            # command's length), so a follower fails to unpickle it. Entries stay far
            # below this size (Proposer.max_bytes), so they are never split.
            appendEntriesBatchSizeBytes=MAX_APPEND_BYTES,
        )
        self.consumer = StoreConsumer(store)
        self.sync = SyncObj(self_addr, peers, conf, consumers=[self.consumer])
        self.self_addr = self_addr
        self._membership_lock = threading.Lock()
        self._pending_change: threading.Event | None = None

    def _state_changed(self, old: int, new: int) -> None:
        if self._on_state_change is not None:
            self._on_state_change(new == _RAFT_STATE.LEADER)

    def submit(self, data: bytes, callback: Callable[[Any, Any], None]) -> None:
        """Propose one batch; callback(result_bytes, error) runs once it commits or fails."""
        self.consumer.apply(data, callback=callback)

    def is_leader(self) -> bool:
        return bool(self.sync._isLeader())

    def leader(self) -> str | None:
        node = self.sync._getLeader()
        return None if node is None else str(node.id if hasattr(node, "id") else node)

    def status(self) -> dict[str, Any]:
        return dict(self.sync.getStatus())

    def members(self) -> tuple[int, int]:
        """(reachable, total) Raft members as this manager sees them, itself included."""
        st = self.status()
        partners = [v for k, v in st.items() if k.startswith("partner_node_status_server_")]
        return 1 + sum(1 for v in partners if v == 2), 1 + len(partners)

    def change_membership(self, op: str, addr: str, timeout: float | None = 20.0) -> None:
        """Add or remove one Raft member and wait until the change commits (one at a time).
        With timeout None, only start the change: adding a member to a one-manager cluster
        cannot commit until the newcomer runs, so its join must not wait for it."""
        done = threading.Event()
        errors: list[Any] = []

        def cb(_result: Any, error: Any) -> None:
            errors.append(error)
            done.set()

        with self._membership_lock:
            # pysyncobj takes one membership change at a time: wait for the previous one
            prev = self._pending_change
            if prev is not None and not prev.wait(30):
                raise NotLeader("the previous raft membership change has not committed yet")
            self._pending_change = done
            if op == "add":
                self.sync.addNodeToCluster(addr, callback=cb)
            else:
                self.sync.removeNodeFromCluster(addr, callback=cb)
            if timeout is None:
                return
            if not done.wait(timeout):
                raise NotLeader(f"raft membership change ({op} {addr}) did not commit in time")
        if errors != [0]:
            raise NotLeader(f"raft membership change ({op} {addr}) failed (raft error {errors})")

    def compact(self) -> None:
        """Snapshot now, so a member that joins next catches up from the snapshot."""
        self.sync.forceLogCompaction()

    def destroy(self) -> None:
        self.sync.destroy()
