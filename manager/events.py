"""Store change events: what listeners (leader loop, dispatcher) learn after each batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One object changed: kind is service|task|node|cluster|network|secret|config; op is
    create|update|remove, or for task status reports "progress" (still running or on its
    way) or "ended"."""

    kind: str
    id: str
    op: str


Listener = Callable[[list[Event]], None]
