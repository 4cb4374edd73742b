"""Namespaces as the data plane uses them: named ones under /run/netns, work done inside
one from a short-lived thread (setns() changes only the calling thread's namespace, and a
socket stays in the namespace it was made in), `nft -f -` and sysctls run there.

`None` as a namespace path means the process's own namespace.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute

from net_overlay.errors import NamespaceError, RulesetError

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]

T = TypeVar("T")


def path_of(name: str) -> str:
    return str(NETNS_DIR / name)


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def exists(name: str) -> bool:
    p = path_of(name)
    return os.path.exists(p) and _mounted(p)


def create(name: str) -> str:
    """Make the named namespace (idempotent), loopback up; its path."""
    if not exists(name):
        # `ip netns add` (fork + exec: safe in a process with threads, unlike a forked
        # Python child) makes /run/netns a shared mount and pins the namespace there
        if os.path.exists(path_of(name)):
            os.unlink(path_of(name))  # a leftover mount point without a namespace
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise NamespaceError(f"creating network namespace {name}: {r.stderr.strip()}")
    p = path_of(name)
    netlink(p, lambda ip: ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up"))
    return p


def remove(name: str) -> None:
    """Delete the named namespace if it exists (idempotent)."""
    p = path_of(name)
    if _mounted(p):
        _libc.umount2(p.encode(), 2)  # MNT_DETACH
    if os.path.exists(p):
        os.unlink(p)


def listed(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def run_in(ns_path: str | None, fn: Callable[[], T]) -> T:
    """fn() run on a thread that first entered the namespace at ns_path."""
    if ns_path is None:
        return fn()
    out: list[Any] = []
    err: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise NamespaceError(
                        f"entering {ns_path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller)
            err.append(e)

    t = threading.Thread(target=body, name="netns-enter", daemon=True)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]  # type: ignore[no-any-return]


def netlink(ns_path: str | None, fn: Callable[[IPRoute], T]) -> T:
    """fn(ip) with a netlink socket inside the namespace, all on one thread (pyroute2's
    sockets belong to the thread that made them)."""

    def body() -> T:
        with IPRoute() as ip:
            return fn(ip)

    return run_in(ns_path, body)


def ns_fd(ns_path: str) -> int:
    """An open fd of the namespace (for IFLA_NET_NS_FD); the caller closes it."""
    return os.open(ns_path, os.O_RDONLY)


def nft_apply(ns_path: str | None, ruleset: str) -> None:
    """Apply a ruleset in one nft transaction inside the namespace."""
    argv = ["nft", "-f", "-"]
    if ns_path is not None:
        argv = ["nsenter", f"--net={ns_path}", *argv]
    r = subprocess.run(argv, input=ruleset, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["nft failed"])[0]
        raise RulesetError(f"nft: {first}")


def nft_delete_table(ns_path: str | None, family: str, table: str) -> None:
    """Drop a table if present (one transaction: declare, then delete)."""
    nft_apply(ns_path, f"table {family} {table}\ndelete table {family} {table}\n")


def sysctl(ns_path: str | None, key: str, value: str) -> None:
    """Write a per-namespace sysctl (net.*) from inside the namespace."""
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(path, "w") as f:  # /proc/sys/net is the opening thread's namespace's
            f.write(value)

    run_in(ns_path, write)
