"""`swarm cluster up`: make the hosts, start a node in each, wait until all are Ready.

Nothing is left half-made: cluster.json records each namespace as it is made, and if any
step fails (or is interrupted) everything made so far is torn down before the error is
raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from swarmlet.errors import SwarmletError
from swarmlet.testcluster import layout, netns, nodes, teardown
from swarmlet.testcluster.layout import ClusterState

Progress = Callable[[str], None]


def require_root() -> None:
    if os.geteuid() != 0:
        raise SwarmletError("swarm cluster needs root (it makes network namespaces)")


def _used_subnets(root: Path) -> set[int]:
    """Underlay indexes taken by clusters recorded here or living in any namespace."""
    used: set[int] = set()
    if root.is_dir():
        for cdir in root.iterdir():
            st = layout.load(cdir)
            k = layout.subnet_index(st.subnet) if st else None
            if k is not None:
                used.add(k)
    for ns in netns.list_netns():
        if ns.startswith(layout.PREFIX + "-") and ns.endswith("-client"):
            for addr in netns.ipv4_addrs(ns):
                k = layout.subnet_index(addr.rsplit(".", 1)[0] + ".0/24")
                if k is not None:
                    used.add(k)
    return used


def _make_hosts(state: ClusterState, say: Progress) -> None:
    lan = state.lan
    netns.add(lan)
    state.namespaces.append(lan)
    state.save()
    netns.add_bridge(lan, layout.BRIDGE)
    for h in state.hosts:
        netns.add(h.netns)
        state.namespaces.append(h.netns)
        state.save()
        netns.plug(lan, layout.BRIDGE, h.netns, h.host, h.addr)
    say(f"  made {len(state.hosts) + 1} namespaces on {state.subnet}")


def _start_nodes(state: ClusterState, say: Progress) -> None:
    first, *others = state.nodes()
    os.makedirs(first.data_dir, exist_ok=True)
    nodes.init_first(state, first)
    say(f"  {first.host}: swarm init ({first.addr})")
    tokens = {role: nodes.token(first, role) for role in ("manager", "worker")}
    for h in others:  # one at a time: Raft membership changes are serialised anyway
        nodes.join(state, h, first, tokens[h.role])
        say(f"  {h.host}: swarm join as {h.role} ({h.addr})")
    nodes.wait_ready(state)


def up(name: str, managers: int, workers: int, runtime: str, root: Path,
       say: Progress) -> ClusterState:
    """Build the cluster; on failure remove what was made and raise."""
    require_root()
    layout.check_name(name)
    if teardown.exists(name, root):
        raise SwarmletError(f"a cluster named {name!r} already exists "
                            f"(swarm cluster down --name {name})")
    k = layout.pick_subnet_index(_used_subnets(root))
    state = layout.plan(name, managers, workers, k, runtime, root)
    say(f"Building cluster {name!r}: {managers} manager(s), {workers} worker(s)")
    root.mkdir(parents=True, exist_ok=True)
    Path(state.state_dir).mkdir(mode=0o700)
    state.save()
    try:
        _make_hosts(state, say)
        _start_nodes(state, say)
    except BaseException as exc:
        report = teardown.down(name, root)
        if isinstance(exc, SwarmletError):
            raise SwarmletError(f"{exc} (removed what was made: {len(report.removed)} "
                                "items)") from None
        raise
    state.status = "up"
    state.save()
    return state
