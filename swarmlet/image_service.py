"""The node's image API on its local control socket: the Image* RPCs over its ImageStore.

Images are per node (as with `docker image`): these calls act on the store of the node
whose socket is called, at <data-dir>/agent/images, whether it is a manager or a worker.
Paths in requests are files on that node; the CLI makes them absolute before sending.
The store is passed in (worker.images.ImageStore): `swarmlet` does not import `worker`.
Errors leave as gRPC statuses with the store's one-line message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import NotFound, SpecError, SwarmletError

F = TypeVar("F", bound=Callable[..., Any])


def _image_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except NotFound as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except SpecError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except SwarmletError as e:
            context.abort(grpc.StatusCode.UNKNOWN, str(e))

    return wrapper  # type: ignore[return-value]


def to_pb(info: Any) -> pb.Image:
    """An ImageInfo (id, tags, size, created) as the wire's Image."""
    return pb.Image(id=info.id, tags=list(info.tags), size=int(info.size),
                    created=float(info.created))


def _path(request: pb.ImagePath) -> Path:
    if not request.path:
        raise SpecError("file", "no file given")
    path = Path(request.path)
    if not path.is_absolute():
        raise SpecError("file", f"{request.path}: must be an absolute path on the node")
    if not path.is_file():
        raise SpecError("file", f"{request.path}: no such file on this node")
    return path


class ImageService:
    """Image* methods of the Control service, for the local control socket."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def _info(self, image_id: str) -> pb.Image:
        for info in self._store.list():
            if info.id == image_id:
                return to_pb(info)
        return pb.Image(id=image_id)

    @_image_errors
    def ImageList(self, request: pb.Empty, context: Any) -> pb.ImageResponse:  # noqa: N802
        return pb.ImageResponse(images=[to_pb(i) for i in self._store.list()])

    @_image_errors
    def ImagePull(self, request: pb.ImageRef, context: Any) -> pb.ImageResponse:  # noqa: N802
        if not request.ref:
            raise SpecError("image", "no image reference given")
        img = self._store.pull(request.ref, insecure=request.insecure)
        out = self._info(img.id)
        del out.tags[:]
        out.tags.append(img.ref)
        return pb.ImageResponse(images=[out])

    @_image_errors
    def ImageLoad(self, request: pb.ImagePath, context: Any) -> pb.ImageResponse:  # noqa: N802
        return pb.ImageResponse(images=[to_pb(i) for i in self._store.load(_path(request))])

    @_image_errors
    def ImageImport(self, request: pb.ImagePath, context: Any) -> pb.ImageResponse:  # noqa: N802
        if not request.ref:
            raise SpecError("reference", "give the new image a name (NAME:TAG)")
        return pb.ImageResponse(images=[to_pb(self._store.import_rootfs(_path(request),
                                                                         request.ref))])

    @_image_errors
    def ImageRemove(self, request: pb.ImageRef, context: Any) -> pb.ImageResponse:  # noqa: N802
        """One Image carrying the untagged references, then one per deleted image id."""
        removed = self._store.remove(request.ref)
        images = [pb.Image(tags=list(removed.untagged))]
        images += [pb.Image(id=i) for i in removed.deleted]
        return pb.ImageResponse(images=images)


def check_insecure_registry(entry: str) -> str:
    """An --insecure-registry value: HOST, HOST:PORT or a CIDR; SpecError otherwise."""
    import ipaddress
    import re

    text = entry.strip()
    if "/" in text:
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise SpecError("insecure-registry", f'"{entry}" is not a valid CIDR') from None
    if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?", text):
        raise SpecError("insecure-registry", f'"{entry}" is not HOST, HOST:PORT or a CIDR')
    return text
