"""`swarm service update` and `swarm service rollback`.

update reads the service (GetService), applies the flags to a copy of its spec
(`apply_update`, pure), validates it and sends UpdateService with the version it read,
so a concurrent change is refused rather than overwritten. Both commands then wait,
like create, until the tasks of the new spec run (unless --detach); a paused update or
one rolled back after failures ends the wait with its message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli import spec_flags as flags
from swarmlet.cli.common import data_dir_option, open_client, parse_count, parse_key_value
from swarmlet.cli.progress import DEFAULT_TIMEOUT_S, NotConverged, make_display, wait_converged
from swarmlet.client import ControlClient
from swarmlet.clock import RealClock
from swarmlet.errors import SpecError
from swarmlet.specs import validate_replicas, validate_service_spec
from swarmlet.stack.plan import network_names
from swarmlet.units import format_duration, parse_cpu, parse_duration, parse_memory

PAUSED = ("paused", "rollback_paused")
ROLLED_BACK = ("rollback_started", "rollback_completed")


@dataclass
class UpdateOptions:
    """The flags of `swarm service update`, as typed (None / empty = leave as is)."""

    image: str | None = None
    env_add: list[str] = field(default_factory=list)
    env_rm: list[str] = field(default_factory=list)
    label_add: list[str] = field(default_factory=list)
    label_rm: list[str] = field(default_factory=list)
    replicas: str | None = None
    limit_cpu: str | None = None
    limit_memory: str | None = None
    reserve_cpu: str | None = None
    reserve_memory: str | None = None
    constraint_add: list[str] = field(default_factory=list)
    constraint_rm: list[str] = field(default_factory=list)
    placement_pref_add: list[str] = field(default_factory=list)
    placement_pref_rm: list[str] = field(default_factory=list)
    max_replicas_per_node: str | None = None
    publish_add: list[str] = field(default_factory=list)
    publish_rm: list[str] = field(default_factory=list)
    network_add: list[str] = field(default_factory=list)
    network_rm: list[str] = field(default_factory=list)
    endpoint_mode: str | None = None
    secret_add: list[str] = field(default_factory=list)
    secret_rm: list[str] = field(default_factory=list)
    config_add: list[str] = field(default_factory=list)
    config_rm: list[str] = field(default_factory=list)
    stop_grace_period: str | None = None
    force: bool = False
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


OPTION_FIELDS = {f.name for f in fields(UpdateOptions)}


def apply_update(current: pb.ServiceSpec, o: UpdateOptions) -> pb.ServiceSpec:
    """The validated spec `current` becomes under these flags; SpecError on bad input."""
    spec = pb.ServiceSpec()
    spec.CopyFrom(current)
    c = spec.task_template.container
    if o.image is not None:
        c.image = o.image
    _update_env(c, o)
    for key in o.label_rm:
        spec.annotations.labels.pop(key, None)
    spec.annotations.labels.update(dict(parse_key_value(e, "label-add") for e in o.label_add))
    if o.replicas is not None:
        if spec.mode.WhichOneof("mode") == "global":
            raise SpecError("replicas", "can only be used with replicated mode")
        spec.mode.replicated.replicas = validate_replicas(parse_count(o.replicas, "replicas"))
    _update_resources(spec.task_template.resources, o)
    _update_placement(spec.task_template.placement, o)
    _update_ports(spec.endpoint_spec, o)
    _update_networks(spec.task_template, o)
    if o.endpoint_mode is not None:
        spec.endpoint_spec.mode = o.endpoint_mode
    _update_references(c, o)
    if o.stop_grace_period is not None:
        c.stop_grace_period_s = parse_duration(o.stop_grace_period, "stop-grace-period")
    if o.force:
        spec.task_template.force_update += 1
    params = vars(o)
    flags.apply_update_flags(spec.update_config, flags.update_flags(params, "update"), "update")
    rollback = flags.update_flags(params, "rollback")
    if rollback.given():
        spec.rollback_config.SetInParent()
        flags.apply_update_flags(spec.rollback_config, rollback, "rollback")
    return validate_service_spec(spec)


def _update_env(c: pb.ContainerSpec, o: UpdateOptions) -> None:
    added = [parse_key_value(e, "env-add", need_value=True) for e in o.env_add]
    drop = set(o.env_rm) | {k for k, _ in added}
    kept = [e for e in c.env if e.partition("=")[0] not in drop]
    del c.env[:]
    c.env.extend(kept + [f"{k}={v}" for k, v in added])


def _update_resources(res: pb.ResourceRequirements, o: UpdateOptions) -> None:
    if o.limit_cpu is not None:
        res.limits.nano_cpus = parse_cpu(o.limit_cpu, "limit-cpu")
    if o.limit_memory is not None:
        res.limits.memory_bytes = parse_memory(o.limit_memory, "limit-memory")
    if o.reserve_cpu is not None:
        res.reservations.nano_cpus = parse_cpu(o.reserve_cpu, "reserve-cpu")
    if o.reserve_memory is not None:
        res.reservations.memory_bytes = parse_memory(o.reserve_memory, "reserve-memory")


def _update_placement(p: pb.Placement, o: UpdateOptions) -> None:
    constraints = [x for x in p.constraints if x not in o.constraint_rm]
    constraints += [x for x in o.constraint_add if x not in constraints]
    del p.constraints[:]
    p.constraints.extend(constraints)
    drop = {flags.parse_pref(x, "placement-pref-rm") for x in o.placement_pref_rm}
    prefs = [x for x in p.preferences if x not in drop]
    prefs += [x for x in map(flags.parse_pref, o.placement_pref_add) if x not in prefs]
    del p.preferences[:]
    p.preferences.extend(prefs)
    if o.max_replicas_per_node is not None:
        p.max_replicas = parse_count(o.max_replicas_per_node, "max-replicas-per-node")


def _update_networks(task: pb.TaskSpec, o: UpdateOptions) -> None:
    """--network-rm NAME, then --network-add (targets are names here: `network_names`)."""
    added = [flags.parse_network(x, "network-add") for x in o.network_add]
    for name in o.network_rm:
        if not any(a.target == name for a in task.networks):
            raise SpecError("network-rm", f"the service is not attached to network {name}")
    drop = set(o.network_rm) | {a.target for a in added}
    kept = [a for a in task.networks if a.target not in drop]
    del task.networks[:]
    task.networks.extend(kept + added)


def _update_ports(endpoint: pb.EndpointSpec, o: UpdateOptions) -> None:
    drop = {flags.port_key(x) for x in o.publish_rm}
    added = [flags.parse_publish(x, "publish-add") for x in o.publish_add]
    taken = {(p.published_port, p.protocol or "tcp") for p in added if p.published_port}
    kept = [
        p for p in endpoint.ports
        if (p.target_port, p.protocol or "tcp") not in drop
        and (p.published_port, p.protocol or "tcp") not in taken
    ]
    del endpoint.ports[:]
    endpoint.ports.extend(kept + added)


def _update_references(c: pb.ContainerSpec, o: UpdateOptions) -> None:
    secrets = [r for r in c.secrets if r.secret_name not in o.secret_rm]
    configs = [r for r in c.configs if r.config_name not in o.config_rm]
    del c.secrets[:]
    del c.configs[:]
    c.secrets.extend(secrets + [flags.parse_secret(x) for x in o.secret_add])
    c.configs.extend(configs + [flags.parse_config(x) for x in o.config_add])


# --------------------------------------------------------------------------- waiting


class NewSpecTasks:
    """The control client as the progress waiter sees it, showing only the tasks made
    from the new spec (older ones are being replaced); a paused update, or for an update
    a rollback, ends the wait with the update's message."""

    def __init__(self, client: ControlClient, service: pb.Service, rollback: bool) -> None:
        self._client = client
        self._id = service.id
        self._version = service.spec_version
        self._rollback = rollback

    def list_tasks(self, service: str = "", node: str = "") -> pb.ListTasksResponse:
        status = self._client.get_service(self._id).update_status
        if status.state in PAUSED:
            raise NotConverged(f"update paused: {status.message or status.state}")
        if status.state in ROLLED_BACK and not self._rollback:
            raise NotConverged(f"update rolled back: {status.message or status.state}")
        resp = self._client.list_tasks(service=service, node=node)
        tasks = [t for t in resp.tasks if t.spec_version >= self._version]
        return pb.ListTasksResponse(tasks=tasks, node_names=resp.node_names)

    def list_services(self) -> pb.ListServicesResponse:
        return self._client.list_services()


def wait_new_spec(client: ControlClient, service: pb.Service, quiet: bool, timeout: str,
                  rollback: bool = False) -> None:
    limit = parse_duration(timeout, "timeout")
    wait_converged(NewSpecTasks(client, service, rollback), service, clock=RealClock(),
                   display=make_display(quiet), timeout=limit)


# --------------------------------------------------------------------------- commands

TIMEOUT = typer.Option(format_duration(DEFAULT_TIMEOUT_S), "--timeout", metavar="DURATION",
                       help="How long to wait.")
DETACH = typer.Option(False, "--detach", "-d", help="Do not wait for the update.")
QUIET = typer.Option(False, "--quiet", "-q", help="Suppress progress output.")


def _multi(flag: str, metavar: str, text: str) -> list[str]:
    return typer.Option([], flag, metavar=metavar, help=text, show_default=False)  # type: ignore[no-any-return]


def _one(flag: str, metavar: str, text: str) -> str | None:
    return typer.Option(None, flag, metavar=metavar, help=text, show_default=False)  # type: ignore[no-any-return]


def update(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="Service name or id."),
    image: str | None = _one("--image", "IMAGE", "New image."),
    env_add: list[str] = _multi("--env-add", "K=V", "Add or change a variable."),
    env_rm: list[str] = _multi("--env-rm", "K", "Remove a variable."),
    label_add: list[str] = _multi("--label-add", "K=V", "Add or change a service label."),
    label_rm: list[str] = _multi("--label-rm", "K", "Remove a service label."),
    replicas: str | None = _one("--replicas", "N", "Number of tasks."),
    limit_cpu: str | None = _one("--limit-cpu", "CPUS", "CPU limit."),
    limit_memory: str | None = _one("--limit-memory", "BYTES", "Memory limit."),
    reserve_cpu: str | None = _one("--reserve-cpu", "CPUS", "Reserved CPUs."),
    reserve_memory: str | None = _one("--reserve-memory", "BYTES", "Reserved memory."),
    constraint_add: list[str] = _multi("--constraint-add", "EXPR", "Add a constraint."),
    constraint_rm: list[str] = _multi("--constraint-rm", "EXPR", "Remove a constraint."),
    placement_pref_add: list[str] = _multi("--placement-pref-add", "spread=KEY", "Add one."),
    placement_pref_rm: list[str] = _multi("--placement-pref-rm", "spread=KEY", "Remove one."),
    max_replicas_per_node: str | None = flags.MAX_REPLICAS,
    publish_add: list[str] = _multi("--publish-add", "[PUB:]TARGET[/PROTO]", "Publish a port."),
    publish_rm: list[str] = _multi("--publish-rm", "TARGET[/PROTO]", "Unpublish a port."),
    network_add: list[str] = _multi("--network-add", "NAME|name=N,alias=A", "Attach to a "
                                    "network."),
    network_rm: list[str] = _multi("--network-rm", "NAME", "Detach from a network."),
    endpoint_mode: str | None = flags.ENDPOINT_MODE,
    secret_add: list[str] = _multi("--secret-add", "SRC[,target=..]", "Add a secret."),
    secret_rm: list[str] = _multi("--secret-rm", "NAME", "Remove a secret."),
    config_add: list[str] = _multi("--config-add", "SRC[,target=..]", "Add a config."),
    config_rm: list[str] = _multi("--config-rm", "NAME", "Remove a config."),
    stop_grace_period: str | None = _one("--stop-grace-period", "DURATION", "Stop grace."),
    force: bool = typer.Option(False, "--force", help="Replace the tasks even if nothing "
                               "changed."),
    update_parallelism: str | None = flags.OPTS["update_parallelism"],
    update_delay: str | None = flags.OPTS["update_delay"],
    update_failure_action: str | None = flags.OPTS["update_failure_action"],
    update_monitor: str | None = flags.OPTS["update_monitor"],
    update_max_failure_ratio: str | None = flags.OPTS["update_max_failure_ratio"],
    update_order: str | None = flags.OPTS["update_order"],
    rollback_parallelism: str | None = flags.OPTS["rollback_parallelism"],
    rollback_delay: str | None = flags.OPTS["rollback_delay"],
    rollback_failure_action: str | None = flags.OPTS["rollback_failure_action"],
    rollback_monitor: str | None = flags.OPTS["rollback_monitor"],
    rollback_max_failure_ratio: str | None = flags.OPTS["rollback_max_failure_ratio"],
    rollback_order: str | None = flags.OPTS["rollback_order"],
    detach: bool = DETACH,
    quiet: bool = QUIET,
    timeout: str = TIMEOUT,
    data_dir: str | None = data_dir_option(),
) -> None:
    """Update a service: swarm service update [OPTIONS] SERVICE."""
    opts = UpdateOptions(**{k: v for k, v in ctx.params.items() if k in OPTION_FIELDS})
    parse_duration(timeout, "timeout")
    with open_client(ctx, data_dir) as client:
        current = client.get_service(service)
        named = network_names(current.spec, client.list_networks()) if (
            current.spec.task_template.networks) else current.spec
        spec = apply_update(named, opts)
        updated = client.update_service(current.id, spec, current.meta.version)
        typer.echo(updated.spec.annotations.name)
        if not detach:
            wait_new_spec(client, updated, quiet, timeout)


def rollback(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="Service name or id."),
    detach: bool = DETACH,
    quiet: bool = QUIET,
    timeout: str = TIMEOUT,
    data_dir: str | None = data_dir_option(),
) -> None:
    """Return a service to its previous spec."""
    parse_duration(timeout, "timeout")
    with open_client(ctx, data_dir) as client:
        updated = client.rollback_service(service)
        typer.echo(updated.spec.annotations.name)
        if not detach:
            wait_new_spec(client, updated, quiet, timeout, rollback=True)


def register(app: typer.Typer) -> None:
    """Add `update` and `rollback` to the `swarm service` group."""
    app.command("update")(update)
    app.command("rollback")(rollback)
