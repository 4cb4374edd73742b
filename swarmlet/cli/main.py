"""The `swarm` command: the top-level app, its global options and the error boundary.

Every SwarmletError ends as one line `Error: <message>` on stderr and exit status 1; an
unexpected exception as `Error: internal error: <text>`; Ctrl-C as exit status 130. No
traceback reaches a user (set SWARMLET_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from swarmlet import paths
from swarmlet.cli import (
    cluster_cmds,
    image_cmds,
    lifecycle,
    logs_cmd,
    network_cmds,
    node_cmds,
    secret_cmds,
    service_cmds,
    service_update,
    stack_cmds,
)
from swarmlet.cli.common import DATA_DIR_HELP
from swarmlet.errors import SwarmletError

DEBUG_ENV = "SWARMLET_DEBUG"
# Typer's own signals (exit, abort, usage errors) pass through the error boundary.
_PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `Error: <message>` (one line) to stderr and exit."""
    typer.echo(f"Error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


class SwarmGroup(TyperGroup):
    """The top-level group: converts errors raised by any command into exit statuses."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except SwarmletError as exc:
            fail(str(exc) or type(exc).__name__)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            fail(f"internal error: {exc or type(exc).__name__}")


app = typer.Typer(
    cls=SwarmGroup,
    help="swarmlet: run services on a cluster of machines.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: str | None = typer.Option(
        None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP, show_default=False
    ),
) -> None:
    """swarmlet: run services on a cluster of machines."""
    ctx.obj = {"data_dir": data_dir}
    if data_dir:
        # Subcommands that read $SWARMLET_DATA_DIR (init, join, leave) see the global option.
        os.environ[paths.ENV_DATA_DIR] = str(paths.data_dir(data_dir))


app.add_typer(service_cmds.app, name="service")
service_update.register(service_cmds.app)
app.add_typer(stack_cmds.app, name="stack")
app.add_typer(network_cmds.app, name="network")
secret_cmds.register(app)
logs_cmd.register(service_cmds.app)
app.add_typer(image_cmds.app, name="image")
node_cmds.register(app)
lifecycle.register(app)
app.add_typer(cluster_cmds.app, name="cluster")


def run() -> None:
    """Console-script entry point (`swarm`)."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except SwarmletError as exc:
        typer.echo(f"Error: {' '.join(str(exc).split())}", err=True)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: still no traceback
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        typer.echo(f"Error: internal error: {exc or type(exc).__name__}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
