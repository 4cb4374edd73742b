"""runc runtime: every task is a real container (Debian's `runc`), one OCI bundle each.

Per task, under `<state_dir>/<task id>/`:
  spec.json          what later steps need (stop signal, netns name, cgroup path)
  bundle/config.json the OCI config (worker.runtime.oci builds it)
  bundle/rootfs      overlayfs: the image's layer dirs read-only, upper/ + work/ per task
  upper/ work/       the overlay's writable layer
  etc/               hosts, hostname, resolv.conf bind-mounted into the container
  files/             a tmpfs with the task's secrets and configs (worker.secrets), each
                     bind-mounted read-only at its target (/run/secrets/<name>, ...)
  output.log(.1)     the container's stdout+stderr (size-capped copy-and-truncate rotation)
  monitor.json (monitor pid), started.json, exit.json, runc.log
runc's own state lives in `<state_dir>/runc` (`runc --root`), so several nodes can share
one machine. The container joins a network namespace prepared per task
(worker.netns, `swl-<id12>`), and its cgroup is `/swarmlet/<task id>`. With overlay
networking (`networking`, a net_overlay TaskNetworking) prepare plugs that namespace
into the task's networks and writes resolv.conf/hosts from the answer; remove unplugs it.

A small monitor process per container (worker/runtime/runc_monitor.py, forked in its own
session by a per-runtime spawner, so that no container start pays for a Python start)
runs `runc run --detach`, waits for the container as its child subreaper and
writes exit.json (exit code, OOM kill). It outlives the agent, so after an agent restart
`adopt` finds the task by its files and later exits are still learned.
The agent polls for exit.json (a stat per poll).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from net_overlay.api import TaskNetworking
from net_overlay.errors import NetworkError
from swarmlet import log as slog
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock
from worker import netns
from worker.errors import RejectError, RuntimeFailure, TaskNotFound
from worker.runtime import oci
from worker.runtime.base import EXIT_UNKNOWN, ExitInfo, ProbeResult, Runtime, RuntimeState
from worker.runtime.runc_fs import (
    cgroup_dirs,
    mount_overlay,
    mount_tmpfs,
    oom_files,
    read_in_root,
    resolve_executable,
    unmount,
)
from worker.runtime.taskfiles import (
    alive,
    log_lines,
    poll_until,
    proc_stat,
    read_json,
    rotate_log,
    run_captured,
    signal_name,
    write_json,
)
from worker.secrets import TaskFiles, materialize

MiB = 1 << 20
MONITOR = str(Path(__file__).with_name("runc_monitor.py"))
LOST_MESSAGE = "exit status lost: the container monitor died"
CGROUP_PARENT = "swarmlet"
START_TIMEOUT_S = 60.0
KILL_WAIT_S = 5.0
PROBE_OUTPUT_MAX = 4096
FILES_TMPFS_BYTES = 16 << 20  # secrets and configs of one task (Docker caps each at 500 KB)
_TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ROTATE_CHECK_S = 1.0
_ORPHAN_CHECK_S = 1.0


class ResolvedImageLike(Protocol):
    layers: list[Path]
    config: dict[str, Any]


class ImageSource(Protocol):
    """What the runtime needs of the image store (worker.images.ImageStore)."""

    def ensure(self, ref: str) -> ResolvedImageLike: ...


@dataclass
class _Entry:
    """A started (or adopted) container and its monitor."""

    monitor_pid: int
    monitor_ticks: int | None
    pid: int = 0
    popen: subprocess.Popen[bytes] | None = None
    exit: ExitInfo | None = None
    orphan_check: float = 0.0
    next_rotate: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Zygote:
    """The runtime's monitor spawner (`runc_monitor.py --zygote`, started on first use):
    forking a small ready interpreter is much cheaper than starting one per container."""

    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def spawn(self, argv: list[str]) -> int:
        """A new monitor running with `argv`; its pid."""
        request = ("\0".join(argv) + "\n").encode("utf-8", "surrogateescape")
        with self._lock:
            for _ in range(2):  # a dead zygote is replaced once
                proc = self._ensure()
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(request)
                    proc.stdin.flush()
                    line = proc.stdout.readline().decode()
                except OSError:
                    line = ""
                if line:
                    pid, _, err = line.strip().partition(" ")
                    if int(pid) > 0:
                        return int(pid)
                    raise RuntimeFailure(f"starting the container monitor: {err}")
                self._stop()
        raise RuntimeFailure("starting the container monitor: the spawner does not answer")

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            with open(self._log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", MONITOR, "--zygote"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    start_new_session=True, close_fds=True, cwd="/",
                )
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


class RuncRuntime(Runtime):
    """Runs each task as a runc container watched by its own monitor process."""

    name = "runc"
    blocking = True
    delivers_files = True  # secrets/configs: a tmpfs per task, bind-mounted (worker.secrets)

    def __init__(
        self,
        state_dir: Path,
        clock: Clock,
        images: ImageSource,
        *,
        hostname: str | None = None,
        volumes_dir: Path | None = None,
        runc_bin: str = "runc",
        log_max_bytes: int = 10 * MiB,
        networking: TaskNetworking | None = None,
    ) -> None:
        self._dir = Path(state_dir)
        # plugs task namespaces into their overlay networks (None: loopback only)
        self.networking = networking
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._root = self._dir / "runc"
        self._clock = clock
        self._images = images
        self._hostname = hostname or os.uname().nodename
        self._volumes = Path(volumes_dir) if volumes_dir else self._dir.parent / "volumes"
        self._runc = shutil.which(runc_bin) or runc_bin
        self._log_max = log_max_bytes
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._zygote = _Zygote(self._dir / "spawner.log")
        self._log = slog.get("runtime.runc")

    def close(self) -> None:
        """Stop the monitor spawner; containers and their monitors keep running."""
        self._zygote.close()

    # ------------------------------------------------------------------ paths

    def task_dir(self, task_id: str) -> Path:
        if not _TASK_ID.match(task_id):
            raise TaskNotFound(f"invalid task id {task_id!r}")
        return self._dir / task_id

    def log_path(self, task_id: str) -> Path:
        return self.task_dir(task_id) / "output.log"

    @staticmethod
    def cgroups_path(task_id: str) -> str:
        return f"/{CGROUP_PARENT}/{task_id}"

    def _runc_cmd(self, *args: str) -> list[str]:
        return [self._runc, "--root", str(self._root), *args]

    # ------------------------------------------------------------------ prepare

    def prepare(self, task: pb.Task, files: TaskFiles | None = None) -> None:
        if not _TASK_ID.match(task.id):
            raise RejectError(f"invalid task id {task.id!r}")
        c = task.spec.container
        try:
            image = self._images.ensure(c.image)
        except RejectError:
            raise
        except Exception as e:  # noqa: BLE001 (the image store's reason becomes the task's)
            raise RejectError(str(e) or f"image {c.image}: {type(e).__name__}") from e
        d = self.task_dir(task.id)
        for sub in ("bundle/rootfs", "upper", "work", "etc", "empty"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        rootfs = d / "bundle" / "rootfs"
        layers = [Path(p) for p in image.layers] or [d / "empty"]
        mount_overlay(layers, d / "upper", d / "work", rootfs)
        cfg = dict(image.config or {})
        user = oci.resolve_user(
            c.user or str(cfg.get("User") or ""),  # the spec's user, else the image's
            read_in_root(rootfs, "/etc/passwd"), read_in_root(rootfs, "/etc/group"),
        )
        hostname = c.hostname or task.id[:12]
        args = oci.process_args(c, cfg)
        env = oci.process_env(c, cfg, self._swarmlet_env(task), hostname, user.home)
        cwd = oci.working_dir(c, cfg)
        resolve_executable(rootfs, args[0], env, cwd)
        mounts = self._mounts(c, d, hostname) + self._file_mounts(task, d, files)
        ns = netns.name_for(task.id)
        ns_path = netns.create(ns)
        self._attach(task, str(ns_path), d / "etc", hostname)
        inputs = oci.BundleInputs(
            args=args, env=env, cwd=cwd, user=user, hostname=hostname,
            netns_path=str(ns_path), cgroups_path=self.cgroups_path(task.id),
            mounts=mounts, readonly=c.read_only,
        )
        write_json(d / "bundle" / "config.json", oci.build_config(task, inputs))
        write_json(
            d / "spec.json",
            {"stop_signal": c.stop_signal or "SIGTERM", "netns": ns, "image": c.image,
             "cgroups_path": self.cgroups_path(task.id)},
        )

    def _attach(self, task: pb.Task, ns_path: str, etc: Path, hostname: str) -> None:
        """Plug the task's namespace into its networks; its resolv.conf names the node's
        DNS and its hosts file its own address."""
        if self.networking is None or not task.networks:
            return
        try:
            attached = self.networking.attach(task, ns_path)
        except (NetworkError, OSError) as e:
            raise RejectError(f"networking: {e}") from e
        if attached is None:
            return
        # what adopt needs to plug the namespace in again after an agent restart
        plugged = pb.Task(id=task.id, service_id=task.service_id,
                          service_name=task.service_name, networks=task.networks)
        (etc.parent / "networks.pb").write_bytes(plugged.SerializeToString())
        lines = [f"nameserver {ns}" for ns in attached.nameservers]
        if attached.search:
            lines.append("search " + " ".join(attached.search))
        lines.append("options ndots:0")
        (etc / "resolv.conf").write_text("\n".join(lines) + "\n")
        own = "".join(f"{a.split('/')[0]}\t{hostname}\n" for a in attached.addresses)
        (etc / "hosts").write_text(oci.hosts_file(hostname) + own)

    def _swarmlet_env(self, task: pb.Task) -> dict[str, str]:
        return {
            "SWARMLET_TASK_ID": task.id,
            "SWARMLET_TASK_SLOT": str(task.slot),
            "SWARMLET_SERVICE_NAME": task.service_name,
            "SWARMLET_NODE_ID": task.node_id,
            "SWARMLET_NODE_HOSTNAME": self._hostname,
        }

    def _mounts(self, c: pb.ContainerSpec, d: Path, hostname: str) -> list[dict[str, Any]]:
        mounts = []
        for m, host_path in oci.spec_mounts(c, str(self._volumes)):
            if m["type"] == "bind" and host_path.startswith(str(self._volumes) + "/"):
                Path(host_path).mkdir(parents=True, exist_ok=True)
            elif host_path and not os.path.exists(host_path):
                raise RejectError(f"mount: bind source {host_path} does not exist")
            mounts.append(m)
        etc = d / "etc"
        (etc / "hosts").write_text(oci.hosts_file(hostname))
        (etc / "hostname").write_text(hostname + "\n")
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
        (etc / "resolv.conf").write_text(resolv)
        files = {f"/etc/{n}": str(etc / n) for n in ("hosts", "hostname", "resolv.conf")}
        return oci.etc_mounts(files) + mounts

    @staticmethod
    def _file_mounts(task: pb.Task, d: Path, files: TaskFiles | None) -> list[dict[str, Any]]:
        """Secrets and configs written on a tmpfs (never on disk), as read-only binds."""
        if not files:
            return []
        mount_tmpfs(d / "files", FILES_TMPFS_BYTES)
        return [
            {"destination": m.target, "type": "bind", "source": m.source,
             "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]}
            for m in materialize(task, files.secrets, files.configs, d / "files")
        ]

    # ------------------------------------------------------------------ start

    def start(self, task_id: str) -> int:
        d = self.task_dir(task_id)
        if self.adopt(task_id):
            e = self._entries[task_id]
            if e.exit is None and e.pid:
                return e.pid  # already started: start is idempotent
            if e.exit is not None:
                raise RuntimeFailure("task already ran; a task never reruns")
        else:
            e = self._spawn_monitor(task_id, d)
        return self._await_start(task_id, d, e)

    def _spawn_monitor(self, task_id: str, d: Path) -> _Entry:
        if read_json(d / "spec.json") is None:
            raise RuntimeFailure("task not prepared")
        args = [str(d), self._runc, str(self._root), task_id, str(d / "bundle"),
                *oom_files(self.cgroups_path(task_id))]
        pid = self._zygote.spawn(args)
        st = proc_stat(pid)
        e = _Entry(monitor_pid=pid, monitor_ticks=st[1] if st else None)
        write_json(d / "monitor.json", {"pid": pid, "start_ticks": e.monitor_ticks})
        with self._lock:
            self._entries[task_id] = e
        return e

    def _await_start(self, task_id: str, d: Path, e: _Entry) -> int:
        deadline = self._clock.monotonic() + START_TIMEOUT_S
        delay = 0.0005
        while True:
            started = read_json(d / "started.json")
            if started is not None:
                e.pid = int(started["pid"])
                return e.pid
            info = self._poll(task_id, e)
            if info is not None:
                raise RuntimeFailure(info.message or "container did not start")
            if self._clock.monotonic() >= deadline:
                raise RuntimeFailure(f"container did not start within {START_TIMEOUT_S:.0f}s")
            self._clock.sleep(delay)
            delay = min(delay * 2, 0.002)

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
        return RuntimeState(running=info is None and e.pid > 0, pid=e.pid, exit=info)

    def logs(self, task_id: str) -> Iterator[str]:
        d = self.task_dir(task_id)
        if not d.is_dir():
            raise TaskNotFound(task_id)
        return log_lines(d)

    def adopt(self, task_id: str) -> bool:
        with self._lock:
            if task_id in self._entries:
                return True
        d = self.task_dir(task_id)
        mon = read_json(d / "monitor.json")
        if mon is None:
            return False
        e = _Entry(monitor_pid=int(mon["pid"]), monitor_ticks=mon.get("start_ticks"))
        started = read_json(d / "started.json")
        if started is not None:
            e.pid = int(started["pid"])
        rec = read_json(d / "exit.json")
        if rec is not None:
            e.exit = _exit_from(rec)
        with self._lock:
            self._entries.setdefault(task_id, e)
        if e.exit is None and e.pid:
            self._replug(task_id, d)
        return True

    def _replug(self, task_id: str, d: Path) -> None:
        """An adopted container that still runs gets its networks back (the previous
        agent's data plane was closed at its exit, taking the veths along)."""
        raw = d / "networks.pb"
        if self.networking is None or not raw.exists():
            return
        spec = read_json(d / "spec.json") or {}
        task = pb.Task.FromString(raw.read_bytes())
        try:
            self.networking.attach(task, str(netns.path_of(
                str(spec.get("netns") or netns.name_for(task_id)))))
        except (NetworkError, OSError) as e:
            self._log.warning("runc.replug_failed", error=str(e), **{"task.id": task_id})

    def _entry(self, task_id: str) -> _Entry:
        if not self.adopt(task_id):
            raise TaskNotFound(f"task {task_id} was never started")
        return self._entries[task_id]

    def _monitor_alive(self, e: _Entry) -> bool:
        if e.popen is not None:
            return e.popen.poll() is None
        return alive(e.monitor_pid, e.monitor_ticks)

    def _poll(self, task_id: str, e: _Entry) -> ExitInfo | None:
        with e.lock:
            if e.exit is not None:
                return e.exit
            d = self.task_dir(task_id)
            rec = read_json(d / "exit.json")
            if rec is None and not self._monitor_alive(e):
                rec = read_json(d / "exit.json")  # it may have written just before exiting
                if rec is None:
                    return self._orphaned(task_id, d, e)
            if rec is None:
                return None
            e.exit = _exit_from(rec)
            if e.popen is not None:
                e.popen.poll()  # reap the monitor
            return e.exit

    def _orphaned(self, task_id: str, d: Path, e: _Entry) -> ExitInfo | None:
        """The monitor is gone without a record: the container may still run (someone
        killed the monitor); its exit code can no longer be learned."""
        now = self._clock.monotonic()
        if now < e.orphan_check:
            return None
        e.orphan_check = now + _ORPHAN_CHECK_S
        if self._container_status(task_id) in ("running", "created", "paused"):
            return None
        e.exit = ExitInfo(EXIT_UNKNOWN, False, LOST_MESSAGE)
        with contextlib.suppress(OSError):
            write_json(d / "exit.json", {"exit_code": EXIT_UNKNOWN, "error": LOST_MESSAGE,
                                         "phase": "monitor"})
        return e.exit

    def _container_status(self, task_id: str) -> str | None:
        r = subprocess.run(
            self._runc_cmd("state", task_id), capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            return None
        m = re.search(r'"status":\s*"(\w+)"', r.stdout)
        return m.group(1) if m else None

    def _maybe_rotate(self, task_id: str, e: _Entry) -> None:
        now = self._clock.monotonic()
        if now < e.next_rotate:
            return
        e.next_rotate = now + _ROTATE_CHECK_S
        rotate_log(self.task_dir(task_id) / "output.log", self._log_max)

    # ------------------------------------------------------------------ health

    def probe(self, task_id: str, argv: list[str], timeout_s: float) -> ProbeResult:
        """Run `argv` inside the container (`runc exec`), with the container's env, cwd
        and user; the probe process is killed when it exceeds `timeout_s`."""
        d = self.task_dir(task_id)
        pid_file = d / "probe.pid"
        pid_file.unlink(missing_ok=True)
        cmd = self._runc_cmd("exec", "--pid-file", str(pid_file), task_id, *argv)
        try:
            code, out = run_captured(cmd, timeout_s, PROBE_OUTPUT_MAX)
        except OSError as e:
            raise RuntimeFailure(f"runc exec: {e}") from e
        if code is None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            return ProbeResult(None, f"health check exceeded timeout ({timeout_s:g}s)")
        return ProbeResult(code, out)

    # ------------------------------------------------------------------ stop

    def shutdown(self, task_id: str, grace_s: float) -> None:
        if not self.adopt(task_id):
            return  # never started: nothing to stop
        e = self._entries[task_id]
        if self._poll(task_id, e) is not None:
            return
        spec = read_json(self.task_dir(task_id) / "spec.json") or {}
        self._kill(task_id, str(spec.get("stop_signal") or "SIGTERM"))
        if self._wait_exit(task_id, e, grace_s) is not None:
            return
        self._kill(task_id, "SIGKILL")
        if self._wait_exit(task_id, e, KILL_WAIT_S) is None:
            raise RuntimeFailure(f"container {task_id} did not stop after SIGKILL")

    def _kill(self, task_id: str, sig: str) -> None:
        r = subprocess.run(
            self._runc_cmd("kill", task_id, sig), capture_output=True, text=True, check=False
        )
        if r.returncode != 0 and self._container_status(task_id) == "running":
            raise RuntimeFailure(f"runc kill {sig}: {r.stderr.strip()}")

    def _wait_exit(self, task_id: str, e: _Entry, seconds: float) -> ExitInfo | None:
        deadline = self._clock.monotonic() + seconds
        while True:
            info = self._poll(task_id, e)
            if info is not None or self._clock.monotonic() >= deadline:
                return info
            self._clock.sleep(0.01)

    def remove(self, task_id: str) -> None:
        d = self.task_dir(task_id)
        spec = read_json(d / "spec.json") or {}
        if self.adopt(task_id):
            e = self._entries[task_id]
            if self._poll(task_id, e) is None and e.pid:
                self._kill(task_id, "SIGKILL")
                self._wait_exit(task_id, e, KILL_WAIT_S)
            self._stop_monitor(e)
        r = subprocess.run(
            self._runc_cmd("delete", "--force", task_id), capture_output=True, text=True,
            check=False,
        )
        if r.returncode != 0 and self._container_status(task_id) is not None:
            raise RuntimeFailure(f"runc delete: {r.stderr.strip()}")
        unmount(d / "bundle" / "rootfs")
        unmount(d / "files")
        if self.networking is not None:
            self.networking.detach(task_id)
        netns.remove(str(spec.get("netns") or netns.name_for(task_id)))
        for cg in cgroup_dirs(self.cgroups_path(task_id)):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(cg)
        with self._lock:
            self._entries.pop(task_id, None)
        shutil.rmtree(d, ignore_errors=True)

    def _stop_monitor(self, e: _Entry) -> None:
        if self._monitor_alive(e):
            with contextlib.suppress(ProcessLookupError):
                os.kill(e.monitor_pid, signal.SIGKILL)
        if e.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                e.popen.wait(KILL_WAIT_S)


def _exit_from(rec: dict[str, Any]) -> ExitInfo:
    """ExitInfo from an exit.json record written by the monitor (or by _orphaned)."""
    if rec.get("error"):
        phase = rec.get("phase") or ""
        prefix = f"runc {phase}: " if phase in ("create", "start", "run") else ""
        return ExitInfo(EXIT_UNKNOWN, False, prefix + str(rec["error"]))
    code = int(rec.get("exit_code", EXIT_UNKNOWN))
    oom = bool(rec.get("oom"))
    sig = int(rec.get("signal") or 0)
    if code < 0:
        return ExitInfo(EXIT_UNKNOWN, False, LOST_MESSAGE)
    if sig and not oom:
        return ExitInfo(code, False, f"killed by {signal_name(sig)}")
    return ExitInfo(code, oom)


def runc_available(runc_bin: str = "runc") -> bool:
    """True when runc is installed and this process may use it (root)."""
    return os.geteuid() == 0 and shutil.which(runc_bin) is not None

