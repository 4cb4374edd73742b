"""Error hierarchy of the manager package; servicers turn these into gRPC status codes."""

from __future__ import annotations

from swarmlet.errors import SwarmletError


class ManagerError(SwarmletError):
    """Base of manager errors."""


class Rejected(ManagerError):
    """A store command no longer fits the current state and was not applied."""


class NotLeader(ManagerError):
    """This manager cannot commit writes now (no leader reachable)."""


class ProposalTimeout(ManagerError):
    """A write was not committed in time."""
