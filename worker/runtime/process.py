"""Process runtime: each task is a plain child process of the agent, without isolation.

Owns, per task, a directory `<state_dir>/<task id>/` holding:
  spec.json    the resolved command line, environment, working dir (and the image name,
               recorded only)
  pid.json     pid and kernel start time of the main process, for re-adoption after an
               agent restart (the start time guards against pid reuse)
  exit.json    the exit information once the agent has seen it
  output.log   stdout+stderr; rotated by copy-and-truncate at `log_max_bytes` into
               output.log.1 (one old file kept)
  work/        the working directory when the spec names none
  files/       the task's secrets and configs (worker.secrets; $SWARMLET_SECRETS_DIR,
               $SWARMLET_CONFIGS_DIR)

The child runs in its own session (process group), so shutdown signals the whole group:
SIGTERM, then SIGKILL after the grace period. Its output goes straight to the log file
(opened O_APPEND), never through a pipe held by the agent, so the task keeps running
when the agent stops or dies. After a restart the agent adopts it by pid file; as it is
no longer our child its exit code cannot be learnt, so it is reported as lost.
Exit detection is by polling (`wait(task_id, 0)`), no reaper thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker.errors import RejectError, RuntimeFailure, TaskNotFound
from worker.runtime.base import (
    EXIT_UNKNOWN,
    ExitInfo,
    ProbeResult,
    Runtime,
    RuntimeState,
    task_argv,
)
from worker.runtime.taskfiles import exit_info as _exit_info
from worker.runtime.taskfiles import poll_until, rotate_log, run_captured
from worker.runtime.taskfiles import proc_stat as _proc_stat
from worker.runtime.taskfiles import read_json as _read_json
from worker.runtime.taskfiles import read_lines as _read_lines
from worker.runtime.taskfiles import write_json as _write_json
from worker.secrets import TaskFiles, materialize

MiB = 1 << 20
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOST_EXIT_MESSAGE = "exit status lost across agent restart"
_TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_KILL_WAIT_S = 5.0
_ROTATE_CHECK_S = 1.0
PROBE_OUTPUT_MAX = 4096  # characters of probe output kept (as Docker does)


@dataclass
class _Entry:
    """A started (or adopted) task's main process."""

    pid: int
    start_ticks: int | None
    popen: subprocess.Popen[bytes] | None = None
    exit: ExitInfo | None = None
    next_rotate: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ProcessRuntime(Runtime):
    """Runs each task's command as a child process in its own process group."""

    name = "process"
    blocking = True
    delivers_files = True  # secrets/configs: files under the task dir (worker.secrets)

    def __init__(
        self,
        state_dir: Path,
        clock: Clock,
        *,
        hostname: str | None = None,
        log_max_bytes: int = 10 * MiB,
    ) -> None:
        self._dir = Path(state_dir)
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._hostname = hostname or socket.gethostname()
        self._log_max = log_max_bytes
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    # ------------------------------------------------------------------ paths

    def task_dir(self, task_id: str) -> Path:
        """The directory holding everything about one task."""
        if not _TASK_ID.match(task_id):
            raise TaskNotFound(f"invalid task id {task_id!r}")
        return self._dir / task_id

    def log_path(self, task_id: str) -> Path:
        return self.task_dir(task_id) / "output.log"

    # ------------------------------------------------------------------ prepare / start

    def prepare(self, task: pb.Task, files: TaskFiles | None = None) -> None:
        if not _TASK_ID.match(task.id):
            raise RejectError(f"invalid task id {task.id!r}")
        argv = task_argv(task)
        if not argv:
            raise RejectError("no command given")
        c = task.spec.container
        if c.user and os.geteuid() != 0:
            raise RejectError("user: the process runtime cannot switch users without root")
        env = self._env(task)
        d = self.task_dir(task.id)
        cwd = c.dir or str(d / "work")
        if c.dir and not os.path.isdir(c.dir):
            raise RejectError(f"working directory {c.dir!r}: not a directory")
        _check_executable(argv[0], env["PATH"], c.dir or None)
        d.mkdir(exist_ok=True, mode=0o700)
        (d / "work").mkdir(exist_ok=True)
        if files:
            materialize(task, files.secrets, files.configs, d / "files")
            env["SWARMLET_SECRETS_DIR"] = str(d / "files" / "secrets")
            env["SWARMLET_CONFIGS_DIR"] = str(d / "files" / "configs")
        spec = {
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "user": c.user,
            "image": c.image,
            "service": task.service_name,
            "slot": task.slot,
        }
        _write_json(d / "spec.json", spec)

    def _env(self, task: pb.Task) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "HOSTNAME": task.spec.container.hostname or self._hostname,
        }
        for item in task.spec.container.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise RejectError(f"env: {item!r} is not KEY=VALUE")
            env[key] = value
        env.update(
            SWARMLET_TASK_ID=task.id,
            SWARMLET_TASK_SLOT=str(task.slot),
            SWARMLET_SERVICE_NAME=task.service_name,
            SWARMLET_NODE_ID=task.node_id,
            SWARMLET_NODE_HOSTNAME=self._hostname,
        )
        return env

    def start(self, task_id: str) -> int:
        d = self.task_dir(task_id)
        if self.adopt(task_id):
            e = self._entries[task_id]
            if e.exit is None:
                return e.pid  # already started: start is idempotent
            raise RuntimeFailure("task already ran; a task never reruns")
        spec = _read_json(d / "spec.json")
        if spec is None:
            raise RuntimeFailure("task not prepared")
        popen = _spawn(spec, d / "output.log")
        ticks = _proc_stat(popen.pid)
        entry = _Entry(pid=popen.pid, start_ticks=ticks[1] if ticks else None, popen=popen)
        _write_json(
            d / "pid.json",
            {"pid": popen.pid, "start_ticks": entry.start_ticks, "started_at": self._clock.now()},
        )
        with self._lock:
            self._entries[task_id] = entry
        return popen.pid

    # ------------------------------------------------------------------ observe

    def wait(self, task_id: str, timeout: float) -> ExitInfo | None:
        e = self._entry(task_id)
        info = poll_until(self._clock, lambda: self._poll(task_id, e), timeout)
        self._maybe_rotate(task_id, e)
        return info

    def inspect(self, task_id: str) -> RuntimeState | None:
        if not self.adopt(task_id):
            if (self.task_dir(task_id) / "spec.json").exists():
                return RuntimeState(running=False)
            return None
        e = self._entries[task_id]
        info = self._poll(task_id, e)
        return RuntimeState(running=info is None, pid=e.pid, exit=info)

    def logs(self, task_id: str) -> Iterator[str]:
        d = self.task_dir(task_id)
        if not d.is_dir():
            raise TaskNotFound(task_id)
        return _read_lines([d / "output.log.1", d / "output.log"])

    def adopt(self, task_id: str) -> bool:
        with self._lock:
            if task_id in self._entries:
                return True
        d = self.task_dir(task_id)
        rec = _read_json(d / "pid.json")
        if rec is None:
            return False
        entry = _Entry(pid=int(rec["pid"]), start_ticks=rec.get("start_ticks"))
        ex = _read_json(d / "exit.json")
        if ex is not None:
            entry.exit = ExitInfo(int(ex["exit_code"]), bool(ex["oom"]), str(ex["message"]))
        with self._lock:
            self._entries.setdefault(task_id, entry)
        return True

    def _entry(self, task_id: str) -> _Entry:
        if not self.adopt(task_id):
            raise TaskNotFound(f"task {task_id} was never started")
        return self._entries[task_id]

    def _poll(self, task_id: str, e: _Entry) -> ExitInfo | None:
        with e.lock:
            if e.exit is not None:
                return e.exit
            ours = True
            if e.popen is not None:
                rc = e.popen.poll()
                if rc is None:
                    return None
                info = _exit_info(rc)
            else:
                state = _liveness(e)
                if state == "alive":
                    return None
                ours = state == "gone"  # a reused pid is someone else's: never signal it
                rc = _try_reap(e.pid) if ours else None
                info = _exit_info(rc) if rc is not None else ExitInfo(
                    EXIT_UNKNOWN, False, LOST_EXIT_MESSAGE
                )
            e.exit = info
        if ours:
            _kill_group(e.pid, signal.SIGKILL)  # a container ends with its main process
        with contextlib.suppress(OSError):
            _write_json(
                self.task_dir(task_id) / "exit.json",
                {"exit_code": info.exit_code, "oom": info.oom, "message": info.message},
            )
        return info

    def _maybe_rotate(self, task_id: str, e: _Entry) -> None:
        now = self._clock.monotonic()
        if now < e.next_rotate:
            return
        e.next_rotate = now + _ROTATE_CHECK_S
        rotate_log(self.task_dir(task_id) / "output.log", self._log_max)

    def probe(self, task_id: str, argv: list[str], timeout_s: float) -> ProbeResult:
        """A health probe: `argv` as a child process with the task's env and cwd."""
        spec = _read_json(self.task_dir(task_id) / "spec.json")
        if spec is None:
            raise TaskNotFound(f"task {task_id} was never prepared")
        try:
            code, out = run_captured(
                argv, timeout_s, PROBE_OUTPUT_MAX, env=spec["env"], cwd=spec["cwd"],
                user=spec["user"] or None,
            )
        except OSError as e:
            return ProbeResult(127, f"cannot run health check: {e}")
        if code is not None and code < 0:
            code = 128 - code
        return ProbeResult(code, out)

    # ------------------------------------------------------------------ stop

    def shutdown(self, task_id: str, grace_s: float) -> None:
        if not self.adopt(task_id):
            return  # never started: nothing to stop
        e = self._entries[task_id]
        if self._poll(task_id, e) is not None:
            return
        _kill_group(e.pid, signal.SIGTERM)
        if self._wait_exit(task_id, e, grace_s) is not None:
            return
        _kill_group(e.pid, signal.SIGKILL)
        if self._wait_exit(task_id, e, _KILL_WAIT_S) is None:
            raise RuntimeFailure(f"pid {e.pid} did not die after SIGKILL")

    def _wait_exit(self, task_id: str, e: _Entry, seconds: float) -> ExitInfo | None:
        deadline = self._clock.monotonic() + seconds
        while True:
            info = self._poll(task_id, e)
            if info is not None or self._clock.monotonic() >= deadline:
                return info
            self._clock.sleep(0.02)

    def remove(self, task_id: str) -> None:
        d = self.task_dir(task_id)
        if self.adopt(task_id):
            e = self._entries[task_id]
            if self._poll(task_id, e) is None:
                _kill_group(e.pid, signal.SIGKILL)
                self._wait_exit(task_id, e, _KILL_WAIT_S)
        with self._lock:
            self._entries.pop(task_id, None)
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------- helpers


def _check_executable(cmd: str, path: str, cwd: str | None) -> None:
    """RejectError with the OS error text when `cmd` cannot be executed."""
    if "/" in cmd:
        full: str | None = cmd if os.path.isabs(cmd) else os.path.join(cwd or ".", cmd)
        if full and not os.path.isfile(full):
            full = None
    else:
        full = shutil.which(cmd, mode=os.F_OK, path=path)
    if full is None:
        err: OSError = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cmd)
    elif not os.access(full, os.X_OK):
        err = PermissionError(errno.EACCES, os.strerror(errno.EACCES), cmd)
    else:
        return
    raise RejectError(f"cannot execute command: {err}")


def _spawn(spec: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        return subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=spec["user"] or None,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        raise RejectError(f"cannot execute command: {e}") from e
    except OSError as e:
        raise RuntimeFailure(f"starting command failed: {e}") from e
    finally:
        os.close(fd)


def _liveness(e: _Entry) -> str:
    """"alive", "gone" (no such process, or a zombie) or "reused" (pid now names another)."""
    st = _proc_stat(e.pid)
    if st is not None and e.start_ticks is not None and st[1] != e.start_ticks:
        return "reused"
    if st is None or st[0] in ("Z", "X"):
        return "gone"
    return "alive"


def _try_reap(pid: int) -> int | None:
    """Reap `pid` if it happens to be our child (same process, new runtime); its code."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got != pid:
        return None
    return os.waitstatus_to_exitcode(status)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError as e:
        raise RuntimeFailure(f"cannot signal pid {pid}: {e}") from e



