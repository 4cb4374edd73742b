"""A `swarm cluster` test cluster (hosts as network namespaces) driven through the real CLI.

Each test cluster gets a name unique to the test process (`swlc-<name>-…` namespaces)
and its state dir under the test's tmp dir. `leftovers()` lists whatever of it is still
on the machine after `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness.cluster import ROOT

SWARM = [sys.executable, "-m", "swarmlet.cli.main"]
_count = [0]


def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages iproute2, util-linux)"
    return ""


def unique_name(tag: str) -> str:
    _count[0] += 1
    return f"{tag}{os.getpid() % 100000}{_count[0]}"


class NetnsCluster:
    def __init__(self, tmp: Path, tag: str = "t") -> None:
        self.name = unique_name(tag)
        self.root = tmp / "clusters"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("SWARMLET_DATA_DIR", None)
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ cli

    def cli(self, *args: str, check: bool = True, timeout: float = 180,
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*SWARM, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"swarm {' '.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stderr.strip()} {proc.stdout.strip()}")
        return proc

    def cluster(self, verb: str, *args: str, check: bool = True,
                ) -> subprocess.CompletedProcess[str]:
        return self.cli("cluster", verb, "--name", self.name, "--state-dir", str(self.root),
                        *args, check=check)

    def up(self, managers: int = 1, workers: int = 2, runtime: str = "process",
           ) -> subprocess.CompletedProcess[str]:
        proc = self.cluster("up", "--managers", str(managers), "--workers", str(workers),
                            "--runtime", runtime)
        self.state = json.loads((self.root / self.name / "cluster.json").read_text())
        return proc

    def host(self, host: str) -> dict[str, Any]:
        found: dict[str, Any] = next(h for h in self.state["hosts"] if h["host"] == host)
        return found

    def data_dir(self, host: str) -> str:
        return str(self.host(host)["data_dir"])

    def swarm(self, host: str, *args: str, check: bool = True, timeout: float = 60,
              ) -> subprocess.CompletedProcess[str]:
        """`swarm --data-dir <host's> ARGS` (the control socket answers from anywhere)."""
        return self.cli("--data-dir", self.data_dir(host), *args, check=check,
                        timeout=timeout)

    def json(self, host: str, *args: str) -> Any:
        return json.loads(self.swarm(host, *args, "--format", "json").stdout)

    def exec(self, host: str, *cmd: str, check: bool = True,
             ) -> subprocess.CompletedProcess[str]:
        return self.cluster("exec", host, "--", *cmd, check=check)

    def nameserver(self, task_id: str) -> str:
        """The node DNS server a task's resolv.conf names (its first network's gateway)."""
        for h in self.state["hosts"]:
            rc = Path(h["data_dir"] or "/nonexistent", "agent", "runtime", task_id, "etc",
                      "resolv.conf")
            if rc.exists():
                return next(ln.split()[1] for ln in rc.read_text().splitlines()
                            if ln.startswith("nameserver"))
        raise AssertionError(f"no resolv.conf for task {task_id}")

    def netns(self, host: str) -> str:
        return str(self.host(host)["netns"])

    def lan(self) -> str:
        return f"swlc-{self.name}-lan"

    def leader(self, via: str) -> str:
        nodes = self.json(via, "node", "ls")
        return str(next(n["hostname"] for n in nodes if n["manager_status"] == "Leader"))

    # ------------------------------------------------------------------ teardown

    def task_ids(self) -> list[str]:
        ids = []
        for h in self.state.get("hosts", []):
            rt = Path(h["data_dir"] or "/nonexistent") / "agent" / "runtime"
            if rt.is_dir():
                ids += [d.name for d in rt.iterdir() if d.is_dir() and len(d.name) == 25]
        return ids

    def down(self) -> subprocess.CompletedProcess[str] | None:
        if not (self.root / self.name).exists() and not any(
                n.startswith(f"swlc-{self.name}-") for n in _netns()):
            return None
        return self.cluster("down", check=False)

    def leftovers(self, task_ids: list[str], pids: list[int]) -> list[str]:
        """Everything of this cluster still on the machine; [] when clean."""
        found = [f"netns {n}" for n in _netns()
                 if n.startswith(f"swlc-{self.name}-") or n in {f"swl-{t[:12]}"
                                                                for t in task_ids}]
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines()
                  if "swlc" in ln]
        with open("/proc/self/mountinfo") as f:
            found += [f"mount {ln.split()[4]}" for ln in f
                      if str(self.root) in ln.split()[4] or f"swlc-{self.name}-" in ln]
        for cg in Path("/sys/fs/cgroup").glob("*/swarmlet"):
            found += [f"cgroup {cg / t}" for t in task_ids if (cg / t).exists()]
        for pid in pids:
            if Path(f"/proc/{pid}").exists():
                found.append(f"process {pid}")
        ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        found += [f"process {ln.strip()}" for ln in ps.splitlines()
                  if str(self.root) in ln and "ps -eo" not in ln]
        if shutil.which("nft"):
            tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                                    text=True).stdout
            found += [f"nft {t}" for t in tables.splitlines() if "swlc" in t]
        if (self.root / self.name).exists():
            found.append(f"state dir {self.root / self.name}")
        return found

    def pids(self) -> list[int]:
        """Daemon and task (process runtime) pids of the cluster's nodes, as recorded."""
        out = []
        for h in self.state.get("hosts", []):
            d = Path(h["data_dir"] or "/nonexistent")
            if (d / "swarmd.pid").exists():
                out.append(int((d / "swarmd.pid").read_text()))
            for pidf in d.glob("agent/runtime/*/pid.json"):
                try:
                    out.append(int(json.loads(pidf.read_text())["pid"]))
                except (ValueError, KeyError, OSError):
                    pass
        return out


def _netns() -> list[str]:
    try:
        return sorted(p.name for p in Path("/run/netns").iterdir())
    except FileNotFoundError:
        return []
