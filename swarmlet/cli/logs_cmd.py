"""`swarm service logs NAME [--follow] [--tail N] [--timestamps]`.

Lines come from every task of the service on every worker, streamed through the manager
(Control.ServiceLogs), each prefixed as `docker service logs` does:
`<service>.<slot>.<task id>@<node hostname>    | <line>` (a global task shows its node id
in place of the slot). Ctrl-C ends a --follow; the call is cancelled and the manager tells
the workers to stop. Timestamps are RFC 3339 in UTC, before the prefix.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import data_dir_option, open_client
from swarmlet.cli.output import short_id
from swarmlet.client import ControlClient
from swarmlet.errors import SpecError

SEPARATOR = "    | "
ERROR_STREAM = "error"  # a LogLine carrying a node's failure instead of output


def parse_tail(text: str) -> int:
    """--tail: "all" -> -1, else a non-negative number of lines per task."""
    value = text.strip().lower()
    if value == "all":
        return -1
    if not (value.isascii() and value.isdigit()):
        raise SpecError("tail", f'invalid value "{text}" (a number of lines, or "all")')
    return int(value)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prefix(line: pb.LogLine, hostname: str, no_trunc: bool = False) -> str:
    """`web.2.abcdefabcdef@worker-1`, as docker prints it."""
    middle = str(line.slot) if line.slot else short_id(line.node_id, no_trunc)
    return f"{line.service_name}.{middle}.{short_id(line.task_id, no_trunc)}@{hostname}"


def format_line(line: pb.LogLine, hostname: str, timestamps: bool,
                no_trunc: bool = False) -> str:
    text = line.data.decode("utf-8", "replace")
    out = f"{prefix(line, hostname, no_trunc)}{SEPARATOR}{text}"
    return f"{rfc3339(line.timestamp)} {out}" if timestamps else out


class _Hostnames:
    """Node id -> hostname, asked of the manager again when an unknown node appears."""

    def __init__(self, client: ControlClient) -> None:
        self._client = client
        self._names: dict[str, str] = {}
        self._refreshed = False

    def get(self, node_id: str) -> str:
        if node_id not in self._names and not self._refreshed:
            self._names = {n.id: n.description.hostname for n in self._client.list_nodes()}
            self._refreshed = node_id not in self._names  # ask once per unknown node
        return self._names.get(node_id) or short_id(node_id)


def logs(
    ctx: typer.Context,
    service: str = typer.Argument(..., metavar="SERVICE", help="Service name or id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new output."),
    tail: str = typer.Option("all", "--tail", "-n", metavar="N",
                             help='Lines to show from the end of each task\'s log, or "all".'),
    timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Show timestamps."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten IDs."),
    data_dir: str | None = data_dir_option(),
) -> None:
    """Show the output of a service's tasks: swarm service logs [OPTIONS] SERVICE."""
    req = pb.LogsRequest(service=service, follow=follow, tail=parse_tail(tail),
                         timestamps=timestamps)
    failed = False
    with open_client(ctx, data_dir) as client:
        hosts = _Hostnames(client)
        for line in client.service_logs(req):
            if line.stream == ERROR_STREAM:
                failed = True
                where = hosts.get(line.node_id) if line.node_id else "the manager"
                typer.echo(f"error from {where}: {line.data.decode('utf-8', 'replace')}",
                           err=True)
                continue
            typer.echo(format_line(line, hosts.get(line.node_id), timestamps, no_trunc))
    if failed:
        raise typer.Exit(1)


def register(service_app: typer.Typer) -> None:
    """Add `logs` to the `swarm service` group."""
    service_app.command("logs")(logs)
