"""Waiting for a service to converge, with docker-like progress output.

`take_snapshot` (pure) turns a service and its tasks into what the user sees: overall
progress, one line per slot (or node, for global services) and the reasons tasks are
pending. `wait_converged` polls until the service converges, gives up after a timeout,
and gives up early when tasks stay PENDING with a reason: the user then sees why.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from swarmlet import states
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from swarmlet.errors import SwarmletError, Unavailable
from swarmlet.units import format_duration

POLL_S = 0.5
DEFAULT_TIMEOUT_S = 120.0
STUCK_PENDING_S = 10.0


class NotConverged(SwarmletError):
    """The service did not converge (timeout, or tasks stuck pending with a reason)."""


@dataclass(frozen=True)
class SlotLine:
    label: str  # "3/6" for replicated slots, the node's hostname for global tasks
    state: str  # "running"
    detail: str = ""  # pending reason or error


@dataclass(frozen=True)
class Snapshot:
    running: int
    desired: int
    lines: tuple[SlotLine, ...] = ()
    pending: dict[str, int] = field(default_factory=dict)  # reason -> task count
    last_error: str = ""
    converged: bool = False


def is_current(task: pb.Task) -> bool:
    """True for a task the orchestrator still wants running (not being shut down)."""
    return task.desired_state <= states.RUNNING


def task_key(task: pb.Task) -> tuple[int, str]:
    """The slot a task fills: its slot number, or its node for global tasks."""
    return (task.slot, "") if task.slot else (0, task.node_id)


def _newest_first(task: pb.Task) -> tuple[float, int, float]:
    return (-task.meta.created_at, -task.restart_attempt, -task.status.timestamp)


def current_by_slot(tasks: list[pb.Task]) -> dict[tuple[int, str], pb.Task]:
    """The newest current task of each slot."""
    out: dict[tuple[int, str], pb.Task] = {}
    for task in sorted((t for t in tasks if is_current(t)), key=_newest_first):
        out.setdefault(task_key(task), task)
    return out


def _line(task: pb.Task, desired: int, node_names: dict[str, str]) -> SlotLine:
    if task.slot:
        label = f"{task.slot}/{desired}"
    else:
        label = node_names.get(task.node_id) or task.node_id[:12] or "?"
    detail = task.status.err if task.status.state != states.RUNNING else ""
    return SlotLine(label, states.name(task.status.state), detail)


def take_snapshot(
    tasks: list[pb.Task], desired: int, node_names: dict[str, str] | None = None
) -> Snapshot:
    """Progress of a service whose tasks are `tasks` and which wants `desired` running."""
    names = node_names or {}
    current = current_by_slot(tasks)
    ordered = [current[k] for k in sorted(current, key=lambda k: (k[0], names.get(k[1], k[1])))]
    running = sum(1 for t in ordered if t.status.state == states.RUNNING)
    pending = Counter(
        t.status.err for t in ordered if t.status.state == states.PENDING and t.status.err
    )
    lingering = any(
        not is_current(t) and states.ASSIGNED <= t.status.state <= states.RUNNING for t in tasks
    )
    failed = [t for t in tasks if t.status.state in (states.FAILED, states.REJECTED)]
    last_error = ""
    if failed:
        newest = max(failed, key=lambda t: t.status.timestamp)
        last_error = newest.status.err or newest.status.message
    return Snapshot(
        running=running,
        desired=desired,
        lines=tuple(_line(t, desired, names) for t in ordered),
        pending=dict(pending),
        last_error=last_error,
        converged=running == desired and len(ordered) == desired and not lingering,
    )


def pending_summary(snap: Snapshot) -> str:
    """ "1/6 tasks pending: no suitable node (insufficient memory on 3 nodes)" per reason."""
    return "; ".join(
        f"{count}/{snap.desired} tasks pending: {reason}" for reason, count in snap.pending.items()
    )


class Display(Protocol):
    def update(self, snap: Snapshot) -> None: ...

    def finish(self, message: str) -> None: ...


class QuietDisplay:
    """No progress output (--quiet)."""

    def update(self, snap: Snapshot) -> None:
        return None

    def finish(self, message: str) -> None:
        return None


def render_lines(snap: Snapshot) -> list[str]:
    """The progress text: overall line, then one line per slot."""
    out = [f"overall progress: {snap.running} out of {snap.desired} tasks"]
    for line in snap.lines:
        text = f"{line.label}: {line.state:<9}"
        out.append(f"{text} {line.detail}".rstrip() if line.detail else text.rstrip())
    return out


class PlainDisplay:
    """Progress for pipes and logs: prints a line only when it changes."""

    def __init__(self, echo: Callable[[str], None] = typer.echo) -> None:
        self._echo = echo
        self._shown: dict[str, str] = {}

    def update(self, snap: Snapshot) -> None:
        for text in render_lines(snap):
            key = text.split(":", 1)[0]
            if self._shown.get(key) != text:
                self._shown[key] = text
                self._echo(text)

    def finish(self, message: str) -> None:
        if message:
            self._echo(message)


class LiveDisplay:
    """Progress on a terminal: one block redrawn in place (rich Live)."""

    def __init__(self) -> None:
        self._live = Live(Text(""), console=Console(file=sys.stdout), auto_refresh=False)
        self._live.start()

    def update(self, snap: Snapshot) -> None:
        self._live.update(Text("\n".join(render_lines(snap))), refresh=True)

    def finish(self, message: str) -> None:
        if self._live.is_started:
            self._live.stop()
        if message:
            typer.echo(message)


def make_display(quiet: bool) -> Display:
    """Live on a terminal, plain lines otherwise, nothing with --quiet."""
    if quiet:
        return QuietDisplay()
    if Console(file=sys.stdout).is_terminal:
        return LiveDisplay()
    return PlainDisplay()


class TaskSource(Protocol):
    """What the waiter needs from the control client."""

    def list_tasks(self, service: str = "", node: str = "") -> pb.ListTasksResponse: ...

    def list_services(self) -> pb.ListServicesResponse: ...


def desired_count(client: TaskSource, service: pb.Service) -> int | None:
    """Tasks the service wants running: its replicas, or the server's count for global."""
    if service.spec.mode.WhichOneof("mode") != "global":
        return int(service.spec.mode.replicated.replicas)
    listing = client.list_services()
    return int(listing.desired[service.id]) if service.id in listing.desired else None


def poll_once(client: TaskSource, service: pb.Service) -> Snapshot:
    """One look at the service's tasks."""
    resp = client.list_tasks(service=service.id)
    tasks = [t for t in resp.tasks if t.service_id == service.id or not t.service_id]
    desired = desired_count(client, service)
    if desired is None:
        desired = len(current_by_slot(tasks))
    return take_snapshot(tasks, desired, dict(resp.node_names))


def _give_up_message(name: str, snap: Snapshot, timeout: float) -> str:
    parts = [f"{name} did not converge within {format_duration(timeout)}"]
    parts.append(f"{snap.running}/{snap.desired} tasks running")
    if snap.pending:
        parts.append(pending_summary(snap))
    if snap.last_error:
        parts.append(f"last task error: {snap.last_error}")
    return "; ".join(parts) + f" (see swarm service ps {name})"


def wait_converged(
    client: TaskSource,
    service: pb.Service,
    *,
    clock: Clock,
    display: Display,
    timeout: float = DEFAULT_TIMEOUT_S,
    stuck_after: float | None = None,
    poll_s: float | None = None,
) -> Snapshot:
    """Poll until the service converges; NotConverged says why it did not.

    `stuck_after` (default STUCK_PENDING_S): give up once tasks have been pending with a
    reason for this long. `poll_s` (default POLL_S): time between polls.
    """
    stuck = STUCK_PENDING_S if stuck_after is None else stuck_after
    poll = POLL_S if poll_s is None else poll_s
    try:
        snap = _wait_loop(client, service, clock, display, timeout, stuck, poll)
    except BaseException:
        display.finish("")
        raise
    display.finish("verify: Service converged")
    return snap


def _wait_loop(
    client: TaskSource,
    service: pb.Service,
    clock: Clock,
    display: Display,
    timeout: float,
    stuck_after: float,
    poll_s: float,
) -> Snapshot:
    name = service.spec.annotations.name or service.id
    start = clock.monotonic()
    pending_since: float | None = None
    snap = Snapshot(0, 0)
    while True:
        try:
            snap = poll_once(client, service)
        except Unavailable:
            pass  # e.g. a leader election: keep waiting until the deadline
        else:
            display.update(snap)
            if snap.converged:
                return snap
        now = clock.monotonic()
        if not snap.pending:
            pending_since = None
        elif pending_since is None:
            pending_since = now
        if pending_since is not None and now - pending_since >= stuck_after:
            raise NotConverged(f"{name} is not converging: {pending_summary(snap)}")
        if now - start >= timeout:
            raise NotConverged(_give_up_message(name, snap, timeout))
        clock.sleep(poll_s)
