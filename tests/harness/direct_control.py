"""The control servicer without gRPC or Raft: a context whose abort raises, and a proposer
that applies each proposal straight to the store (for tests of manager/control*.py)."""

from __future__ import annotations

from typing import Any

import grpc

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """A caller that waits (no deadline) and sees the status a servicer aborts with."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True


class DirectProposer:
    def __init__(self, store: Store, timestamp: float = 100.0) -> None:
        self.store = store
        self.timestamp = timestamp
        self.commands: list[pb.Command] = []

    def propose(self, cmds: list[pb.Command], **_kw: Any) -> list[pb.CommandResult]:
        self.commands.extend(cmds)
        batch = pb.CommandBatch(commands=cmds, timestamp=self.timestamp)
        return list(self.store.apply_batch(batch).results)


def call(control: Any, method: str, request: Any) -> Any:
    return getattr(control, method)(request, Context())
