"""How the CLI prints: tables (rich on a terminal, plain columns in a pipe), JSON, names.

Every listing can be printed as a table or, with `--format json`, as a JSON list of
objects whose keys are the column names in lower_snake case. Table output is one line per
row and never truncates a cell on its own: only the commands shorten IDs (`--no-trunc`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import SpecError

FORMATS = ("table", "json")
ID_WIDTH = 12
COLUMN_GAP = 3


def check_format(fmt: str) -> str:
    """The output format asked for with --format: "table" or "json"."""
    value = fmt.strip().lower()
    if value not in FORMATS:
        raise SpecError("format", f'unknown format "{fmt}" (use table or json)')
    return value


def column_key(column: str) -> str:
    """The JSON key of a table column: "DESIRED STATE" -> "desired_state"."""
    return column.strip().lower().replace(" ", "_").replace("-", "_")


def short_id(object_id: str, no_trunc: bool = False) -> str:
    """An object id as listings show it: the first 12 characters unless --no-trunc."""
    return object_id if no_trunc else object_id[:ID_WIDTH]


def one_line(text: str) -> str:
    """Text for a table cell: newlines and tabs become spaces."""
    return " ".join(text.split())


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, separated by three spaces, no trailing blanks."""
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(columns), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((" " * COLUMN_GAP).join(cells).rstrip())
    return "\n".join(lines)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: rich (bold header, no box) on a terminal, plain columns otherwise."""
    text = plain_table(columns, rows)
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        typer.echo(text)
        return
    width = max(len(line) for line in text.splitlines())
    console = Console(file=sys.stdout, highlight=False, width=max(console.width, width + 1))
    table = Table(box=None, header_style="bold", show_edge=False, pad_edge=False)
    table.padding = (0, COLUMN_GAP, 0, 0)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    console.print(table, markup=False)


def print_json(data: Any) -> None:
    """Data as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def emit(
    fmt: str,
    columns: Sequence[str],
    table_rows: Sequence[Sequence[str]],
    json_rows: Sequence[dict[str, Any]],
) -> None:
    """A listing in the chosen format: table rows for people, JSON rows for scripts."""
    if check_format(fmt) == "json":
        print_json(list(json_rows))
    else:
        print_table(columns, table_rows)


def title(enum_name: str) -> str:
    """An enum value name as tables show it: "ON_FAILURE" -> "On-failure"."""
    return enum_name.replace("_", "-").capitalize()


def task_state_title(state: int) -> str:
    """A task state as `ps` shows it: "Running", "Pending"."""
    return title(pb.TaskState.Name(state))  # type: ignore[arg-type]
