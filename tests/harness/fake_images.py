"""A fake image store for runtime tests, with worker.images.ImageStore's interface:
`FakeImageStore(root).ensure(ref) -> FakeImage(layers, config)`, FakeImageError when the
image is unknown.

It knows one image, `busybox` (any tag), built once per root from Debian's
busybox-static: a base layer with /bin/busybox, a symlink per applet and a minimal /etc
(root, nobody and an "app" user, uid 1000), and a second, empty-ish layer so overlay
stacking is exercised. More images can be added with `add(name, config)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlet.imageref import parse

BUSYBOX = "/bin/busybox"
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"


class FakeImageError(Exception):
    """The image cannot be had (the fake registry's reason)."""


@dataclass
class FakeImage:
    layers: list[Path]
    config: dict[str, Any] = field(default_factory=dict)


def busybox_path() -> str | None:
    for p in (BUSYBOX, "/usr/bin/busybox"):
        if os.path.isfile(p):
            return p
    return None


def build_busybox_layer(dest: Path) -> Path:
    """A rootfs directory with busybox and its applet symlinks (idempotent)."""
    done = dest / ".complete"
    if done.exists():
        return dest
    src = busybox_path()
    if src is None:
        raise FakeImageError("busybox-static is not installed")
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / "bin" / "busybox")
    applets = subprocess.run(
        [src, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in applets:
        link = dest / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d in ("etc", "tmp", "root", "home/app", "proc", "sys", "dev", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    if os.geteuid() == 0:
        os.chown(dest / "home/app", 1000, 1000)
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    done.touch()
    return dest


class FakeImageStore:
    """Images by name (tags ignored); `ensure` raises FakeImageError for unknown ones."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.calls: list[str] = []
        self._images: dict[str, dict[str, Any]] = {
            "docker.io/library/busybox": {
                "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "IMAGE_VAR=from-image"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
            }
        }

    def add(self, name: str, config: dict[str, Any]) -> None:
        self._images[parse(name).name] = config

    def ensure(self, ref: str) -> FakeImage:
        self.calls.append(ref)
        name = parse(ref).name
        if name not in self._images:
            raise FakeImageError(
                f"pulling {ref}: repository {name} not found: does not exist or no pull access"
            )
        base = build_busybox_layer(self.root / "busybox-base")
        top = self.root / "busybox-top"
        (top / "etc").mkdir(parents=True, exist_ok=True)
        (top / "etc" / "image-release").write_text("fake busybox image\n")
        return FakeImage([base, top], dict(self._images[name]))
