"""swarm init / join / leave: start and stop the local node daemon (owned by the integrator)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add init/join/leave to the top-level app. Filled in by the daemon work."""
    return None
