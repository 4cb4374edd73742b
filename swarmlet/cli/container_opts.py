"""The container flags of `swarm service create`: --mount, --health-*, --stop-signal,
--read-only, --user, --workdir, --hostname, --pids-limit. Parsed from the text typed into
the ContainerSpec; `swarmlet.specs` validates the result.
"""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import parse_count
from swarmlet.errors import SpecError
from swarmlet.units import parse_duration, parse_memory

_TRUE = ("", "1", "true", "yes")
_FALSE = ("0", "false", "no")
_MOUNT_KEYS = {
    "type": "type",
    "source": "source",
    "src": "source",
    "target": "target",
    "destination": "target",
    "dst": "target",
    "readonly": "readonly",
    "ro": "readonly",
    "tmpfs-size": "tmpfs-size",
}


def parse_mount(text: str) -> pb.Mount:
    """ "type=bind,source=/a,target=/b,readonly" -> Mount (type defaults to volume)."""
    m = pb.Mount(type="volume")
    for item in text.split(","):
        raw_key, _, value = item.partition("=")
        key = _MOUNT_KEYS.get(raw_key.strip().lower())
        if key is None:
            raise SpecError("mount", f'unknown key "{raw_key.strip()}" in "{text}"')
        if key == "readonly":
            if value.lower() not in _TRUE + _FALSE:
                raise SpecError("mount", f'invalid readonly value "{value}"')
            m.read_only = value.lower() in _TRUE
        elif key == "tmpfs-size":
            m.tmpfs_size_bytes = parse_memory(value, field="mount")
        elif key == "type":
            m.type = value.strip().lower()
        else:
            setattr(m, key, value)
    return m


def set_healthcheck(
    c: pb.ContainerSpec,
    cmd: str | None,
    interval: str | None,
    timeout: str | None,
    retries: str | None,
    start_period: str | None,
    disabled: bool,
) -> None:
    tuning = (interval, timeout, retries, start_period)
    if disabled:
        if cmd is not None or any(v is not None for v in tuning):
            raise SpecError("no-healthcheck", "conflicts with --health-* options")
        c.healthcheck.test.append("NONE")
        return
    if cmd is None:
        if any(v is not None for v in tuning):
            raise SpecError("health-cmd", "is required with --health-* options")
        return
    if not cmd.strip():
        raise SpecError("health-cmd", "must not be empty")
    h = c.healthcheck
    h.test.extend(["CMD-SHELL", cmd])
    if interval is not None:
        h.interval_s = _positive(interval, "health-interval")
    if timeout is not None:
        h.timeout_s = _positive(timeout, "health-timeout")
    if retries is not None:
        h.retries = parse_count(retries, "health-retries")
    if start_period is not None:
        h.start_period_s = parse_duration(start_period, field="health-start-period")


def _positive(text: str, field: str) -> float:
    value = parse_duration(text, field=field)
    if value <= 0:
        raise SpecError(field, "must be positive")
    return value


def set_process_options(
    c: pb.ContainerSpec,
    *,
    user: str | None,
    workdir: str | None,
    hostname: str | None,
    read_only: bool,
    stop_signal: str | None,
    pids_limit: str | None,
) -> None:
    if user is not None:
        c.user = user
    if workdir is not None:
        c.dir = workdir
    if hostname is not None:
        c.hostname = hostname
    c.read_only = read_only
    if stop_signal is not None:
        c.stop_signal = stop_signal
    if pids_limit is not None:
        c.pids_limit = parse_count(pids_limit, "pids-limit")
