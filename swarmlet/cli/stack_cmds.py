"""`swarm stack deploy|ls|ps|services|rm`: applications described in Compose files.

deploy loads and validates the files completely first (every problem is printed with
its file, line and key path, and nothing is deployed when there is one; an external
secret, config or network must exist), then creates the missing networks (those the
services use, `<stack>_default` included), secrets and configs, creates new services,
updates changed ones (through rolling updates, with the version it read) and leaves
identical ones alone; `--prune` removes the stack's services that are no longer in the
files. It then waits until the created and updated services converge, unless --detach.
rm removes the services first, then the secrets, configs and networks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli import progress
from swarmlet.cli.common import data_dir_option, format_option, open_client
from swarmlet.cli.output import check_format, emit, short_id
from swarmlet.cli.progress import (
    DEFAULT_TIMEOUT_S,
    NotConverged,
    TaskSource,
    pending_summary,
    poll_once,
)
from swarmlet.cli.service_update import NewSpecTasks
from swarmlet.cli.task_rows import PS_COLUMNS, ps_rows
from swarmlet.client import ControlClient
from swarmlet.errors import NotFound, SpecError, SwarmletError
from swarmlet.stack import StackError, load_stack
from swarmlet.stack.model import NAMESPACE_LABEL, ObjectDef, Stack
from swarmlet.stack.plan import DeployPlan, plan_deploy, services_of, stack_counts
from swarmlet.units import format_duration, parse_duration

app = typer.Typer(help="Manage stacks (Compose files).", no_args_is_help=True)

SERVICE_COLUMNS = ("ID", "NAME", "MODE", "REPLICAS", "IMAGE")


def _err(text: str) -> None:
    typer.echo(f"Error: {text}", err=True)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="STACK", help="Stack name."),
    files: list[str] = typer.Option([], "--compose-file", "-c", metavar="FILE",
                                    help="Compose file (several are merged in order)."),
    prune: bool = typer.Option(False, "--prune", help="Remove services not in the files."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not wait for convergence."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress progress output."),
    timeout: str = typer.Option(format_duration(DEFAULT_TIMEOUT_S), "--timeout",
                                metavar="DURATION", help="How long to wait."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Deploy a new stack or update an existing one."""
    if not files:
        raise SpecError("compose-file", "at least one -c FILE is required")
    limit = parse_duration(timeout, "timeout")
    try:
        stack = load_stack(files, name, os.environ)
    except StackError as e:
        for problem in e.problems:
            _err(str(problem))
        _err(f"stack {name}: nothing was deployed")
        raise typer.Exit(1) from None
    for warning in stack.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    with open_client(ctx, data_dir) as client:
        plan = _plan(client, stack, prune)
        if plan.errors:
            for problem in plan.errors:
                _err(str(problem))
            _err(f"stack {name}: nothing was deployed")
            raise typer.Exit(1)
        changed = _execute(client, stack, plan, quiet)
        if not detach and changed:
            wait_stack(client, changed, limit, quiet)


def _plan(client: ControlClient, stack: Stack, prune: bool) -> DeployPlan:
    services = list(client.list_services().services)
    secrets = {s.spec.annotations.name for s in client.list_secrets()}
    configs = {c.spec.annotations.name for c in client.list_configs()}
    return plan_deploy(stack, services, secrets, configs, prune, client.list_networks())


def _create_object(client: ControlClient, obj: ObjectDef, kind: str, quiet: bool) -> None:
    data = obj.data or b""
    spec: pb.SecretSpec | pb.ConfigSpec = (
        pb.SecretSpec(data=data) if kind == "secret" else pb.ConfigSpec(data=data))
    spec.annotations.name = obj.name
    spec.annotations.labels.update(obj.labels)
    if kind == "secret":
        client.create_secret(spec)  # type: ignore[arg-type]
    else:
        client.create_config(spec)  # type: ignore[arg-type]
    if not quiet:
        typer.echo(f"Creating {kind} {obj.name}")


def _execute(client: ControlClient, stack: Stack, plan: DeployPlan,
             quiet: bool) -> list[tuple[pb.Service, TaskSource]]:
    """Carry out the plan; the services created or updated, with what to watch them by."""
    say = (lambda _text: None) if quiet else typer.echo
    for net in plan.create_networks:
        assert net.spec is not None  # only networks the stack makes are planned
        say(f"Creating network {net.name}")
        client.create_network(net.spec)
    for obj in plan.create_secrets:
        _create_object(client, obj, "secret", quiet)
    for obj in plan.create_configs:
        _create_object(client, obj, "config", quiet)
    for what in plan.existing_objects:
        say(f"Keeping {what} (it exists; secrets and configs never change: use a new name)")
    changed: list[tuple[pb.Service, TaskSource]] = []
    for spec in plan.create_services:
        say(f"Creating service {spec.annotations.name}")
        changed.append((client.create_service(spec), client))
    for current, spec in plan.update_services:
        say(f"Updating service {spec.annotations.name} (id: {current.id})")
        updated = client.update_service(current.id, spec, current.meta.version)
        changed.append((updated, NewSpecTasks(client, updated, rollback=False)))
    for unchanged in plan.unchanged:
        say(f"Service {unchanged} is up to date")
    for svc in plan.remove_services:
        say(f"Removing service {svc.spec.annotations.name}")
        client.remove_service(svc.id)
    return changed


def wait_stack(client: ControlClient, watched: list[tuple[pb.Service, TaskSource]],
               timeout: float, quiet: bool, poll_s: float | None = None) -> None:
    """Poll until every watched service converges; NotConverged says which did not."""
    start = time.monotonic()
    pending = {svc.id: (svc, source) for svc, source in watched}
    stuck: dict[str, float] = {}
    last: dict[str, str] = {}
    while pending:
        for sid, (svc, source) in list(pending.items()):
            name = svc.spec.annotations.name
            snap = poll_once(source, svc)
            last[name] = f"{snap.running}/{snap.desired} tasks running"
            if snap.converged:
                del pending[sid]
                if not quiet:
                    typer.echo(f"{name}: converged ({last[name]})")
                continue
            since = stuck.setdefault(sid, time.monotonic()) if snap.pending else None
            if since is None:
                stuck.pop(sid, None)
            elif time.monotonic() - since >= progress.STUCK_PENDING_S:
                raise NotConverged(f"{name} is not converging: {pending_summary(snap)}")
        if pending and time.monotonic() - start >= timeout:
            waiting = "; ".join(f"{s.spec.annotations.name} {last.get(s.spec.annotations.name)}"
                                for s, _src in pending.values())
            raise NotConverged(f"the stack did not converge within {format_duration(timeout)}: "
                               f"{waiting}")
        if pending:
            time.sleep(progress.POLL_S if poll_s is None else poll_s)


@app.command("ls")
def ls(ctx: typer.Context, fmt: str = format_option(),
       data_dir: str | None = data_dir_option()) -> None:
    """List stacks."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        counts = stack_counts(list(client.list_services().services))
    emit(fmt, ("NAME", "SERVICES"), [[n, str(c)] for n, c in counts.items()],
         [{"name": n, "services": c} for n, c in counts.items()])


def _members(client: ControlClient, name: str) -> tuple[list[pb.Service], pb.ListServicesResponse]:
    listing = client.list_services()
    members = services_of(name, list(listing.services))
    if not members:
        raise NotFound(f"nothing found in stack: {name}")
    return members, listing


@app.command("services")
def services(ctx: typer.Context, name: str = typer.Argument(..., metavar="STACK"),
             fmt: str = format_option(), data_dir: str | None = data_dir_option()) -> None:
    """List the services of a stack."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        members, listing = _members(client, name)
    table, rows = [], []
    for s in members:
        running, desired = int(listing.running.get(s.id, 0)), int(listing.desired.get(s.id, 0))
        mode = s.spec.mode.WhichOneof("mode") or "replicated"
        cells = [short_id(s.id), s.spec.annotations.name, mode, f"{running}/{desired}",
                 s.spec.task_template.container.image]
        table.append(cells)
        rows.append(dict(zip(("id", "name", "mode", "replicas", "image"), [s.id, *cells[1:]],
                             strict=True)))
    emit(fmt, SERVICE_COLUMNS, table, rows)


@app.command("ps")
def ps(ctx: typer.Context, name: str = typer.Argument(..., metavar="STACK"),
       no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten IDs."),
       fmt: str = format_option(), data_dir: str | None = data_dir_option()) -> None:
    """List the tasks of a stack."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        members, _listing = _members(client, name)
        tasks: list[pb.Task] = []
        names: dict[str, str] = {}
        for s in members:
            resp = client.list_tasks(service=s.id)
            tasks.extend(resp.tasks)
            names.update(resp.node_names)
    rows = ps_rows(tasks, names, time.time(), no_trunc)
    emit(fmt, PS_COLUMNS, [r.cells(no_trunc) for r in rows], [r.as_json() for r in rows])


@app.command("rm")
def rm(ctx: typer.Context, names: list[str] = typer.Argument(..., metavar="STACK..."),
       data_dir: str | None = data_dir_option()) -> None:
    """Remove stacks: their services, then their secrets, configs and networks."""
    failed = False
    with open_client(ctx, data_dir) as client:
        for name in names:
            failed = _remove_stack(client, name) or failed
    if failed:
        raise typer.Exit(1)


def _remove_stack(client: ControlClient, name: str) -> bool:
    """Remove one stack; True if anything failed (reported on stderr)."""
    members = services_of(name, list(client.list_services().services))
    secrets = [s for s in client.list_secrets()
               if s.spec.annotations.labels.get(NAMESPACE_LABEL) == name]
    configs = [c for c in client.list_configs()
               if c.spec.annotations.labels.get(NAMESPACE_LABEL) == name]
    networks = sorted((n for n in client.list_networks()
                       if n.spec.annotations.labels.get(NAMESPACE_LABEL) == name),
                      key=lambda n: n.spec.annotations.name)
    if not (members or secrets or configs or networks):
        _err(f"nothing found in stack: {name}")
        return True
    failed = False
    steps: list[tuple[str, str, Callable[[str], None], str]] = [
        ("service", s.spec.annotations.name, client.remove_service, s.id) for s in members]
    steps += [("secret", s.spec.annotations.name, client.remove_secret, s.id) for s in secrets]
    steps += [("config", c.spec.annotations.name, client.remove_config, c.id) for c in configs]
    steps += [("network", n.spec.annotations.name, client.remove_network, n.id)
              for n in networks]
    for kind, obj_name, remove, oid in steps:
        typer.echo(f"Removing {kind} {obj_name}")
        try:
            remove(oid)
        except SwarmletError as e:
            _err(str(e))
            failed = True
    return failed
