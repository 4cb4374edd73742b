"""Client of the local control API: gRPC over the node's unix socket.

`ControlClient(data_dir)` mirrors the Control service one method per RPC and converts every
gRPC failure into the swarmlet error hierarchy, keeping the server's one-line details text
as the message. The socket is root-only (0600), so the channel needs no TLS.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from swarmlet import paths
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pb_grpc
from swarmlet.errors import (
    Conflict,
    NoDaemon,
    NotFound,
    NotManager,
    SwarmletError,
    Unavailable,
)

CALL_TIMEOUT_S = 30.0
IMAGE_TIMEOUT_S = 3600.0  # pulls and loads of large images take their time


class InvalidArgument(SwarmletError):
    """The server rejected the request's input (INVALID_ARGUMENT); message is its details."""


_CONFLICT_CODES = (
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
)


def error_from_rpc(err: grpc.RpcError, sock: Path) -> SwarmletError:
    """The swarmlet error for a failed call; the server's details text is the message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or str(code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith("not a manager"):
        return NotManager(details)
    if code in _CONFLICT_CODES:
        return Conflict(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return probe_socket(sock) or Unavailable(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"the node at {sock} did not answer in time ({details})")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return SwarmletError(f"permission denied: {details}")
    return SwarmletError(details)


def no_daemon(sock: Path) -> NoDaemon:
    """The message users see when nothing listens on the control socket."""
    return NoDaemon(
        f"no swarmlet node is running at {sock}; run swarm init (or swarm join) first, "
        "or pass --data-dir"
    )


def probe_socket(sock: Path) -> SwarmletError | None:
    """Why the control socket cannot be reached, or None when something accepts on it."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(str(sock))
    except PermissionError:
        return SwarmletError(
            f"permission denied on {sock}: the control socket is root-only; run as root"
        )
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOTDIR):
            return no_daemon(sock)
        return SwarmletError(f"cannot connect to {sock}: {exc.strerror or exc}")
    finally:
        probe.close()
    return None


class ControlClient:
    """One channel to the local node's control API; use as a context manager or close()."""

    def __init__(self, data_dir: Path, timeout: float = CALL_TIMEOUT_S) -> None:
        self.socket_path = paths.control_socket(Path(data_dir)).absolute()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            f"unix://{self.socket_path}", options=[("grpc.enable_http_proxy", 0)]
        )
        self._stub = pb_grpc.ControlStub(self._channel)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if not self.socket_path.exists():
            raise no_daemon(self.socket_path)
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.socket_path) from None

    # ------------------------------------------------------------ cluster and nodes

    def info(self) -> pb.InfoResponse:
        return self._call("Info", pb.Empty())

    def get_node(self, node: str) -> pb.Node:
        return self._call("GetNode", pb.IdRequest(id=node)).node

    def list_nodes(self) -> list[pb.Node]:
        return list(self._call("ListNodes", pb.Empty()).nodes)

    def update_node(self, request: pb.UpdateNodeRequest) -> pb.Node:
        return self._call("UpdateNode", request).node

    def remove_node(self, node: str, force: bool = False) -> None:
        self._call("RemoveNode", pb.RemoveNodeRequest(id=node, force=force))

    def join_token(self, role: str, rotate: bool = False) -> pb.JoinTokenResponse:
        req = pb.JoinTokenRequest(role=role, rotate=rotate)
        return self._call("JoinToken", req)

    def leave(self, force: bool = False) -> None:
        self._call("Leave", pb.LeaveRequest(force=force))

    # ------------------------------------------------------------ services and tasks

    def create_service(self, spec: pb.ServiceSpec) -> pb.Service:
        req = pb.CreateServiceRequest(spec=spec)
        return self._call("CreateService", req).service

    def update_service(self, service_id: str, spec: pb.ServiceSpec, version: int) -> pb.Service:
        req = pb.UpdateServiceRequest(id=service_id, spec=spec, version=version)
        return self._call("UpdateService", req).service

    def scale_service(self, service: str, replicas: int) -> pb.Service:
        req = pb.ScaleRequest(id=service, replicas=replicas)
        return self._call("ScaleService", req).service

    def get_service(self, service: str) -> pb.Service:
        return self._call("GetService", pb.IdRequest(id=service)).service

    def list_services(self) -> pb.ListServicesResponse:
        return self._call("ListServices", pb.Empty())

    def remove_service(self, service: str) -> None:
        self._call("RemoveService", pb.IdRequest(id=service))

    def list_tasks(self, service: str = "", node: str = "") -> pb.ListTasksResponse:
        req = pb.ListTasksRequest(service=service, node=node)
        return self._call("ListTasks", req)

    def rollback_service(self, service: str) -> pb.Service:
        return self._call("RollbackService", pb.IdRequest(id=service)).service

    # ------------------------------------------------------------ secrets and configs

    def create_secret(self, spec: pb.SecretSpec) -> pb.Secret:
        return self._call("CreateSecret", pb.CreateSecretRequest(spec=spec)).secret

    def get_secret(self, secret: str) -> pb.Secret:
        return self._call("GetSecret", pb.IdRequest(id=secret)).secret

    def list_secrets(self) -> list[pb.Secret]:
        return list(self._call("ListSecrets", pb.Empty()).secrets)

    def remove_secret(self, secret: str) -> None:
        self._call("RemoveSecret", pb.IdRequest(id=secret))

    def create_config(self, spec: pb.ConfigSpec) -> pb.Config:
        return self._call("CreateConfig", pb.CreateConfigRequest(spec=spec)).config

    def get_config(self, config: str) -> pb.Config:
        return self._call("GetConfig", pb.IdRequest(id=config)).config

    def list_configs(self) -> list[pb.Config]:
        return list(self._call("ListConfigs", pb.Empty()).configs)

    def remove_config(self, config: str) -> None:
        self._call("RemoveConfig", pb.IdRequest(id=config))

    # ------------------------------------------------------------ networks

    def create_network(self, spec: pb.NetworkSpec) -> pb.Network:
        return self._call("CreateNetwork", pb.CreateNetworkRequest(spec=spec)).network

    def get_network(self, network: str) -> pb.Network:
        return self._call("GetNetwork", pb.IdRequest(id=network)).network

    def list_networks(self) -> list[pb.Network]:
        return list(self._call("ListNetworks", pb.Empty()).networks)

    def remove_network(self, network: str) -> None:
        self._call("RemoveNetwork", pb.IdRequest(id=network))

    def service_logs(self, request: pb.LogsRequest) -> Iterator[pb.LogLine]:
        """Log lines as the manager streams them (no deadline: --follow runs until the
        caller stops iterating and closes the client, which cancels the call)."""
        if not self.socket_path.exists():
            raise no_daemon(self.socket_path)
        call = self._stub.ServiceLogs(request)
        try:
            yield from call
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                return
            raise error_from_rpc(err, self.socket_path) from None
        finally:
            call.cancel()

    # ------------------------------------------------------------ images (this node's)

    def image_list(self) -> list[pb.Image]:
        return list(self._call("ImageList", pb.Empty()).images)

    def image_pull(self, ref: str, insecure: bool = False) -> pb.Image:
        req = pb.ImageRef(ref=ref, insecure=insecure)
        return self._call("ImagePull", req, timeout=IMAGE_TIMEOUT_S).images[0]

    def image_load(self, path: str) -> list[pb.Image]:
        req = pb.ImagePath(path=path)
        return list(self._call("ImageLoad", req, timeout=IMAGE_TIMEOUT_S).images)

    def image_import(self, path: str, ref: str) -> pb.Image:
        req = pb.ImagePath(path=path, ref=ref)
        return self._call("ImageImport", req, timeout=IMAGE_TIMEOUT_S).images[0]

    def image_remove(self, ref: str) -> list[pb.Image]:
        return list(self._call("ImageRemove", pb.ImageRef(ref=ref)).images)
