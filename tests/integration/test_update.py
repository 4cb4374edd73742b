"""Rolling updates and rollbacks end to end: real daemons on loopback, sim runtime.

Specs go through the control API (`ControlClient`), as `swarm service update` and
`swarm stack deploy` send them; `swarm service inspect` is checked through the real CLI.
Sim tasks fail on purpose with SIM_EXIT=<code> in their env (worker/runtime/sim.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from swarmlet import paths
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.client import ControlClient
from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("update"), runtime="sim")
    try:
        yield c.start(workers=2)
    finally:
        c.close()


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[ControlClient]:
    with ControlClient(cluster.nodes["manager-1"]) as c:
        yield c


def spec(name: str, replicas: int, **update: object) -> pb.ServiceSpec:
    s = pb.ServiceSpec()
    s.annotations.name = name
    s.task_template.container.image = "busybox:1"
    s.task_template.container.command.extend(["sleep", "1000"])
    s.mode.replicated.replicas = replicas
    for k, v in update.items():
        setattr(s.update_config, k, v)
    return s


def change(client: ControlClient, name: str, edit: Callable[[pb.ServiceSpec], None]) -> None:
    svc = client.get_service(name)
    new = pb.ServiceSpec()
    new.CopyFrom(svc.spec)
    edit(new)
    client.update_service(svc.id, new, svc.meta.version)


def running(client: ControlClient, name: str) -> list[pb.Task]:
    return [
        t for t in client.list_tasks(service=name).tasks
        if t.status.state == pb.RUNNING and t.desired_state == pb.RUNNING
    ]


def images(client: ControlClient, name: str) -> list[str]:
    return sorted(t.spec.container.image for t in running(client, name))


def update_state(client: ControlClient, name: str) -> str:
    return str(client.get_service(name).update_status.state)


def rollback(cluster: LocalCluster, name: str) -> pb.Service:
    """The RollbackService RPC (the client and CLI wrappers are the CLI's to add)."""
    sock = paths.control_socket(cluster.nodes["manager-1"]).absolute()
    with grpc.insecure_channel(f"unix://{sock}") as channel:
        return pbg.ControlStub(channel).RollbackService(pb.IdRequest(id=name), timeout=30).service


def test_start_first_rolling_update_never_drops_below_replicas(
    cluster: LocalCluster, client: ControlClient
) -> None:
    client.create_service(spec("roll", 12, parallelism=3, order="start-first", monitor_s=0.5))
    wait_for(lambda: len(running(client, "roll")) == 12, what="12 running")

    def set_image(s: pb.ServiceSpec) -> None:
        s.task_template.container.image = "busybox:2"

    change(client, "roll", set_image)
    counts, states = [], set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts.append(len(running(client, "roll")))
        state = update_state(client, "roll")
        states.add(state)
        if state == "completed":
            break
    assert "completed" in states and "updating" in states, states
    assert min(counts) >= 12, f"dropped to {min(counts)} running ({len(counts)} samples)"
    assert len(counts) >= 10  # the poll really watched the update
    assert images(client, "roll") == ["busybox:2"] * 12
    svc = client.get_service("roll")
    assert svc.update_status.message == "update completed"
    assert svc.update_status.completed_at >= svc.update_status.started_at > 0
    client.remove_service("roll")


def test_failing_update_rolls_back_automatically(
    cluster: LocalCluster, client: ControlClient
) -> None:
    client.create_service(
        spec("fragile", 4, parallelism=1, failure_action="rollback", monitor_s=2.0)
    )
    wait_for(lambda: len(running(client, "fragile")) == 4, what="4 running")

    def break_it(s: pb.ServiceSpec) -> None:
        s.task_template.container.image = "busybox:broken"
        s.task_template.container.env.append("SIM_EXIT=3")

    change(client, "fragile", break_it)
    wait_for(lambda: update_state(client, "fragile") == "rollback_completed", timeout=60,
             what="rollback completed")
    svc = client.get_service("fragile")
    assert svc.spec.task_template.container.image == "busybox:1"
    assert svc.previous_spec.task_template.container.image == "busybox:broken"
    wait_for(lambda: images(client, "fragile") == ["busybox:1"] * 4, what="old image back")
    failed = [t for t in client.list_tasks(service="fragile").tasks
              if t.spec.container.image == "busybox:broken"]
    assert failed and all(t.status.state == pb.FAILED for t in failed)
    # parallelism 1: the first failure stopped the update (a second slot may have started
    # if the task was seen RUNNING before it failed)
    assert len(failed) <= 2

    inspected = json.loads(cluster.swarm("service", "inspect", "fragile").stdout)[0]
    status = inspected["updateStatus"]
    assert status["state"] == "rollback_completed"
    assert status["message"] == "rollback completed"
    client.remove_service("fragile")


def test_paused_update_then_manual_rollback(cluster: LocalCluster, client: ControlClient) -> None:
    client.create_service(spec("pausable", 3, parallelism=1, monitor_s=1.0))
    wait_for(lambda: len(running(client, "pausable")) == 3, what="3 running")

    def break_it(s: pb.ServiceSpec) -> None:
        s.task_template.container.image = "busybox:broken"
        s.task_template.container.env.append("SIM_EXIT=1")

    change(client, "pausable", break_it)
    wait_for(lambda: update_state(client, "pausable") == "paused", timeout=60, what="paused")
    inspected = json.loads(cluster.swarm("service", "inspect", "pausable").stdout)[0]
    assert inspected["updateStatus"]["state"] == "paused"
    assert inspected["updateStatus"]["message"].startswith(
        "update paused due to failure or early termination of task "
    )
    assert images(client, "pausable").count("busybox:1") >= 1  # the rest kept theirs

    back = rollback(cluster, "pausable")
    assert back.update_status.state == "rollback_started"
    assert back.update_status.message == "manually requested rollback"
    wait_for(lambda: update_state(client, "pausable") == "rollback_completed", timeout=60,
             what="rollback completed")
    wait_for(lambda: images(client, "pausable") == ["busybox:1"] * 3, what="old image back")
    client.remove_service("pausable")


def test_rollback_without_previous_spec_is_refused(cluster: LocalCluster,
                                                   client: ControlClient) -> None:
    client.create_service(spec("fresh", 1))
    with pytest.raises(grpc.RpcError) as err:
        rollback(cluster, "fresh")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "service fresh has no previous spec to roll back to"
    client.remove_service("fresh")


def test_scale_replaces_no_task(cluster: LocalCluster, client: ControlClient) -> None:
    client.create_service(spec("steady", 3))
    wait_for(lambda: len(running(client, "steady")) == 3, what="3 running")
    before = {t.id for t in running(client, "steady")}
    cluster.swarm("service", "scale", "steady=5")
    wait_for(lambda: len(running(client, "steady")) == 5, what="5 running")
    assert before <= {t.id for t in running(client, "steady")}
    assert update_state(client, "steady") == ""
    client.remove_service("steady")


def test_cli_update_with_flags_then_cli_rollback(cluster: LocalCluster,
                                                 client: ControlClient) -> None:
    client.create_service(spec("clirolled", 4))
    wait_for(lambda: len(running(client, "clirolled")) == 4, what="4 running")
    cluster.swarm("service", "update", "--image", "busybox:2", "--update-parallelism", "2",
                  "--update-order", "start-first", "--update-monitor", "500ms", "clirolled")
    wait_for(lambda: update_state(client, "clirolled") == "completed", what="update completed")
    cfg = client.get_service("clirolled").spec.update_config
    assert (cfg.parallelism, cfg.order, cfg.monitor_s) == (2, "start-first", 0.5)
    assert images(client, "clirolled") == ["busybox:2"] * 4

    before = {t.id for t in running(client, "clirolled")}
    cluster.swarm("service", "update", "--force", "clirolled")
    wait_for(lambda: update_state(client, "clirolled") == "completed", what="forced update")
    assert not before & {t.id for t in running(client, "clirolled")}  # every task replaced

    cluster.swarm("service", "rollback", "clirolled")
    wait_for(lambda: update_state(client, "clirolled") == "rollback_completed",
             what="rollback completed")
    inspected = json.loads(cluster.swarm("service", "inspect", "clirolled").stdout)[0]
    assert inspected["updateStatus"]["state"] == "rollback_completed"
    # the spec before --force had the same image: the rollback replaced the forced tasks
    assert images(client, "clirolled") == ["busybox:2"] * 4
    client.remove_service("clirolled")
