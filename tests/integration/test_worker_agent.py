"""The worker agent against a fake dispatcher (in-process gRPC on loopback).

Process-runtime tests start real processes; the `env` fixture kills all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet import states as S
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from tests.harness.fake_dispatcher import FakeDispatcher, FakeSession, wait_for
from tests.harness.stub_runtime import StubRuntime, kill_process_tasks, pid_alive
from worker.agent import Agent
from worker.runtime import Runtime, make_runtime
from worker.session import Backoff


def task(tid: str, *cmd: str, env: tuple[str, ...] = (), desired: int = S.RUNNING) -> pb.Task:
    t = pb.Task(id=tid, service_id="svc1", service_name="web", slot=1, node_id="node-1")
    t.desired_state = desired  # type: ignore[assignment]
    t.status.state = S.ASSIGNED  # type: ignore[assignment]
    t.spec.container.image = "busybox"
    t.spec.container.command.extend(cmd)
    t.spec.container.env.extend(env)
    t.spec.container.stop_grace_period_s = 5
    return t


def forward_per_session(sess: FakeSession) -> dict[str, list[int]]:
    """task id -> states received in this session; asserts each list strictly increases."""
    seen: dict[str, list[int]] = {}
    for u in sess.updates():
        seen.setdefault(u.task_id, []).append(u.status.state)
    for tid, states in seen.items():
        assert states == sorted(set(states)), f"{tid}: not forward: {states}"
    return seen


class Env:
    """One fake dispatcher plus the agents a test makes; tears everything down."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fd = FakeDispatcher(heartbeat_period_s=0.1).start()
        self.agents: list[Agent] = []
        self.left: list[str] = []

    def runtime(self, name: str = "process") -> Runtime:
        return make_runtime(name, self.tmp / "runtime", RealClock(), hostname="w1")

    def agent(
        self, runtime: Runtime | None = None, managers: list[str] | None = None, **kw: object
    ) -> Agent:
        rt = runtime or self.runtime()
        a = Agent(
            state_dir=self.tmp / "agent",
            managers=managers or [self.fd.addr],
            credentials_factory=grpc.insecure_channel,
            runtime=rt,
            description=pb.NodeDescription(hostname="w1"),
            addr="127.0.0.1",
            clock=RealClock(),
            node_id="node-1",
            on_leave=self.left.append,
            **kw,  # type: ignore[arg-type]
        )
        self.agents.append(a)
        a.start()
        return a

    def state(self, tid: str) -> int:
        st = self.fd.latest().get(tid)
        return st.state if st is not None else 0

    def close(self) -> None:
        for a in self.agents:
            a.stop()
        kill_process_tasks(self.tmp / "runtime")
        self.fd.stop()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def state_is(env: Env, tid: str, state: int) -> Callable[[], bool]:
    return lambda: env.state(tid) == state


# ---------------------------------------------------------------------- session


def test_hello_first_then_session_and_heartbeats(env: Env) -> None:
    agent = env.agent()
    wait_for(lambda: env.fd.sessions and env.fd.session.heartbeats() >= 3)
    first = env.fd.session.received[0]
    assert first.WhichOneof("msg") == "hello"
    assert first.hello.addr == "127.0.0.1"
    assert first.hello.description.hostname == "w1"
    assert first.hello.description.runtime == "process"
    assert agent.connected.is_set() and agent.sessions == 1
    assert agent.managers[0] == env.fd.addr


def test_process_task_runs_then_stops_when_unassigned(env: Env) -> None:
    agent = env.agent()
    wait_for(agent.connected.is_set)
    env.fd.assign([task("t1", "sleep", "60"), task("t2", "sleep", "60")])
    wait_for(lambda: env.state("t1") == env.state("t2") == S.RUNNING)
    states = forward_per_session(env.fd.session)
    assert states["t1"][-1] == S.RUNNING
    assert any(len(m.statuses.updates) > 1 for m in env.fd.session.received
               if m.WhichOneof("msg") == "statuses"), "statuses were not batched"
    pid = env.fd.latest()["t1"].pid
    assert pid > 0 and pid_alive(pid)

    env.fd.assign([task("t2", "sleep", "60")])  # t1 is no longer listed
    wait_for(state_is(env, "t1", S.SHUTDOWN))
    assert not pid_alive(pid)
    wait_for(lambda: "t1" not in agent.task_statuses())
    assert not (env.tmp / "runtime" / "t1").exists()
    assert env.state("t2") == S.RUNNING


def test_desired_shutdown_stops_but_keeps_until_unlisted(env: Env) -> None:
    agent = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    env.fd.assign([task("t1", "sleep", "60", desired=S.SHUTDOWN)])
    wait_for(state_is(env, "t1", S.SHUTDOWN))
    assert env.fd.latest()["t1"].has_exit_code
    assert "t1" in agent.task_statuses()
    assert (env.tmp / "runtime" / "t1").exists()  # logs kept while the manager lists it
    env.fd.assign([])
    wait_for(lambda: not agent.task_statuses())
    wait_for(lambda: not (env.tmp / "runtime" / "t1").exists())


def test_exit_codes_and_rejections(env: Env) -> None:
    env.agent()
    env.fd.assign([
        task("ok", "sh", "-c", "echo hi"),
        task("bad", "sh", "-c", "echo hi; exit 3"),
        task("nocmd"),
        task("notfound", "no-such-command-anywhere"),
    ])
    wait_for(lambda: all(S.is_terminal(env.state(t)) for t in ("ok", "bad", "nocmd", "notfound")))
    latest = env.fd.latest()
    assert latest["ok"].state == S.COMPLETE and latest["ok"].exit_code == 0
    assert latest["bad"].state == S.FAILED
    assert (latest["bad"].err, latest["bad"].exit_code) == ("exit 3", 3)
    assert latest["nocmd"].state == S.REJECTED and latest["nocmd"].err == "no command given"
    assert latest["notfound"].state == S.REJECTED
    assert "No such file or directory" in latest["notfound"].err


def test_stale_assignments_are_ignored(env: Env) -> None:
    agent = env.agent(runtime=env.runtime("sim"))
    env.fd.assign([task("t1")], sequence=5)
    wait_for(state_is(env, "t1", S.RUNNING))
    env.fd.assign([], sequence=4)
    env.fd.assign([task("t1"), task("t2")], sequence=6)
    wait_for(state_is(env, "t2", S.RUNNING))
    assert agent.task_statuses()["t1"].state == S.RUNNING


class RecordingNetworking:
    """A TaskNetworking that records updates (with the tasks the runtime knew then) and
    fails on the first, as a broken data plane would."""

    def __init__(self, stub: StubRuntime) -> None:
        self.stub = stub
        self.seen: list[tuple[list[str], int]] = []  # (task ids, runtime starts so far)

    def update(self, a: pb.Assignments) -> None:
        self.seen.append(([t.id for t in a.tasks], self.stub.count("start")))
        if len(self.seen) == 1:
            raise RuntimeError("data plane broken")

    def attach(self, task: pb.Task, netns_path: str) -> None:
        return None

    def detach(self, task_id: str) -> None: ...

    def close(self) -> None: ...


def test_networking_sees_assignments_before_tasks_change_and_cannot_crash_the_agent(
        env: Env) -> None:
    stub = StubRuntime(RealClock())
    net = RecordingNetworking(stub)
    env.agent(runtime=stub, networking=net)
    env.fd.assign([task("n1")], sequence=1)  # the update fails: the task still runs
    wait_for(state_is(env, "n1", S.RUNNING))
    env.fd.assign([task("n1"), task("n2")], sequence=2)
    wait_for(state_is(env, "n2", S.RUNNING))
    assert net.seen == [(["n1"], 0), (["n1", "n2"], 1)]  # each before the driver acted


# ---------------------------------------------------------------------- reconnects


def test_stream_drop_reconnects_and_resends_statuses(env: Env) -> None:
    agent = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    env.fd.drop()
    wait_for(lambda: len(env.fd.sessions) == 2 and agent.connected.is_set())
    second = env.fd.sessions[1]
    assert second.received[0].WhichOneof("msg") == "hello"
    wait_for(lambda: any(u.task_id == "t1" and u.status.state == S.RUNNING
                         for u in second.updates()))
    assert agent.sessions == 2


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def test_backoff_grows_and_managers_rotate(env: Env) -> None:
    env.fd.refuse = grpc.StatusCode.UNAVAILABLE
    dead = _closed_port()
    backoff = Backoff(initial=0.02, maximum=0.64, jitter=0.0)
    agent = env.agent(runtime=env.runtime("sim"), managers=[dead, env.fd.addr], backoff=backoff)
    wait_for(lambda: len(env.fd.attempts) >= 3, timeout=20)
    gaps = [b - a for a, b in zip(env.fd.attempts, env.fd.attempts[1:], strict=False)]
    # every other attempt goes to the dead address, so each gap spans two backoffs
    assert gaps[-1] > gaps[0]
    env.fd.refuse = None
    wait_for(agent.connected.is_set, timeout=20)
    assert agent.managers[0] == env.fd.addr  # the session's managers list comes first
    assert dead in agent.managers


# ---------------------------------------------------------------------- restarts


def test_new_agent_readopts_running_process(env: Env) -> None:
    a1 = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    pid = env.fd.latest()["t1"].pid
    a1.stop()
    assert pid_alive(pid), "tasks must outlive the agent"

    a2 = env.agent()  # same state dir, fresh runtime object
    wait_for(lambda: a2.connected.is_set() and len(env.fd.sessions) == 2)
    wait_for(lambda: any(u.task_id == "t1" and u.status.state == S.RUNNING
                         for u in env.fd.sessions[1].updates()))
    assert a2.task_statuses()["t1"].pid == pid
    env.fd.assign([])
    wait_for(state_is(env, "t1", S.SHUTDOWN))
    assert not pid_alive(pid)


def test_process_gone_while_agent_down_reports_lost_exit(env: Env) -> None:
    a1 = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    pid = env.fd.latest()["t1"].pid
    a1.stop()
    os.kill(pid, signal.SIGKILL)  # dies while no agent watches...
    os.waitpid(pid, 0)  # ...and is reaped by someone else (init, for a real restart)
    env.agent()
    wait_for(state_is(env, "t1", S.FAILED))
    st = env.fd.latest()["t1"]
    assert st.err == "exit status lost across agent restart" and not st.has_exit_code


# ---------------------------------------------------------------------- sim and leave


def test_fifty_sim_tasks_run_without_threads_per_task(env: Env) -> None:
    stub = StubRuntime(RealClock())
    agent = env.agent(runtime=stub)
    wait_for(lambda: agent.connected.is_set() and env.fd.sessions)
    before = threading.active_count()  # agent loop + session reader + gRPC's own threads
    tasks = [task(f"s{i:02d}") for i in range(50)]
    env.fd.assign(tasks)
    wait_for(lambda: all(env.state(t.id) == S.RUNNING for t in tasks), timeout=10)
    assert threading.active_count() <= before + 1  # no thread per task (+1: test server)
    assert stub.count("start") == 50
    env.fd.assign([])
    wait_for(lambda: all(env.state(t.id) == S.SHUTDOWN for t in tasks))
    wait_for(lambda: not agent.task_statuses())
    assert stub.count("shutdown") == 50 and stub.count("remove") == 50


def test_sim_exit_code_and_restart_delay(env: Env) -> None:
    env.agent(runtime=env.runtime("sim"))
    delayed = task("late")
    delayed.not_before = RealClock().now() + 0.3
    env.fd.assign([task("x", env=("SIM_EXIT=3", "SIM_RUN_S=0.2")), delayed])
    wait_for(state_is(env, "late", S.STARTING))
    wait_for(state_is(env, "x", S.FAILED))
    assert env.fd.latest()["x"].exit_code == 3
    wait_for(state_is(env, "late", S.RUNNING))
    assert env.fd.latest()["late"].timestamp >= delayed.not_before


def test_manager_leave_stops_tasks_and_calls_on_leave(env: Env) -> None:
    agent = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    pid = env.fd.latest()["t1"].pid
    env.fd.send_leave("node removed")
    wait_for(lambda: env.left == ["node removed"])
    assert not pid_alive(pid)
    assert not agent.task_statuses()
    assert not agent.connected.is_set()


def test_local_leave_removes_everything(env: Env) -> None:
    agent = env.agent()
    env.fd.assign([task("t1", "sleep", "60")])
    wait_for(state_is(env, "t1", S.RUNNING))
    pid = env.fd.latest()["t1"].pid
    agent.leave(timeout=10)
    assert not pid_alive(pid)
    assert not (env.tmp / "runtime" / "t1").exists()
    assert env.left == []  # on_leave is for manager-initiated leave only
    wait_for(lambda: env.state("t1") == S.SHUTDOWN)


def test_removed_task_listed_again_is_not_rerun(env: Env) -> None:
    stub = StubRuntime(RealClock())
    agent = env.agent(runtime=stub)
    env.fd.assign([task("t1", env=("SIM_EXIT=3",))])
    wait_for(state_is(env, "t1", S.FAILED))
    env.fd.assign([])
    wait_for(lambda: not agent.task_statuses())
    n = len(env.fd.updates())
    env.fd.assign([task("t1", env=("SIM_EXIT=3",))])  # a lagging manager lists it again
    wait_for(lambda: len(env.fd.updates()) > n)
    assert env.fd.updates()[-1].status.state == S.FAILED
    assert stub.count("start") == 1 and not agent.task_statuses()
