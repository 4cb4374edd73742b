"""A real multi-node cluster on loopback for integration tests.

Every node is a real daemon process started through the real CLI (`swarm init` /
`swarm join`), with its own data dir under the test's tmp dir and its own 127.0.0.x
address. Teardown kills what the test started: daemons by their pid files and task
processes by the pid files of the process runtime.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SWARM = [sys.executable, "-m", "swarmlet.cli.main"]

_rng = random.Random(os.getpid() ^ int(time.time() * 1000))


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # taken on any address means taken here
        except OSError:
            return False
    return True


def free_port_block() -> int:
    """A base port P with P, P+1 and P+2 free on every address (manager, join, Raft)."""
    for _ in range(200):
        base = _rng.randrange(20000, 29990, 10)
        if all(_free(base + i) for i in range(3)):
            return base
    raise RuntimeError("no free port block found")


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - keep polling; report the last failure
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class LocalCluster:
    def __init__(self, tmp: Path, runtime: str = "process", env: dict[str, str] | None = None):
        self.tmp = tmp
        self.runtime = runtime
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.env.pop("SWARMLET_DATA_DIR", None)
        self.port = free_port_block()
        self.manager_addr = f"127.0.0.21:{self.port}"
        self.nodes: dict[str, Path] = {}

    # ------------------------------------------------------------------ cli

    def swarm(self, *args: str, node: str = "manager-1", check: bool = True,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [*SWARM, "--data-dir", str(self.nodes.get(node, self.tmp / node)), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=ROOT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stderr.strip()} {proc.stdout.strip()}")
        return proc

    def json(self, *args: str, node: str = "manager-1") -> Any:
        return json.loads(self.swarm(*args, "--format", "json", node=node).stdout)

    # ------------------------------------------------------------------ nodes

    def init(self) -> None:
        self.nodes["manager-1"] = self.tmp / "manager-1"
        self.swarm("init", "--advertise-addr", "127.0.0.21", "--listen-addr",
                   self.manager_addr, "--hostname", "manager-1", "--runtime", self.runtime)

    def token(self, role: str = "worker") -> str:
        return self.swarm("join-token", "-q", role).stdout.strip()

    def join(self, name: str, ip: str) -> None:
        self.nodes[name] = self.tmp / name
        self.swarm("join", "--token", self.token(), self.manager_addr, "--advertise-addr", ip,
                   "--hostname", name, "--runtime", self.runtime, node=name)

    def join_manager(self, name: str, ip: str) -> None:
        self.nodes[name] = self.tmp / name
        self.swarm("join", "--token", self.token("manager"), self.manager_addr,
                   "--advertise-addr", ip, "--listen-addr", f"{ip}:{self.port}",
                   "--hostname", name, "--runtime", self.runtime, node=name)

    def start_ha(self, managers: int = 3, workers: int = 0) -> LocalCluster:
        """manager-1 .. manager-M on 127.0.0.21.., workers on 127.0.0.31.."""
        self.init()
        for i in range(2, managers + 1):
            self.join_manager(f"manager-{i}", f"127.0.0.{20 + i}")
        for i in range(1, workers + 1):
            self.join(f"worker-{i}", f"127.0.0.{30 + i}")
        wait_for(lambda: self.ready_nodes() == managers + workers, what="all nodes ready")
        return self

    def leader(self, via: str = "manager-1") -> str:
        """Hostname of the current leader, asked through the node `via`."""
        nodes = self.json("node", "ls", node=via)
        return next(n["hostname"] for n in nodes if n["manager_status"] == "Leader")

    def pid(self, node: str) -> int | None:
        f = self.nodes[node] / "swarmd.pid"
        return int(f.read_text()) if f.exists() else None

    def kill(self, node: str) -> None:
        pid = self.pid(node)
        if pid:
            _kill(pid)

    def restart(self, node: str) -> None:
        """Start a node's daemon again on its existing data dir (after a kill)."""
        from swarmlet.cli.lifecycle import start_daemon

        start_daemon(self.nodes[node])

    def ready_nodes(self, via: str = "manager-1") -> int:
        return sum(1 for n in self.json("node", "ls", node=via) if n["status"] == "Ready")

    def start(self, workers: int = 2) -> LocalCluster:
        self.init()
        for i in range(1, workers + 1):
            self.join(f"worker-{i}", f"127.0.0.{21 + i}")
        wait_for(lambda: self.ready_nodes() == workers + 1, what="all nodes ready")
        return self

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        for path in self.nodes.values():
            pidf = path / "swarmd.pid"
            if pidf.exists():
                _kill(int(pidf.read_text()))
            for taskpid in path.glob("agent/**/pid.json"):
                try:
                    _kill_group(int(json.loads(taskpid.read_text())["pid"]))
                except (ValueError, KeyError, OSError):
                    pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.02)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
