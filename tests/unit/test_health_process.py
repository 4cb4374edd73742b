"""Health checks through the agent with the process runtime (probes are child processes):
RUNNING only once healthy, an unhealthy task FAILED with the probe's output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from tests.harness.fake_dispatcher import FakeDispatcher, wait_for
from tests.harness.stub_runtime import kill_process_tasks
from worker.agent import Agent
from worker.runtime import make_runtime


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[FakeDispatcher]:
    d = FakeDispatcher(heartbeat_period_s=0.2).start()
    agent = Agent(
        state_dir=tmp_path / "agent", managers=[d.addr],
        credentials_factory=grpc.insecure_channel,
        runtime=make_runtime("process", tmp_path / "runtime", RealClock(), hostname="w1"),
        description=pb.NodeDescription(hostname="w1"), addr="127.0.0.1", clock=RealClock(),
        node_id="node-1",
    )
    agent.start()
    try:
        yield d
    finally:
        agent.stop()
        kill_process_tasks(tmp_path / "runtime")
        d.stop()


def task(tid: str, flag: Path, *test: str) -> pb.Task:
    t = pb.Task(id=tid, service_id="s", service_name="web", slot=1, node_id="node-1")
    t.desired_state = S.RUNNING  # type: ignore[assignment]
    t.status.state = S.ASSIGNED  # type: ignore[assignment]
    t.spec.container.image = "busybox"
    t.spec.container.command.extend(["sleep", "60"])
    t.spec.container.stop_grace_period_s = 1
    h = t.spec.container.healthcheck
    h.test.extend(test)
    h.interval_s, h.timeout_s, h.retries = 0.1, 5.0, 2
    return t


def status(fd: FakeDispatcher, tid: str) -> pb.TaskStatus:
    return fd.latest().get(tid, pb.TaskStatus())


def test_process_task_healthy_then_unhealthy(fd: FakeDispatcher, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    probe = f"test -f {flag} && echo ok || {{ echo 'no flag'; exit 1; }}"
    t = task("h1", flag, "CMD-SHELL", probe)
    t.spec.container.healthcheck.start_period_s = 60  # failures before the flag: not counted
    fd.assign([t])
    wait_for(lambda: status(fd, "h1").state == S.STARTING and status(fd, "h1").health)
    assert status(fd, "h1").health == "starting"
    flag.touch()
    wait_for(lambda: status(fd, "h1").state == S.RUNNING)
    assert status(fd, "h1").health == "healthy"
    flag.unlink()
    wait_for(lambda: status(fd, "h1").state == S.FAILED)
    st = status(fd, "h1")
    assert (st.err, st.health) == ("unhealthy: no flag", "unhealthy")


def test_none_healthcheck_means_plain_running(fd: FakeDispatcher, tmp_path: Path) -> None:
    fd.assign([task("h2", tmp_path / "x", "NONE")])
    wait_for(lambda: status(fd, "h2").state == S.RUNNING)
    assert status(fd, "h2").health == ""


def test_sim_runtime_probes(tmp_path: Path) -> None:
    d = FakeDispatcher(heartbeat_period_s=0.2).start()
    agent = Agent(
        state_dir=tmp_path / "agent", managers=[d.addr],
        credentials_factory=grpc.insecure_channel,
        runtime=make_runtime("sim", tmp_path / "runtime", RealClock()),
        description=pb.NodeDescription(hostname="w1"), addr="127.0.0.1", clock=RealClock(),
        node_id="node-1",
    )
    agent.start()
    try:
        good = task("s1", tmp_path / "x", "CMD", "true")
        bad = task("s2", tmp_path / "x", "CMD", "true")
        bad.spec.container.env.append("SIM_UNHEALTHY=sim says no")
        d.assign([good, bad])
        wait_for(lambda: status(d, "s1").state == S.RUNNING and status(d, "s2").state == S.FAILED)
        assert status(d, "s1").health == "healthy"
        assert status(d, "s2").err == "unhealthy: sim says no"
    finally:
        agent.stop()
        d.stop()
