"""Pure parts of the CLI: convergence snapshots and waiting (fake clock), ps rows, tables,
and the client's mapping of gRPC status codes to swarmlet errors."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.output import plain_table
from swarmlet.cli.progress import (
    NotConverged,
    PlainDisplay,
    QuietDisplay,
    render_lines,
    take_snapshot,
    wait_converged,
)
from swarmlet.cli.task_rows import ps_rows
from swarmlet.client import InvalidArgument, error_from_rpc
from swarmlet.clock import FakeClock
from swarmlet.errors import Conflict, NoDaemon, NotFound, NotManager, SwarmletError, Unavailable
from tests.harness.fake_control import make_task

REASON = "no suitable node (insufficient memory on 3 nodes)"


def service(name: str = "web", replicas: int = 2, mode: str = "replicated") -> pb.Service:
    svc = pb.Service(id=f"id-{name}")
    svc.spec.annotations.name = name
    svc.spec.task_template.container.image = "busybox"
    if mode == "global":
        getattr(svc.spec.mode, "global").SetInParent()
    else:
        svc.spec.mode.replicated.replicas = replicas
    return svc


def test_snapshot_counts_current_tasks_per_slot() -> None:
    svc = service(replicas=3)
    tasks = [
        make_task("a", svc, slot=1, state=pb.RUNNING, created=10),
        make_task("old", svc, slot=1, state=pb.FAILED, desired=pb.SHUTDOWN, err="boom", created=5),
        make_task("b", svc, slot=2, state=pb.PENDING, err=REASON, created=10),
        make_task("c", svc, slot=3, state=pb.STARTING, created=10),
    ]
    snap = take_snapshot(tasks, 3)
    assert (snap.running, snap.desired, snap.converged) == (1, 3, False)
    assert snap.pending == {REASON: 1}
    assert snap.last_error == "boom"
    assert render_lines(snap) == [
        "overall progress: 1 out of 3 tasks",
        "1/3: running",
        f"2/3: pending   {REASON}",
        "3/3: starting",
    ]


def test_snapshot_converges_only_when_surplus_tasks_have_stopped() -> None:
    svc = service(replicas=1)
    keep = make_task("a", svc, slot=1)
    surplus = make_task("b", svc, slot=2, desired=pb.REMOVE)
    assert take_snapshot([keep, surplus], 1).converged is False
    surplus.status.state = pb.SHUTDOWN
    assert take_snapshot([keep, surplus], 1).converged is True
    assert take_snapshot([], 0).converged is True


def test_snapshot_global_lines_use_hostnames() -> None:
    svc = service(mode="global")
    tasks = [
        make_task("a", svc, node_id="n2", state=pb.RUNNING),
        make_task("b", svc, node_id="n1", state=pb.PREPARING),
    ]
    snap = take_snapshot(tasks, 2, {"n1": "alpha", "n2": "beta"})
    assert [line.label for line in snap.lines] == ["alpha", "beta"]
    assert (snap.running, snap.converged) == (1, False)


class FakeSource:
    """Answers list_tasks from a script of task lists, one per poll."""

    def __init__(self, script: list[list[pb.Task] | Exception], desired: int = 0) -> None:
        self.script = script
        self.polls = 0
        self.desired = desired

    def list_tasks(self, service: str = "", node: str = "") -> pb.ListTasksResponse:
        step = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        if isinstance(step, Exception):
            raise step
        return pb.ListTasksResponse(tasks=step)

    def list_services(self) -> pb.ListServicesResponse:
        resp = pb.ListServicesResponse()
        resp.desired["id-web"] = self.desired
        return resp


def test_wait_converges_and_tolerates_unavailable() -> None:
    svc = service(replicas=1)
    script: list[list[pb.Task] | Exception] = [
        [make_task("a", svc, slot=1, state=pb.ASSIGNED)],
        Unavailable("no leader"),
        [make_task("a", svc, slot=1, state=pb.RUNNING)],
    ]
    source, clock, out = FakeSource(script), FakeClock(), []
    snap = wait_converged(source, svc, clock=clock, display=PlainDisplay(out.append), poll_s=1)
    assert snap.converged and source.polls == 3
    assert out == [
        "overall progress: 0 out of 1 tasks",
        "1/1: assigned",
        "overall progress: 1 out of 1 tasks",
        "1/1: running",
        "verify: Service converged",
    ]


def test_wait_gives_up_when_tasks_stay_pending_with_a_reason() -> None:
    svc = service(replicas=2)
    tasks = [
        make_task("a", svc, slot=1),
        make_task("b", svc, slot=2, state=pb.PENDING, err=REASON),
    ]
    source, clock = FakeSource([tasks]), FakeClock()
    with pytest.raises(NotConverged) as exc:
        wait_converged(source, svc, clock=clock, display=QuietDisplay(), stuck_after=10, poll_s=1)
    assert str(exc.value) == f"web is not converging: 1/2 tasks pending: {REASON}"
    assert source.polls == 11  # pending seen at t=0, given up at t=10


def test_wait_times_out_with_running_count_and_last_error() -> None:
    svc = service(replicas=2)
    tasks = [
        make_task("a", svc, slot=1),
        make_task("b", svc, slot=2, state=pb.STARTING),
        make_task("x", svc, slot=2, state=pb.FAILED, desired=pb.SHUTDOWN, err="exit 1"),
    ]
    with pytest.raises(NotConverged) as exc:
        wait_converged(
            FakeSource([tasks]), svc, clock=FakeClock(), display=QuietDisplay(), timeout=30
        )
    assert str(exc.value) == (
        "web did not converge within 30s; 1/2 tasks running; last task error: exit 1 "
        "(see swarm service ps web)"
    )


def test_wait_global_uses_server_desired_count() -> None:
    svc = service(mode="global")
    tasks = [make_task("a", svc, node_id="n1"), make_task("b", svc, node_id="n2")]
    snap = wait_converged(
        FakeSource([tasks], desired=2), svc, clock=FakeClock(), display=QuietDisplay()
    )
    assert (snap.running, snap.desired) == (2, 2)
    with pytest.raises(NotConverged):
        wait_converged(
            FakeSource([tasks], desired=3), svc, clock=FakeClock(), display=QuietDisplay()
        )


def test_ps_rows_global_names_and_orphan_history() -> None:
    svc = service("mon", mode="global")
    tasks = [
        make_task("t1", svc, node_id="nodeid0123456789", created=100),
        make_task("t0", svc, node_id="nodeid0123456789", state=pb.SHUTDOWN,
                  desired=pb.SHUTDOWN, created=50),
        make_task("t9", svc, node_id="gone", state=pb.FAILED, desired=pb.SHUTDOWN, created=10),
    ]  # fmt: skip
    rows = ps_rows(tasks, {"nodeid0123456789": "alpha"}, now=160)
    assert [(r.task_id, r.name, r.node, r.history) for r in rows] == [
        ("t1", "mon.nodeid012345", "alpha", False),
        ("t0", "mon.nodeid012345", "alpha", True),
        ("t9", "mon.gone", "gone", False),
    ]
    assert rows[0].current_state == "Running About a minute ago"
    full = ps_rows(tasks, {}, now=160, no_trunc=True)
    assert {r.task_id: r.name for r in full}["t1"] == "mon.nodeid0123456789"


def test_plain_table_pads_columns_without_trailing_blanks() -> None:
    text = plain_table(["ID", "NAME"], [["a", "long-name"], ["bbbb", ""]])
    assert text.splitlines() == ["ID     NAME", "a      long-name", "bbbb"]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "kind"),
    [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "replicas: must be a non-negative integer",
            InvalidArgument,
        ),
        (grpc.StatusCode.NOT_FOUND, "node x not found", NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, "service web already exists", Conflict),
        (grpc.StatusCode.ABORTED, "node changed since version 3", Conflict),
        (grpc.StatusCode.FAILED_PRECONDITION, "node wrk1 is not down", Conflict),
        (grpc.StatusCode.FAILED_PRECONDITION, "not a manager: this node is a worker", NotManager),
        (grpc.StatusCode.INTERNAL, "store exploded", SwarmletError),
    ],
)
def test_error_mapping_keeps_server_details(
    code: grpc.StatusCode, details: str, kind: type[SwarmletError]
) -> None:
    err = error_from_rpc(FakeRpcError(code, details), Path("/nonexistent/swarm.sock"))
    assert type(err) is kind
    assert str(err) == details


def test_unavailable_maps_to_no_daemon_or_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "swarm.sock"
    err = error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect"), missing)
    assert isinstance(err, NoDaemon)
    import socket

    listening = Path("/tmp") / f"swprobe{id(err)}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(listening))
    server.listen(1)
    try:
        err = error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no leader"), listening)
    finally:
        server.close()
        listening.unlink()
    assert type(err) is Unavailable and str(err) == "no leader"
