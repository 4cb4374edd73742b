"""`swarm cluster up|ls|exec|down`: multi-host test clusters on this machine (root).

The hosts are network namespaces on a private bridge (swarmlet.testcluster); each runs a
node daemon with its own data dir under the state dir (--state-dir, else
$SWARMLET_CLUSTERS_DIR, else /var/lib/swarmlet/clusters).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from swarmlet.cli.lifecycle import check_runtime
from swarmlet.cli.output import check_format, print_json, print_table
from swarmlet.errors import SpecError, SwarmletError
from swarmlet.testcluster import build, layout, netns, nodes, teardown
from swarmlet.testcluster.layout import ClusterState

app = typer.Typer(help="Multi-host test clusters on this machine (network namespaces; root).",
                  no_args_is_help=True)

RUNTIMES = ("auto", "runc", "process")
STATE_HELP = f"Where clusters keep their state (default: ${layout.STATE_ENV}, " \
             f"{layout.DEFAULT_STATE_ROOT})."


def _state_option() -> Any:
    return typer.Option(None, "--state-dir", metavar="DIR", help=STATE_HELP,
                        show_default=False)


def _name_option() -> Any:
    return typer.Option("dev", "--name", help="Cluster name.")


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _usage(state: ClusterState) -> str:
    first = state.managers()[0]
    opt = "" if state.state_dir.startswith(str(layout.DEFAULT_STATE_ROOT) + "/") else \
        f" --state-dir {os.path.dirname(state.state_dir)}"
    return "\n".join([
        "",
        "Use it:",
        f"  swarm --data-dir {first.data_dir} node ls",
        f"  export SWARMLET_DATA_DIR={first.data_dir}   # then plain `swarm service ls` …",
        f"  swarm cluster exec --name {state.name}{opt} [HOST] -- CMD…   "
        "# in a host's namespace (default: client)",
        f"  swarm cluster down --name {state.name}{opt}",
    ])


@app.command("up")
def up(
    managers: int = typer.Option(1, "--managers", help="Manager nodes (1-7, odd recommended)."),
    workers: int = typer.Option(2, "--workers", help="Worker nodes."),
    name: str = _name_option(),
    runtime: str = typer.Option("auto", "--runtime", help="Task runtime: auto, runc, process."),
    state_dir: str | None = _state_option(),
) -> None:
    """Build a cluster: one network namespace per host on a private bridge, a node in each."""
    build.require_root()
    if runtime not in RUNTIMES:
        raise SpecError("runtime", f"must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    check_runtime(runtime)
    warning = layout.check_counts(managers, workers)
    if warning:
        typer.echo(f"Warning: {warning}", err=True)
    state = build.up(name, managers, workers, runtime, layout.state_root(state_dir), _say)
    typer.echo(f"Cluster {name!r} is up ({state.subnet}, state in {state.state_dir}):\n")
    print_table(("HOST", "ROLE", "ADDRESS", "DATA DIR"),
                [[h.host, h.role, h.addr, h.data_dir or "-"] for h in state.hosts])
    typer.echo(_usage(state))


def _node_rows(state: ClusterState) -> list[dict[str, Any]]:
    rows = []
    for h in state.hosts:
        if h.role == "client":
            running = netns.exists(h.netns)
        else:
            running = netns.exists(h.netns) and nodes.daemon_pid(
                Path(h.data_dir)) is not None
        rows.append({"host": h.host, "role": h.role, "address": h.addr,
                     "state": "up" if running else "down", "data_dir": h.data_dir,
                     "netns": h.netns})
    return rows


@app.command("ls")
def ls(
    fmt: str = typer.Option("table", "--format", help="Output format: table or json."),
    state_dir: str | None = _state_option(),
) -> None:
    """List the clusters and their nodes (up or down)."""
    fmt = check_format(fmt)
    root = layout.state_root(state_dir)
    clusters: list[dict[str, Any]] = []
    for cdir in sorted(root.iterdir()) if root.is_dir() else []:
        state = layout.load(cdir)
        if state is not None:
            clusters.append({"name": state.name, "status": state.status, "subnet": state.subnet,
                             "runtime": state.runtime, "state_dir": state.state_dir,
                             "nodes": _node_rows(state)})
    if fmt == "json":
        print_json(clusters)
        return
    print_table(("CLUSTER", "HOST", "ROLE", "ADDRESS", "STATE", "DATA DIR"),
                [[c["name"] + ("" if c["status"] == "up" else f" ({c['status']})"),
                  n["host"], n["role"], n["address"], n["state"], n["data_dir"] or "-"]
                 for c in clusters for n in c["nodes"]])


@app.command("exec", context_settings={"allow_interspersed_args": False,
                                       "ignore_unknown_options": True})
def exec_(
    argv: list[str] = typer.Argument(..., metavar="[HOST] -- CMD..."),
    name: str = _name_option(),
    state_dir: str | None = _state_option(),
) -> None:
    """Run a command in a host's network namespace (default: the client's).

    In a node's namespace SWARMLET_DATA_DIR is that node's data dir; in the client's, the
    first manager's, so `swarm …` works there as it is."""
    build.require_root()
    state = layout.load(layout.state_root(state_dir) / layout.check_name(name))
    if state is None:
        raise SwarmletError(f"no cluster named {name!r}")
    host = state.find("client")
    if argv[:1] == ["--"]:
        argv = argv[1:]
    elif len(argv) > 1 and state.find(argv[0]) is not None:
        host, argv = state.find(argv[0]), argv[1:]
        argv = argv[1:] if argv[:1] == ["--"] else argv
    if host is None or not argv:
        raise SwarmletError("exec: name a command to run (swarm cluster exec [HOST] -- CMD…)")
    if not netns.exists(host.netns):
        raise SwarmletError(f"host {host.host} of cluster {name!r} is gone (namespace "
                            f"{host.netns})")
    env = nodes.swarm_env()
    env["SWARMLET_DATA_DIR"] = host.data_dir or state.managers()[0].data_dir
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    cmd = nodes.in_netns(host.netns, argv)
    os.execvpe(cmd[0], cmd, env)


@app.command("down")
def down(
    name: str = _name_option(),
    state_dir: str | None = _state_option(),
) -> None:
    """Remove a cluster: its nodes leave, then every process, task leftover, namespace and
    link it made, and its state dir (also for a half-built or crashed cluster)."""
    build.require_root()
    root = layout.state_root(state_dir)
    if not teardown.exists(layout.check_name(name), root):
        raise SwarmletError(f"no cluster named {name!r}")
    report = teardown.down(name, root)
    for item in report.removed:
        typer.echo(f"removed {item}")
    for problem in report.problems:
        typer.echo(f"Warning: {problem}", err=True)
    typer.echo(f"Cluster {name!r} removed ({len(report.removed)} items).")
