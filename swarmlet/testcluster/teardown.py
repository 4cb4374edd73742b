"""`swarm cluster down`: remove everything a test cluster made, also when it is half-built
or its daemons crashed, and say what was removed.

Order: note the task ids in every data dir (the daemon erases its dir when it leaves),
let each node leave (workers together, then follower managers, the leader last), end
whatever still runs in the cluster's namespaces or its tasks' namespaces, then the task
leftovers (runc containers, mounts under the state dir, cgroups, task namespaces), the
host namespaces (their veths go with them) and the state dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from swarmlet.testcluster import layout, netns, nodes

# a task's namespace as the worker agent names it (worker/netns.py)
TASK_NETNS_PREFIX = "swl-"
_TASK_ID_RE = re.compile(r"^[0-9a-z]{25}$")


@dataclass
class Report:
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.removed.append(what)


@dataclass
class _Found:
    """What belongs to one cluster, from cluster.json and from looking around."""

    name: str
    cluster_dir: Path
    namespaces: list[str]
    data_dirs: dict[str, Path]     # host -> data dir
    task_ids: set[str] = field(default_factory=set)


def _discover(name: str, root: Path) -> _Found:
    cdir = root / name
    state = layout.load(cdir)
    found = [ns for ns in netns.list_netns() if layout.host_of_netns(name, ns)]
    recorded = state.namespaces if state else []
    namespaces = list(dict.fromkeys([*recorded, *found]))
    dirs: dict[str, Path] = {}
    if state:
        dirs = {h.host: Path(h.data_dir) for h in state.nodes()}
    if cdir.is_dir():
        for sub in sorted(cdir.iterdir()):
            if sub.is_dir():
                dirs.setdefault(sub.name, sub)
    return _Found(name, cdir, namespaces, dirs)


def _task_ids(data_dir: Path) -> set[str]:
    rt = data_dir / "agent" / "runtime"
    try:
        return {d.name for d in rt.iterdir() if d.is_dir() and _TASK_ID_RE.match(d.name)}
    except OSError:
        return set()


def _leave_all(f: _Found, report: Report) -> None:
    managers: list[tuple[str, Path]] = []
    workers: list[tuple[str, Path]] = []
    for host, d in f.data_dirs.items():
        if nodes.daemon_pid(d) is None:
            continue
        (managers if host.startswith("m") else workers).append((host, d))

    def one(item: tuple[str, Path]) -> None:
        outcome = nodes.leave(item[1])
        (report.add if outcome == "left" else report.problems.append)(
            f"node {item[0]} ({outcome})")

    if workers:
        with ThreadPoolExecutor(max_workers=min(8, len(workers))) as pool:
            list(pool.map(one, workers))

    def is_leader(item: tuple[str, Path]) -> bool:
        host = layout.Host(item[0], "", "manager", "", str(item[1]))
        got = nodes.info(host)
        return bool(got and got.is_leader)

    for item in sorted(managers, key=is_leader):  # followers first, the leader last
        one(item)


def _end_processes(f: _Found, report: Report) -> None:
    spaces = [*f.namespaces, *(TASK_NETNS_PREFIX + t[:12] for t in f.task_ids)]
    inodes = {i for i in (netns.netns_inode(ns) for ns in spaces) if i is not None}
    pids = netns.processes_in(inodes) if inodes else []
    for pid in netns.end_processes(pids):
        report.add(f"process {pid}")


def _runc_containers(f: _Found, report: Report) -> None:
    if shutil.which("runc") is None:
        return
    for d in f.data_dirs.values():
        root = d / "agent" / "runtime" / "runc"
        if not root.is_dir():
            continue
        listed = subprocess.run(["runc", "--root", str(root), "list", "-q"],
                                capture_output=True, text=True, check=False)
        for cid in listed.stdout.split():
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid],
                           capture_output=True, check=False)
            report.add(f"runc container {cid}")


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)


def _unmount(f: _Found, report: Report) -> None:
    for point in _mounts_under(f.cluster_dir):
        proc = subprocess.run(["umount", "-l", point], capture_output=True, text=True,
                              check=False)
        if proc.returncode == 0:
            report.add(f"mount {point}")
        else:
            report.problems.append(f"mount {point}: {proc.stderr.strip()}")


def cgroup_roots() -> list[str]:
    """Mount points of the cgroup hierarchies (v1 controllers and/or the v2 tree)."""
    roots = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if right.split()[:1] and right.split()[0] in ("cgroup", "cgroup2"):
                roots.append(left.split()[4])
    return roots


def _cgroups(f: _Found, report: Report) -> None:
    for tid in sorted(f.task_ids):
        for root in cgroup_roots():
            d = Path(root) / "swarmlet" / tid
            if not d.is_dir():
                continue
            try:
                d.rmdir()
                report.add(f"cgroup {d}")
            except OSError as e:
                report.problems.append(f"cgroup {d}: {e.strerror}")


def _namespaces(f: _Found, report: Report) -> None:
    for tid in sorted(f.task_ids):
        if netns.delete(TASK_NETNS_PREFIX + tid[:12]):
            report.add(f"namespace {TASK_NETNS_PREFIX + tid[:12]}")
    lan = layout.netns_name(f.name, "lan")
    for ns in sorted(f.namespaces, key=lambda n: n == lan):  # the bridge's last
        if netns.delete(ns):
            report.add(f"namespace {ns}")


def _state_dir(f: _Found, report: Report) -> None:
    if not f.cluster_dir.exists():
        return
    left = _mounts_under(f.cluster_dir)
    if left:
        report.problems.append(f"kept {f.cluster_dir}: still mounted: {', '.join(left)}")
        return
    shutil.rmtree(f.cluster_dir)
    report.add(f"state dir {f.cluster_dir}")


def exists(name: str, root: Path) -> bool:
    """Is anything of a cluster with this name still there?"""
    f = _discover(name, root)
    return f.cluster_dir.exists() or bool(f.namespaces)


def down(name: str, root: Path) -> Report:
    """Tear the cluster down; the report lists what went (and what could not)."""
    f = _discover(name, root)
    for d in f.data_dirs.values():
        f.task_ids |= _task_ids(d)
    report = Report()
    _leave_all(f, report)
    for step in (_end_processes, _runc_containers, _unmount, _cgroups, _namespaces,
                 _state_dir):
        try:
            step(f, report)
        except OSError as e:
            report.problems.append(f"{step.__name__.strip('_')}: {e}")
    return report
