"""File-system plumbing of the runc runtime: overlay mounts, paths inside a rootfs,
cgroup directories.

Reading inside a container's rootfs follows the rootfs's own symlinks as if it were "/"
(an absolute link never escapes to the host), which is how /etc/passwd and the command
are looked up before the container starts.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from worker.errors import RejectError, RuntimeFailure

MNT_DETACH = 2
_MAX_LINKS = 40
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if _unescape(line.split()[4]) == target:
                    return True
    except OSError:
        pass
    return False


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def mount_overlay(layers: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay at `target`: `layers` (lowest first) read-only under `upper`."""
    if is_mounted(target):
        return
    lower = ":".join(str(p) for p in reversed(layers))  # overlay lists the top first
    for p in layers:
        if not Path(p).is_dir():
            raise RuntimeFailure(f"image layer {p} is missing")
    data = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if len(data) >= 4000:
        raise RejectError(f"image has too many layers to mount ({len(layers)})")
    rc = _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, data.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"mounting the rootfs overlay: {os.strerror(err)}")


def mount_tmpfs(target: Path, size_bytes: int, mode: int = 0o700) -> None:
    """A private tmpfs at `target` (nosuid, nodev, noexec), unless one is there already."""
    if is_mounted(target):
        return
    target.mkdir(parents=True, exist_ok=True)
    data = f"size={size_bytes},mode={mode:o}".encode()
    flags = 2 | 4 | 8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, data) != 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"mounting a tmpfs at {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Unmount `target` if it is a mount point (lazily when it is busy)."""
    while is_mounted(target):
        if _libc.umount2(str(target).encode(), 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY and _libc.umount2(str(target).encode(), MNT_DETACH) == 0:
            continue
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise RuntimeFailure(f"unmounting {target}: {os.strerror(err)}")


def resolve_in_root(root: Path, path: str, _depth: int = 0) -> Path | None:
    """The host path of `path` inside `root`, following symlinks within `root`; None if it
    does not exist."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    for i, comp in enumerate(parts):
        if comp == "..":
            if done:
                done.pop()
            continue
        cand = root.joinpath(*done, comp)
        if cand.is_symlink():
            if _depth >= _MAX_LINKS:
                return None
            link = os.readlink(cand)
            base = "" if link.startswith("/") else "/".join(done)
            rest = "/".join(parts[i + 1 :])
            return resolve_in_root(root, f"{base}/{link}/{rest}", _depth + 1)
        done.append(comp)
    p = root.joinpath(*done)
    return p if p.exists() else None


def read_in_root(root: Path, path: str) -> str:
    """A text file inside the rootfs, or "" when it is missing or unreadable."""
    host = resolve_in_root(root, path)
    if host is None or not host.is_file():
        return ""
    try:
        return host.read_text(errors="replace")
    except OSError:
        return ""


def resolve_executable(root: Path, cmd: str, env: list[str], cwd: str) -> str:
    """The in-container path of `cmd` (searched in PATH when it has no "/"); RejectError
    when the image has no such executable file."""
    if "/" in cmd:
        candidates = [cmd if cmd.startswith("/") else f"{cwd.rstrip('/')}/{cmd}"]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), "")
        candidates = [f"{d.rstrip('/') or ''}/{cmd}" for d in path.split(":") if d]
    for cand in candidates:
        host = resolve_in_root(root, cand)
        if host is not None and host.is_file():
            if os.stat(host).st_mode & 0o111:
                return cand
            raise RejectError(f'cannot execute command: "{cmd}": permission denied')
    where = "" if "/" in cmd else " in $PATH"
    raise RejectError(f'cannot execute command: "{cmd}": executable file not found{where}')


# ---------------------------------------------------------------------- cgroups


def cgroup_v2() -> bool:
    """True on a pure cgroup v2 host (the unified hierarchy has the controllers)."""
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, options) of every cgroup hierarchy mounted at its root."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, after = pre.split(), post.split()
                if len(after) >= 3 and after[0] in ("cgroup", "cgroup2") and fields[3] == "/":
                    out.append((_unescape(fields[4]), after[0], after[2]))
    except OSError:
        pass
    return out


def cgroup_dirs(cgroups_path: str) -> list[str]:
    """Every directory that runc may have made for `cgroups_path`, deepest first."""
    rel = cgroups_path.strip("/")
    return [os.path.join(mnt, rel) for mnt, _, _ in cgroup_mounts()]


def oom_files(cgroups_path: str) -> list[str]:
    """Files whose `oom_kill N` line counts OOM kills in the task's memory cgroup."""
    rel = cgroups_path.strip("/")
    files = []
    for mnt, kind, opts in cgroup_mounts():
        if kind == "cgroup" and "memory" in opts.split(","):
            files.append(os.path.join(mnt, rel, "memory.oom_control"))
        elif kind == "cgroup2" and cgroup_v2() and mnt == "/sys/fs/cgroup":
            files.append(os.path.join(mnt, rel, "memory.events"))
    return files


def cpu_stat_file(cgroups_path: str) -> str | None:
    """The cpu.stat of the task's cgroup (v1 cpu controller, or v2), for throttling."""
    rel = cgroups_path.strip("/")
    for mnt, kind, opts in cgroup_mounts():
        if kind == "cgroup" and "cpu" in opts.split(","):
            return os.path.join(mnt, rel, "cpu.stat")
        if kind == "cgroup2" and cgroup_v2():
            return os.path.join(mnt, rel, "cpu.stat")
    return None
