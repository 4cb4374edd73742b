"""Creating a node's identity: `swarm init` (a new cluster) and `swarm join` (an existing one).

Both only write the data dir (nothing is half-written: files go in atomically and the
node file last); the daemon started afterwards reads it.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from pathlib import Path

import grpc

from swarmlet import nodeconfig
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.errors import SpecError, SwarmletError
from swarmlet.nodeconfig import NodeConfig
from swarmlet.pki import (
    MANAGER_SERVER_NAME,
    Identity,
    create_root_ca,
    fetch_ca_by_digest,
    generate_key,
    make_csr,
    new_id,
    new_token,
    parse_token,
    sign_csr,
)

DEFAULT_PORT = 2377


def parse_addr(value: str, field: str, default_port: int = DEFAULT_PORT) -> str:
    """'IP' or 'IP:PORT' -> 'IP:PORT'; SpecError naming the field otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default_port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise SpecError(field, f"{value!r} is not an IP address or IP:PORT") from None
    if not port.isdigit() or not 0 < int(port) < 65534:
        raise SpecError(field, f"port {port!r} must be a number between 1 and 65533")
    return f"{host}:{port}"


def default_advertise(listen: str) -> str:
    host = listen.rpartition(":")[0]
    if host not in ("0.0.0.0", "::"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _refuse_if_member(data_dir: Path) -> None:
    if nodeconfig.exists(data_dir):
        raise SwarmletError(
            f"this node is already part of a swarm (state in {data_dir}); "
            "run swarm leave first, or use another --data-dir"
        )


def init_cluster(
    data_dir: Path, listen_addr: str, advertise_addr: str | None, hostname: str, runtime: str
) -> NodeConfig:
    """Create the CA, tokens and first manager's identity; returns the node config."""
    _refuse_if_member(data_dir)
    listen = parse_addr(listen_addr, "listen-addr")
    port = int(listen.rpartition(":")[2])
    adv_host = advertise_addr or default_advertise(listen)
    advertise = parse_addr(adv_host if ":" in adv_host else f"{adv_host}:{port}", "advertise-addr")
    ca, ca_key = create_root_ca()
    cluster_id, node_id = new_id(), new_id()
    key = generate_key()
    cert = sign_csr(ca, ca_key, make_csr(key), Identity(node_id, "manager", cluster_id))
    raft_secret = secrets.token_urlsafe(32)
    cluster = pb.Cluster(
        id=cluster_id,
        spec=pb.ClusterSpec(
            annotations=pb.Annotations(name="default"), task_history_limit=5,
            heartbeat_period_s=1.0, heartbeat_misses=3,
        ),
        ca_cert_pem=ca.decode(), ca_key_pem=ca_key.decode(),
        join_tokens=pb.JoinTokens(worker=new_token(ca), manager=new_token(ca)),
        raft_secret=raft_secret,
    )
    adv_ip, adv_port = advertise.rpartition(":")[0], int(advertise.rpartition(":")[2])
    node = pb.Node(
        id=node_id, role=pb.MANAGER,
        spec=pb.NodeSpec(desired_role=pb.MANAGER, availability=pb.ACTIVE),
        description=pb.NodeDescription(hostname=hostname),
        status=pb.NodeStatus(state=pb.UNKNOWN, addr=adv_ip),
        manager_status=pb.ManagerStatus(
            addr=advertise, raft_addr=f"{adv_ip}:{adv_port + 2}", reachability="reachable"
        ),
    )
    boot = pb.CommandBatch(
        commands=[pb.Command(put_cluster=cluster), pb.Command(create_node=node)]
    )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    nodeconfig.write_certs(data_dir, ca, cert, key)
    nodeconfig.write_private(data_dir / "raft.secret", raft_secret.encode())
    nodeconfig.write_private(data_dir / "bootstrap.pb", boot.SerializeToString())
    cfg = NodeConfig(
        node_id=node_id, role="manager", cluster_id=cluster_id, hostname=hostname,
        advertise_addr=advertise, listen_addr=listen, managers=[advertise], runtime=runtime,
    )
    nodeconfig.save(data_dir, cfg)
    return cfg


_JOIN_ERRORS = {
    grpc.StatusCode.PERMISSION_DENIED: "{d}",
    grpc.StatusCode.INVALID_ARGUMENT: "{d}",
    grpc.StatusCode.FAILED_PRECONDITION: "{d}",
    grpc.StatusCode.UNAVAILABLE: "cannot reach a manager at {a}: {d}",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the manager at {a} did not answer in time",
}


def join_cluster(
    data_dir: Path, token: str, remote: str, advertise_addr: str | None, hostname: str,
    runtime: str, listen_addr: str | None = None,
) -> NodeConfig:
    """Pin the CA by the token's digest, prove the token, and store the issued identity."""
    _refuse_if_member(data_dir)
    digest, _secret = parse_token(token)
    manager = parse_addr(remote, "address")
    m_host, m_port = manager.rpartition(":")[0], int(manager.rpartition(":")[2])
    join_ep = f"{m_host}:{m_port + 1}"
    ca = fetch_ca_by_digest(join_ep, digest)
    key = generate_key()
    listen = parse_addr(listen_addr or f"0.0.0.0:{DEFAULT_PORT}", "listen-addr")
    port = int(listen.rpartition(":")[2])
    adv = advertise_addr or default_advertise(listen)
    adv_ip = parse_addr(adv, "advertise-addr").rpartition(":")[0]
    channel = grpc.secure_channel(
        join_ep, grpc.ssl_channel_credentials(ca),
        options=[("grpc.ssl_target_name_override", MANAGER_SERVER_NAME)],
    )
    try:
        resp = pbg.CAStub(channel).Issue(
            pb.IssueRequest(token=token.strip(), csr_pem=make_csr(key), hostname=hostname,
                            advertise_addr=f"{adv_ip}:{port}"),
            timeout=20,
        )
    except grpc.RpcError as e:
        tmpl = _JOIN_ERRORS.get(e.code(), "join failed: {d}")
        raise SwarmletError(tmpl.format(d=e.details(), a=manager)) from None
    finally:
        channel.close()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    nodeconfig.write_certs(data_dir, resp.ca_pem, resp.cert_pem, key)
    is_manager = resp.role == pb.MANAGER
    if is_manager:
        nodeconfig.write_private(data_dir / "raft.secret", resp.raft_secret.encode())
    cfg = NodeConfig(
        node_id=resp.node_id, role="manager" if is_manager else "worker",
        cluster_id=resp.cluster_id, hostname=hostname,
        advertise_addr=f"{adv_ip}:{port if is_manager else 0}",
        listen_addr=listen if is_manager else "",
        managers=list(resp.managers) or [manager], runtime=runtime,
        raft_peers=list(resp.raft_peers),
    )
    nodeconfig.save(data_dir, cfg)
    return cfg
