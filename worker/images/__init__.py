"""The node's image store: OCI image layout, unpacked layers, registry pulls.

    from worker.images import ImageStore, ImageError
    store = ImageStore(data_dir / "agent" / "images")
    img = store.ensure("busybox:latest")   # local, else pulled
    img.layers   # [Path, ...] unpacked layer directories, lowest first
    img.config   # {"Env": [...], "Entrypoint": [...], "Cmd": [...], "WorkingDir": ..., "User": ...}
    img.id       # "sha256:..." (the config digest, as Docker's image id)
"""

from worker.images.errors import ImageError, ImageNotFound
from worker.images.store import ImageInfo, ImageStore, Removed, ResolvedImage

__all__ = ["ImageError", "ImageInfo", "ImageNotFound", "ImageStore", "Removed", "ResolvedImage"]
