"""Value types the scheduler consumes and returns.

The manager converts its store objects into `NodeInfo` and `TaskRequest`; the scheduler
answers with a `ScheduleResult`. Resources are integers: cpu in nano-cpus (1e9 = 1 CPU),
memory in bytes. `NodeView` is the read-only shape the filters need, satisfied both by
`NodeInfo` and by the scheduler's internal, mutable per-call node state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from scheduler.errors import SchedulerError

ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")


class NodeView(Protocol):
    """What a filter may read about a node."""

    @property
    def id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def availability(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def os(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def cpu_capacity(self) -> int: ...
    @property
    def mem_capacity(self) -> int: ...
    @property
    def cpu_reserved(self) -> int: ...
    @property
    def mem_reserved(self) -> int: ...
    @property
    def service_tasks(self) -> Mapping[str, int]: ...
    @property
    def total_tasks(self) -> int: ...


def _non_negative(owner: str, **values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise SchedulerError(f"{owner}: {name} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the scheduler sees it: identity, health, capacity and what already runs."""

    id: str
    hostname: str
    role: str
    ready: bool
    availability: str
    labels: Mapping[str, str]
    os: str
    arch: str
    cpu_capacity: int
    mem_capacity: int
    cpu_reserved: int = 0
    mem_reserved: int = 0
    service_tasks: Mapping[str, int] = field(default_factory=dict)
    total_tasks: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SchedulerError(f"node {self.id}: role must be manager or worker")
        if self.availability not in AVAILABILITIES:
            raise SchedulerError(f"node {self.id}: availability must be active, pause or drain")
        _non_negative(
            f"node {self.id}",
            cpu_capacity=self.cpu_capacity,
            mem_capacity=self.mem_capacity,
            cpu_reserved=self.cpu_reserved,
            mem_reserved=self.mem_reserved,
            total_tasks=self.total_tasks,
        )


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task to place. Tasks of a service with identical requirements form a group."""

    id: str
    service_id: str
    cpu: int = 0
    mem: int = 0
    constraints: tuple[str, ...] = ()
    max_replicas_per_node: int = 0
    preferences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "constraints", tuple(self.constraints))
        object.__setattr__(self, "preferences", tuple(self.preferences))
        _non_negative(
            f"task {self.id}",
            cpu=self.cpu,
            mem=self.mem,
            max_replicas_per_node=self.max_replicas_per_node,
        )


@dataclass(frozen=True, slots=True)
class Placement:
    """Task `task_id` goes to node `node_id`."""

    task_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """Placements in decision order, and a human reason for every task left unplaced."""

    placements: list[Placement]
    unplaced: dict[str, str]
