"""Task runtimes and the factory that picks one by name: runc | process | sim, or "auto"
(runc when running as root with runc installed and the image store present, else
process)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from swarmlet.clock import Clock
from worker.errors import WorkerError
from worker.runtime.base import EXIT_UNKNOWN, ExitInfo, Runtime, RuntimeState
from worker.runtime.process import ProcessRuntime
from worker.runtime.sim import SimRuntime

__all__ = [
    "EXIT_UNKNOWN",
    "ExitInfo",
    "ProcessRuntime",
    "Runtime",
    "RuntimeState",
    "SimRuntime",
    "make_runtime",
]

NAMES = ("runc", "process", "sim")
AUTO = "auto"


def root_is_mount_point() -> bool:
    """runc makes / a slave mount in the container; in a chroot / is no mount at all."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == "/" for line in f if len(line.split()) > 4)
    except OSError:
        return True  # cannot tell: let runc itself report


def runc_usable() -> str:
    """"" when the runc runtime can be used here, else why not."""
    from worker.runtime.runc import runc_available

    if not runc_available():
        return "runc needs root and the runc program (Debian package runc)"
    if not root_is_mount_point():
        return "runc needs / to be a mount point (this looks like a chroot)"
    try:
        importlib.import_module("worker.images")
    except ImportError as e:
        return f"runc needs the image store (worker.images): {e}"
    return ""


def resolve_runtime(name: str) -> str:
    """The runtime `name` stands for: "auto" -> runc if usable, else process."""
    if name == AUTO:
        return "runc" if not runc_usable() else "process"
    return name


def make_runtime(
    name: str,
    state_dir: Path,
    clock: Clock,
    *,
    hostname: str | None = None,
    images: Any = None,
    networking: Any = None,
) -> Runtime:
    """The runtime called `name` (or "auto"), keeping its per-task state under `state_dir`.

    `hostname` is the node's hostname as tasks see it (SWARMLET_NODE_HOSTNAME). The runc
    runtime takes its images from `images` (default: worker.images.ImageStore under
    `state_dir/../images`) and keeps named volumes under `state_dir/../volumes`; it plugs
    tasks into overlay networks through `networking` (a net_overlay TaskNetworking)."""
    name = resolve_runtime(name)
    if name == "process":
        return ProcessRuntime(state_dir, clock, hostname=hostname)
    if name == "sim":
        return SimRuntime(clock)
    if name == "runc":
        from worker.runtime.runc import RuncRuntime

        why = runc_usable() if images is None else ""
        if why:
            raise WorkerError(why)
        if images is None:
            store_cls = importlib.import_module("worker.images").ImageStore
            images = store_cls(Path(state_dir).parent / "images")
        return RuncRuntime(state_dir, clock, images, hostname=hostname, networking=networking)
    raise WorkerError(f"unknown runtime {name!r} (known: {', '.join(NAMES)}, {AUTO})")
