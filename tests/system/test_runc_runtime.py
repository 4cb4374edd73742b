"""The runc runtime on its own: isolation, config, limits, stop, adoption, probes, cleanup.

Real containers from a busybox rootfs (tests/harness/fake_images.py); needs root, runc
and busybox-static. Every test removes its containers and checks that nothing is left
(mounts, cgroups, network namespaces, bundles, runc state).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from tests.harness.fake_dispatcher import wait_for
from tests.harness.fake_images import FakeImageStore
from tests.system.runc_support import leftovers, make_task, requires_probes, requires_runc
from worker import controller as C
from worker.errors import RejectError
from worker.runtime.base import ExitInfo
from worker.runtime.runc import RuncRuntime
from worker.runtime.runc_fs import cpu_stat_file
from worker.runtime.taskfiles import read_json
from worker.secrets import TaskFiles

pytestmark = requires_runc


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.images = FakeImageStore(tmp / "images")
        self.state = tmp / "runtime"
        self.rt = self.runtime()
        self.ids: list[str] = []

    def runtime(self) -> RuncRuntime:
        return RuncRuntime(self.state, RealClock(), self.images, hostname="w1",
                           volumes_dir=self.tmp / "volumes")

    def run(self, task: object, timeout: float = 30.0) -> tuple[ExitInfo, str]:
        """prepare + start + wait: the exit and the output."""
        self.start(task)
        info = self.rt.wait(task.id, timeout)  # type: ignore[attr-defined]
        assert info is not None, "container did not exit in time"
        return info, "\n".join(self.rt.logs(task.id))  # type: ignore[attr-defined]

    def start(self, task: object) -> int:
        self.ids.append(task.id)  # type: ignore[attr-defined]
        self.rt.prepare(task)  # type: ignore[arg-type]
        return self.rt.start(task.id)  # type: ignore[attr-defined]

    def close(self) -> None:
        for tid in self.ids:
            self.rt.remove(tid)
        assert leftovers(self.state, self.ids) == []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_pid1_is_the_command_and_host_processes_are_invisible(env: Env) -> None:
    t = make_task("sh", "-c", "echo pid=$$; hostname; ps -o pid,comm | wc -l; cat /etc/hostname")
    info, out = env.run(t)
    lines = out.splitlines()
    assert info == ExitInfo(0)
    assert lines[0] == "pid=1"
    assert lines[1] == t.id[:12]  # the task's hostname
    assert int(lines[2]) <= 4  # header, sh, ps, wc: no host process
    assert lines[3] == t.id[:12]


def test_spec_hostname_env_user_workdir(env: Env) -> None:
    t = make_task("sh", "-c", "hostname; id -u; id -g; pwd;"
                  " echo $IMAGE_VAR $MINE $SWARMLET_TASK_SLOT; echo home=$HOME; exit 7",
                  hostname="web-1", user="app", dir="/tmp")
    t.spec.container.env.append("MINE=mine")
    info, out = env.run(t)
    assert info == ExitInfo(7)
    assert out.splitlines() == ["web-1", "1000", "1000", "/tmp", "from-image mine 1",
                                "home=/home/app"]


def test_numeric_user_and_group(env: Env) -> None:
    info, out = env.run(make_task("sh", "-c", "id -u; id -g", user="4242:77"))
    assert info == ExitInfo(0) and out.splitlines() == ["4242", "77"]


def test_image_cmd_used_when_the_spec_has_no_command(env: Env) -> None:
    env.images.add("withcmd", {"Entrypoint": ["sh", "-c"], "Cmd": ["echo from-image-cmd"]})
    t = make_task()
    t.spec.container.image = "withcmd:1"
    assert env.run(t) == (ExitInfo(0), "from-image-cmd")


def test_image_user_applies_unless_the_spec_names_one(env: Env) -> None:
    env.images.add("asapp", {"User": "app", "Cmd": ["id", "-u"]})
    t = make_task()
    t.spec.container.image = "asapp"
    assert env.run(t) == (ExitInfo(0), "1000")
    t2 = make_task("id", "-u", user="0")
    t2.spec.container.image = "asapp"
    assert env.run(t2) == (ExitInfo(0), "0")


@pytest.mark.parametrize(
    ("kw", "cmd", "message"),
    [
        ({"user": "nosuch"}, ("true",), "user: unknown user nosuch in image"),
        ({}, ("nosuchcmd",), 'cannot execute command: "nosuchcmd": executable file not found'),
        ({"image": "missing:1"}, ("true",), "missing:1: repository docker.io/library/missing"),
    ],
)
def test_rejects_what_cannot_run(env: Env, kw: dict[str, str], cmd: tuple[str, ...],
                                 message: str) -> None:
    t = make_task(*cmd, **kw)
    env.ids.append(t.id)
    with pytest.raises(RejectError, match=message.replace("(", r"\(")):
        env.rt.prepare(t)


def test_bind_source_missing_is_rejected(env: Env, tmp_path: Path) -> None:
    t = make_task("true")
    t.spec.container.mounts.add(type="bind", source=str(tmp_path / "nope"), target="/data")
    env.ids.append(t.id)
    with pytest.raises(RejectError, match=f"mount: bind source {tmp_path / 'nope'} does not exist"):
        env.rt.prepare(t)


def test_bind_volume_tmpfs_and_readonly_rootfs(env: Env, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    t = make_task("sh", "-c",
                  "cat /ro/in.txt; echo v > /vol/file; mount | grep -c ' /scratch type tmpfs';"
                  " touch /ro/x 2>/dev/null || echo ro-bind-ok;"
                  " touch /rootfile 2>/dev/null || echo ro-root-ok; echo t > /scratch/t",
                  read_only=True)
    t.spec.container.mounts.add(type="bind", source=str(host), target="/ro", read_only=True)
    t.spec.container.mounts.add(type="volume", source="data1", target="/vol")
    t.spec.container.mounts.add(type="tmpfs", target="/scratch", tmpfs_size_bytes=1 << 20)
    info, out = env.run(t)
    assert info == ExitInfo(0), out
    assert out.splitlines() == ["from host", "1", "ro-bind-ok", "ro-root-ok"]
    env.rt.remove(t.id)
    assert (tmp_path / "volumes" / "data1" / "file").read_text() == "v\n"  # volumes are kept


def test_secrets_and_configs_on_tmpfs(env: Env) -> None:
    t = make_task("sh", "-c", "cat /run/secrets/db_pass; cat /etc/app.conf;"
                  " { echo x > /run/secrets/db_pass; } 2>/dev/null || echo read-only")
    t.spec.container.secrets.add(secret_id="s1", secret_name="db_pass")
    t.spec.container.configs.add(config_id="c1", config_name="app", target="/etc/app.conf")
    files = TaskFiles(
        secrets=(pb.Secret(id="s1", spec=pb.SecretSpec(data=b"hunter2\n")),),
        configs=(pb.Config(id="c1", spec=pb.ConfigSpec(data=b"debug=1\n")),),
    )
    env.ids.append(t.id)
    env.rt.prepare(t, files)
    files_dir = str(env.rt.task_dir(t.id) / "files")
    with open("/proc/self/mountinfo") as f:
        assert any(ln.split()[4] == files_dir and " - tmpfs " in ln for ln in f)
    env.rt.start(t.id)
    assert env.rt.wait(t.id, 30) == ExitInfo(0)
    assert list(env.rt.logs(t.id)) == ["hunter2", "debug=1", "read-only"]


def test_memory_limit_oom_kill_is_reported(env: Env) -> None:
    t = make_task("sh", "-c", "echo go; exec dd if=/dev/zero of=/dev/null bs=64M count=1")
    t.spec.resources.limits.memory_bytes = 16 << 20
    info, out = env.run(t)
    assert info.exit_code == 137 and info.oom, (info, out)
    st = C.exited(info, time.time())
    assert st.err == "exit 137 (out of memory)" and st.oom_killed


def test_cpu_limit_throttles(env: Env) -> None:
    t = make_task("sh", "-c", "while :; do :; done")
    t.spec.resources.limits.nano_cpus = 200_000_000  # 0.2 CPU
    env.start(t)
    stat = cpu_stat_file(f"/swarmlet/{t.id}")
    assert stat is not None

    def throttled() -> bool:
        fields = dict(line.split() for line in Path(stat).read_text().splitlines())
        return int(fields.get("nr_throttled", "0")) > 0

    wait_for(throttled, timeout=20)
    env.rt.shutdown(t.id, 0.2)


def test_stop_signal_then_sigkill_after_grace(env: Env) -> None:
    polite = make_task("sh", "-c", "trap 'exit 143' TERM; echo up; while :; do sleep 0.05; done")
    stubborn = make_task("sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done")
    custom = make_task("sh", "-c", "trap 'exit 42' USR1; echo up; while :; do sleep 0.05; done",
                       stop_signal="SIGUSR1")
    for t in (polite, stubborn, custom):
        env.start(t)
    for t in (polite, stubborn, custom):
        wait_for(_said("up", env.rt, t.id), timeout=20)
    env.rt.shutdown(polite.id, 10.0)
    assert env.rt.wait(polite.id, 0) == ExitInfo(143)
    t0 = time.monotonic()
    env.rt.shutdown(stubborn.id, 0.5)
    assert time.monotonic() - t0 >= 0.5
    assert env.rt.wait(stubborn.id, 0) == ExitInfo(137, False, "killed by SIGKILL")
    env.rt.shutdown(custom.id, 10.0)
    assert env.rt.wait(custom.id, 0) == ExitInfo(42)


def _said(word: str, rt: RuncRuntime, tid: str) -> Callable[[], bool]:
    return lambda: word in list(rt.logs(tid))


def test_new_runtime_adopts_running_container_and_learns_its_exit(env: Env,
                                                                   tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    t = make_task("sh", "-c", "while [ ! -f /ctl/go ]; do sleep 0.05; done; exit 5")
    t.spec.container.mounts.add(type="bind", source=str(ctl), target="/ctl")
    pid = env.start(t)
    env.rt = env.runtime()  # as after an agent restart: nothing in memory
    assert env.rt.adopt(t.id)
    state = env.rt.inspect(t.id)
    assert state is not None and state.running and state.pid == pid
    assert env.rt.wait(t.id, 0) is None
    (ctl / "go").touch()
    assert env.rt.wait(t.id, 20) == ExitInfo(5)


def test_killed_monitor_or_spawner(env: Env) -> None:
    t = make_task("sleep", "600")
    env.start(t)
    mon = read_json(env.rt.task_dir(t.id) / "monitor.json")
    assert mon is not None
    spawner = env.rt._zygote._proc  # noqa: SLF001 (the test kills it on purpose)
    assert spawner is not None
    spawner.kill()
    spawner.wait()
    os.kill(int(mon["pid"]), signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{mon['pid']}").exists(), timeout=10)
    assert env.rt.wait(t.id, 0.3) is None  # the container still runs without its monitor
    env.rt.shutdown(t.id, 0.2)
    info = env.rt.wait(t.id, 0)
    assert info is not None and not info.code_known and "monitor died" in info.message
    t2 = make_task("sh", "-c", "exit 4")  # a new spawner serves the next start
    assert env.run(t2)[0] == ExitInfo(4)


@requires_probes
def test_probe_runs_inside_the_container(env: Env) -> None:
    t = make_task("sh", "-c", "echo ready > /tmp/state; sleep 60")
    env.start(t)
    wait_for(lambda: env.rt.probe(t.id, ["cat", "/tmp/state"], 5).ok, timeout=20)
    assert env.rt.probe(t.id, ["cat", "/tmp/state"], 5).output.strip() == "ready"
    bad = env.rt.probe(t.id, ["sh", "-c", "echo nope; exit 3"], 5)
    assert (bad.exit_code, bad.output.strip()) == (3, "nope")
    slow = env.rt.probe(t.id, ["sleep", "30"], 0.3)
    assert slow.exit_code is None and "timeout" in slow.output
    env.rt.shutdown(t.id, 0.2)


def test_log_rotation_keeps_one_old_file(env: Env) -> None:
    env.rt = RuncRuntime(env.state, RealClock(), env.images, log_max_bytes=1000)
    t = make_task("sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done;"
                  " sleep 1.5; echo last")
    env.start(t)
    info = None
    while info is None:
        info = env.rt.wait(t.id, 0.5)
    env.rt.wait(t.id, 0)
    d = env.rt.task_dir(t.id)
    assert (d / "output.log.1").exists()
    assert os.path.getsize(d / "output.log") <= 1000
    assert list(env.rt.logs(t.id))[-1] == "last"
