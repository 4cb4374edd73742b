"""`swarm init --force-new-cluster`: one surviving manager becomes a one-manager cluster.

When a majority of the managers is lost for good, no write can commit again. As Swarm
does, the operator runs `swarm init --force-new-cluster` on a surviving manager (its
daemon stopped). This module, offline:

1. rebuilds the store from the manager's own Raft files: the last snapshot pysyncobj
   wrote (`raft.dump`) and then every store entry in the journal after it, including
   entries that may not have committed (the survivor's log is all there is);
2. takes every other manager out of the cluster's managers (role worker, down, no
   manager status), so the new Raft group is this manager alone;
3. sets the old Raft directory aside (`raft.before-force-new-cluster.<n>`, nothing is
   deleted) and writes the recovered store to `recovered.pb`.

The manager then starts a fresh Raft group whose initial state is `recovered.pb` (see
`initial_state`) and snapshots it as soon as it leads, so that from then on the state
lives in Raft's own files and managers that join catch up from that snapshot.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

from pysyncobj.journal import FileJournal  # type: ignore

from manager.errors import ManagerError
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb

RECOVERED_FILE = "recovered.pb"
_REGULAR = 0  # pysyncobj's command type byte for replicated method calls


class RecoveryError(ManagerError):
    """The manager's Raft files cannot be read back into a store."""


def read_raft_state(raft_dir: Path) -> Store:
    """The store as this manager's snapshot and journal leave it."""
    store = Store()
    applied = 0
    dump = raft_dir / "raft.dump"
    if dump.exists():
        try:
            with gzip.open(dump, "rb") as f:
                data, last_entry, _prev, _cluster = pickle.load(f)  # noqa: S301 (own file)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
            raise RecoveryError(f"cannot read the raft snapshot {dump}: {e}") from e
        store.restore(data[1])  # data = [pysyncobj's own fields, the store consumer's]
        applied = int(last_entry[1])
    journal = raft_dir / "raft.journal"
    if journal.exists():
        for command, idx, _term in FileJournal(str(journal)):
            if idx <= applied or not command or command[0] != _REGULAR:
                continue  # already in the snapshot, or a no-op / membership entry
            _func, args = pickle.loads(command[1:])[:2]  # noqa: S301 (own file)
            store.apply_batch(pb.CommandBatch.FromString(args[0]))
    return store


def sole_manager(store: Store, node_id: str, now: float) -> None:
    """Every manager but `node_id` leaves the managers (as Swarm's force-new-cluster)."""
    if node_id not in store.nodes:
        raise RecoveryError(f"node {node_id} is not in its own store")
    for n in store.all_nodes():
        if n.id == node_id or n.role != pb.MANAGER:
            continue
        new = pb.Node()
        new.CopyFrom(n)
        new.role = pb.WORKER
        new.spec.desired_role = pb.WORKER
        new.ClearField("manager_status")
        new.status.state = pb.DOWN
        new.status.message = "removed from the managers by swarm init --force-new-cluster"
        new.status.timestamp = now
        result = store.apply_batch(pb.CommandBatch(
            timestamp=now, commands=[pb.Command(update_node=new)]))
        if not result.results[0].ok:
            raise RecoveryError(f"cannot demote manager {n.id}: {result.results[0].error}")


def force_new_cluster(data_dir: Path, node_id: str, now: float) -> Store:
    """Rebuild, demote the others, set the old Raft files aside, write recovered.pb."""
    raft_dir = data_dir / "raft"
    store = read_raft_state(raft_dir)
    if store.cluster is None:
        raise RecoveryError(f"no cluster state in {raft_dir}: is this a manager's data dir?")
    sole_manager(store, node_id, now)
    tmp = data_dir / (RECOVERED_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(store.snapshot())
        f.flush()
        os.fsync(f.fileno())
    n = 1
    while (data_dir / f"raft.before-force-new-cluster.{n}").exists():
        n += 1
    if raft_dir.exists():
        raft_dir.rename(data_dir / f"raft.before-force-new-cluster.{n}")
    os.replace(tmp, data_dir / RECOVERED_FILE)
    return store


def initial_state(data_dir: Path, store: Store) -> bool:
    """Before Raft starts: load recovered.pb into the store when Raft has no snapshot of
    its own yet (its journal, if any, then replays on top of it). True if loaded."""
    rec = data_dir / RECOVERED_FILE
    if (data_dir / "raft" / "raft.dump").exists():
        settled(data_dir)
        return False
    if not rec.exists():
        return False
    store.restore(rec.read_bytes())
    return True


def settled(data_dir: Path) -> None:
    """Once Raft has its own snapshot, recovered.pb is no longer needed."""
    rec = data_dir / RECOVERED_FILE
    if rec.exists() and (data_dir / "raft" / "raft.dump").exists():
        rec.unlink()
