"""Stack files: Compose-format (3.x) service files for `swarm stack deploy`.

`load_stack(files, name, environ)` reads and merges the files, interpolates variables,
validates every key and converts the services to `pb.ServiceSpec`s named `<name>_<key>`;
it raises `StackError` listing every problem (file:line key.path: message). `plan` decides
what a deploy must create, update and remove, given what the cluster has.
"""

from swarmlet.stack.errors import Problem, StackError
from swarmlet.stack.loader import load_stack
from swarmlet.stack.model import NAMESPACE_LABEL, Stack

__all__ = ["NAMESPACE_LABEL", "Problem", "Stack", "StackError", "load_stack"]
