"""Options and helpers shared by the CLI command modules (data dir, client, key=value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from swarmlet import paths
from swarmlet.client import ControlClient, InvalidArgument
from swarmlet.errors import Conflict, NotFound, SpecError

T = TypeVar("T")

DATA_DIR_HELP = (
    "Node data directory (default: $SWARMLET_DATA_DIR, /var/lib/swarmlet as root, "
    "else ~/.local/share/swarmlet)."
)
FORMAT_HELP = "Output format: table or json."


def data_dir_option() -> Any:
    """The per-command --data-dir option (the global one works too)."""
    return typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP, show_default=False)


def format_option() -> Any:
    return typer.Option("table", "--format", help=FORMAT_HELP)


def open_client(ctx: typer.Context, data_dir: str | None) -> ControlClient:
    """A client of the local node: the command's --data-dir, else the global one, else env."""
    chosen = data_dir or (ctx.obj or {}).get("data_dir")
    return ControlClient(paths.data_dir(chosen))


def parse_key_value(entry: str, field: str, need_value: bool = False) -> tuple[str, str]:
    """ "k=v" -> ("k", "v"); "k" -> ("k", "") unless a value is required."""
    key, sep, value = entry.partition("=")
    if not key.strip() or key != key.strip() or (need_value and not sep):
        raise SpecError(field, f'invalid value "{entry}" (use key=value)')
    return key, value


def parse_count(text: str, field: str) -> int:
    """A non-negative integer typed by the user."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise SpecError(field, f'invalid value "{text}" (must be a non-negative integer)')
    return int(value)


PER_OBJECT_ERRORS = (NotFound, Conflict, InvalidArgument, SpecError)


def each_object(names: list[str], action: Callable[[str], T]) -> tuple[list[T], bool]:
    """action(name) for every name; a failure for one object is reported and the rest go on.

    Returns the results and whether any object failed. Errors that concern the node rather
    than one object (no daemon, unavailable) stop the whole command.
    """
    results: list[T] = []
    failed = False
    for name in names:
        try:
            results.append(action(name))
        except PER_OBJECT_ERRORS as exc:
            typer.echo(f"Error: {exc}", err=True)
            failed = True
    return results, failed


def inspect_each(ctx: typer.Context, data_dir: str | None, names: list[str],
                 getter: str) -> None:
    """`X inspect NAME...`: the JSON of each object (ControlClient.<getter>); exit 1 after
    printing the rest when any was not found."""
    from google.protobuf.json_format import MessageToDict

    from swarmlet.cli.output import print_json

    with open_client(ctx, data_dir) as client:
        found, failed = each_object(names, getattr(client, getter))
    print_json([MessageToDict(o) for o in found])
    if failed:
        raise typer.Exit(1)


def remove_each(ctx: typer.Context, data_dir: str | None, names: list[str],
                remover: str) -> None:
    """`X rm NAME...`: ControlClient.<remover> for each name, printing the names removed;
    exit 1 after trying the rest when any failed."""

    with open_client(ctx, data_dir) as client:
        method = getattr(client, remover)

        def remove(name: str) -> None:
            method(name)
            typer.echo(name)

        _, failed = each_object(names, remove)
    if failed:
        raise typer.Exit(1)
