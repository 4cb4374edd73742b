"""The node daemons of a test cluster: `swarm init` / `swarm join` run inside each host's
network namespace, and the checks and calls on them afterwards.

`nsenter --net=…` enters only the network namespace, so the daemon (started in the
background by init/join) keeps this machine's mount namespace and sees /sys/fs/cgroup as
runc needs it; `ip netns exec` would remount /sys. The control socket is a unix socket in
the data dir, so the nodes are driven from any namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import swarmlet
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.client import ControlClient
from swarmlet.errors import SwarmletError
from swarmlet.procs import alive
from swarmlet.testcluster import netns
from swarmlet.testcluster.layout import PORT, ClusterState, Host

_SOURCE_ROOT = str(Path(swarmlet.__file__).resolve().parents[1])


def swarm_env() -> dict[str, str]:
    """The environment of a `swarm` run by this module: this source tree first on the path,
    no inherited $SWARMLET_DATA_DIR (every call names its data dir)."""
    env = dict(os.environ)
    env.pop("SWARMLET_DATA_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def in_netns(ns: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns.NETNS_DIR / ns}", "--", *argv]


def swarm_argv(data_dir: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "swarmlet.cli.main", "--data-dir", data_dir, *args]


def _run_swarm(host: Host, *args: str, timeout: float = 90) -> str:
    cmd = in_netns(host.netns, swarm_argv(host.data_dir, *args))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=swarm_env(),
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SwarmletError(f"{host.host}: swarm {args[0]} did not finish in {timeout:.0f}s") \
            from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().removeprefix("Error: ") or f"exit {proc.returncode}"
        raise SwarmletError(f"{host.host}: swarm {args[0]}: {msg}")
    return proc.stdout


def init_first(state: ClusterState, host: Host) -> None:
    _run_swarm(host, "init", "--advertise-addr", host.addr, "--listen-addr",
               f"{host.addr}:{PORT}", "--hostname", host.host, "--runtime", state.runtime)


def token(first: Host, role: str) -> str:
    with ControlClient(Path(first.data_dir), timeout=10) as c:
        return str(c.join_token(role).token)


def join(state: ClusterState, host: Host, first: Host, tok: str) -> None:
    args = ["join", "--token", tok, f"{first.addr}:{PORT}", "--advertise-addr", host.addr,
            "--hostname", host.host, "--runtime", state.runtime]
    if host.role == "manager":
        args += ["--listen-addr", f"{host.addr}:{PORT}"]
    _run_swarm(host, *args)


def list_nodes(via: Host, timeout: float = 5) -> list[pb.Node]:
    with ControlClient(Path(via.data_dir), timeout=timeout) as c:
        return list(c.list_nodes())


def wait_ready(state: ClusterState, timeout: float = 90) -> None:
    """Until every host's node is Ready with its own address (asked through any manager)."""
    want = {h.host: h.addr for h in state.nodes()}
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    last = ""
    while time.monotonic() < deadline:
        for m in state.managers():
            try:
                nodes = list_nodes(m)
            except SwarmletError as e:
                last = str(e)
                continue
            seen = {n.description.hostname: n.status.addr for n in nodes
                    if n.status.state == pb.READY}
            if seen == want:
                return
            break
        time.sleep(0.2)
    missing = sorted(set(want) - set(seen))
    raise SwarmletError(f"nodes not ready within {timeout:.0f}s: {', '.join(missing) or '?'}"
                        + (f" ({last})" if last else ""))


def daemon_pid(data_dir: Path) -> int | None:
    """The pid in the data dir's pid file, if that process is a node daemon of this dir."""
    try:
        pid = int((data_dir / "swarmd.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    args = [a.decode(errors="replace") for a in cmdline]
    if "swarmlet.daemon" in args and str(data_dir) in args:
        return pid
    return None


def info(host: Host, timeout: float = 3) -> pb.InfoResponse | None:
    try:
        with ControlClient(Path(host.data_dir), timeout=timeout) as c:
            return c.info()
    except SwarmletError:
        return None


def leave(data_dir: Path, timeout: float = 30) -> str:
    """Ask a node to leave (force) and wait for its daemon to exit; what happened."""
    pid = daemon_pid(data_dir)
    if pid is None:
        return "not running"
    try:
        with ControlClient(data_dir, timeout=15) as c:
            c.leave(True)
    except SwarmletError as e:
        return f"leave failed: {e}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    return "left" if not alive(pid) else "left, daemon still running"
