"""swarm init / join / leave: create or forget this node's identity and run its daemon.

The daemon runs in the background by default (pid and log file in the data dir);
`--foreground` replaces this process with it, for systemd and containers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer

from swarmlet import bootstrap, nodeconfig, paths
from swarmlet.client import ControlClient
from swarmlet.errors import NoDaemon, SwarmletError, Unavailable
from swarmlet.image_service import check_insecure_registry
from swarmlet.procs import alive

RUNTIMES = ("auto", "runc", "process", "sim")
RUNTIME_HELP = "Task runtime: auto (runc if root and installed, else process), runc, process, sim."


def _runtime_in_use(runtime: str) -> str:
    """The runtime the node's daemon uses for `runtime` ("auto" resolved as it does)."""
    from worker.runtime import resolve_runtime

    return resolve_runtime(runtime)


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise SwarmletError(f"runtime: must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "runc":
        from worker.runtime import runc_usable  # the CLI needs the worker only for this

        why = runc_usable()
        if why:
            raise SwarmletError(f"runtime: {why}")
    return runtime


def _daemon_argv(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "swarmlet.daemon", "--data-dir", str(data_dir)]


def _last_log_lines(data_dir: Path, n: int = 3) -> str:
    try:
        lines = paths.log_file(data_dir).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def start_daemon(data_dir: Path, timeout: float = 30.0) -> int:
    """Start the node daemon in the background and wait until its socket answers."""
    logf = open(paths.log_file(data_dir), "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        _daemon_argv(data_dir), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
        start_new_session=True, close_fds=True,
    )
    logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SwarmletError(
                f"the node daemon exited at start (code {proc.returncode}): "
                f"{_last_log_lines(data_dir)}"
            )
        try:
            with ControlClient(data_dir, timeout=2) as c:
                c.info()
            return proc.pid
        except (NoDaemon, Unavailable):  # not listening yet (or a stale socket file)
            time.sleep(0.1)
    proc.terminate()
    raise SwarmletError(f"the node daemon did not come up within {timeout:.0f}s; see "
                        f"{paths.log_file(data_dir)}")


def _wait_token(data_dir: Path, timeout: float = 30.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with ControlClient(data_dir, timeout=5) as c:
                resp = c.join_token("worker")
            if resp.token:
                return resp.token, resp.manager_addr
        except SwarmletError as e:
            last = e
        time.sleep(0.1)
    raise SwarmletError(f"the cluster did not become ready within {timeout:.0f}s: {last}")


def _run(data_dir: Path, foreground: bool) -> int | None:
    if foreground:
        os.execv(sys.executable, _daemon_argv(data_dir))
    return start_daemon(data_dir)


INSECURE_HELP = ("Registry that may be pulled from over plain HTTP (repeatable); "
                 "127.0.0.0/8 and localhost always may.")


def _set_insecure(data_dir: Path, cfg: nodeconfig.NodeConfig, insecure: list[str]) -> None:
    if insecure:
        cfg.insecure_registries = insecure
        nodeconfig.save(data_dir, cfg)


def register(app: typer.Typer) -> None:
    """Add init / join / leave to the top-level app."""

    @app.command("init")
    def init(
        advertise_addr: str = typer.Option(None, help="Address other nodes use to reach this "
                                           "one (IP or IP:PORT)."),
        listen_addr: str = typer.Option("0.0.0.0:2377", help="Manager listen address "
                                        "(IP:PORT); PORT+1 serves joins, PORT+2 Raft."),
        data_dir: str = typer.Option(None, "--data-dir", envvar="SWARMLET_DATA_DIR",
                                     help="Node state directory."),
        hostname: str = typer.Option(None, help="Node name (default: this machine's)."),
        runtime: str = typer.Option("auto", help=RUNTIME_HELP),
        insecure_registry: list[str] = typer.Option([], metavar="HOST[:PORT]|CIDR",
                                                    help=INSECURE_HELP),
        foreground: bool = typer.Option(False, help="Run the daemon in this process."),
        force_new_cluster: bool = typer.Option(
            False, "--force-new-cluster",
            help="On a surviving manager whose cluster lost its quorum for good: restart "
                 "it as a one-manager cluster from its own state (other managers are "
                 "removed from the managers; they can join again)."),
    ) -> None:
        """Create a new swarm with this node as its first manager."""
        d = paths.data_dir(data_dir)
        if force_new_cluster:
            _force_new_cluster(d, foreground)
            return
        insecure = [check_insecure_registry(r) for r in insecure_registry]
        cfg = bootstrap.init_cluster(d, listen_addr, advertise_addr,
                                     hostname or socket.gethostname(), check_runtime(runtime))
        _set_insecure(d, cfg, insecure)
        if foreground:
            _run(d, True)
        try:
            start_daemon(d)
            token, addr = _wait_token(d)
        except SwarmletError:
            nodeconfig.erase(d)
            raise
        typer.echo(f"Swarm initialized: current node ({cfg.node_id}) is now a manager "
                   f"(task runtime: {_runtime_in_use(cfg.runtime)}).\n")
        typer.echo("To add a worker to this swarm, run the following command:\n")
        typer.echo(f"    swarm join --token {token} {addr or cfg.advertise_addr}\n")
        typer.echo("To add a manager to this swarm, run 'swarm join-token manager' and follow "
                   "the instructions.")

    @app.command("join")
    def join(
        remote: str = typer.Argument(..., metavar="ADDR", help="A manager's IP:PORT."),
        token: str = typer.Option(..., help="Join token (swarm join-token worker)."),
        advertise_addr: str = typer.Option(None, help="This node's address (IP)."),
        data_dir: str = typer.Option(None, "--data-dir", envvar="SWARMLET_DATA_DIR",
                                     help="Node state directory."),
        listen_addr: str = typer.Option("0.0.0.0:2377", help="Manager listen address (IP:PORT), "
                                        "used when the token is a manager token."),
        hostname: str = typer.Option(None, help="Node name (default: this machine's)."),
        runtime: str = typer.Option("auto", help=RUNTIME_HELP),
        insecure_registry: list[str] = typer.Option([], metavar="HOST[:PORT]|CIDR",
                                                    help=INSECURE_HELP),
        foreground: bool = typer.Option(False, help="Run the daemon in this process."),
    ) -> None:
        """Join an existing swarm (as a worker or, with a manager token, a manager)."""
        d = paths.data_dir(data_dir)
        insecure = [check_insecure_registry(r) for r in insecure_registry]
        cfg = bootstrap.join_cluster(d, token, remote, advertise_addr,
                                     hostname or socket.gethostname(), check_runtime(runtime),
                                     listen_addr)
        _set_insecure(d, cfg, insecure)
        if foreground:
            _run(d, True)
        try:
            start_daemon(d)
        except SwarmletError:
            nodeconfig.erase(d)
            raise
        typer.echo(f"This node joined a swarm as a {cfg.role} "
                   f"(task runtime: {_runtime_in_use(cfg.runtime)}).")

    @app.command("leave")
    def leave(
        force: bool = typer.Option(False, "--force", "-f",
                                   help="Leave even if this is the last manager."),
        data_dir: str = typer.Option(None, "--data-dir", envvar="SWARMLET_DATA_DIR",
                                     help="Node state directory."),
    ) -> None:
        """Stop this node's tasks, leave the swarm and stop its daemon."""
        d = paths.data_dir(data_dir)
        pid_path = paths.pid_file(d)
        pid = int(pid_path.read_text()) if pid_path.exists() else None
        with ControlClient(d) as c:
            c.leave(force)
        deadline = time.monotonic() + 60
        while pid and time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        typer.echo("Node left the swarm.")


FORCE_MARKER = "force-new-cluster"  # the daemon rebuilds its Raft group at start


def _force_new_cluster(d: Path, foreground: bool) -> None:
    """Stop this manager's daemon, have it restart as the only manager of its state."""
    try:
        cfg = nodeconfig.load(d)
    except (OSError, ValueError, SwarmletError):
        cfg = None
    if cfg is None or cfg.role != "manager" or not (d / "raft").exists():
        raise SwarmletError(f"--force-new-cluster: no manager state in {d} (it must be run "
                            "on a manager that was part of the cluster)")
    pid_path = paths.pid_file(d)
    pid = int(pid_path.read_text()) if pid_path.exists() else None
    if pid and alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            raise SwarmletError(f"--force-new-cluster: the node daemon (pid {pid}) did not "
                                "stop; stop it and try again")
    (d / FORCE_MARKER).write_text("")
    cfg.raft_peers, cfg.managers = [], [cfg.advertise_addr]
    nodeconfig.save(d, cfg)
    if foreground:
        _run(d, True)
    start_daemon(d)
    token, addr = _wait_token(d)
    typer.echo(f"Swarm re-initialized from this node's state: {cfg.node_id} is now the only "
               "manager (the old Raft files are kept beside the new ones).\n")
    typer.echo("To add a worker to this swarm, run the following command:\n")
    typer.echo(f"    swarm join --token {token} {addr or cfg.advertise_addr}\n")
    typer.echo("Other managers must join again: run 'swarm join-token manager'.")
