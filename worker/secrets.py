"""Secrets and configs on the worker: which ones a task gets, and writing them as files.

The manager sends, with each assignment set, the secrets (decrypted) and configs used by
this node's tasks; `FileCache` keeps the latest set in memory only (never in the
worker's database). Before a task is prepared the driver takes its `TaskFiles` and hands
them to the runtime (`prepare_with_files`); the runtime calls `materialize`, which writes
one file per reference and returns the mounts that show them inside the task:

  <dest>/secrets/<target>     secrets with a relative target (the default: the secret's
                              name) -> one read-only bind of <dest>/secrets on /run/secrets
  <dest>/secret-files/<path>  secrets with an absolute target -> a read-only bind each
  <dest>/configs/<path>       configs (absolute targets, default /<name>) -> a read-only
                              bind of each file on its target

Files get the reference's mode (default 0444) and, when running as root, its uid/gid.

How a runtime uses this:
- process (no isolation): materialize into the task dir; the task finds its secrets
  under $SWARMLET_SECRETS_DIR and its configs under $SWARMLET_CONFIGS_DIR.
- runc: mount a small tmpfs on <dest> first (secrets must never touch the disk; e.g.
  `mount -t tmpfs -o size=1m,mode=0700 tmpfs <task dir>/files`), call materialize, and add
  each returned MountSpec to config.json as a bind mount
  `{"destination": m.target, "type": "bind", "source": m.source,
    "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}`; unmount the tmpfs in remove.
  Declare `delivers_files = True` and accept `prepare(task, files=None)`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RejectError

if TYPE_CHECKING:  # worker.runtime imports this module
    from worker.runtime.base import Runtime

SECRETS_MOUNT = "/run/secrets"
DEFAULT_MODE = 0o444


@dataclass(frozen=True, slots=True)
class MountSpec:
    """A host file or directory to show read-only inside the task at `target`."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True, slots=True)
class TaskFiles:
    """The secrets (with plain data) and configs one task references."""

    secrets: tuple[pb.Secret, ...] = ()
    configs: tuple[pb.Config, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.secrets or self.configs)


class FileCache:
    """The secrets/configs of the latest assignment set, by id (memory only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, pb.Secret] = {}
        self._configs: dict[str, pb.Config] = {}

    def update(self, secrets: Iterable[pb.Secret], configs: Iterable[pb.Config]) -> None:
        with self._lock:
            self._secrets = {s.id: s for s in secrets}
            self._configs = {c.id: c for c in configs}

    def for_task(self, task: pb.Task) -> TaskFiles:
        """The task's files; RejectError when one it references was not delivered."""
        c = task.spec.container
        with self._lock:
            missing = [r.secret_name or r.secret_id for r in c.secrets
                       if r.secret_id not in self._secrets]
            missing += [r.config_name or r.config_id for r in c.configs
                        if r.config_id not in self._configs]
            if missing:
                raise RejectError(f"not delivered to this node: {', '.join(missing)}")
            return TaskFiles(
                tuple(self._secrets[r.secret_id] for r in c.secrets),
                tuple(self._configs[r.config_id] for r in c.configs),
            )


def prepare_with_files(runtime: Runtime, task: pb.Task, files: TaskFiles) -> None:
    """runtime.prepare(task), passing the files to runtimes that deliver them."""
    if not files or runtime.name == "sim":
        runtime.prepare(task)  # the sim runtime runs nothing, so there is nothing to see
        return
    if not getattr(runtime, "delivers_files", False):
        raise RejectError(f"the {runtime.name} runtime cannot deliver secrets or configs")
    runtime.prepare(task, files)  # type: ignore[call-arg]


def _safe(target: str, kind: str) -> PurePosixPath:
    parts = [p for p in PurePosixPath(target).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise RejectError(f"{kind} target {target!r} is not a usable path")
    return PurePosixPath(*parts)


def _write(path: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode or DEFAULT_MODE)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def materialize(
    task: pb.Task, secrets: Iterable[pb.Secret], configs: Iterable[pb.Config], dest_dir: Path
) -> list[MountSpec]:
    """Write the task's secret and config files under `dest_dir`; the mounts to make."""
    by_secret = {s.id: s for s in secrets}
    by_config = {c.id: c for c in configs}
    dest = Path(dest_dir)
    mounts: list[MountSpec] = []
    relative = False
    for ref in task.spec.container.secrets:
        secret = by_secret.get(ref.secret_id)
        if secret is None:
            raise RejectError(f"secret {ref.secret_name or ref.secret_id} was not delivered")
        target = ref.target or ref.secret_name
        if target.startswith(SECRETS_MOUNT + "/"):
            target = target[len(SECRETS_MOUNT) + 1 :]
        rel = _safe(target, "secret")
        if target.startswith("/"):
            path = dest / "secret-files" / rel
            mounts.append(MountSpec(str(path), target))
        else:
            path = dest / "secrets" / rel
            relative = True
        _write(path, secret.spec.data, ref.mode, ref.uid, ref.gid)
    if relative:
        mounts.insert(0, MountSpec(str(dest / "secrets"), SECRETS_MOUNT))
    for cref in task.spec.container.configs:
        config = by_config.get(cref.config_id)
        if config is None:
            raise RejectError(f"config {cref.config_name or cref.config_id} was not delivered")
        target = cref.target or "/" + cref.config_name
        path = dest / "configs" / _safe(target, "config")
        _write(path, config.spec.data, cref.mode, cref.uid, cref.gid)
        mounts.append(MountSpec(str(path), "/" + str(_safe(target, "config"))))
    return mounts
