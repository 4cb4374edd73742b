"""Rows of `swarm service ps`: tasks grouped per slot, current task first, history below.

Pure: takes tasks, node names and the current time; returns rows for both the table and
the JSON output. History tasks are shown under the current task of their slot with a
` \\_ ` prefix, as `docker service ps` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.output import one_line, short_id, task_state_title
from swarmlet.cli.progress import is_current
from swarmlet.units import format_age

PS_COLUMNS = ("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR")
HISTORY_PREFIX = " \\_ "


@dataclass(frozen=True)
class PsRow:
    task_id: str
    name: str
    image: str
    node: str
    desired_state: str
    current_state: str
    error: str
    history: bool

    def cells(self, no_trunc: bool) -> list[str]:
        name = HISTORY_PREFIX + self.name if self.history else self.name
        return [
            short_id(self.task_id, no_trunc),
            name,
            self.image,
            self.node,
            self.desired_state,
            self.current_state,
            self.error,
        ]

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.task_id,
            "name": self.name,
            "image": self.image,
            "node": self.node,
            "desired_state": self.desired_state,
            "current_state": self.current_state,
            "error": self.error,
            "history": self.history,
        }


def task_name(task: pb.Task, no_trunc: bool = False) -> str:
    """`<service>.<slot>`, or `<service>.<node id>` for a global task."""
    service = task.service_name or short_id(task.service_id)
    if task.slot:
        return f"{service}.{task.slot}"
    return f"{service}.{short_id(task.node_id, no_trunc)}"


def current_state(task: pb.Task, now: float) -> str:
    """ "Running 2 minutes ago", "Running 5 seconds ago (healthy)"."""
    state = task_state_title(task.status.state)
    health = f" ({task.status.health})" if task.status.health else ""
    if not task.status.timestamp:
        return state + health
    return f"{state} {format_age(max(0.0, now - task.status.timestamp))}{health}"


def _group_key(task: pb.Task, node_names: dict[str, str]) -> tuple[str, int, str]:
    if task.slot:
        return (task.service_name, task.slot, "")
    return (task.service_name, 0, node_names.get(task.node_id, task.node_id))


def _group_order(group: list[pb.Task]) -> list[pb.Task]:
    """Newest current task first, then the others newest first."""
    newest = sorted(group, key=lambda t: (-t.meta.created_at, -t.restart_attempt))
    current = [t for t in newest if is_current(t)]
    if not current:
        return newest
    return [current[0]] + [t for t in newest if t is not current[0]]


def ps_rows(
    tasks: list[pb.Task], node_names: dict[str, str], now: float, no_trunc: bool = False
) -> list[PsRow]:
    """Rows of `service ps`, grouped per slot (or node), current task of each slot first."""
    groups: dict[tuple[str, int, str], list[pb.Task]] = {}
    for task in tasks:
        groups.setdefault(_group_key(task, node_names), []).append(task)
    rows: list[PsRow] = []
    for key in sorted(groups):
        for index, task in enumerate(_group_order(groups[key])):
            node = node_names.get(task.node_id, short_id(task.node_id)) if task.node_id else ""
            rows.append(
                PsRow(
                    task_id=task.id,
                    name=task_name(task, no_trunc),
                    image=task.spec.container.image,
                    node=node,
                    desired_state=task_state_title(task.desired_state),
                    current_state=current_state(task, now),
                    error=one_line(task.status.err),
                    history=index > 0,
                )
            )
    return rows
