"""A FakeControl that also keeps secrets, configs and service versions, for the tests of
`swarm stack`, `swarm secret/config`, `swarm network` and `swarm service update/rollback`.

UpdateService checks the version it is given (as the store does) and replaces the
service's tasks with tasks of the new spec_version; RollbackService swaps in the
previous spec. Secret data is kept only to let tests check what was sent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from swarmlet import paths
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pb_grpc
from tests.harness.fake_control import FakeControl, make_node


@dataclass
class StackFake(FakeControl):
    secrets: dict[str, pb.Secret] = field(default_factory=dict)
    configs: dict[str, pb.Config] = field(default_factory=dict)
    networks: dict[str, pb.Network] = field(default_factory=dict)
    secret_values: dict[str, bytes] = field(default_factory=dict)
    update_state: str = ""  # update_status.state reported after an UpdateService

    def writes(self) -> list[str]:
        reads = {"Info", "GetService", "ListServices", "ListTasks", "GetNode", "ListNodes",
                 "GetSecret", "ListSecrets", "GetConfig", "ListConfigs", "GetNetwork",
                 "ListNetworks"}
        return [name for name, _ in self.calls if name not in reads]

    def _retask(self, svc: pb.Service) -> None:
        self.tasks = [t for t in self.tasks if t.service_id != svc.id]
        self._make_tasks(svc)
        for t in self.tasks:
            if t.service_id == svc.id:
                t.spec_version = svc.spec_version

    def CreateService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        resp = super().CreateService(request, context)
        svc = self.services[resp.service.id]
        svc.meta.version, svc.spec_version = 1, 1
        self._retask(svc)
        return pb.ServiceResponse(service=svc)

    def UpdateService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        self._enter("UpdateService", request, context)
        svc = self._find(request.id, context)
        if request.version != svc.meta.version:
            context.abort(grpc.StatusCode.ABORTED, "service changed since it was read")
        svc.previous_spec.CopyFrom(svc.spec)
        svc.spec.CopyFrom(request.spec)
        svc.meta.version += 1
        svc.spec_version += 1
        svc.update_status.state = self.update_state
        svc.update_status.message = f"update {self.update_state}" if self.update_state else ""
        self._retask(svc)
        return pb.ServiceResponse(service=svc)

    def RollbackService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        self._enter("RollbackService", request, context)
        svc = self._find(request.id, context)
        if not svc.HasField("previous_spec"):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no previous spec")
        svc.spec.CopyFrom(svc.previous_spec)
        svc.ClearField("previous_spec")
        svc.meta.version += 1
        svc.spec_version += 1
        svc.update_status.state = "rollback_completed"
        self._retask(svc)
        return pb.ServiceResponse(service=svc)

    # secrets and configs -------------------------------------------------------------

    def _table(self, kind: str) -> dict[str, Any]:
        return {"secret": self.secrets, "config": self.configs, "network": self.networks}[kind]

    def _create(self, kind: str, request: Any, context: Any) -> Any:
        self._enter(f"Create{kind.capitalize()}", request, context)
        table = self._table(kind)
        name = request.spec.annotations.name
        if any(o.spec.annotations.name == name for o in table.values()):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{kind} {name} already exists")
        made = {"secret": pb.Secret, "config": pb.Config, "network": pb.Network}[kind]
        obj = made(id=f"{kind}{len(table) + 1:020d}")
        obj.spec.CopyFrom(request.spec)
        if kind == "secret":
            self.secret_values[name] = obj.spec.data
            obj.spec.ClearField("data")
        table[obj.id] = obj
        return obj

    def _get(self, kind: str, ref: str, context: Any) -> Any:
        for obj in self._table(kind).values():
            if ref in (obj.id, obj.spec.annotations.name):
                return obj
        context.abort(grpc.StatusCode.NOT_FOUND, f"{kind} {ref} not found")

    def CreateSecret(self, request: Any, context: Any) -> pb.SecretResponse:  # noqa: N802
        return pb.SecretResponse(secret=self._create("secret", request, context))

    def CreateConfig(self, request: Any, context: Any) -> pb.ConfigResponse:  # noqa: N802
        return pb.ConfigResponse(config=self._create("config", request, context))

    def GetSecret(self, request: Any, context: Any) -> pb.SecretResponse:  # noqa: N802
        self._enter("GetSecret", request, context)
        return pb.SecretResponse(secret=self._get("secret", request.id, context))

    def GetConfig(self, request: Any, context: Any) -> pb.ConfigResponse:  # noqa: N802
        self._enter("GetConfig", request, context)
        return pb.ConfigResponse(config=self._get("config", request.id, context))

    def ListSecrets(self, request: Any, context: Any) -> pb.ListSecretsResponse:  # noqa: N802
        self._enter("ListSecrets", request, context)
        return pb.ListSecretsResponse(secrets=list(self.secrets.values()))

    def ListConfigs(self, request: Any, context: Any) -> pb.ListConfigsResponse:  # noqa: N802
        self._enter("ListConfigs", request, context)
        return pb.ListConfigsResponse(configs=list(self.configs.values()))

    def RemoveSecret(self, request: Any, context: Any) -> pb.Empty:  # noqa: N802
        self._enter("RemoveSecret", request, context)
        del self.secrets[self._get("secret", request.id, context).id]
        return pb.Empty()

    def RemoveConfig(self, request: Any, context: Any) -> pb.Empty:  # noqa: N802
        self._enter("RemoveConfig", request, context)
        del self.configs[self._get("config", request.id, context).id]
        return pb.Empty()

    # networks (no addressing: names and specs only) ----------------------------------

    def CreateNetwork(self, request: Any, context: Any) -> pb.NetworkResponse:  # noqa: N802
        return pb.NetworkResponse(network=self._create("network", request, context))

    def GetNetwork(self, request: Any, context: Any) -> pb.NetworkResponse:  # noqa: N802
        self._enter("GetNetwork", request, context)
        return pb.NetworkResponse(network=self._get("network", request.id, context))

    def ListNetworks(self, request: Any, context: Any) -> pb.ListNetworksResponse:  # noqa: N802
        self._enter("ListNetworks", request, context)
        return pb.ListNetworksResponse(networks=list(self.networks.values()))

    def RemoveNetwork(self, request: Any, context: Any) -> pb.Empty:  # noqa: N802
        self._enter("RemoveNetwork", request, context)
        net = self._get("network", request.id, context)
        users = [s.spec.annotations.name for s in self.services.values()
                 if any(a.target in (net.id, net.spec.annotations.name)
                        for a in s.spec.task_template.networks)]
        if users:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"network {net.spec.annotations.name} is in use by service {users[0]}")
        del self.networks[net.id]
        return pb.Empty()


@contextmanager
def stack_fake_server() -> Iterator[tuple[Path, StackFake]]:
    """Serve a StackFake (two ready nodes) on a unix socket in a short /tmp dir."""
    directory = Path(tempfile.mkdtemp(prefix="swstk", dir="/tmp"))
    fake = StackFake()
    fake.nodes = [make_node(fake.node_id, "mgr1", manager=True, leader=True),
                  make_node("nodebbbbbbbbbbbbbbbbbbbbb2", "wrk1")]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlServicer_to_server(fake, server)
    server.add_insecure_port(f"unix://{paths.control_socket(directory)}")
    server.start()
    try:
        yield directory, fake
    finally:
        server.stop(grace=None)
        shutil.rmtree(directory, ignore_errors=True)
