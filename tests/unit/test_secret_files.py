"""Secrets and configs on the worker: selection per task, files written with the
reference's target and mode, the process runtime's SWARMLET_SECRETS_DIR."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import RealClock
from worker.errors import RejectError
from worker.runtime.process import ProcessRuntime
from worker.secrets import FileCache, TaskFiles, materialize, prepare_with_files


def secret(sid: str, data: bytes) -> pb.Secret:
    s = pb.Secret(id=sid)
    s.spec.annotations.name = f"name-{sid}"
    s.spec.data = data
    return s


def config(cid: str, data: bytes) -> pb.Config:
    c = pb.Config(id=cid)
    c.spec.annotations.name = f"name-{cid}"
    c.spec.data = data
    return c


def task_using() -> pb.Task:
    t = pb.Task(id="task1", service_name="app_db", slot=1)
    c = t.spec.container
    c.command.extend(["true"])
    c.secrets.add(secret_id="s1", secret_name="db_pw", target="db_pw", mode=0o400)
    c.secrets.add(secret_id="s2", secret_name="tls", target="/etc/tls/key.pem", mode=0o440)
    c.configs.add(config_id="c1", config_name="site", target="/etc/site.conf", mode=0o444)
    return t


def test_materialize_writes_files_and_returns_mounts(tmp_path: Path) -> None:
    mounts = materialize(task_using(), [secret("s1", b"pw"), secret("s2", b"key")],
                         [config("c1", b"conf")], tmp_path)
    assert [(m.source, m.target, m.read_only) for m in mounts] == [
        (str(tmp_path / "secrets"), "/run/secrets", True),
        (str(tmp_path / "secret-files/etc/tls/key.pem"), "/etc/tls/key.pem", True),
        (str(tmp_path / "configs/etc/site.conf"), "/etc/site.conf", True),
    ]
    assert (tmp_path / "secrets/db_pw").read_bytes() == b"pw"
    assert stat.S_IMODE((tmp_path / "secrets/db_pw").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "secret-files/etc/tls/key.pem").stat().st_mode) == 0o440
    assert (tmp_path / "configs/etc/site.conf").read_bytes() == b"conf"


@pytest.mark.parametrize("target", ["../escape", "a/../../b"])
def test_targets_cannot_leave_the_directory(tmp_path: Path, target: str) -> None:
    t = pb.Task(id="t")
    t.spec.container.secrets.add(secret_id="s1", secret_name="x", target=target)
    with pytest.raises(RejectError):
        materialize(t, [secret("s1", b"v")], [], tmp_path / "d")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "b").exists()


def test_cache_gives_each_task_its_own_and_names_what_is_missing() -> None:
    cache = FileCache()
    cache.update([secret("s1", b"a"), secret("s2", b"b"), secret("s9", b"z")],
                 [config("c1", b"c")])
    files = cache.for_task(task_using())
    assert [s.id for s in files.secrets] == ["s1", "s2"]
    assert [c.id for c in files.configs] == ["c1"]
    cache.update([secret("s1", b"a")], [])
    with pytest.raises(RejectError) as info:
        cache.for_task(task_using())
    assert str(info.value) == "not delivered to this node: tls, site"


def test_process_runtime_puts_files_under_the_task_dir(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path, RealClock(), hostname="h")
    task = task_using()
    files = TaskFiles((secret("s1", b"pw"), secret("s2", b"key")), (config("c1", b"conf"),))
    prepare_with_files(rt, task, files)
    spec = json.loads((rt.task_dir("task1") / "spec.json").read_text())
    secrets_dir = Path(spec["env"]["SWARMLET_SECRETS_DIR"])
    assert (secrets_dir / "db_pw").read_bytes() == b"pw"
    configs_dir = Path(spec["env"]["SWARMLET_CONFIGS_DIR"])
    assert (configs_dir / "etc/site.conf").read_bytes() == b"conf"
    assert b"pw" not in (rt.task_dir("task1") / "spec.json").read_bytes()
    rt.remove("task1")
    assert not secrets_dir.exists()


def test_runtimes_that_cannot_deliver_files_reject() -> None:
    class Plain:
        name = "plain"
        prepared: list[str] = []

        def prepare(self, task: pb.Task) -> None:
            self.prepared.append(task.id)

    rt = Plain()
    prepare_with_files(rt, task_using(), TaskFiles())  # type: ignore[arg-type]
    assert rt.prepared == ["task1"]
    with pytest.raises(RejectError) as info:
        prepare_with_files(rt, task_using(), TaskFiles((secret("s1", b"pw"),)))  # type: ignore[arg-type]
    assert str(info.value) == "the plain runtime cannot deliver secrets or configs"
