"""`swarm secret ...` and `swarm config ...`: create, ls, inspect, rm.

A secret's value is read from a file or stdin (`-`) and sent once; nothing ever shows it
again (inspect prints the metadata only). Configs are not secret: inspect shows their
data (base64, as Docker does).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

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
from swarmlet.errors import SpecError
from swarmlet.units import format_age

LIMITS = {"secret": 500 * 1024, "config": 1000 * 1024}
COLUMNS = ("ID", "NAME", "CREATED", "UPDATED")


def read_data(source: str, kind: str, stdin: Any = None) -> bytes:
    """The value from FILE or `-` (stdin); SpecError when unreadable or too large."""
    limit = LIMITS[kind]
    try:
        if source == "-":
            data: bytes = (stdin or sys.stdin.buffer).read(limit + 1)
        else:
            with open(Path(source), "rb") as f:
                data = f.read(limit + 1)
    except OSError as e:
        raise SpecError("file", f"cannot read {source}: {e.strerror or e}") from None
    if len(data) > limit:
        raise SpecError("file", f"{source} is larger than {limit // 1024} KB, the most a "
                                f"{kind} may hold")
    if not data:
        raise SpecError("file", f"{source} is empty")
    return data


def _build(kind: str) -> typer.Typer:
    app = typer.Typer(help=f"Manage {kind}s.", no_args_is_help=True)

    @app.command("create")
    def create(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"{kind.capitalize()} name."),
        source: str = typer.Argument(..., metavar="FILE|-", help="Read the value from FILE "
                                     "or from stdin (-)."),
        labels: list[str] = typer.Option([], "--label", "-l", metavar="K=V", help="Label."),
        data_dir: str | None = data_dir_option(),
    ) -> None:
        """Create from a file or stdin; prints the id."""
        pairs = [parse_key_value(entry, "label") for entry in labels]
        data = read_data(source, kind)
        with open_client(ctx, data_dir) as client:
            if kind == "secret":
                spec: Any = pb.SecretSpec(data=data)
            else:
                spec = pb.ConfigSpec(data=data)
            spec.annotations.name = name
            spec.annotations.labels.update(dict(pairs))
            created = getattr(client, f"create_{kind}")(spec)
        typer.echo(created.id)

    @app.command("ls")
    def ls(
        ctx: typer.Context,
        fmt: str = format_option(),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show IDs."),
        data_dir: str | None = data_dir_option(),
    ) -> None:
        """List them (never with their values)."""
        fmt = check_format(fmt)
        with open_client(ctx, data_dir) as client:
            objects = getattr(client, f"list_{kind}s")()
        if quiet and fmt == "table":
            for obj in objects:
                typer.echo(obj.id)
            return
        now = time.time()
        table = [[short_id(o.id), o.spec.annotations.name, format_age(now - o.meta.created_at),
                  format_age(now - o.meta.updated_at)] for o in objects]
        rows = [{"id": o.id, "name": o.spec.annotations.name, "created": o.meta.created_at,
                 "updated": o.meta.updated_at, "labels": dict(o.spec.annotations.labels)}
                for o in objects]
        emit(fmt, COLUMNS, table, rows)

    @app.command("inspect")
    def inspect(
        ctx: typer.Context,
        names: list[str] = typer.Argument(..., help="Names or ids."),
        data_dir: str | None = data_dir_option(),
    ) -> None:
        """Show details (JSON)."""
        inspect_each(ctx, data_dir, names, f"get_{kind}")

    @app.command("rm")
    def rm(
        ctx: typer.Context,
        names: list[str] = typer.Argument(..., help="Names or ids."),
        data_dir: str | None = data_dir_option(),
    ) -> None:
        """Remove them (refused while a service uses one)."""
        remove_each(ctx, data_dir, names, f"remove_{kind}")

    return app


def register(app: typer.Typer) -> None:
    app.add_typer(_build("secret"), name="secret")
    app.add_typer(_build("config"), name="config")
