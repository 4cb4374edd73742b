"""Per-task network namespaces: `swl-<first 12 chars of the task id>` under /run/netns.

The agent creates a task's namespace before the container starts (with `ip netns add`,
so that it is a named, bind-mounted namespace other tools see) and brings its loopback
up; the container joins it by path, and networking plugs veths into it later. The
namespace outlives the container until `remove` (at task removal).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from worker.errors import RuntimeFailure

NETNS_DIR = Path("/run/netns")
PREFIX = "swl-"


def name_for(task_id: str) -> str:
    """The namespace name of a task."""
    return PREFIX + task_id[:12]


def path_of(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path_of(name).exists()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )


def create(name: str) -> Path:
    """Create the namespace (idempotent) with its loopback up; its path."""
    if not exists(name):
        r = _ip("netns", "add", name)
        if r.returncode != 0 and not exists(name):
            raise RuntimeFailure(f"ip netns add {name}: {r.stderr.strip() or r.returncode}")
    r = _ip("-n", name, "link", "set", "lo", "up")
    if r.returncode != 0:
        raise RuntimeFailure(f"ip -n {name} link set lo up: {r.stderr.strip() or r.returncode}")
    return path_of(name)


def remove(name: str) -> None:
    """Delete the namespace if it exists (idempotent)."""
    if not exists(name):
        return
    r = _ip("netns", "del", name)
    if r.returncode != 0 and exists(name):
        raise RuntimeFailure(f"ip netns del {name}: {r.stderr.strip() or r.returncode}")


def listed() -> list[str]:
    """Names of the swarmlet namespaces present (for tests and cleanup checks)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))
    except FileNotFoundError:
        return []
