"""`swarm service ...` against an in-process fake Control server on a unix socket."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli import main as cli_main
from swarmlet.cli import progress
from swarmlet.cli.main import app
from swarmlet.client import ControlClient
from tests.harness.fake_control import (
    FakeControl,
    fake_control_server,
    make_node,
    make_task,
    parse_table,
    swarm,
)

runner = CliRunner()  # for invocations without --data-dir
Cluster = tuple[Path, FakeControl]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMLET_DATA_DIR", raising=False)
    monkeypatch.setattr(progress, "POLL_S", 0.02)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with fake_control_server() as (data_dir, fake):
        fake.nodes = [
            make_node(fake.node_id, "mgr1", manager=True, leader=True),
            make_node("nodebbbbbbbbbbbbbbbbbbbbb2", "wrk1"),
        ]
        yield data_dir, fake


def test_create_sends_full_spec_and_waits_for_convergence(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(
        data_dir, "service", "create", "--name", "web", "--replicas", "3",
        "--env", "A=1", "--reserve-memory", "512M", "--limit-cpu", "0.5",
        "--restart-condition", "on-failure", "--restart-delay", "1m30s",
        "--label", "team=x", "busybox", "sh", "-c", "echo hi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (req,) = fake.called("CreateService")
    spec = req.spec
    assert spec.annotations.name == "web"
    assert dict(spec.annotations.labels) == {"team": "x"}
    assert spec.mode.replicated.replicas == 3
    container = spec.task_template.container
    assert (container.image, list(container.command)) == ("busybox", ["sh", "-c", "echo hi"])
    assert list(container.env) == ["A=1"]
    assert spec.task_template.resources.reservations.memory_bytes == 512 * 1024**2
    assert spec.task_template.resources.limits.nano_cpus == 500_000_000
    policy = spec.task_template.restart_policy
    assert (policy.condition, policy.delay_s, policy.delay_set) == (pb.RESTART_ON_FAILURE, 90, True)
    lines = result.stdout.splitlines()
    assert lines[0] == next(iter(fake.services))
    assert "overall progress: 3 out of 3 tasks" in lines
    assert "1/3: running" in lines
    assert lines[-1] == "verify: Service converged"


def test_create_detach_prints_only_the_id(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "create", "-d", "--name", "web", "busybox")
    assert result.exit_code == 0
    assert result.stdout == next(iter(fake.services)) + "\n"
    assert fake.called("ListTasks") == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--replicas", "abc"], 'replicas: invalid value "abc" (must be a non-negative integer)'),
        (["--replicas", "-1"], 'replicas: invalid value "-1" (must be a non-negative integer)'),
        (["--replicas", "1.5"], 'replicas: invalid value "1.5" (must be a non-negative integer)'),
        (
            ["--reserve-memory", "12XB"],
            'reserve-memory: invalid memory value "12XB" '
            "(use a number with an optional unit B, K, M, G, T)",
        ),
        (["--limit-memory", "1M"], "limit-memory: must be at least 6MiB"),
        (
            ["--limit-cpu", "x"],
            'limit-cpu: invalid cpu value "x" (use a number of CPUs such as 0.5 or 2)',
        ),
        (["--env", "NOVALUE"], 'env: invalid entry "NOVALUE" (use KEY=VALUE)'),
        (
            ["--mode", "global", "--replicas", "2"],
            "replicas: can only be used with replicated mode",
        ),
        (["--mode", "daemon"], 'mode: unknown mode "daemon" (use replicated or global)'),
        (
            ["--restart-condition", "always"],
            'restart-condition: unknown condition "always" (use any, on-failure or none)',
        ),
        (["--restart-delay", "-5s"], "restart-delay: must not be negative"),
        (["--timeout", "0"], "timeout: must be positive"),
        (["--stop-grace-period", "-1s"], "stop-grace-period: must not be negative"),
        (
            ["--restart-delay", "soon"],
            'restart-delay: invalid duration "soon" (use a number with a unit such as '
            "100ms, 5s, 1m30s or 2h)",
        ),
    ],
)
def test_bad_flags_fail_with_one_line_and_send_nothing(
    cluster: Cluster, flags: list[str], message: str
) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "create", "--name", "web", *flags, "busybox")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""
    assert fake.calls == []


def test_bad_constraint_is_rejected_before_sending(cluster: Cluster) -> None:
    pytest.importorskip("scheduler.constraints")
    data_dir, fake = cluster
    result = swarm(
        data_dir, "service", "create", "--name", "web", "--constraint", "node.zone=a", "busybox"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: constraint: "node.zone=a": expected KEY==VALUE')
    assert result.stderr.count("\n") == 1
    assert fake.calls == []


def test_missing_name_and_bad_name(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "create", "busybox")
    assert (result.exit_code, result.stderr) == (1, "Error: name: is required\n")
    result = swarm(data_dir, "service", "create", "--name", "-web", "busybox")
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: name: invalid name "-web"')
    assert fake.calls == []


def test_no_daemon_message(tmp_path: Path) -> None:
    result = swarm(tmp_path, "service", "ls")
    sock = tmp_path.absolute() / "swarm.sock"
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no swarmlet node is running at {sock}; run swarm init (or swarm join) "
        "first, or pass --data-dir\n"
    )


def test_stale_socket_file_is_no_daemon(tmp_path: Path) -> None:
    import socket

    sock_path = Path("/tmp") / f"swstale{id(tmp_path)}"
    sock_path.mkdir()
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(sock_path / "swarm.sock"))
        sock.close()  # the file stays, nobody listens
        result = swarm(sock_path, "service", "ls")
    finally:
        (sock_path / "swarm.sock").unlink()
        sock_path.rmdir()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no swarmlet node is running at ")


def test_data_dir_from_env_and_per_command(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, fake = cluster
    fake.add_service("web")
    monkeypatch.setenv("SWARMLET_DATA_DIR", str(data_dir))
    assert runner.invoke(app, ["service", "ls", "-q"]).stdout.strip() == next(iter(fake.services))
    monkeypatch.delenv("SWARMLET_DATA_DIR")
    result = runner.invoke(app, ["service", "ls", "-q", "--data-dir", str(data_dir)])
    assert result.exit_code == 0 and result.stdout.strip() == next(iter(fake.services))


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "replicas: must be a non-negative integer"),
        (grpc.StatusCode.ALREADY_EXISTS, "service web already exists"),
        (grpc.StatusCode.FAILED_PRECONDITION, "not a manager: this node is a worker"),
        (grpc.StatusCode.UNAVAILABLE, "no leader: election in progress"),
    ],
)
def test_server_errors_show_the_servers_details(
    cluster: Cluster, code: grpc.StatusCode, details: str
) -> None:
    data_dir, fake = cluster
    fake.errors["CreateService"] = (code, details)
    result = swarm(data_dir, "service", "create", "--name", "web", "busybox")
    assert (result.exit_code, result.stderr) == (1, f"Error: {details}\n")


def test_stuck_pending_gives_up_with_the_reason(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, fake = cluster
    monkeypatch.setattr(progress, "STUCK_PENDING_S", 0.2)
    fake.state_on_create = pb.PENDING
    fake.err_on_create = "no suitable node (insufficient memory on 3 nodes)"
    result = swarm(data_dir, "service", "create", "--name", "big", "--replicas", "2", "busybox")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: big is not converging: 2/2 tasks pending: "
        "no suitable node (insufficient memory on 3 nodes)\n"
    )
    assert "1/2: pending   no suitable node (insufficient memory on 3 nodes)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("2/2: pending")  # no trailing blank line


def test_timeout_gives_up_with_a_clear_message(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.state_on_create = pb.STARTING
    result = swarm(
        data_dir, "service", "create", "--name", "slow", "--replicas", "2",
        "--timeout", "300ms", "busybox",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: slow did not converge within 300ms; 0/2 tasks running (see swarm service ps slow)\n"
    )


def test_service_ls_table_and_json(cluster: Cluster) -> None:
    data_dir, fake = cluster
    web = fake.add_service("web", replicas=3, image="nginx:1.25")
    web.endpoint.ports.add(published_port=8080, target_port=80, protocol="tcp",
                           publish_mode="ingress")
    web.endpoint.ports.add(published_port=9000, target_port=90, protocol="udp",
                           publish_mode="host")
    fake.tasks = [make_task(f"t{i}", web, slot=i) for i in (1, 2)]
    result = swarm(data_dir, "service", "ls")
    assert result.exit_code == 0
    assert parse_table(result.stdout) == (
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        [[web.id[:12], "web", "replicated", "2/3", "nginx:1.25",
          "*:8080->80/tcp, 9000->90/udp"]],
    )
    data = json.loads(swarm(data_dir, "service", "ls", "--format", "json").stdout)
    assert data == [
        {
            "id": web.id,
            "name": "web",
            "mode": "replicated",
            "replicas": "2/3",
            "image": "nginx:1.25",
            "ports": "*:8080->80/tcp, 9000->90/udp",
            "running": 2,
            "desired": 3,
        }
    ]


def test_bad_format_is_rejected(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "ls", "--format", "yaml")
    assert (result.exit_code, result.stderr) == (
        1,
        'Error: format: unknown format "yaml" (use table or json)\n',
    )
    assert fake.calls == []


def _ps_fixture(fake: FakeControl) -> pb.Service:
    web = fake.add_service("web", replicas=2)
    now = time.time()
    fake.tasks = [
        make_task("taskcurrent1xxxxxxxxxxxxx", web, slot=1, node_id=fake.node_id,
                  created=now - 120),
        make_task("taskold1xxxxxxxxxxxxxxxxx", web, slot=1, node_id=fake.node_id,
                  state=pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (1)",
                  created=now - 400),
        make_task("taskpending2xxxxxxxxxxxxx", web, slot=2, state=pb.PENDING,
                  err="no suitable node (insufficient memory on 2 nodes)", created=now - 5),
    ]  # fmt: skip
    return web


def test_service_ps_groups_history_under_current_task(cluster: Cluster) -> None:
    data_dir, fake = cluster
    _ps_fixture(fake)
    result = swarm(data_dir, "service", "ps", "web")
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.stdout)
    assert header == [
        "ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR",
    ]  # fmt: skip
    assert rows == [
        ["taskcurrent1", "web.1", "busybox", "mgr1", "Running", "Running 2 minutes ago", ""],
        ["taskold1xxxx", "\\_ web.1", "busybox", "mgr1", "Shutdown", "Failed 7 minutes ago",
         "task: non-zero exit (1)"],
        ["taskpending2", "web.2", "busybox", "", "Running", "Pending 5 seconds ago",
         "no suitable node (insufficient memory on 2 nodes)"],
    ]  # fmt: skip
    assert " \\_ web.1" in result.stdout


def test_service_ps_no_trunc_and_json(cluster: Cluster) -> None:
    data_dir, fake = cluster
    _ps_fixture(fake)
    result = swarm(data_dir, "service", "ps", "--no-trunc", "web")
    assert "taskcurrent1xxxxxxxxxxxxx" in result.stdout
    rows = json.loads(swarm(data_dir, "service", "ps", "web", "--format", "json").stdout)
    assert [r["id"] for r in rows] == [
        "taskcurrent1xxxxxxxxxxxxx", "taskold1xxxxxxxxxxxxxxxxx", "taskpending2xxxxxxxxxxxxx",
    ]  # fmt: skip
    assert rows[1] == {
        "id": "taskold1xxxxxxxxxxxxxxxxx",
        "name": "web.1",
        "image": "busybox",
        "node": "mgr1",
        "desired_state": "Shutdown",
        "current_state": "Failed 7 minutes ago",
        "error": "task: non-zero exit (1)",
        "history": True,
    }


def test_service_ps_unknown_service(cluster: Cluster) -> None:
    data_dir, _ = cluster
    result = swarm(data_dir, "service", "ps", "nope")
    assert (result.exit_code, result.stderr) == (1, "Error: service nope not found\n")


def test_inspect_prints_found_services_and_fails_for_missing(cluster: Cluster) -> None:
    data_dir, fake = cluster
    web = fake.add_service("web", replicas=2)
    result = swarm(data_dir, "service", "inspect", "web", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: service nope not found\n"
    (obj,) = json.loads(result.stdout)
    assert obj["id"] == web.id
    assert obj["spec"]["mode"]["replicated"]["replicas"] == "2"


def test_scale_validates_every_argument_before_sending(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.add_service("web")
    result = swarm(data_dir, "service", "scale", "web=3", "api=x")
    assert result.exit_code == 1
    assert result.stderr == 'Error: replicas: invalid value "x" (must be a non-negative integer)\n'
    result = swarm(data_dir, "service", "scale", "web")
    assert result.stderr == 'Error: scale: invalid argument "web" (use SERVICE=REPLICAS)\n'
    result = swarm(data_dir, "service", "scale", "web=-2")
    assert result.stderr.startswith('Error: replicas: invalid value "-2"')
    assert fake.calls == []


def test_scale_sends_each_and_waits(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.add_service("web")
    fake.add_service("api")
    result = swarm(data_dir, "service", "scale", "web=3", "api=0")
    assert result.exit_code == 0, result.output
    assert [(r.id, r.replicas) for r in fake.called("ScaleService")] == [("web", 3), ("api", 0)]
    assert "web scaled to 3" in result.stdout
    assert "overall progress: 3 out of 3 tasks" in result.stdout
    assert "overall progress: 0 out of 0 tasks" in result.stdout


def test_scale_reports_an_unknown_service_and_scales_the_rest(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.add_service("web")
    result = swarm(data_dir, "service", "scale", "-d", "nope=1", "web=2")
    assert result.exit_code == 1
    assert result.stderr == "Error: service nope not found\n"
    assert result.stdout == "web scaled to 2\n"


def test_rm(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.add_service("web")
    result = swarm(data_dir, "service", "rm", "web", "nope")
    assert result.exit_code == 1
    assert result.stdout == "web\n"
    assert result.stderr == "Error: service nope not found\n"
    assert fake.services == {}


def test_unexpected_exception_is_one_line(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, _ = cluster

    def boom(self: ControlClient) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ControlClient, "list_services", boom)
    result = swarm(data_dir, "service", "ls")
    assert (result.exit_code, result.stderr) == (1, "Error: internal error: boom\n")


def test_run_entry_point_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["swarm", "--data-dir", str(tmp_path), "node", "ls"])
    with pytest.raises(SystemExit) as exc:
        cli_main.run()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: no swarmlet node is running at ") and err.count("\n") == 1

    def interrupted(self: ControlClient) -> None:
        raise KeyboardInterrupt

    (tmp_path / "swarm.sock").touch()
    monkeypatch.setattr(ControlClient, "list_nodes", interrupted)
    with pytest.raises(SystemExit) as exc:
        cli_main.run()
    assert exc.value.code == 130
    assert "Traceback" not in capsys.readouterr().err
