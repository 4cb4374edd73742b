"""The machine side of a test cluster's hosts: iproute2 (`ip`) calls and /proc look-ups.

Every link is created inside a cluster namespace (`ip -n LAN link add … peer … netns
HOST`), so none ever appears in the root namespace; deleting the namespaces deletes the
links. No host gets a default route: its only route is its own /24 on the bridge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from swarmlet.errors import SwarmletError
from swarmlet.procs import alive

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS…`; a failure becomes a SwarmletError with ip's own message."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SwarmletError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def add(ns: str) -> None:
    """A new namespace with loopback up (and nothing else yet)."""
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")


def add_bridge(lan: str, bridge: str) -> None:
    ip("-n", lan, "link", "add", bridge, "type", "bridge")
    ip("-n", lan, "link", "set", bridge, "up")


def plug(lan: str, bridge: str, host_ns: str, port: str, addr: str, prefix: int = 24) -> None:
    """A veth from the bridge (end `port` in `lan`) to `eth0` in `host_ns`, addressed."""
    ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host_ns)
    ip("-n", lan, "link", "set", port, "master", bridge, "up")
    ip("-n", host_ns, "addr", "add", f"{addr}/{prefix}", "dev", "eth0")
    ip("-n", host_ns, "link", "set", "eth0", "up")


def set_port(lan: str, port: str, up: bool) -> None:
    """Cut a host off the bridge (down) or connect it again (up)."""
    ip("-n", lan, "link", "set", port, "up" if up else "down")


def ipv4_addrs(ns: str) -> list[str]:
    """The IPv4 addresses (without prefix) configured in a namespace."""
    out = ip("-n", ns, "-o", "-4", "addr", "show", check=False).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def delete(ns: str) -> bool:
    """Remove a namespace (its veths go with it); True if it was there."""
    if not exists(ns):
        return False
    proc = ip("netns", "delete", ns, check=False)
    if proc.returncode != 0 and exists(ns):
        # a stale name (namespace file no longer mounted): remove it by hand
        subprocess.run(["umount", "-l", str(NETNS_DIR / ns)], capture_output=True, check=False)
        try:
            (NETNS_DIR / ns).unlink()
        except OSError as e:
            raise SwarmletError(f"cannot remove namespace {ns}: {e}") from None
    return True


def netns_inode(ns: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / ns).st_ino
    except OSError:
        return None


def processes_in(inodes: set[int]) -> list[int]:
    """Pids of every process whose network namespace is one of `inodes` (not this one)."""
    me = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino in inodes:
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or a kernel thread
    return sorted(found)


def end_processes(pids: list[int], grace: float = 3.0) -> list[int]:
    """SIGTERM each pid, SIGKILL what is left after `grace`; the pids that were signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in signalled):
        time.sleep(0.05)
    for pid in signalled:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in signalled):
        time.sleep(0.05)
    return signalled
