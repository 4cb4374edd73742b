"""`swarm service ...`: create, ls, ps, inspect, scale, rm.

Input is checked completely before anything is sent to the node; a rejected flag never
reaches the manager. Commands that change the desired state wait for the service to
converge unless --detach is given.
"""

from __future__ import annotations

import time
from dataclasses import fields

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli import spec_flags as flags
from swarmlet.cli.build_spec import ServiceOptions, build_service_spec
from swarmlet.cli.common import (
    data_dir_option,
    each_object,
    format_option,
    inspect_each,
    open_client,
    parse_count,
    remove_each,
)
from swarmlet.cli.output import check_format, emit, short_id
from swarmlet.cli.progress import DEFAULT_TIMEOUT_S, make_display, wait_converged
from swarmlet.cli.task_rows import PS_COLUMNS, ps_rows
from swarmlet.client import ControlClient
from swarmlet.clock import RealClock
from swarmlet.errors import SpecError
from swarmlet.specs import check_name, validate_replicas
from swarmlet.units import format_duration, parse_duration

app = typer.Typer(help="Manage services.", no_args_is_help=True)

LS_COLUMNS = ("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS")


def ports_text(service: pb.Service) -> str:
    """`*:8080->80/tcp` per published port (as allocated; host mode: `8080->80/tcp` at the
    nodes running a task)."""
    ports = service.endpoint.ports or service.spec.endpoint_spec.ports
    return ", ".join(
        f"{'' if p.publish_mode == 'host' else '*:'}{p.published_port or ''}->"
        f"{p.target_port}/{p.protocol or 'tcp'}" for p in ports)
CREATE_SETTINGS = {"allow_interspersed_args": False}
OPTION_FIELDS = {f.name for f in fields(ServiceOptions)} - {"command"}


def _timeout(text: str) -> float:
    """The --timeout value in seconds (checked before anything is sent)."""
    limit = parse_duration(text, field="timeout")
    if limit <= 0:
        raise SpecError("timeout", "must be positive")
    return limit


def _wait(client: ControlClient, service: pb.Service, quiet: bool, timeout: float) -> None:
    wait_converged(client, service, clock=RealClock(), display=make_display(quiet), timeout=timeout)


@app.command("create", context_settings=CREATE_SETTINGS)
def create(
    ctx: typer.Context,
    image: str = typer.Argument(..., metavar="IMAGE", help="Image to run.", show_default=False),
    command: list[str] | None = typer.Argument(
        None, metavar="COMMAND", help="Command and arguments.", show_default=False
    ),
    name: str = typer.Option("", "--name", metavar="NAME", help="Service name."),
    replicas: str | None = typer.Option(None, "--replicas", metavar="N", help="Number of tasks."),
    mode: str | None = typer.Option(None, "--mode", metavar="MODE", help="replicated or global."),
    env: list[str] = typer.Option(
        [], "--env", "-e", metavar="K=V", help="Environment variable K=V."
    ),
    labels: list[str] = typer.Option([], "--label", "-l", metavar="K=V", help="Service label k=v."),
    constraints: list[str] = typer.Option(
        [], "--constraint", metavar="EXPR", help="Placement constraint."
    ),
    reserve_cpu: str | None = typer.Option(
        None, "--reserve-cpu", metavar="CPUS", help="Reserved CPUs."
    ),
    reserve_memory: str | None = typer.Option(
        None, "--reserve-memory", metavar="BYTES", help="Reserved memory."
    ),
    limit_cpu: str | None = typer.Option(None, "--limit-cpu", metavar="CPUS", help="CPU limit."),
    limit_memory: str | None = typer.Option(
        None, "--limit-memory", metavar="BYTES", help="Memory limit."
    ),
    restart_condition: str | None = typer.Option(
        None, "--restart-condition", metavar="COND", help="any, on-failure or none."
    ),
    restart_delay: str | None = typer.Option(
        None, "--restart-delay", metavar="DURATION", help="e.g. 5s."
    ),
    restart_max_attempts: str | None = typer.Option(
        None, "--restart-max-attempts", metavar="N", help="0 = unlimited."
    ),
    stop_grace_period: str | None = typer.Option(
        None,
        "--stop-grace-period",
        metavar="DURATION",
        help="Time to wait before killing a task (default 10s).",
    ),
    placement_prefs: list[str] = flags.PLACEMENT_PREF,
    max_replicas_per_node: str | None = flags.MAX_REPLICAS,
    secrets: list[str] = flags.SECRET,
    configs: list[str] = flags.CONFIG,
    publish: list[str] = flags.PUBLISH,
    networks: list[str] = flags.NETWORK,
    endpoint_mode: str | None = flags.ENDPOINT_MODE,
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
    mounts: list[str] = typer.Option(
        [], "--mount", metavar="SPEC", help="type=bind|volume|tmpfs,source=..,target=..[,readonly]"
    ),
    health_cmd: str | None = typer.Option(None, "--health-cmd", metavar="CMD",
                                          help="Command run to check health (shell)."),
    health_interval: str | None = typer.Option(None, "--health-interval", metavar="DURATION",
                                               help="Time between checks (default 30s)."),
    health_timeout: str | None = typer.Option(None, "--health-timeout", metavar="DURATION",
                                              help="Maximum time a check may run (default 30s)."),
    health_retries: str | None = typer.Option(None, "--health-retries", metavar="N",
                                              help="Failures in a row that make it unhealthy."),
    health_start_period: str | None = typer.Option(
        None, "--health-start-period", metavar="DURATION",
        help="Start period whose failures do not count."),
    no_healthcheck: bool = typer.Option(False, "--no-healthcheck", help="Disable health checks."),
    stop_signal: str | None = typer.Option(None, "--stop-signal", metavar="SIGNAL",
                                           help="Signal that stops a task (default SIGTERM)."),
    read_only: bool = typer.Option(False, "--read-only", help="Read-only root file system."),
    user: str | None = typer.Option(None, "--user", "-u", metavar="USER[:GROUP]",
                                    help="User to run as."),
    workdir: str | None = typer.Option(None, "--workdir", "-w", metavar="DIR",
                                       help="Working directory."),
    hostname: str | None = typer.Option(None, "--hostname", metavar="NAME",
                                        help="Container hostname."),
    pids_limit: str | None = typer.Option(None, "--pids-limit", metavar="N",
                                          help="Maximum processes (default 1024)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not wait for convergence."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress progress output."),
    timeout: str = typer.Option(
        format_duration(DEFAULT_TIMEOUT_S),
        "--timeout",
        metavar="DURATION",
        help="How long to wait.",
    ),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Create a service: swarm service create [OPTIONS] IMAGE [COMMAND [ARG...]]."""
    if image.startswith("-"):
        raise SpecError("image", f'"{image}" is not an image (options go before IMAGE)')
    flags = {k: v for k, v in ctx.params.items() if k in OPTION_FIELDS}
    opts = ServiceOptions(**flags, command=list(command or []))
    spec = build_service_spec(opts)
    limit = _timeout(timeout)
    with open_client(ctx, data_dir) as client:
        service = client.create_service(spec)
        typer.echo(service.id)
        if not detach:
            _wait(client, service, quiet, limit)


def _replicas_text(service: pb.Service, listing: pb.ListServicesResponse) -> tuple[int, int]:
    running = int(listing.running.get(service.id, 0))
    if service.id in listing.desired:
        desired = int(listing.desired[service.id])
    elif service.spec.mode.WhichOneof("mode") == "global":
        desired = 0
    else:
        desired = int(service.spec.mode.replicated.replicas)
    return running, desired


@app.command("ls")
def ls(
    ctx: typer.Context,
    fmt: str = format_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """List services."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        listing = client.list_services()
    services = sorted(listing.services, key=lambda s: s.spec.annotations.name)
    if quiet and fmt == "table":
        for service in services:
            typer.echo(service.id)
        return
    table, rows = [], []
    for service in services:
        running, desired = _replicas_text(service, listing)
        mode = service.spec.mode.WhichOneof("mode") or "replicated"
        image = service.spec.task_template.container.image
        name = service.spec.annotations.name
        ports = ports_text(service)
        table.append([short_id(service.id), name, mode, f"{running}/{desired}", image, ports])
        rows.append(
            {
                "id": service.id,
                "name": name,
                "mode": mode,
                "replicas": f"{running}/{desired}",
                "image": image,
                "ports": ports,
                "running": running,
                "desired": desired,
            }
        )
    emit(fmt, LS_COLUMNS, table, rows)


@app.command("ps")
def ps(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="Service name or id."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten IDs."),
    fmt: str = format_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show task IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """List the tasks of a service, history under each slot's current task."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        resp = client.list_tasks(service=service)
    rows = ps_rows(list(resp.tasks), dict(resp.node_names), time.time(), no_trunc)
    if quiet and fmt == "table":
        for row in rows:
            typer.echo(row.task_id)
        return
    emit(fmt, PS_COLUMNS, [r.cells(no_trunc) for r in rows], [r.as_json() for r in rows])


@app.command("inspect")
def inspect(
    ctx: typer.Context,
    services: list[str] = typer.Argument(..., help="Service names or ids."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Show services in detail (JSON)."""
    inspect_each(ctx, data_dir, services, "get_service")


def parse_scale_args(args: list[str]) -> list[tuple[str, int]]:
    """["web=3", "db=1"] -> [("web", 3), ("db", 1)]; every argument is checked first."""
    out = []
    for arg in args:
        name, sep, count = arg.partition("=")
        if not sep or not name:
            raise SpecError("scale", f'invalid argument "{arg}" (use SERVICE=REPLICAS)')
        check_name(name, field="scale")
        replicas = validate_replicas(parse_count(count, "replicas"))
        out.append((name, replicas))
    return out


@app.command("scale")
def scale(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(..., help="SERVICE=REPLICAS ..."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not wait for convergence."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress progress output."),
    timeout: str = typer.Option(
        format_duration(DEFAULT_TIMEOUT_S),
        "--timeout",
        metavar="DURATION",
        help="How long to wait.",
    ),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Scale one or more replicated services."""
    pairs = parse_scale_args(targets)
    limit = _timeout(timeout)
    wanted = dict(pairs)

    with open_client(ctx, data_dir) as client:

        def scale_one(name: str) -> pb.Service:
            service = client.scale_service(name, wanted[name])
            typer.echo(f"{name} scaled to {wanted[name]}")
            return service

        scaled, failed = each_object([name for name, _ in pairs], scale_one)
        if not detach:
            for service in scaled:
                _wait(client, service, quiet, limit)
    if failed:
        raise typer.Exit(1)


@app.command("rm")
def rm(
    ctx: typer.Context,
    services: list[str] = typer.Argument(..., help="Service names or ids."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Remove services."""
    remove_each(ctx, data_dir, services, "remove_service")
