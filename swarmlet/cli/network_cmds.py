"""`swarm network create|ls|inspect|rm`: overlay networks.

create takes `--driver overlay` (the only driver), an optional `--subnet CIDR` (else the
manager carves a /24 from 10.0.0.0/8) and `--attachable`; ls shows ID NAME DRIVER SCOPE
SUBNET (scope is always swarm); inspect prints JSON; rm removes each network named, going on
past one that fails and exiting 1 if any did.
"""

from __future__ import annotations

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import (
    data_dir_option,
    format_option,
    inspect_each,
    open_client,
    parse_key_value,
    remove_each,
)
from swarmlet.cli.output import check_format, emit, short_id

app = typer.Typer(help="Manage overlay networks.", no_args_is_help=True)

COLUMNS = ("ID", "NAME", "DRIVER", "SCOPE", "SUBNET")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Network name."),
    driver: str = typer.Option("overlay", "--driver", "-d", metavar="DRIVER",
                               help="Network driver (overlay)."),
    subnet: str = typer.Option("", "--subnet", metavar="CIDR",
                               help="Subnet (default: a /24 from 10.0.0.0/8)."),
    attachable: bool = typer.Option(False, "--attachable", help="Allow standalone "
                                    "containers to attach."),
    labels: list[str] = typer.Option([], "--label", "-l", metavar="K=V", help="Label."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Create an overlay network; prints its id."""
    spec = pb.NetworkSpec(driver=driver, subnet=subnet, attachable=attachable)
    spec.annotations.name = name
    spec.annotations.labels.update(dict(parse_key_value(e, "label") for e in labels))
    with open_client(ctx, data_dir) as client:
        created = client.create_network(spec)
    typer.echo(created.id)


def _row(n: pb.Network) -> dict[str, object]:
    return {"id": n.id, "name": n.spec.annotations.name, "driver": n.spec.driver or "overlay",
            "scope": "swarm", "subnet": n.subnet, "gateway": n.gateway, "vni": n.vni,
            "ingress": n.spec.ingress, "attachable": n.spec.attachable,
            "labels": dict(n.spec.annotations.labels)}


@app.command("ls")
def ls(
    ctx: typer.Context,
    fmt: str = format_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """List networks."""
    fmt = check_format(fmt)
    with open_client(ctx, data_dir) as client:
        networks = client.list_networks()
    if quiet and fmt == "table":
        for n in networks:
            typer.echo(n.id)
        return
    rows = [_row(n) for n in networks]
    table = [[short_id(n.id), str(r["name"]), str(r["driver"]), "swarm", n.subnet]
             for n, r in zip(networks, rows, strict=True)]
    emit(fmt, COLUMNS, table, rows)


@app.command("inspect")
def inspect(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., help="Network names or ids."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Show networks in detail (JSON)."""
    inspect_each(ctx, data_dir, names, "get_network")


@app.command("rm")
def rm(
    ctx: typer.Context,
    names: list[str] = typer.Argument(..., help="Network names or ids."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Remove networks (refused while a service uses one)."""
    remove_each(ctx, data_dir, names, "remove_network")
