"""Where a node keeps its state: the data directory and the files inside it.

The data directory comes from the `--data-dir` option, else the `SWARMLET_DATA_DIR`
environment variable, else `/var/lib/swarmlet` for root and `~/.local/share/swarmlet`
for everyone else.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "SWARMLET_DATA_DIR"
ROOT_DATA_DIR = Path("/var/lib/swarmlet")
USER_DATA_DIR = Path("~/.local/share/swarmlet")


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory to use: explicit value, env variable, or the default for this user."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    from_env = os.environ.get(ENV_DATA_DIR)
    if from_env:
        return Path(from_env).expanduser().absolute()
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    return USER_DATA_DIR.expanduser()


def control_socket(data_dir: Path) -> Path:
    """The local control API's unix socket (root-only, mode 0600)."""
    return data_dir / "swarm.sock"


def pid_file(data_dir: Path) -> Path:
    """Pid of the node daemon running with this data directory."""
    return data_dir / "swarmd.pid"


def log_file(data_dir: Path) -> Path:
    """The node daemon's log (JSON lines)."""
    return data_dir / "swarmd.log"
