"""OCI runtime config (config.json) for one task: pure functions, no I/O.

The runc runtime gathers the facts that need the file system (image config, the
rootfs's /etc/passwd and /etc/group, whether bind sources exist, the network namespace
path) and hands them here; these functions decide the container's process (argv, env,
cwd, user, capabilities, noNewPrivileges), mounts, namespaces, cgroup path and resource
limits. Errors that make the task impossible are RejectError with a one-line reason
naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RejectError

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_PIDS_LIMIT = 1024
CPU_PERIOD_US = 100_000
NANO = 1_000_000_000
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Docker's default capability set.
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (type, major, minor) of the device nodes a container may use; everything else denied.
ALLOWED_DEVICES = (
    ("c", 1, 3),  # null
    ("c", 1, 5),  # zero
    ("c", 1, 7),  # full
    ("c", 1, 8),  # random
    ("c", 1, 9),  # urandom
    ("c", 5, 0),  # tty
    ("c", 5, 2),  # ptmx
    ("c", 136, -1),  # pts/*
)


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass(frozen=True, slots=True)
class BundleInputs:
    """Everything build_config needs besides the task itself."""

    args: list[str]
    env: list[str]
    cwd: str
    user: User
    hostname: str
    netns_path: str
    cgroups_path: str
    mounts: list[dict[str, Any]] = field(default_factory=list)
    readonly: bool = False


# ---------------------------------------------------------------------- process


def process_args(container: pb.ContainerSpec, image_cfg: dict[str, Any]) -> list[str]:
    """The command line: the spec's command (+ args) replaces the image's Entrypoint and
    Cmd; spec args alone replace only Cmd (Docker's rules)."""
    entry = list(image_cfg.get("Entrypoint") or [])
    cmd = list(image_cfg.get("Cmd") or [])
    if container.command:
        argv = list(container.command) + list(container.args)
    elif container.args:
        argv = entry + list(container.args)
    else:
        argv = entry + cmd
    if not argv:
        raise RejectError("command: no command given and the image has no Entrypoint or Cmd")
    return argv


def _env_map(items: list[str], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RejectError(f"env: {item!r} from the {source} is not KEY=VALUE")
        out[key] = value
    return out


def process_env(
    container: pb.ContainerSpec,
    image_cfg: dict[str, Any],
    extra: dict[str, str],
    hostname: str,
    home: str,
) -> list[str]:
    """Image Env, then the spec's env, then swarmlet's variables; PATH/HOME defaulted."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": home}
    env.update(_env_map(list(image_cfg.get("Env") or []), "image"))
    env.update(_env_map(list(container.env), "service spec"))
    env.update(extra)
    return [f"{k}={v}" for k, v in env.items()]


def working_dir(container: pb.ContainerSpec, image_cfg: dict[str, Any]) -> str:
    cwd = container.dir or str(image_cfg.get("WorkingDir") or "") or "/"
    if not cwd.startswith("/"):
        raise RejectError(f"workdir: {cwd!r} is not an absolute path")
    return cwd


# ---------------------------------------------------------------------- users


def _table(text: str, min_fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split(":")
            if len(parts) >= min_fields:
                rows.append(parts)
    return rows


def resolve_user(spec_user: str, passwd: str, group: str) -> User:
    """ "" (root), "uid", "uid:gid", "name", "name:group" -> User, using the image's
    /etc/passwd and /etc/group texts; RejectError for a name the image does not know."""
    name, _, grp = (spec_user or "0").partition(":")
    users = _table(passwd, 7)
    groups = _table(group, 4)
    home = "/"
    if name.isdigit():
        uid = int(name)
        row = next((u for u in users if u[2] == name), None)
        gid = int(row[3]) if row and row[3].isdigit() else 0
        home = row[5] if row else "/"
    else:
        row = next((u for u in users if u[0] == name), None)
        if row is None or not row[2].isdigit() or not row[3].isdigit():
            raise RejectError(f"user: unknown user {name} in image")
        uid, gid, home = int(row[2]), int(row[3]), row[5] or "/"
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            g = next((r for r in groups if r[0] == grp), None)
            if g is None or not g[2].isdigit():
                raise RejectError(f"user: unknown group {grp} in image")
            gid = int(g[2])
    user_name = row[0] if row else ""
    member = {int(g[2]) for g in groups if g[2].isdigit() and user_name in g[3].split(",")}
    extra = tuple(sorted(member - {gid})) if user_name else ()
    return User(uid, gid, extra, home)


# ---------------------------------------------------------------------- mounts


def spec_mounts(
    container: pb.ContainerSpec, volumes_dir: str
) -> list[tuple[dict[str, Any], str]]:
    """OCI mounts for the spec's mounts, each with the host path that must exist first
    ("" for tmpfs). Volume sources are directories under `volumes_dir`."""
    out: list[tuple[dict[str, Any], str]] = []
    for m in container.mounts:
        if not m.target.startswith("/"):
            raise RejectError(f"mount: target {m.target!r} is not an absolute path")
        mode = "ro" if m.read_only else "rw"
        if m.type == "bind":
            if not m.source.startswith("/"):
                raise RejectError(f"mount: bind source {m.source!r} is not an absolute path")
            opts = ["rbind", "rprivate", mode]
            out.append(({"destination": m.target, "type": "bind", "source": m.source,
                         "options": opts}, m.source))
        elif m.type == "volume":
            if not VOLUME_NAME.match(m.source):
                raise RejectError(f"mount: invalid volume name {m.source!r}")
            src = f"{volumes_dir.rstrip('/')}/{m.source}"
            out.append(({"destination": m.target, "type": "bind", "source": src,
                         "options": ["rbind", "rprivate", mode]}, src))
        elif m.type == "tmpfs":
            opts = ["nosuid", "nodev", "mode=1777", mode]
            if m.tmpfs_size_bytes > 0:
                opts.append(f"size={m.tmpfs_size_bytes}")
            out.append(({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                         "options": opts}, ""))
        else:
            raise RejectError(f"mount: unknown type {m.type!r} (use bind, volume or tmpfs)")
    return out


def etc_mounts(files: dict[str, str]) -> list[dict[str, Any]]:
    """Bind mounts of agent-written files (/etc/hosts, /etc/resolv.conf, /etc/hostname)."""
    return [
        {"destination": target, "type": "bind", "source": src,
         "options": ["rbind", "rprivate", "rw"]}
        for target, src in sorted(files.items())
    ]


def base_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


# ---------------------------------------------------------------------- resources


def resources(res: pb.ResourceRequirements, pids_limit: int) -> dict[str, Any]:
    """linux.resources: devices allow-list, memory limit, CPU quota, pids limit."""
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor in ALLOWED_DEVICES:
        devices.append({"allow": True, "type": kind, "major": major, "minor": minor,
                        "access": "rwm"})
    out: dict[str, Any] = {"devices": devices}
    if res.limits.memory_bytes > 0:
        out["memory"] = {"limit": int(res.limits.memory_bytes)}
    if res.limits.nano_cpus > 0:
        quota = max(1000, res.limits.nano_cpus * CPU_PERIOD_US // NANO)
        out["cpu"] = {"quota": int(quota), "period": CPU_PERIOD_US}
    out["pids"] = {"limit": int(pids_limit if pids_limit > 0 else DEFAULT_PIDS_LIMIT)}
    return out


# ---------------------------------------------------------------------- config


def build_config(task: pb.Task, b: BundleInputs) -> dict[str, Any]:
    """The whole config.json for `task`."""
    caps = list(DEFAULT_CAPS)
    mounts = base_mounts() + list(b.mounts)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": b.user.uid, "gid": b.user.gid,
                     **({"additionalGids": list(b.user.additional_gids)}
                        if b.user.additional_gids else {})},
            "args": list(b.args),
            "env": list(b.env),
            "cwd": b.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": b.readonly},
        "hostname": b.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": b.cgroups_path,
            "resources": resources(task.spec.resources, task.spec.container.pids_limit),
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": b.netns_path},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def hosts_file(hostname: str) -> str:
    return (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"127.0.1.1\t{hostname}\n"
    )
