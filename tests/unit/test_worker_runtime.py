"""Runtimes: process (real child processes, all killed afterwards) and sim."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import FakeClock, RealClock
from tests.harness.fake_dispatcher import wait_for
from tests.harness.stub_runtime import kill_process_tasks, pid_alive
from worker.errors import RejectError, TaskNotFound, WorkerError
from worker.runtime import make_runtime
from worker.runtime.base import EXIT_UNKNOWN
from worker.runtime.process import LOST_EXIT_MESSAGE, ProcessRuntime, rotate_log
from worker.runtime.sim import SimRuntime


def task(tid: str, *cmd: str, env: tuple[str, ...] = (), grace: float = 0.0) -> pb.Task:
    t = pb.Task(id=tid, service_name="web", slot=3, node_id="node-9")
    c = t.spec.container
    c.image = "busybox:latest"
    c.command.extend(cmd)
    c.env.extend(env)
    c.stop_grace_period_s = grace
    return t


kill_all = kill_process_tasks
alive = pid_alive


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[ProcessRuntime]:
    r = ProcessRuntime(tmp_path / "rt", RealClock(), hostname="host-a")
    yield r
    kill_all(tmp_path / "rt")


# ---------------------------------------------------------------------- process


def test_exit_code_and_log(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sh", "-c", "echo hi; echo oops >&2; exit 3"))
    pid = rt.start("t1")
    assert pid > 0
    info = rt.wait("t1", 10)
    assert info is not None and (info.exit_code, info.oom) == (3, False)
    assert list(rt.logs("t1")) == ["hi", "oops"]
    state = rt.inspect("t1")
    assert state is not None and not state.running and state.exit == info


def test_args_follow_command_and_image_is_recorded(rt: ProcessRuntime) -> None:
    t = task("t1", "sh", "-c")
    t.spec.container.args.extend(['echo "$0 $1"', "a", "b"])
    rt.prepare(t)
    rt.start("t1")
    assert rt.wait("t1", 10) is not None
    assert list(rt.logs("t1")) == ["a b"]
    spec = json.loads((rt.task_dir("t1") / "spec.json").read_text())
    assert spec["image"] == "busybox:latest"


def test_env(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "env", env=("FOO=bar", "EMPTY=")))
    rt.start("t1")
    assert rt.wait("t1", 10) == rt.inspect("t1").exit  # type: ignore[union-attr]
    env = dict(line.partition("=")[::2] for line in rt.logs("t1"))
    assert env["FOO"] == "bar" and env["EMPTY"] == ""
    assert env["SWARMLET_TASK_ID"] == "t1"
    assert env["SWARMLET_TASK_SLOT"] == "3"
    assert env["SWARMLET_SERVICE_NAME"] == "web"
    assert env["SWARMLET_NODE_ID"] == "node-9"
    assert env["SWARMLET_NODE_HOSTNAME"] == "host-a"


def test_shutdown_sigterm_within_grace(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sleep", "60"))
    pid = rt.start("t1")
    assert rt.wait("t1", 0) is None
    rt.shutdown("t1", grace_s=10)
    info = rt.wait("t1", 0)
    assert info is not None and info.exit_code == 128 + signal.SIGTERM
    assert not alive(pid)


def test_shutdown_sigkill_after_grace(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sh", "-c", "trap '' TERM; echo ready; sleep 60"))
    pid = rt.start("t1")
    wait_for(lambda: list(rt.logs("t1")) == ["ready"])
    rt.shutdown("t1", grace_s=0.3)
    info = rt.wait("t1", 0)
    assert info is not None and info.exit_code == 128 + signal.SIGKILL
    assert not alive(pid)


def test_shutdown_kills_the_whole_group(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sh", "-c", "sleep 60 & echo $!; wait"))
    rt.start("t1")
    wait_for(lambda: list(rt.logs("t1")))
    child = int(next(rt.logs("t1")))
    assert alive(child)
    rt.shutdown("t1", grace_s=5)
    wait_for(lambda: not alive(child), timeout=5)


@pytest.mark.parametrize(
    ("cmd", "needle"),
    [
        ((), "no command given"),
        (("definitely-not-a-command-xyz",), "No such file or directory"),
        (("/nonexistent/bin/x",), "No such file or directory"),
        (("{noexec}",), "Permission denied"),
    ],
)
def test_reject(
    rt: ProcessRuntime, tmp_path: Path, cmd: tuple[str, ...], needle: str
) -> None:
    noexec = tmp_path / "plain.txt"
    noexec.write_text("not a program")
    noexec.chmod(0o644)
    with pytest.raises(RejectError, match=needle):
        rt.prepare(task("t1", *(c.format(noexec=noexec) for c in cmd)))


def test_reject_bad_env(rt: ProcessRuntime) -> None:
    with pytest.raises(RejectError, match="KEY=VALUE"):
        rt.prepare(task("t1", "true", env=("NOEQUALS",)))


def test_adopt_after_restart(tmp_path: Path, rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sleep", "60"))
    pid = rt.start("t1")
    rt2 = ProcessRuntime(tmp_path / "rt", RealClock())  # a new agent's runtime
    assert not rt2.adopt("unknown")
    assert rt2.adopt("t1")
    st = rt2.inspect("t1")
    assert st is not None and st.running and st.pid == pid
    assert rt2.start("t1") == pid  # start is idempotent: never a second process
    rt2.shutdown("t1", grace_s=5)
    info = rt2.wait("t1", 0)
    assert info is not None and not alive(pid)


def test_adopted_process_gone_reports_lost_exit(tmp_path: Path, rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sleep", "60"))
    pid = rt.start("t1")
    rt2 = ProcessRuntime(tmp_path / "rt", RealClock())
    assert rt2.adopt("t1")
    os.killpg(pid, signal.SIGKILL)
    rt.wait("t1", 5)  # the old runtime (its parent) reaps it, as init would
    info = rt2.wait("t1", 5)
    assert info is not None
    assert (info.exit_code, info.message) == (EXIT_UNKNOWN, LOST_EXIT_MESSAGE)


def test_pid_reuse_is_not_adopted_as_alive(tmp_path: Path, rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sleep", "60"))
    rt.start("t1")
    pid_file = rt.task_dir("t1") / "pid.json"
    rec = json.loads(pid_file.read_text())
    rec["start_ticks"] += 1  # as if the pid now named another process
    pid_file.write_text(json.dumps(rec))
    rt2 = ProcessRuntime(tmp_path / "rt", RealClock())
    assert rt2.adopt("t1")
    info = rt2.wait("t1", 0)
    assert info is not None and info.exit_code == EXIT_UNKNOWN


def test_remove_is_idempotent_and_kills(rt: ProcessRuntime) -> None:
    rt.prepare(task("t1", "sleep", "60"))
    pid = rt.start("t1")
    rt.remove("t1")
    assert not alive(pid)
    assert not rt.task_dir("t1").exists()
    assert rt.inspect("t1") is None
    rt.remove("t1")
    rt.remove("never-seen")
    with pytest.raises(TaskNotFound):
        rt.wait("t1", 0)


def test_log_rotation(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("x" * 100)
    assert not rotate_log(log, 200)
    assert rotate_log(log, 50)
    assert log.stat().st_size == 0
    assert (tmp_path / "output.log.1").read_text() == "x" * 100


def test_log_rotation_while_running(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "rt", RealClock(), log_max_bytes=4096)
    try:
        rt.prepare(task("t1", "sh", "-c", "while :; do echo 0123456789abcdef; done"))
        rt.start("t1")
        old = rt.task_dir("t1") / "output.log.1"
        wait_for(lambda: rt.wait("t1", 0) is None and old.exists(), timeout=10)
        rt.shutdown("t1", 5)
        assert old.stat().st_size > 4096
        lines = list(rt.logs("t1"))
        # copy-and-truncate may cut a line at the rotation point; the rest are whole
        assert sum(line == "0123456789abcdef" for line in lines) >= 0.9 * len(lines)
    finally:
        kill_all(tmp_path / "rt")


def test_make_runtime(tmp_path: Path) -> None:
    assert make_runtime("process", tmp_path, RealClock()).name == "process"
    assert make_runtime("sim", tmp_path, RealClock()).name == "sim"
    with pytest.raises(WorkerError):
        make_runtime("docker", tmp_path, RealClock())


# ---------------------------------------------------------------------- sim


def test_sim_runs_until_shutdown() -> None:
    clock = FakeClock()
    rt = SimRuntime(clock)
    rt.prepare(task("s1"))  # no command needed: nothing runs
    assert rt.start("s1") == 0
    assert rt.adopt("s1")
    clock.advance(3600)
    assert rt.wait("s1", 0) is None
    assert rt.next_check("s1", clock.monotonic()) is None  # no polling needed
    rt.shutdown("s1", 10)
    info = rt.wait("s1", 0)
    assert info is not None and info.exit_code == 0
    rt.remove("s1")
    assert rt.inspect("s1") is None and not rt.adopt("s1")


def test_sim_exit_after_run_s() -> None:
    clock = FakeClock()
    rt = SimRuntime(clock)
    rt.prepare(task("s1", env=("SIM_EXIT=3", "SIM_RUN_S=5")))
    rt.start("s1")
    assert rt.next_check("s1", clock.monotonic()) == clock.monotonic() + 5
    clock.advance(4.9)
    assert rt.wait("s1", 0) is None
    clock.advance(0.1)
    info = rt.wait("s1", 0)
    assert info is not None and info.exit_code == 3


def test_sim_wait_with_timeout_uses_the_clock() -> None:
    clock = FakeClock()
    rt = SimRuntime(clock)
    rt.prepare(task("s1", env=("SIM_RUN_S=2",)))
    rt.start("s1")
    assert rt.wait("s1", 1) is None
    info = rt.wait("s1", 5)
    assert info is not None and info.exit_code == 0


def test_sim_exit_alone_exits_at_once_and_reject() -> None:
    rt = SimRuntime(FakeClock())
    rt.prepare(task("s1", env=("SIM_EXIT=2",)))
    rt.start("s1")
    info = rt.wait("s1", 0)
    assert info is not None and info.exit_code == 2
    with pytest.raises(RejectError, match="no image"):
        rt.prepare(task("s2", env=("SIM_REJECT=no image",)))
