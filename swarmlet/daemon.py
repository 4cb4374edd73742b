"""The node daemon (`python -m swarmlet.daemon --data-dir D`): a manager (if the node is
one), the worker agent (every node runs tasks, managers too, as in Swarm), and the
local control socket. `swarm init` / `swarm join` start it in the background.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent import futures  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402

from swarmlet import log, nodeconfig, paths, pki  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.api import swarmlet_pb2_grpc as pbg  # noqa: E402
from swarmlet.clock import Clock, RealClock  # noqa: E402
from swarmlet.errors import SwarmletError  # noqa: E402
from swarmlet.image_service import ImageService  # noqa: E402
from swarmlet.local_control import LocalControl  # noqa: E402
from swarmlet.nodeconfig import NodeConfig  # noqa: E402
from swarmlet.pki import MANAGER_SERVER_NAME  # noqa: E402


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def describe(cfg: NodeConfig, runtime: str) -> pb.NodeDescription:
    cpus = float(os.environ.get("SWARMLET_NODE_CPUS") or os.cpu_count() or 1)
    mem = os.environ.get("SWARMLET_NODE_MEMORY")
    return pb.NodeDescription(
        hostname=cfg.hostname,
        platform=pb.Platform(os=platform.system().lower(), architecture=platform.machine()),
        resources=pb.Resources(
            nano_cpus=int(cpus * 1e9), memory_bytes=int(mem) if mem else _memory_bytes()
        ),
        runtime=runtime,
        engine_version="swarmlet",
    )


class NodeDaemon:
    def __init__(self, data_dir: Path, cfg: NodeConfig, clock: Clock) -> None:
        self.data_dir = data_dir
        self.cfg = cfg
        self.clock = clock
        self.log = log.get("daemon", **{"node.id": cfg.node_id})
        self.done = threading.Event()
        self.manager: Any = None
        self.agent: Any = None
        self.images: Any = None  # worker.images.ImageStore of this node
        self.networking: Any = None  # net_overlay.agent.NetworkAgent (runc runtime only)
        self._local: grpc.Server | None = None
        self._leaving = False
        self._stopping = False
        self._stop_lock = threading.Lock()
        self._role_lock = threading.Lock()
        self._manager_done = threading.Event()
        self._servicer: LocalControl

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        paths.pid_file(self.data_dir).write_text(str(os.getpid()))
        ca, cert, key = nodeconfig.read_certs(self.data_dir)
        if self.cfg.role == "manager":
            self._start_manager(ca, cert, key)
        self._start_agent(ca, cert, key)
        self._serve_local()
        self.log.info("daemon.started", role=self.cfg.role, runtime=self.runtime_name,
                      addr=self.cfg.advertise_addr)

    def _start_manager(self, ca: bytes, cert: bytes, key: bytes) -> None:
        from manager.manager import Manager, ManagerConfig

        marker = self.data_dir / "force-new-cluster"
        if marker.exists():  # swarm init --force-new-cluster: a new Raft group of one
            from manager.recovery import force_new_cluster

            force_new_cluster(self.data_dir, self.cfg.node_id, self.clock.now())
            marker.unlink()
            self.log.warning("daemon.force_new_cluster")
        boot_file = self.data_dir / "bootstrap.pb"
        boot = pb.CommandBatch.FromString(boot_file.read_bytes()) if boot_file.exists() else None
        mcfg = ManagerConfig(
            node_id=self.cfg.node_id,
            state_dir=self.data_dir,
            listen_addr=self.cfg.listen_addr,
            advertise_addr=self.cfg.advertise_addr,
            raft_secret=(self.data_dir / "raft.secret").read_text().strip(),
            server_key=key,
            server_cert_chain=cert + ca,
            ca_pem=ca,
            bootstrap=boot,
            raft_peers=list(self.cfg.raft_peers),
            channel_factory=self._channel_factory(ca, cert, key),
        )
        self.manager = Manager(mcfg, self.clock)
        self.manager.start()
        self.manager.store.subscribe(self._store_changed)

    def _store_changed(self, events: list[Any]) -> None:
        """Keep node.json's view of the managers current, so a restart finds its peers."""
        if not any(e.kind == "node" for e in events):
            return
        nodes = self.manager.store.all_nodes()
        managers = [n for n in nodes if n.role == pb.MANAGER and n.manager_status.addr]
        peers = sorted(n.manager_status.raft_addr for n in managers if n.id != self.cfg.node_id)
        addrs = sorted(n.manager_status.addr for n in managers)
        if peers != sorted(self.cfg.raft_peers) or addrs != sorted(self.cfg.managers):
            self.cfg.raft_peers, self.cfg.managers = peers, addrs
            nodeconfig.save(self.data_dir, self.cfg)

    def _channel_factory(self, ca: bytes, cert: bytes, key: bytes) -> Any:
        def make(addr: str) -> grpc.Channel:
            # read the certificate each time: a role change replaces it
            try:
                ca_now, cert_now, key_now = nodeconfig.read_certs(self.data_dir)
            except OSError:
                ca_now, cert_now, key_now = ca, cert, key
            creds = grpc.ssl_channel_credentials(ca_now, key_now, cert_now)
            return grpc.secure_channel(
                addr, creds,
                options=[("grpc.ssl_target_name_override", MANAGER_SERVER_NAME),
                         ("grpc.keepalive_time_ms", 10000)],
            )

        return make

    @property
    def runtime_name(self) -> str:
        """The task runtime in use ("auto" resolved), as node inspect shows it."""
        return self.agent.runtime.name if self.agent is not None else self.cfg.runtime

    def _start_agent(self, ca: bytes, cert: bytes, key: bytes) -> None:
        from worker.agent import Agent
        from worker.images import ImageStore
        from worker.runtime import make_runtime, resolve_runtime, runc_usable

        state = self.data_dir / "agent"
        state.mkdir(parents=True, exist_ok=True)
        self.images = ImageStore(state / "images", clock=self.clock,
                                 insecure_registries=self.cfg.insecure_registries)
        # runc gets this node's store (insecure registries included) when it can run here;
        # otherwise make_runtime says why not
        runc_ok = resolve_runtime(self.cfg.runtime) == "runc" and not runc_usable()
        if runc_ok:
            self.networking = self._network_agent(state / "network")
        runtime = make_runtime(self.cfg.runtime, state / "runtime", self.clock,
                               hostname=self.cfg.hostname,
                               images=self.images if runc_ok else None,
                               networking=self.networking)
        self.log.info("daemon.runtime", runtime=runtime.name, configured=self.cfg.runtime)
        self.agent = Agent(
            state_dir=state,
            managers=list(self.cfg.managers),
            credentials_factory=self._channel_factory(ca, cert, key),
            runtime=runtime,
            description=describe(self.cfg, runtime.name),
            addr=self.cfg.advertise_ip,
            clock=self.clock,
            node_id=self.cfg.node_id,
            on_leave=self._removed,
            networking=self.networking,
        )
        self.agent.on_role_change = self._role_changed
        self.agent.start()

    def _network_agent(self, state: Path) -> Any:
        """The overlay data plane for container tasks; None (logged) when it cannot run."""
        from net_overlay.agent import NetworkAgent
        from net_overlay.errors import NetworkError

        try:
            return NetworkAgent(self.cfg.node_id, self.cfg.advertise_ip, state)
        except (NetworkError, OSError) as e:
            self.log.error("daemon.networking_unavailable", error=str(e))
            return None

    # ------------------------------------------------------------------ role changes

    def _role_changed(self, role: int) -> None:
        """Promotion or demotion: renew the certificate, then start or stop the manager."""
        want = "manager" if role == pb.MANAGER else "worker"
        with self._role_lock:
            if want == self.cfg.role or self._leaving:
                return
            try:
                key = pki.generate_key()
                resp = self._renew(key)
            except (grpc.RpcError, SwarmletError) as e:
                self.log.warning("daemon.renew_failed", error=str(e))
                return
            nodeconfig.write_certs(self.data_dir, resp.ca_pem, resp.cert_pem, key)
            if want == "manager":
                self._become_manager(resp)
            else:
                self._become_worker()
            self.log.info("daemon.role_changed", role=want)

    def _renew(self, key: bytes) -> pb.IssueResponse:
        ca, cert, old_key = nodeconfig.read_certs(self.data_dir)
        factory = self._channel_factory(ca, cert, old_key)
        todo = list(self.cfg.managers)
        tried: set[str] = set()
        last: Exception | None = None
        while todo:
            addr = todo.pop(0)
            if addr in tried:
                continue
            tried.add(addr)
            with factory(addr) as ch:
                try:
                    resp: pb.IssueResponse = pbg.CAStub(ch).Renew(
                        pb.RenewRequest(csr_pem=pki.make_csr(key)), timeout=20)
                    return resp
                except grpc.RpcError as e:
                    last = e
                    hint = dict(e.trailing_metadata() or ()).get("swarmlet-leader")
                    if hint:
                        todo.insert(0, str(hint))
        raise SwarmletError(f"no manager renewed this node's certificate: {last}")

    def _become_manager(self, resp: pb.IssueResponse) -> None:
        ip = self.cfg.advertise_ip
        mine = next((m for m in resp.managers if m.rpartition(":")[0] == ip), "")
        if not mine:
            raise SwarmletError("promotion: the leader did not list this node as a manager")
        nodeconfig.write_private(self.data_dir / "raft.secret", resp.raft_secret.encode())
        self.cfg.role, self.cfg.listen_addr, self.cfg.advertise_addr = "manager", mine, mine
        self.cfg.raft_peers = list(resp.raft_peers)
        self.cfg.managers = list(resp.managers)
        nodeconfig.save(self.data_dir, self.cfg)
        ca, cert, key = nodeconfig.read_certs(self.data_dir)
        # pysyncobj stops ticking when the thread that created it ends: give the manager
        # a thread that lives as long as it does
        started = threading.Event()
        self._manager_done = threading.Event()

        def host() -> None:
            try:
                self._start_manager(ca, cert, key)
            finally:
                started.set()
            self._manager_done.wait()

        threading.Thread(target=host, name="manager-host", daemon=True).start()
        started.wait(60)
        self._servicer.set_manager(self.manager.control)

    def _become_worker(self) -> None:
        self._servicer.set_manager(None)
        if self.manager is not None:
            self.manager.stop()
            self.manager = None
        self._manager_done.set()
        for name in ("raft.secret", "bootstrap.pb"):
            (self.data_dir / name).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(self.data_dir / "raft", ignore_errors=True)
        self.cfg.role, self.cfg.listen_addr = "worker", ""
        self.cfg.advertise_addr = f"{self.cfg.advertise_ip}:0"
        self.cfg.raft_peers = []
        nodeconfig.save(self.data_dir, self.cfg)

    def _serve_local(self) -> None:
        sock = paths.control_socket(self.data_dir)
        sock.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        control = self.manager.control if self.manager is not None else None
        images = ImageService(self.images) if self.images is not None else None
        servicer = self._servicer = LocalControl(self._info, self._leave, control, images)
        pbg.add_ControlServicer_to_server(servicer, server)  # type: ignore[arg-type]
        old = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix://{sock}")
            server.start()
        finally:
            os.umask(old)
        os.chmod(sock, 0o600)
        self._local = server

    # ------------------------------------------------------------------ local calls

    def _info(self) -> pb.InfoResponse:
        leader = bool(self.manager and self.manager.is_leader())
        digest, index = "", 0
        if self.manager is not None:
            with self.manager.store.lock:
                digest, index = self.manager.store.digest(), self.manager.store.index
        return pb.InfoResponse(
            store_digest=digest, store_index=index,
            node_id=self.cfg.node_id, role=self.cfg.role, cluster_id=self.cfg.cluster_id,
            manager_addr=self.cfg.advertise_addr if self.cfg.role == "manager"
            else (self.cfg.managers[0] if self.cfg.managers else ""),
            is_leader=leader, data_dir=str(self.data_dir), runtime=self.runtime_name,
            addr=self.cfg.advertise_ip,
        )

    def _leave(self, force: bool) -> None:
        if self._leaving:
            return
        if self.manager is not None:
            self._leave_managers(force)
        self._leaving = True
        threading.Thread(target=self._do_leave, name="leave", daemon=True).start()

    def _leave_managers(self, force: bool) -> None:
        """A manager leaves the Raft group first (through the leader), or refuses."""
        m = self.manager
        managers = [n for n in m.store.all_nodes() if n.role == pb.MANAGER]
        if len(managers) <= 1:
            if not force:
                raise SwarmletError(
                    "this node is the swarm's only manager: leaving erases the whole cluster "
                    "state; use --force to leave anyway"
                )
            return
        if m.is_leader():
            if force:
                return
            self._hand_over_leadership()
        leader = m.link.leader_node()
        try:
            if leader is None:
                raise SwarmletError(str(m.link.no_leader()))
            stub = pbg.ControlStub(m.link.channel(leader.manager_status.addr))
            stub.RemoveNode(pb.RemoveNodeRequest(id=self.cfg.node_id, force=True), timeout=30)
        except grpc.RpcError as e:
            if not force:
                raise SwarmletError(f"{e.details()} (use --force to leave anyway)") from None
        except SwarmletError:
            if not force:
                raise

    def _hand_over_leadership(self) -> None:
        """Ask Raft to make another manager the leader, and wait until one is."""
        m = self.manager
        m.raft.sync.transferLeadership()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            leader = m.link.leader_node()
            if not m.is_leader() and leader is not None and leader.id != self.cfg.node_id:
                return
            time.sleep(0.1)
        raise SwarmletError(
            "could not hand the leadership to another manager; use --force to leave anyway "
            f"(then `swarm node rm --force {self.cfg.node_id}` on another manager)"
        )

    def _do_leave(self) -> None:
        self.log.info("daemon.leaving")
        try:
            self.agent.leave()
        except Exception:
            self.log.exception("daemon.leave_agent_failed")
        self._shutdown(erase=True)

    def _removed(self, reason: str = "") -> None:
        self.log.warning("daemon.removed_by_manager", reason=reason)
        self._leaving = True
        threading.Thread(target=self._shutdown, args=(True,), daemon=True).start()

    # ------------------------------------------------------------------ stop

    def _shutdown(self, erase: bool = False) -> None:
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
        if self.agent is not None and not erase:
            self.agent.stop()
        if self.networking is not None:
            try:
                self.networking.close()
            except Exception:  # noqa: BLE001 (the daemon still has to exit)
                self.log.exception("daemon.networking_close_failed")
        if self.manager is not None:
            self.manager.stop()
        if self._local is not None:
            self._local.stop(grace=1.0)
        paths.control_socket(self.data_dir).unlink(missing_ok=True)
        if erase:
            nodeconfig.erase(self.data_dir)
        else:
            paths.pid_file(self.data_dir).unlink(missing_ok=True)
        self.done.set()

    def stop(self) -> None:
        """SIGTERM: stop serving; running tasks keep running (they outlive the agent)."""
        threading.Thread(target=self._shutdown, name="stop", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarmd", description="swarmlet node daemon")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--log-level", default=os.environ.get("SWARMLET_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    data_dir = paths.data_dir(args.data_dir)
    log.setup(stream=sys.stderr, level=args.log_level)
    try:
        cfg = nodeconfig.load(data_dir)
        daemon = NodeDaemon(data_dir, cfg, RealClock())
        daemon.start()
    except (SwarmletError, OSError) as e:
        print(f"swarmd: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    while not daemon.done.wait(1.0):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
