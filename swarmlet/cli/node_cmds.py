"""`swarm node ...` (ls, inspect, update, rm) and `swarm join-token`."""

from __future__ import annotations

from typing import Any

import typer
from google.protobuf.json_format import MessageToDict

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import (
    data_dir_option,
    each_object,
    format_option,
    open_client,
    parse_key_value,
)
from swarmlet.cli.output import check_format, emit, print_json, title
from swarmlet.client import ControlClient
from swarmlet.errors import SpecError

app = typer.Typer(help="Manage nodes.", no_args_is_help=True)

LS_COLUMNS = ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS")
AVAILABILITIES = {"active": pb.ACTIVE, "pause": pb.PAUSE, "drain": pb.DRAIN}
ROLES = ("worker", "manager")


def node_status(node: pb.Node) -> str:
    """ "Ready", "Down", "Unknown"."""
    return title(pb.NodeState.Name(node.status.state))


def availability(node: pb.Node) -> str:
    """ "Active", "Pause", "Drain"."""
    return title(pb.NodeAvailability.Name(node.spec.availability))


def manager_status(node: pb.Node) -> str:
    """ "Leader", "Reachable", "Unreachable"; empty for workers."""
    if node.role != pb.MANAGER:
        return ""
    if node.manager_status.leader:
        return "Leader"
    return title(node.manager_status.reachability or "unknown")


def node_rows(nodes: list[pb.Node], self_id: str) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Table rows (the local node's id marked with *) and JSON rows of `node ls`."""
    table, rows = [], []
    for node in nodes:
        cells = [node_status(node), availability(node), manager_status(node)]
        marker = " *" if node.id == self_id else ""
        table.append([node.id + marker, node.description.hostname, *cells])
        rows.append(
            {
                "id": node.id,
                "hostname": node.description.hostname,
                "status": cells[0],
                "availability": cells[1],
                "manager_status": cells[2],
                "self": node.id == self_id,
            }
        )
    return table, rows


def _self_id(client: ControlClient) -> str:
    return client.info().node_id


@app.command("ls")
def ls(
    ctx: typer.Context,
    fmt: str = format_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """List the nodes of the swarm (run on a manager)."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        nodes = client.list_nodes()
        self_id = _self_id(client)
    nodes.sort(key=lambda n: (n.description.hostname, n.id))
    if quiet and fmt == "table":
        for node in nodes:
            typer.echo(node.id)
        return
    table, rows = node_rows(nodes, self_id)
    emit(fmt, LS_COLUMNS, table, rows)


@app.command("inspect")
def inspect(
    ctx: typer.Context,
    nodes: list[str] = typer.Argument(..., help="Node ids or hostnames (\"self\": this node)."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Show nodes in detail (JSON)."""
    with open_client(ctx, data_dir) as client:

        def get(ref: str) -> pb.Node:
            return client.get_node(_self_id(client) if ref == "self" else ref)

        found, failed = each_object(nodes, get)
    print_json([MessageToDict(n) for n in found])
    if failed:
        raise typer.Exit(1)


def build_update_request(
    node: str, availability: str | None, label_add: list[str], label_rm: list[str]
) -> pb.UpdateNodeRequest:
    """The UpdateNodeRequest for `node update` flags; SpecError on bad input."""
    req = pb.UpdateNodeRequest(id=node)
    if availability is not None:
        value = availability.strip().lower()
        if value not in AVAILABILITIES:
            raise SpecError(
                "availability", f'unknown value "{availability}" (use active, pause or drain)'
            )
        req.set_availability = True
        req.availability = AVAILABILITIES[value]
    for entry in label_add:
        key, value = parse_key_value(entry, "label-add")
        req.label_add[key] = value
    for key in label_rm:
        if not key.strip() or "=" in key:
            raise SpecError("label-rm", f'invalid label key "{key}"')
        req.label_rm.append(key)
    if not (req.set_availability or req.label_add or req.label_rm):
        raise SpecError(
            "node update", "nothing to change (use --availability, --label-add or --label-rm)"
        )
    return req


@app.command("update")
def update(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="Node id or hostname."),
    availability: str | None = typer.Option(
        None, "--availability", help="active, pause or drain."
    ),
    label_add: list[str] = typer.Option([], "--label-add", help="Add or set a label k=v."),
    label_rm: list[str] = typer.Option([], "--label-rm", help="Remove a label."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Change a node's availability or labels."""
    req = build_update_request(node, availability, label_add, label_rm)
    with open_client(ctx, data_dir) as client:
        if node == "self":
            req.id = _self_id(client)
        updated = client.update_node(req)
    typer.echo(updated.id or node)


@app.command("rm")
def rm(
    ctx: typer.Context,
    nodes: list[str] = typer.Argument(..., help="Node ids or hostnames."),
    force: bool = typer.Option(False, "--force", "-f", help="Remove even if not down."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Remove nodes from the swarm."""
    with open_client(ctx, data_dir) as client:

        def remove(ref: str) -> None:
            client.remove_node(ref, force=force)
            typer.echo(ref)

        _, failed = each_object(nodes, remove)
    if failed:
        raise typer.Exit(1)


def _change_role(ctx: typer.Context, nodes: list[str], data_dir: str | None, role: int,
                 verb: str) -> None:
    with open_client(ctx, data_dir) as client:

        def change(ref: str) -> None:
            client._call("PromoteNode", pb.PromoteRequest(id=ref, role=role))  # type: ignore[arg-type]
            typer.echo(f"Node {ref} {verb}.")

        _, failed = each_object(nodes, change)
    if failed:
        raise typer.Exit(1)


@app.command("promote")
def promote(
    ctx: typer.Context,
    nodes: list[str] = typer.Argument(..., help="Node ids or hostnames."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Make workers managers (they join the Raft group)."""
    _change_role(ctx, nodes, data_dir, pb.MANAGER, "promoted to a manager in the swarm")


@app.command("demote")
def demote(
    ctx: typer.Context,
    nodes: list[str] = typer.Argument(..., help="Node ids or hostnames."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Make managers workers (they leave the Raft group; refused if quorum would be lost)."""
    _change_role(ctx, nodes, data_dir, pb.WORKER, "demoted in the swarm")


def join_token(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="worker or manager."),
    rotate: bool = typer.Option(False, "--rotate", help="Replace the token with a new one."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print the token."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Print (or rotate) the command that joins a node to this swarm."""
    if role.strip().lower() not in ROLES:
        raise SpecError("role", f'unknown role "{role}" (use worker or manager)')
    role = role.strip().lower()
    with open_client(ctx, data_dir) as client:
        resp = client.join_token(role, rotate=rotate)
    if quiet:
        typer.echo(resp.token)
        return
    if rotate:
        typer.echo(f"Successfully rotated {role} join token.\n")
    typer.echo(f"To add a {role} to this swarm, run the following command:\n")
    typer.echo(f"    swarm join --token {resp.token} {resp.manager_addr}\n")


def register(root: typer.Typer) -> None:
    """Add `node` and `join-token` to the top-level app."""
    root.add_typer(app, name="node")
    root.command("join-token")(join_token)
