"""Networks end to end on loopback (real daemons, real Raft, sim runtime): a service on an
overlay network gets task addresses and VIPs, and the Assignments a worker receives over
its real mutual-TLS session carry the network, the endpoints and the service bindings.

The "probe" node joins through the CLI like any worker; its daemon is then stopped and the
test speaks the dispatcher protocol with the probe's own certificate, to see exactly what
a worker is sent.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet import nodeconfig
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.client import ControlClient
from swarmlet.pki import MANAGER_SERVER_NAME
from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


class Probe:
    """A worker session opened by the test: hello, heartbeats, every message kept."""

    def __init__(self, data_dir: Path, manager: str) -> None:
        ca, cert, key = nodeconfig.read_certs(data_dir)
        self._channel = grpc.secure_channel(
            manager, grpc.ssl_channel_credentials(ca, key, cert),
            options=[("grpc.ssl_target_name_override", MANAGER_SERVER_NAME)])
        self._out: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        self._stop = threading.Event()
        self.assignments: list[pb.Assignments] = []
        hello = pb.Hello(addr="127.0.0.25")
        hello.description.hostname = "probe"
        self._out.put(pb.WorkerMessage(hello=hello))
        stream = pbg.DispatcherStub(self._channel).Session(self._messages())
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        threading.Thread(target=self._beat, daemon=True).start()

    def _messages(self) -> Iterator[pb.WorkerMessage]:
        while (msg := self._out.get()) is not None:
            yield msg

    def _beat(self) -> None:
        while not self._stop.wait(0.3):
            self._out.put(pb.WorkerMessage(heartbeat=pb.Heartbeat()))

    def _read(self, stream: Iterator[pb.ManagerMessage]) -> None:
        try:
            for msg in stream:
                if msg.WhichOneof("msg") == "assignments":
                    self.assignments.append(msg.assignments)
        except grpc.RpcError:
            pass

    def latest(self) -> pb.Assignments | None:
        return self.assignments[-1] if self.assignments else None

    def close(self) -> None:
        self._stop.set()
        self._out.put(None)
        self._channel.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, runtime="sim")
    try:
        c.start(workers=2)
        c.join("probe", "127.0.0.25")
        wait_for(lambda: c.ready_nodes() == 4, what="the probe node ready")
        c.kill("probe")
        yield c
    finally:
        c.close()


def _tasks(client: ControlClient, service: str) -> list[pb.Task]:
    return [t for t in client.list_tasks(service=service).tasks
            if t.desired_state == pb.RUNNING]


def test_service_on_network_and_what_a_worker_receives(cluster: LocalCluster) -> None:
    c = cluster
    nets = {n["name"]: n for n in c.json("network", "ls")}
    assert nets["ingress"]["subnet"] == "10.255.0.0/16"
    c.swarm("network", "create", "--driver", "overlay", "--subnet", "10.0.9.0/24", "front")
    c.swarm("service", "create", "--detach", "--name", "web", "--replicas", "2", "--network",
            "name=front,alias=www", "-p", "8080:80", "--constraint", "node.hostname!=probe",
            "sim")
    c.swarm("service", "create", "--detach", "--name", "pinned", "--network", "front",
            "--constraint", "node.hostname==probe", "sim")
    client = ControlClient(c.nodes["manager-1"])
    wait_for(lambda: sum(t.status.state == pb.RUNNING for t in _tasks(client, "web")) == 2,
             what="web running")
    web = client.get_service("web")
    front = client.get_network("front")
    vips = {v.network_id: v.addr for v in web.endpoint.virtual_ips}
    ingress_id = next(n.id for n in client.list_networks() if n.spec.ingress)
    assert vips[front.id] == "10.0.9.2/24" and vips[ingress_id].startswith("10.255.")
    assert [(p.published_port, p.target_port) for p in web.endpoint.ports] == [(8080, 80)]
    web_tasks = _tasks(client, "web")
    addrs = {t.id: {a.network.id: a.addresses[0] for a in t.networks} for t in web_tasks}
    assert all(set(a) == {front.id, ingress_id} for a in addrs.values())
    assert all(a[front.id].startswith("10.0.9.") for a in addrs.values())
    assert c.swarm("service", "ls").stdout.count("*:8080->80/tcp") == 1

    probe = Probe(c.nodes["probe"], c.manager_addr)
    try:
        def complete() -> pb.Assignments | None:
            a = probe.latest()
            if a is None:
                return None
            serving = {e.task_id for e in a.endpoints if e.serving}
            return a if set(addrs) <= serving else None

        a = wait_for(complete, what="assignments with the web endpoints serving")
        assert {n.id for n in a.networks} == {front.id, ingress_id}
        pinned = _tasks(client, "pinned")[0]
        # the node's current task (an earlier one may still be listed while it stops)
        assert pinned.id in {t.id for t in a.tasks}
        assert {t.service_id for t in a.tasks} == {pinned.service_id}
        by_task = {(e.task_id, e.network_id): e for e in a.endpoints if e.task_id}
        for tid, per_net in addrs.items():
            e = by_task[(tid, front.id)]
            assert e.address == per_net[front.id] and list(e.aliases) == ["web", "www"]
            assert e.node_addr.startswith("127.0.0.") and e.mac.startswith("02:42:0a:00:09:")
            assert by_task[(tid, ingress_id)].address == per_net[ingress_id]
        assert by_task[(pinned.id, front.id)].serving is False  # assigned, not running
        node_eps = {e.node_id for e in a.endpoints if not e.task_id}
        assert len(node_eps) == 3  # the other nodes' ingress endpoints
        bindings = {b.service_name: b for b in a.services}
        assert set(bindings) == {"web", "pinned"}
        assert {v.addr for v in bindings["web"].virtual_ips} == set(vips.values())
        assert [p.published_port for p in bindings["web"].ports] == [8080]
        probe_node = client.get_node("probe")
        assert a.ingress == probe_node.ingress and a.ingress.addresses
    finally:
        probe.close()
    result = c.swarm("network", "rm", "front", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: network front is in use by service pinned, web"
