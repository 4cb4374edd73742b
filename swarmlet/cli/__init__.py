"""The `swarm` command line (typer): one module per command group."""
