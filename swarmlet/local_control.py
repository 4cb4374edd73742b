"""The local control socket's servicer: node-level calls answered here, the rest delegated.

Info, Leave and the Image* calls (this node's image store) are about this node and are
answered by it; everything else goes to the manager's control service, or fails with
"not a manager" on a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import SwarmletError

NOT_MANAGER = (
    "not a manager: this node is a worker; run the command on a manager node "
    "(or point --data-dir at one)"
)


class LocalControl:
    def __init__(
        self,
        info: Callable[[], pb.InfoResponse],
        leave: Callable[[bool], None],
        manager_control: Any | None,
        images: Any | None = None,
    ) -> None:
        self._info = info
        self._leave = leave
        self._manager = manager_control
        self._images = images  # swarmlet.image_service.ImageService: this node's images

    def set_manager(self, manager_control: Any | None) -> None:
        """A promotion or demotion swaps what non-local calls are handed to."""
        self._manager = manager_control

    def Info(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.InfoResponse:  # noqa: N802
        return self._info()

    def Leave(self, request: pb.LeaveRequest, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        try:
            self._leave(request.force)
        except SwarmletError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return pb.Empty()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name.startswith("Image") and self._images is not None:
            return getattr(self._images, name)

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            # looked up per call: a promotion or demotion swaps the manager
            manager = self._manager
            if manager is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, NOT_MANAGER)
            return getattr(manager, name)(request, context)

        return call
