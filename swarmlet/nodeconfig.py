"""What a node keeps in its data dir: identity, addresses, certificates, raft secret.

Layout of DATA_DIR: node.json, certs/{ca.pem,node.pem,node.key}, raft.secret and
bootstrap.pb (managers), raft/ (journal), agent/ (worker state), swarm.sock, swarmd.pid,
swarmd.log. Secrets are written 0600 and atomically (write + rename), so a crash never
leaves half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from swarmlet.errors import SwarmletError

NODE_FILE = "node.json"


@dataclass
class NodeConfig:
    node_id: str
    role: str                 # manager | worker
    cluster_id: str
    hostname: str
    advertise_addr: str       # host:port of this node's manager endpoint / its address
    listen_addr: str          # host:port the manager endpoint binds (managers only)
    managers: list[str] = field(default_factory=list)
    runtime: str = "process"
    raft_peers: list[str] = field(default_factory=list)   # managers: other Raft members
    # registries pulled from over plain HTTP (host, host:port or CIDR); 127.0.0.0/8 and
    # localhost always are, as with Docker
    insecure_registries: list[str] = field(default_factory=list)

    @property
    def advertise_ip(self) -> str:
        return self.advertise_addr.rpartition(":")[0]


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(data_dir: Path, cfg: NodeConfig) -> None:
    write_private(data_dir / NODE_FILE, json.dumps(asdict(cfg), indent=2).encode())


def exists(data_dir: Path) -> bool:
    return (data_dir / NODE_FILE).exists()


def load(data_dir: Path) -> NodeConfig:
    path = data_dir / NODE_FILE
    try:
        raw = json.loads(path.read_text())
        known = set(NodeConfig.__dataclass_fields__)
        return NodeConfig(**{k: v for k, v in raw.items() if k in known})
    except FileNotFoundError:
        raise SwarmletError(
            f"this node is not part of a swarm (no {path}); run swarm init or swarm join"
        ) from None
    except (ValueError, TypeError) as e:
        raise SwarmletError(f"{path} is damaged: {e}") from None


def certs_dir(data_dir: Path) -> Path:
    return data_dir / "certs"


def read_certs(data_dir: Path) -> tuple[bytes, bytes, bytes]:
    """(ca_pem, node_cert_pem, node_key_pem)."""
    d = certs_dir(data_dir)
    return (d / "ca.pem").read_bytes(), (d / "node.pem").read_bytes(), (d / "node.key").read_bytes()


def write_certs(data_dir: Path, ca: bytes, cert: bytes, key: bytes) -> None:
    d = certs_dir(data_dir)
    write_private(d / "ca.pem", ca)
    write_private(d / "node.pem", cert)
    write_private(d / "node.key", key)


def erase(data_dir: Path) -> None:
    """Forget the swarm: everything but the log file goes."""
    for name in (NODE_FILE, "raft.secret", "bootstrap.pb", "swarmd.pid"):
        (data_dir / name).unlink(missing_ok=True)
    for sub in ("certs", "raft", "agent"):
        shutil.rmtree(data_dir / sub, ignore_errors=True)
