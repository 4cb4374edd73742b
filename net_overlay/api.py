"""The seam between the worker and the data plane.

The agent hands every `Assignments` message to `update` (before it applies the task
changes, so a task that is to stop has already left the load-balancing maps); a container
runtime calls `attach` when it has made a task's network namespace and `detach` when it
removes the task. Runtimes without their own namespaces (process, sim) use no networking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from swarmlet.api import swarmlet_pb2 as pb


@dataclass(frozen=True, slots=True)
class Attached:
    """What the runtime writes into the task's /etc/resolv.conf and /etc/hosts."""

    nameservers: list[str] = field(default_factory=list)  # the node's DNS on the task's networks
    search: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # the task's CIDR addresses


class TaskNetworking(Protocol):
    def update(self, assignments: pb.Assignments) -> None:
        """Bring sandboxes, FDB/neighbours, DNS records, VIP maps and the mesh in line
        with the node's current assignments (idempotent, cheap when nothing changed)."""

    def attach(self, task: pb.Task, netns_path: str) -> Attached | None:
        """Plug the task's namespace into each of its networks (task.networks, as the
        manager allocated them); None when the task has no networks."""

    def detach(self, task_id: str) -> None:
        """Unplug the task (idempotent); a sandbox left with no task goes."""

    def close(self) -> None:
        """Remove everything this node made (sandboxes, links, nftables tables, DNS
        sockets): at leave and at daemon exit."""
