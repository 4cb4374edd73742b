"""Validation of the container-level parts of a service spec: image reference, mounts,
health check, stop signal, user, pids limit. Pure; called by `swarmlet.specs`.

Field names in errors are the `swarm service create` flags ("mount", "health-cmd"). What
only a worker can know (a bind source that does not exist on that node, a user the image
does not have) is checked there and makes the task REJECTED instead.
"""

from __future__ import annotations

import re
import signal

from swarmlet import imageref
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import SpecError

MOUNT_TYPES = ("bind", "volume", "tmpfs")
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HEALTH_KINDS = ("CMD", "CMD-SHELL", "NONE")


def check_container_extras(c: pb.ContainerSpec) -> None:
    """SpecError naming the flag for the first problem found."""
    imageref.parse(c.image)
    for m in c.mounts:
        check_mount(m)
    if c.HasField("healthcheck"):
        check_healthcheck(c.healthcheck)
    if c.stop_signal:
        c.stop_signal = normalize_signal(c.stop_signal)
    if c.user and not USER_RE.match(c.user):
        raise SpecError("user", f'invalid user "{c.user}" (use name|uid[:group|gid])')
    if c.dir and not c.dir.startswith("/"):
        raise SpecError("workdir", f'"{c.dir}" is not an absolute path')
    if c.pids_limit < 0:
        raise SpecError("pids-limit", "must not be negative")


def check_mount(m: pb.Mount) -> None:
    if m.type not in MOUNT_TYPES:
        raise SpecError("mount", f'unknown type "{m.type}" (use bind, volume or tmpfs)')
    if not m.target:
        raise SpecError("mount", "target is required")
    if not m.target.startswith("/"):
        raise SpecError("mount", f'target "{m.target}" is not an absolute path')
    if m.type == "bind" and not m.source.startswith("/"):
        raise SpecError("mount", f'bind source "{m.source}" is not an absolute path')
    if m.type == "volume" and not VOLUME_NAME.match(m.source):
        raise SpecError("mount", f'invalid volume name "{m.source}"')
    if m.type == "tmpfs" and m.source:
        raise SpecError("mount", "a tmpfs mount takes no source")
    if m.tmpfs_size_bytes < 0:
        raise SpecError("mount", "tmpfs-size must not be negative")


def check_healthcheck(h: pb.HealthConfig) -> None:
    if h.test and h.test[0] not in HEALTH_KINDS:
        raise SpecError("health-cmd", f'unknown test kind "{h.test[0]}" (use CMD, CMD-SHELL '
                        "or NONE)")
    if h.test and h.test[0] != "NONE" and len(h.test) < 2:
        raise SpecError("health-cmd", "no command given")
    for name, value in (("health-interval", h.interval_s), ("health-timeout", h.timeout_s),
                        ("health-start-period", h.start_period_s)):
        if value < 0:
            raise SpecError(name, "must not be negative")


def normalize_signal(text: str) -> str:
    """ "TERM", "sigterm", "15" -> "SIGTERM"; SpecError("stop-signal") otherwise."""
    t = text.strip().upper()
    try:
        sig = signal.Signals(int(t)) if t.isdigit() else signal.Signals[
            t if t.startswith("SIG") else "SIG" + t
        ]
    except (KeyError, ValueError):
        raise SpecError("stop-signal", f'unknown signal "{text}"') from None
    return sig.name
