"""An in-process fake of the Control gRPC service on a unix socket, for CLI tests.

It keeps services, tasks and nodes in plain dicts, records every call, answers like the
real manager (running/desired counts, node_names), and can be told to fail a method with
a given status code and details text.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from typer.testing import CliRunner, Result

from swarmlet import paths
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pb_grpc
from swarmlet.cli.main import app

NOW = 1_700_000_000.0


def make_node(
    node_id: str,
    hostname: str,
    *,
    manager: bool = False,
    leader: bool = False,
    state: int = pb.READY,
    availability: int = pb.ACTIVE,
) -> pb.Node:
    node = pb.Node(id=node_id, role=pb.MANAGER if manager else pb.WORKER)
    node.description.hostname = hostname
    node.status.state = state  # type: ignore[assignment]
    node.spec.availability = availability  # type: ignore[assignment]
    if manager:
        node.manager_status.leader = leader
        node.manager_status.reachability = "reachable"
    return node


def make_task(
    task_id: str,
    service: pb.Service,
    *,
    slot: int = 0,
    node_id: str = "",
    state: int = pb.RUNNING,
    desired: int = pb.RUNNING,
    err: str = "",
    created: float = NOW,
) -> pb.Task:
    task = pb.Task(
        id=task_id,
        service_id=service.id,
        service_name=service.spec.annotations.name,
        slot=slot,
        node_id=node_id,
        desired_state=desired,  # type: ignore[arg-type]
    )
    task.spec.CopyFrom(service.spec.task_template)
    task.meta.created_at = created
    task.status.state = state  # type: ignore[assignment]
    task.status.timestamp = created
    task.status.err = err
    return task


@dataclass
class FakeControl(pb_grpc.ControlServicer):
    """The fake servicer. `state_on_create`/`err_on_create` shape the tasks it makes."""

    node_id: str = "nodeaaaaaaaaaaaaaaaaaaaaa1"
    services: dict[str, pb.Service] = field(default_factory=dict)
    tasks: list[pb.Task] = field(default_factory=list)
    nodes: list[pb.Node] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    errors: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    state_on_create: int = pb.RUNNING
    err_on_create: str = ""
    token: str = "SWMTKN-1-digest-secret"
    manager_addr: str = "10.0.0.1:2377"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((method, request))
        if method in self.errors:
            code, details = self.errors[method]
            context.abort(code, details)

    def called(self, method: str) -> list[Any]:
        """Requests received by `method`."""
        return [req for name, req in self.calls if name == method]

    def writes(self) -> list[str]:
        """Names of the state-changing calls received."""
        reads = {"Info", "GetService", "ListServices", "ListTasks", "GetNode", "ListNodes"}
        return [name for name, _ in self.calls if name not in reads]

    def _find(self, ref: str, context: grpc.ServicerContext) -> pb.Service:
        for svc in self.services.values():
            if ref in (svc.id, svc.spec.annotations.name) or svc.id.startswith(ref):
                return svc
        context.abort(grpc.StatusCode.NOT_FOUND, f"service {ref} not found")
        raise AssertionError("unreachable")

    def add_service(self, name: str, replicas: int = 1, image: str = "busybox") -> pb.Service:
        svc = pb.Service(id=f"svc{len(self.services) + 1:022d}")
        svc.spec.annotations.name = name
        svc.spec.task_template.container.image = image
        svc.spec.mode.replicated.replicas = replicas
        self.services[svc.id] = svc
        return svc

    def _make_tasks(self, svc: pb.Service) -> None:
        for slot in range(1, svc.spec.mode.replicated.replicas + 1):
            node = self.nodes[slot % len(self.nodes)].id if self.nodes else ""
            self.tasks.append(
                make_task(
                    f"task{len(self.tasks) + 1:021d}",
                    svc,
                    slot=slot,
                    node_id=node if self.state_on_create != pb.PENDING else "",
                    state=self.state_on_create,
                    err=self.err_on_create,
                )
            )

    # ------------------------------------------------------------ servicer methods

    def Info(self, request: Any, context: Any) -> pb.InfoResponse:  # noqa: N802
        self._enter("Info", request, context)
        return pb.InfoResponse(node_id=self.node_id, role="manager", is_leader=True)

    def CreateService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        self._enter("CreateService", request, context)
        svc = self.add_service(request.spec.annotations.name)
        svc.spec.CopyFrom(request.spec)
        self._make_tasks(svc)
        return pb.ServiceResponse(service=svc)

    def ScaleService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        self._enter("ScaleService", request, context)
        svc = self._find(request.id, context)
        svc.spec.mode.replicated.replicas = request.replicas
        self.tasks = [t for t in self.tasks if t.service_id != svc.id]
        self._make_tasks(svc)
        return pb.ServiceResponse(service=svc)

    def GetService(self, request: Any, context: Any) -> pb.ServiceResponse:  # noqa: N802
        self._enter("GetService", request, context)
        return pb.ServiceResponse(service=self._find(request.id, context))

    def ListServices(self, request: Any, context: Any) -> pb.ListServicesResponse:  # noqa: N802
        self._enter("ListServices", request, context)
        resp = pb.ListServicesResponse(services=list(self.services.values()))
        for svc in self.services.values():
            mine = [t for t in self.tasks if t.service_id == svc.id]
            resp.running[svc.id] = sum(1 for t in mine if t.status.state == pb.RUNNING)
            resp.desired[svc.id] = svc.spec.mode.replicated.replicas
        return resp

    def RemoveService(self, request: Any, context: Any) -> pb.Empty:  # noqa: N802
        self._enter("RemoveService", request, context)
        svc = self._find(request.id, context)
        del self.services[svc.id]
        return pb.Empty()

    def ListTasks(self, request: Any, context: Any) -> pb.ListTasksResponse:  # noqa: N802
        self._enter("ListTasks", request, context)
        tasks = self.tasks
        if request.service:
            svc = self._find(request.service, context)
            tasks = [t for t in tasks if t.service_id == svc.id]
        resp = pb.ListTasksResponse(tasks=tasks)
        for node in self.nodes:
            resp.node_names[node.id] = node.description.hostname
        return resp

    def _node(self, ref: str, context: Any) -> pb.Node:
        for node in self.nodes:
            if ref in (node.id, node.description.hostname):
                return node
        context.abort(grpc.StatusCode.NOT_FOUND, f"node {ref} not found")
        raise AssertionError("unreachable")

    def GetNode(self, request: Any, context: Any) -> pb.NodeResponse:  # noqa: N802
        self._enter("GetNode", request, context)
        return pb.NodeResponse(node=self._node(request.id, context))

    def ListNodes(self, request: Any, context: Any) -> pb.ListNodesResponse:  # noqa: N802
        self._enter("ListNodes", request, context)
        return pb.ListNodesResponse(nodes=self.nodes)

    def UpdateNode(self, request: Any, context: Any) -> pb.NodeResponse:  # noqa: N802
        self._enter("UpdateNode", request, context)
        node = self._node(request.id, context)
        if request.set_availability:
            node.spec.availability = request.availability
        for key, value in request.label_add.items():
            node.spec.annotations.labels[key] = value
        for key in request.label_rm:
            node.spec.annotations.labels.pop(key, None)
        return pb.NodeResponse(node=node)

    def RemoveNode(self, request: Any, context: Any) -> pb.Empty:  # noqa: N802
        self._enter("RemoveNode", request, context)
        node = self._node(request.id, context)
        self.nodes.remove(node)
        return pb.Empty()

    def JoinToken(self, request: Any, context: Any) -> pb.JoinTokenResponse:  # noqa: N802
        self._enter("JoinToken", request, context)
        if request.rotate:
            self.token = self.token + "-rotated"
        return pb.JoinTokenResponse(
            token=f"{self.token}-{request.role}", manager_addr=self.manager_addr
        )


@contextmanager
def fake_control_server(data_dir: Path | None = None) -> Iterator[tuple[Path, FakeControl]]:
    """Serve a FakeControl on `<data_dir>/swarm.sock`; yields (data_dir, fake).

    Without a data_dir, a short directory under /tmp is made (unix socket paths are
    limited to ~100 bytes, which pytest's tmp_path can exceed).
    """
    own = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="swcli", dir="/tmp")) if own else Path(data_dir)
    fake = FakeControl()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlServicer_to_server(fake, server)
    server.add_insecure_port(f"unix://{paths.control_socket(directory)}")
    server.start()
    try:
        yield directory, fake
    finally:
        server.stop(grace=None)
        if own:
            shutil.rmtree(directory, ignore_errors=True)


def swarm(data_dir: Path, *args: str) -> Result:
    """Run `swarm --data-dir <data_dir> ARGS...` in-process."""
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split plain table output into cells at the header's column starts."""
    lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=   ))\S", lines[0])]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    cut = [[line[a:b].strip() for a, b in bounds] for line in lines]
    return cut[0], cut[1:]
