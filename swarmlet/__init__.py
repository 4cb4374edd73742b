"""swarmlet: a Swarm-like cluster scheduler. Shared vocabulary, CLI and node daemon."""

__version__ = "0.1.0"
