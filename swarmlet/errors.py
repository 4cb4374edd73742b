"""Error hierarchy of the swarmlet package; converted to exit codes / gRPC codes at the edges."""

from __future__ import annotations


class SwarmletError(Exception):
    """Base of every error a user may see; str() is one line."""


class SpecError(SwarmletError):
    """Bad input: names the field and the problem ("replicas: must be >= 0")."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(SwarmletError):
    """An object named by the user does not exist."""


class Conflict(SwarmletError):
    """The request conflicts with the current state (duplicate name, stale version)."""


class NoDaemon(SwarmletError):
    """No node daemon answers on the local control socket."""


class NotManager(SwarmletError):
    """The local node is a worker; the request needs a manager."""


class Unavailable(SwarmletError):
    """The cluster cannot serve the request now (no leader, shutting down)."""
