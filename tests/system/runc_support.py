"""Shared pieces of the runc system tests: skip reasons, task builders, leftover checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.fake_images import build_busybox_layer, busybox_path
from worker import netns
from worker.runtime.runc_fs import cgroup_dirs


def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root (runc containers)"
    if shutil.which("runc") is None:
        return "runc is not installed (Debian package runc; scripts/bootstrap.sh installs it)"
    if busybox_path() is None:
        return "busybox is not installed (Debian package busybox-static)"
    if shutil.which("ip") is None:
        return "ip is not installed (Debian package iproute2)"
    from worker.runtime import root_is_mount_point

    if not root_is_mount_point():
        return "runc needs / to be a mount point (this looks like a chroot)"
    return ""


def probe_skip_reason() -> str:
    """runc exec (health probes) under scripts/rootview.sh's re-rooted view of a chroot
    does not see the container's files; everywhere else (CI included) it does."""
    if os.environ.get("SWARMLET_ROOTVIEW"):
        return ("runc exec does not see into containers when / is a re-rooted bind mount "
                "of a chroot (scripts/rootview.sh)")
    return ""


requires_probes = pytest.mark.skipif(bool(probe_skip_reason()),
                                     reason=probe_skip_reason() or "runc exec works")

requires_runc = [
    pytest.mark.root,
    pytest.mark.skipif(bool(skip_reason()), reason=skip_reason() or "runc available"),
]

_counter = [0]


def task_id(prefix: str = "t") -> str:
    """A fresh 25-character task id, unique per test process."""
    _counter[0] += 1
    return f"{prefix}{os.getpid():07d}{_counter[0]:04d}".ljust(25, "x")[:25]


def make_task(*cmd: str, tid: str | None = None, **container: object) -> pb.Task:
    t = pb.Task(id=tid or task_id(), service_id="svc1", service_name="web", slot=1,
                node_id="node-1")
    t.spec.container.image = "busybox"
    t.spec.container.command.extend(cmd)
    t.spec.container.stop_grace_period_s = 2
    for key, value in container.items():
        setattr(t.spec.container, key, value)
    return t


def leftovers(state_dir: Path, task_ids: list[str]) -> list[str]:
    """Everything a removed task could have left behind; [] when clean."""
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        found += [ln.split()[4] for ln in f if str(state_dir) in ln.split()[4]]
    for tid in task_ids:
        found += [d for d in cgroup_dirs(f"/swarmlet/{tid}") if os.path.exists(d)]
        if netns.exists(netns.name_for(tid)):
            found.append(f"netns {netns.name_for(tid)}")
        if (state_dir / tid).exists():
            found.append(str(state_dir / tid))
    root = state_dir / "runc"
    if root.exists():
        out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True,
                             text=True, check=False).stdout.split()
        found += [f"runc container {c}" for c in out if c in task_ids]
    return found


def busybox_tar(tmp: Path) -> Path:
    """A rootfs tarball of busybox-static, for `swarm image import`."""
    root = build_busybox_layer(tmp / "busybox-rootfs")
    out = tmp / "busybox.tar"
    with tarfile.open(out, "w") as tar:
        for p in sorted(root.rglob("*")):
            if p.name != ".complete":
                tar.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return out
