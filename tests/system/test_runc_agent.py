"""The worker agent with the runc runtime against a fake dispatcher: health checks,
OOM reporting, and an agent restart with a container running (re-adopted, later exit
code reported). Needs root, runc and busybox-static.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from tests.harness.fake_dispatcher import FakeDispatcher, wait_for
from tests.harness.fake_images import FakeImageStore
from tests.system.runc_support import leftovers, make_task, requires_probes, requires_runc
from worker.agent import Agent
from worker.runtime.runc import RuncRuntime

pytestmark = requires_runc


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fd = FakeDispatcher(heartbeat_period_s=0.2).start()
        self.images = FakeImageStore(tmp / "images")
        self.agents: list[Agent] = []
        self.ids: list[str] = []

    def runtime(self) -> RuncRuntime:
        return RuncRuntime(self.tmp / "runtime", RealClock(), self.images, hostname="w1")

    def agent(self) -> Agent:
        a = Agent(
            state_dir=self.tmp / "agent",
            managers=[self.fd.addr],
            credentials_factory=grpc.insecure_channel,
            runtime=self.runtime(),
            description=pb.NodeDescription(hostname="w1"),
            addr="127.0.0.1",
            clock=RealClock(),
            node_id="node-1",
        )
        self.agents.append(a)
        a.start()
        wait_for(a.connected.is_set)
        return a

    def assign(self, *tasks: pb.Task) -> None:
        for t in tasks:
            t.desired_state = S.RUNNING  # type: ignore[assignment]
            t.status.state = S.ASSIGNED  # type: ignore[assignment]
            if t.id not in self.ids:
                self.ids.append(t.id)
        self.fd.assign(list(tasks))

    def status(self, tid: str) -> pb.TaskStatus:
        return self.fd.latest().get(tid, pb.TaskStatus())

    def states(self, tid: str) -> list[tuple[int, str]]:
        return [(u.status.state, u.status.health) for u in self.fd.updates() if u.task_id == tid]

    def close(self) -> None:
        self.fd.assign([])  # everything unlisted: the agent removes it
        if self.agents and self.agents[-1].connected.is_set():
            wait_for(lambda: not self.agents[-1].task_statuses(), timeout=30)
        for a in self.agents:
            a.stop()
        rt = self.runtime()
        for tid in self.ids:
            rt.remove(tid)
        self.fd.stop()
        assert leftovers(self.tmp / "runtime", self.ids) == []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def with_health(t: pb.Task, *test: str, interval: float = 0.2, retries: int = 2,
                start_period: float = 0.0) -> pb.Task:
    h = t.spec.container.healthcheck
    h.test.extend(test)
    h.interval_s, h.timeout_s, h.retries = interval, 5.0, retries
    h.start_period_s = start_period
    return t


@requires_probes
def test_healthy_task_is_running_only_once_healthy(env: Env) -> None:
    env.agent()
    t = with_health(make_task("sh", "-c", "sleep 1; touch /tmp/ready; sleep 600"),
                    "CMD", "test", "-f", "/tmp/ready", start_period=60)
    env.assign(t)
    wait_for(lambda: env.status(t.id).state == S.RUNNING, timeout=30)
    seen = env.states(t.id)
    assert (S.STARTING, "starting") in seen
    assert seen[-1] == (S.RUNNING, "healthy")
    assert env.status(t.id).pid > 0


@requires_probes
def test_unhealthy_task_is_shut_down_and_failed(env: Env) -> None:
    env.agent()
    t = with_health(make_task("sh", "-c", "touch /tmp/ok; sleep 600"),
                    "CMD-SHELL", "test -f /tmp/ok && echo fine || { echo broken; exit 1; }")
    env.assign(t)
    wait_for(lambda: env.status(t.id).state == S.RUNNING, timeout=30)
    env.agents[-1].runtime.probe(t.id, ["rm", "/tmp/ok"], 5)  # the service breaks
    wait_for(lambda: env.status(t.id).state == S.FAILED, timeout=30)
    st = env.status(t.id)
    assert st.err == "unhealthy: broken"
    assert st.health == "unhealthy"


def test_oom_kill_reported_as_failed_exit_137(env: Env) -> None:
    env.agent()
    t = make_task("sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
    t.spec.resources.limits.memory_bytes = 16 << 20
    env.assign(t)
    wait_for(lambda: env.status(t.id).state == S.FAILED, timeout=30)
    st = env.status(t.id)
    assert st.err == "exit 137 (out of memory)"
    assert st.oom_killed and st.has_exit_code and st.exit_code == 137


def test_agent_restart_keeps_container_and_reports_a_later_exit(env: Env,
                                                               tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    first = env.agent()
    t = make_task("sh", "-c", "while [ ! -f /ctl/go ]; do sleep 0.05; done; exit 5")
    t.spec.container.mounts.add(type="bind", source=str(ctl), target="/ctl")
    env.assign(t)
    wait_for(lambda: env.status(t.id).state == S.RUNNING, timeout=30)
    pid = env.status(t.id).pid
    first.stop()
    assert Path(f"/proc/{pid}").exists()  # the container outlives the agent

    second = env.agent()
    wait_for(lambda: t.id in second.task_statuses(), timeout=10)
    assert second.task_statuses()[t.id].state == S.RUNNING  # re-adopted, not lost
    (ctl / "go").touch()
    wait_for(lambda: env.status(t.id).state == S.FAILED, timeout=30)
    st = env.status(t.id)
    assert st.err == "exit 5" and st.exit_code == 5
