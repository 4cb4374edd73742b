"""Build a ServiceSpec from `swarm service create` flags, then validate it.

Every flag arrives as the text the user typed, so that a bad value yields the same
one-line "field: problem" message as the manager would give, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import parse_count, parse_key_value
from swarmlet.cli.container_opts import parse_mount, set_healthcheck, set_process_options
from swarmlet.cli.spec_flags import (
    apply_update_flags,
    parse_config,
    parse_network,
    parse_pref,
    parse_publish,
    parse_secret,
    update_flags,
)
from swarmlet.errors import SpecError
from swarmlet.specs import validate_replicas, validate_service_spec
from swarmlet.units import parse_cpu, parse_duration, parse_memory

MODES = ("replicated", "global")
RESTART_CONDITIONS = {
    "any": pb.RESTART_ANY,
    "on-failure": pb.RESTART_ON_FAILURE,
    "none": pb.RESTART_NONE,
}


@dataclass
class ServiceOptions:
    """The flags of `swarm service create`, as typed."""

    name: str = ""
    image: str = ""
    command: list[str] = field(default_factory=list)
    replicas: str | None = None
    mode: str | None = None
    env: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    reserve_cpu: str | None = None
    reserve_memory: str | None = None
    limit_cpu: str | None = None
    limit_memory: str | None = None
    restart_condition: str | None = None
    restart_delay: str | None = None
    restart_max_attempts: str | None = None
    stop_grace_period: str | None = None
    placement_prefs: list[str] = field(default_factory=list)
    max_replicas_per_node: str | None = None
    secrets: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    endpoint_mode: str | None = None
    update_parallelism: str | None = None
    update_delay: str | None = None
    update_failure_action: str | None = None
    update_monitor: str | None = None
    update_max_failure_ratio: str | None = None
    update_order: str | None = None
    rollback_parallelism: str | None = None
    rollback_delay: str | None = None
    rollback_failure_action: str | None = None
    rollback_monitor: str | None = None
    rollback_max_failure_ratio: str | None = None
    rollback_order: str | None = None
    mounts: list[str] = field(default_factory=list)
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_retries: str | None = None
    health_start_period: str | None = None
    no_healthcheck: bool = False
    stop_signal: str | None = None
    read_only: bool = False
    user: str | None = None
    workdir: str | None = None
    hostname: str | None = None
    pids_limit: str | None = None


def build_service_spec(opts: ServiceOptions) -> pb.ServiceSpec:
    """The validated, defaults-filled spec for these flags; SpecError on bad input."""
    spec = pb.ServiceSpec()
    spec.annotations.name = opts.name
    for entry in opts.labels:
        key, value = parse_key_value(entry, "label")
        spec.annotations.labels[key] = value
    _set_mode(spec, opts)
    container = spec.task_template.container
    container.image = opts.image
    container.command.extend(opts.command)
    container.env.extend(opts.env)
    if opts.stop_grace_period is not None:
        grace = parse_duration(opts.stop_grace_period, field="stop-grace-period")
        container.stop_grace_period_s = grace
    _set_container_options(container, opts)
    _set_resources(spec.task_template.resources, opts)
    _set_restart(spec.task_template.restart_policy, opts)
    spec.task_template.placement.constraints.extend(opts.constraints)
    _set_swarm_options(spec, opts)
    return validate_service_spec(spec)


def _set_swarm_options(spec: pb.ServiceSpec, opts: ServiceOptions) -> None:
    """Placement preferences, secrets, configs, published ports, update/rollback settings."""
    task = spec.task_template
    task.placement.preferences.extend(parse_pref(p) for p in opts.placement_prefs)
    if opts.max_replicas_per_node is not None:
        task.placement.max_replicas = parse_count(opts.max_replicas_per_node,
                                                  "max-replicas-per-node")
    task.container.secrets.extend(parse_secret(s) for s in opts.secrets)
    task.container.configs.extend(parse_config(c) for c in opts.configs)
    spec.endpoint_spec.ports.extend(parse_publish(p) for p in opts.publish)
    task.networks.extend(parse_network(n) for n in opts.networks)
    if opts.endpoint_mode is not None:
        spec.endpoint_spec.mode = opts.endpoint_mode
    params = vars(opts)
    apply_update_flags(spec.update_config, update_flags(params, "update"), "update")
    rollback = update_flags(params, "rollback")
    if rollback.given():
        spec.rollback_config.SetInParent()
        apply_update_flags(spec.rollback_config, rollback, "rollback")


def _set_container_options(c: pb.ContainerSpec, opts: ServiceOptions) -> None:
    c.mounts.extend(parse_mount(m) for m in opts.mounts)
    set_healthcheck(c, opts.health_cmd, opts.health_interval, opts.health_timeout,
                    opts.health_retries, opts.health_start_period, opts.no_healthcheck)
    set_process_options(c, user=opts.user, workdir=opts.workdir, hostname=opts.hostname,
                        read_only=opts.read_only, stop_signal=opts.stop_signal,
                        pids_limit=opts.pids_limit)


def _set_mode(spec: pb.ServiceSpec, opts: ServiceOptions) -> None:
    mode = (opts.mode or "replicated").strip().lower()
    if mode not in MODES:
        raise SpecError("mode", f'unknown mode "{opts.mode}" (use replicated or global)')
    if mode == "global":
        if opts.replicas is not None:
            raise SpecError("replicas", "can only be used with replicated mode")
        getattr(spec.mode, "global").SetInParent()
        return
    replicas = 1 if opts.replicas is None else parse_count(opts.replicas, "replicas")
    spec.mode.replicated.replicas = validate_replicas(replicas)


def _set_resources(res: pb.ResourceRequirements, opts: ServiceOptions) -> None:
    if opts.reserve_cpu is not None:
        res.reservations.nano_cpus = parse_cpu(opts.reserve_cpu, field="reserve-cpu")
    if opts.reserve_memory is not None:
        res.reservations.memory_bytes = parse_memory(opts.reserve_memory, field="reserve-memory")
    if opts.limit_cpu is not None:
        res.limits.nano_cpus = parse_cpu(opts.limit_cpu, field="limit-cpu")
    if opts.limit_memory is not None:
        res.limits.memory_bytes = parse_memory(opts.limit_memory, field="limit-memory")


def _set_restart(policy: pb.RestartPolicy, opts: ServiceOptions) -> None:
    if opts.restart_condition is not None:
        cond = opts.restart_condition.strip().lower()
        if cond not in RESTART_CONDITIONS:
            raise SpecError(
                "restart-condition",
                f'unknown condition "{opts.restart_condition}" (use any, on-failure or none)',
            )
        policy.condition = RESTART_CONDITIONS[cond]
    if opts.restart_delay is not None:
        policy.delay_s = parse_duration(opts.restart_delay, field="restart-delay")
        policy.delay_set = True
    if opts.restart_max_attempts is not None:
        policy.max_attempts = parse_count(opts.restart_max_attempts, "restart-max-attempts")
