"""What a test cluster looks like, decided without touching the machine.

Names: the bridge namespace `swlc-<name>-lan`, hosts `swlc-<name>-m1..mM` and
`-w1..wW`, the client `swlc-<name>-client`. Underlay: 172.30.<k>.0/24 (k differs per
cluster; never inside the overlay pool 10.0.0.0/8): client .2, managers .11-.17, workers
.101 on. State: `<state root>/<name>/cluster.json` and one data dir per host beside it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from swarmlet.errors import SpecError

PREFIX = "swlc"
STATE_ENV = "SWARMLET_CLUSTERS_DIR"
DEFAULT_STATE_ROOT = Path("/var/lib/swarmlet/clusters")
STATE_FILE = "cluster.json"
PORT = 2377
MAX_MANAGERS = 7
MAX_WORKERS = 50
UNDERLAY = "172.30"
BRIDGE = "br0"
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?$")
_HOST_RE = re.compile(r"^(lan|client|m[1-9][0-9]*|w[1-9][0-9]*)$")


def state_root(explicit: str | None = None) -> Path:
    """Where clusters keep their state: the option, $SWARMLET_CLUSTERS_DIR, or the default."""
    chosen = explicit or os.environ.get(STATE_ENV)
    return Path(chosen).expanduser().absolute() if chosen else DEFAULT_STATE_ROOT


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise SpecError("name", f"{name!r} must be 1-16 lowercase letters, digits or '-' "
                        "(not at either end)")
    return name


def check_counts(managers: int, workers: int) -> str | None:
    """Raise on impossible counts; return a warning for an even number of managers."""
    if not 1 <= managers <= MAX_MANAGERS:
        raise SpecError("managers", f"must be between 1 and {MAX_MANAGERS}, not {managers}")
    if not 0 <= workers <= MAX_WORKERS:
        raise SpecError("workers", f"must be between 0 and {MAX_WORKERS}, not {workers}")
    if managers % 2 == 0:
        return (f"{managers} managers tolerate no more failures than {managers - 1}; "
                "an odd number is recommended")
    return None


def netns_name(cluster: str, host: str) -> str:
    return f"{PREFIX}-{cluster}-{host}"


def host_of_netns(cluster: str, ns: str) -> str | None:
    """The host part of one of this cluster's namespace names, else None."""
    head = f"{PREFIX}-{cluster}-"
    if not ns.startswith(head):
        return None
    host = ns[len(head):]
    return host if _HOST_RE.match(host) else None


def pick_subnet_index(used: set[int]) -> int:
    """The lowest k in 1..254 that no other cluster's underlay uses."""
    for k in range(1, 255):
        if k not in used:
            return k
    raise SpecError("name", "every underlay subnet 172.30.1-254.0/24 is in use")


@dataclass
class Host:
    host: str          # m1, w2, client
    netns: str
    role: str          # manager | worker | client
    addr: str          # underlay IPv4
    data_dir: str = ""  # empty for the client


@dataclass
class ClusterState:
    """cluster.json: rewritten after every step, so `down` knows what a half-built one has."""

    name: str
    subnet: str
    runtime: str
    state_dir: str
    status: str = "building"   # building | up
    namespaces: list[str] = field(default_factory=list)   # made so far, in order
    hosts: list[Host] = field(default_factory=list)

    @property
    def lan(self) -> str:
        return netns_name(self.name, "lan")

    def nodes(self) -> list[Host]:
        return [h for h in self.hosts if h.role != "client"]

    def managers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "manager"]

    def find(self, host: str) -> Host | None:
        return next((h for h in self.hosts if h.host == host), None)

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)


def plan(name: str, managers: int, workers: int, k: int, runtime: str,
         root: Path) -> ClusterState:
    """The full layout of a new cluster (nothing made yet)."""
    base = f"{UNDERLAY}.{k}"
    cdir = root / name
    hosts = [Host("client", netns_name(name, "client"), "client", f"{base}.2")]
    for i in range(1, managers + 1):
        hosts.append(Host(f"m{i}", netns_name(name, f"m{i}"), "manager", f"{base}.{10 + i}",
                          str(cdir / f"m{i}")))
    for i in range(1, workers + 1):
        hosts.append(Host(f"w{i}", netns_name(name, f"w{i}"), "worker", f"{base}.{100 + i}",
                          str(cdir / f"w{i}")))
    return ClusterState(name=name, subnet=f"{base}.0/24", runtime=runtime,
                        state_dir=str(cdir), hosts=hosts)


def load(cluster_dir: Path) -> ClusterState | None:
    """The recorded state of a cluster, or None when there is no (readable) cluster.json."""
    try:
        raw = json.loads((cluster_dir / STATE_FILE).read_text())
        hosts = [Host(**h) for h in raw.pop("hosts", [])]
        return ClusterState(**raw, hosts=hosts)
    except (OSError, ValueError, TypeError):
        return None


def subnet_index(subnet: str) -> int | None:
    """k of '172.30.k.0/24'."""
    parts = subnet.split(".")
    if len(parts) == 4 and ".".join(parts[:2]) == UNDERLAY and parts[2].isdigit():
        return int(parts[2])
    return None
