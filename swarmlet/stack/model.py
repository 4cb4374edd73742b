"""What a loaded stack is: service specs and the objects they use, named in the cluster.

Names are scoped by the stack: service `web` of stack `app` is `app_web`; so are
secrets, configs, networks and volumes, unless they are external (they exist already,
under the given name) or their definition sets `name:`. Every object the stack creates
carries the label `com.docker.stack.namespace=<stack>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.stack.errors import Loc, Problem

NAMESPACE_LABEL = "com.docker.stack.namespace"
SECRET_MAX_BYTES = 500 * 1024
CONFIG_MAX_BYTES = 1000 * 1024
DEFAULT_NETWORK = "default"


def scoped(stack: str, name: str) -> str:
    return f"{stack}_{name}"


@dataclass
class ObjectDef:
    """A secret or config the stack uses: `key` in the file, `name` in the cluster."""

    key: str
    name: str
    external: bool
    loc: Loc
    data: bytes | None = None  # None for external objects
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class NetworkDef:
    key: str
    name: str
    external: bool
    loc: Loc
    spec: pb.NetworkSpec | None = None  # what to create (None for external networks)


@dataclass
class VolumeDef:
    key: str
    name: str
    external: bool
    loc: Loc


@dataclass
class Stack:
    """A validated stack: everything needed to deploy it, and the warnings to show."""

    name: str
    services: dict[str, pb.ServiceSpec] = field(default_factory=dict)  # by cluster name
    secrets: dict[str, ObjectDef] = field(default_factory=dict)  # by key in the file
    configs: dict[str, ObjectDef] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class Context:
    """What conversion needs besides the tree: the stack name, the directory relative
    paths start from, the environment, a file reader, and the declared objects."""

    stack: str
    base_dir: Path
    environ: Mapping[str, str]
    read_file: Callable[[Path], bytes]
    secrets: dict[str, ObjectDef] = field(default_factory=dict)
    configs: dict[str, ObjectDef] = field(default_factory=dict)
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)

    def path(self, text: str) -> Path:
        """A path from the file: ~ expanded, relative ones against base_dir."""
        p = Path(text).expanduser() if text.startswith("~") else Path(text)
        return p if p.is_absolute() else self.base_dir / p
