"""Service spec validation and defaults, shared by the CLI and the manager.

`validate_service_spec(spec)` returns a normalized copy with every default filled in, or
raises `SpecError(field, problem)`. Field names are the `swarm service create` flag names
("limit-memory", "restart-delay") so the same one-line message makes sense whether the CLI
or the manager rejected the spec. The function is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.container_specs import check_container_extras
from swarmlet.errors import SpecError
from swarmlet.units import NANO

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_REPLICAS = 1
DEFAULT_RESTART_DELAY_S = 5.0
DEFAULT_STOP_GRACE_S = 10.0
DEFAULT_MONITOR_S = 5.0
DEFAULT_FAILURE_ACTION = "pause"
DEFAULT_ORDER = "stop-first"
DEFAULT_ENDPOINT_MODE = "vip"
DEFAULT_FILE_MODE = 0o444  # secret and config files

MIN_MEMORY_LIMIT = 6 * 1024 * 1024
MAX_MEMORY = 1 << 50  # 1 PiB: more is a typo, not a machine
MAX_NANO_CPUS = 4096 * NANO
MAX_REPLICAS = 1_000_000

FAILURE_ACTIONS = ("pause", "continue", "rollback")
UPDATE_ORDERS = ("stop-first", "start-first")
ENDPOINT_MODES = ("vip", "dnsrr")
PROTOCOLS = ("tcp", "udp")
PUBLISH_MODES = ("ingress", "host")


def validate_service_spec(spec: pb.ServiceSpec) -> pb.ServiceSpec:
    """A normalized copy of `spec` with defaults filled; SpecError names the bad field."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    check_name(out.annotations.name)
    _check_labels(out.annotations.labels, "label")
    _check_mode(out)
    task = out.task_template
    _check_container(task.container)
    _check_resources(task.resources)
    _check_restart(task.restart_policy)
    _check_placement(task.placement)
    _fill_update_config(out.update_config, "update")
    if out.HasField("rollback_config"):
        _fill_update_config(out.rollback_config, "rollback")
    _check_endpoint(out.endpoint_spec)
    _check_references(task.container)
    return out


def validate_replicas(value: int) -> int:
    """A replica count as given to `scale`: an integer from 0 to MAX_REPLICAS."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError("replicas", "must be a non-negative integer")
    if value > MAX_REPLICAS:
        raise SpecError("replicas", f"must be at most {MAX_REPLICAS}")
    return value


def check_name(name: str, field: str = "name") -> str:
    """A service name: 1-63 letters, digits, "_", "." or "-", starting with a letter/digit."""
    if not name:
        raise SpecError(field, "is required")
    if not NAME_RE.match(name):
        raise SpecError(
            field,
            f'invalid name "{name}" (use 1-63 letters, digits, "_", "." or "-", '
            "starting with a letter or digit)",
        )
    return name


def _check_labels(labels: Iterable[str], field: str) -> None:
    for key in labels:
        if not key or key != key.strip():
            raise SpecError(field, f'invalid label key "{key}"')


def _check_mode(spec: pb.ServiceSpec) -> None:
    which = spec.mode.WhichOneof("mode")
    if which is None:
        spec.mode.replicated.replicas = DEFAULT_REPLICAS
    elif which == "replicated":
        validate_replicas(spec.mode.replicated.replicas)


def _check_container(container: pb.ContainerSpec) -> None:
    if not container.image.strip():
        raise SpecError("image", "is required")
    if container.image != container.image.strip() or any(c.isspace() for c in container.image):
        raise SpecError("image", f'invalid image reference "{container.image}"')
    check_container_extras(container)
    for entry in container.env:
        key, sep, _value = entry.partition("=")
        if not sep:
            raise SpecError("env", f'invalid entry "{entry}" (use KEY=VALUE)')
        if not ENV_KEY_RE.match(key):
            raise SpecError("env", f'invalid variable name "{key}" in "{entry}"')
    if container.stop_grace_period_s < 0:
        raise SpecError("stop-grace-period", "must not be negative")
    if container.stop_grace_period_s == 0:
        container.stop_grace_period_s = DEFAULT_STOP_GRACE_S


def _check_resources(res: pb.ResourceRequirements) -> None:
    for kind, resources in (("reserve", res.reservations), ("limit", res.limits)):
        if resources.nano_cpus < 0:
            raise SpecError(f"{kind}-cpu", "must not be negative")
        if resources.nano_cpus > MAX_NANO_CPUS:
            raise SpecError(f"{kind}-cpu", f"must be at most {MAX_NANO_CPUS // NANO} CPUs")
        if resources.memory_bytes < 0:
            raise SpecError(f"{kind}-memory", "must not be negative")
        if resources.memory_bytes > MAX_MEMORY:
            raise SpecError(f"{kind}-memory", "must be at most 1PiB")
    limit, reserve = res.limits, res.reservations
    if 0 < limit.memory_bytes < MIN_MEMORY_LIMIT:
        raise SpecError("limit-memory", "must be at least 6MiB")
    if 0 < limit.memory_bytes < reserve.memory_bytes:
        raise SpecError("limit-memory", "must not be below reserve-memory")
    if 0 < limit.nano_cpus < reserve.nano_cpus:
        raise SpecError("limit-cpu", "must not be below reserve-cpu")


def _check_restart(policy: pb.RestartPolicy) -> None:
    if policy.condition not in pb.RestartCondition.values():
        raise SpecError("restart-condition", f"unknown condition {policy.condition}")
    if policy.delay_s < 0:
        raise SpecError("restart-delay", "must not be negative")
    if not policy.delay_set:
        policy.delay_s = DEFAULT_RESTART_DELAY_S
        policy.delay_set = True


def _check_placement(placement: pb.Placement) -> None:
    if not placement.constraints and not placement.preferences:
        return
    # Imported here: the scheduler package builds on swarmlet, not the other way round.
    from scheduler.constraints import parse_constraint, parse_preference
    from scheduler.errors import ConstraintError

    for expr in placement.constraints:
        try:
            parse_constraint(expr)
        except ConstraintError as exc:
            raise SpecError("constraint", _strip_prefix(str(exc), "constraint ")) from exc
    for pref in placement.preferences:
        try:
            parse_preference(pref)
        except ConstraintError as exc:
            problem = _strip_prefix(str(exc), "placement preference ")
            raise SpecError("placement-pref", problem) from exc


def _strip_prefix(text: str, prefix: str) -> str:
    """The scheduler's message without the word the field name already says."""
    return text[len(prefix) :] if text.startswith(prefix) else text


def _fill_update_config(cfg: pb.UpdateConfig, prefix: str) -> None:
    if cfg.parallelism == 0:
        cfg.parallelism = 1
    if cfg.delay_s < 0:
        raise SpecError(f"{prefix}-delay", "must not be negative")
    if cfg.monitor_s < 0:
        raise SpecError(f"{prefix}-monitor", "must not be negative")
    if cfg.monitor_s == 0:
        cfg.monitor_s = DEFAULT_MONITOR_S
    if not cfg.failure_action:
        cfg.failure_action = DEFAULT_FAILURE_ACTION
    if cfg.failure_action not in FAILURE_ACTIONS:
        raise SpecError(
            f"{prefix}-failure-action",
            f'unknown action "{cfg.failure_action}" (use {", ".join(FAILURE_ACTIONS)})',
        )
    if not 0 <= cfg.max_failure_ratio <= 1:
        raise SpecError(f"{prefix}-max-failure-ratio", "must be between 0 and 1")
    if not cfg.order:
        cfg.order = DEFAULT_ORDER
    if cfg.order not in UPDATE_ORDERS:
        raise SpecError(
            f"{prefix}-order", f'unknown order "{cfg.order}" (use {", ".join(UPDATE_ORDERS)})'
        )


def _check_references(container: pb.ContainerSpec) -> None:
    """Secret/config references: a name or id, a safe target (default: the name, for
    configs "/<name>"), mode 0444 by default; no target used twice."""
    seen: set[str] = set()
    refs: list[tuple[str, pb.SecretReference | pb.ConfigReference]] = [
        *(("secret", r) for r in container.secrets),
        *(("config", r) for r in container.configs),
    ]
    for kind, ref in refs:
        name = ref.secret_name if isinstance(ref, pb.SecretReference) else ref.config_name
        ident = ref.secret_id if isinstance(ref, pb.SecretReference) else ref.config_id
        if not name and not ident:
            raise SpecError(kind, f"a {kind} name is required")
        if not ref.target:
            ref.target = name if kind == "secret" else "/" + name
        if ".." in ref.target.split("/") or "\x00" in ref.target:
            raise SpecError(kind, f'invalid target "{ref.target}" for {kind} {name}')
        if not ref.mode:
            ref.mode = DEFAULT_FILE_MODE
        if ref.mode > 0o777:
            raise SpecError(kind, f"invalid mode {ref.mode:o} for {kind} {name}")
        key = f"{kind}:{ref.target}" if kind == "secret" else ref.target
        if key in seen:
            raise SpecError(kind, f'target "{ref.target}" is used twice')
        seen.add(key)


def _check_endpoint(endpoint: pb.EndpointSpec) -> None:
    if not endpoint.mode:
        endpoint.mode = DEFAULT_ENDPOINT_MODE
    if endpoint.mode not in ENDPOINT_MODES:
        raise SpecError(
            "endpoint-mode", f'unknown mode "{endpoint.mode}" (use {", ".join(ENDPOINT_MODES)})'
        )
    seen: set[tuple[int, str]] = set()
    for port in endpoint.ports:
        _check_port(port, endpoint.mode)
        if port.published_port:
            key = (port.published_port, port.protocol)
            if key in seen:
                raise SpecError(
                    "publish", f"port {port.published_port}/{port.protocol} is published twice"
                )
            seen.add(key)


def _check_port(port: pb.PortConfig, mode: str) -> None:
    port.protocol = port.protocol or "tcp"
    port.publish_mode = port.publish_mode or "ingress"
    if port.protocol not in PROTOCOLS:
        raise SpecError("publish", f'unknown protocol "{port.protocol}" (use tcp or udp)')
    if port.publish_mode not in PUBLISH_MODES:
        raise SpecError("publish", f'unknown mode "{port.publish_mode}" (use ingress or host)')
    if not 1 <= port.target_port <= 65535:
        raise SpecError("publish", "target port must be between 1 and 65535")
    if port.published_port > 65535:
        raise SpecError("publish", "published port must be between 1 and 65535")
    if mode == "dnsrr" and port.publish_mode == "ingress" and port.published_port:
        raise SpecError("publish", "ingress ports need endpoint mode vip (use mode=host)")
