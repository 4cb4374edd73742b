"""Load a stack: read the files, interpolate, merge, validate and convert -- or raise one
`StackError` listing every problem found (nothing is deployed when there is any).

Relative paths (env_file, secret/config files, bind mounts) and the `.env` file are
taken from the directory of the first file, as `docker stack deploy` does. Variables
come from the given environment, then from `.env`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from swarmlet.stack import resources
from swarmlet.stack.errors import Loc, Problem, Problems, StackError, describe
from swarmlet.stack.interpolate import interpolate_tree, parse_env_file
from swarmlet.stack.merge import merge_files
from swarmlet.stack.model import Context, Stack
from swarmlet.stack.reader import Reader
from swarmlet.stack.services import convert_service
from swarmlet.stack.yamltree import YNode, parse_yaml

TOP_KEYS = ("version", "services", "networks", "volumes", "secrets", "configs")
TOP_IGNORED = {"name": "ignored by swarm stack deploy (the stack name is given on the "
                       "command line)"}
STACK_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}$")


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def load_stack(
    files: Sequence[str | Path],
    name: str,
    environ: Mapping[str, str],
    read_file: Callable[[Path], bytes] = _read_bytes,
) -> Stack:
    """The stack described by `files` (merged in order) deployed as `name`."""
    problems = Problems()
    if not STACK_NAME_RE.match(name):
        problems.error(None, "", f"invalid stack name {describe(name)} (use up to 32 letters, "
                                 'digits, "_", "." or "-", starting with a letter or digit)')
    if not files:
        problems.error(None, "", "no stack file given (use -c FILE)")
        raise StackError(problems.errors)
    base_dir = Path(files[0]).parent.absolute()
    env = _environment(base_dir, environ, read_file, problems)
    trees = [t for f in files if (t := _load_file(str(f), env, read_file, problems)) is not None]
    if problems.errors or len(trees) != len(files):
        raise StackError(problems.errors)
    ctx = Context(name, base_dir, env, read_file)
    stack = _convert(Reader(problems), ctx, merge_files(trees), str(files[0]))
    order = {str(f): i for i, f in enumerate(files)}

    def where(p: Problem) -> tuple[int, int]:
        return (order.get(p.loc.file, -1), p.loc.line) if p.loc else (-1, 0)

    problems.errors.sort(key=where)
    problems.check()
    stack.warnings = sorted(problems.warnings, key=where)
    return stack


def _environment(base_dir: Path, environ: Mapping[str, str],
                 read_file: Callable[[Path], bytes], problems: Problems) -> dict[str, str]:
    """The `.env` file beside the first stack file (if any), overridden by `environ`."""
    dotenv = base_dir / ".env"
    values: dict[str, str] = {}
    try:
        text = read_file(dotenv).decode("utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as e:
        problems.error(Loc(".env", 0), "", f"cannot read: {e.strerror or e}")
        text = ""
    for key, value in parse_env_file(text, ".env", problems, environ).items():
        if value is not None:
            values[key] = value
    values.update(environ)
    return values


def _load_file(file: str, env: Mapping[str, str], read_file: Callable[[Path], bytes],
               problems: Problems) -> YNode | None:
    try:
        text = read_file(Path(file)).decode("utf-8")
    except UnicodeDecodeError:
        problems.error(Loc(file, 0), "", "cannot read: not UTF-8 text")
        return None
    except OSError as e:
        problems.error(Loc(file, 0), "", f"cannot read: {e.strerror or e}")
        return None
    tree = parse_yaml(text, file, problems)
    if tree is None:
        return None
    if not isinstance(tree.value, dict):
        problems.error(tree.loc, "", f"expected a mapping at the top level, got "
                                     f"{describe(tree.plain())}")
        return None
    interpolate_tree(tree, env.get, problems)
    reader = Reader(problems)
    if "version" in tree.value:
        _check_version(reader, tree.value["version"])
    reader.keys(tree, "", TOP_KEYS, TOP_IGNORED)
    return tree


def _check_version(r: Reader, node: YNode) -> None:
    version = r.string(node, "version")
    if version is not None and not (version == "3" or version.startswith("3.")):
        r.error(node, "version", f"unsupported version {describe(version)} (use 3.x)")


def _convert(r: Reader, ctx: Context, tree: YNode, first: str) -> Stack:
    top: dict[str, YNode] = {k: v for k, v in tree.value.items() if k in TOP_KEYS}
    if "secrets" in top:
        ctx.secrets = resources.objects(r, ctx, top["secrets"], "secret")
    if "configs" in top:
        ctx.configs = resources.objects(r, ctx, top["configs"], "config")
    ctx.networks = resources.networks(r, ctx, top.get("networks"))
    ctx.volumes = resources.volumes(r, ctx, top.get("volumes"))
    stack = Stack(ctx.stack, secrets=ctx.secrets, configs=ctx.configs,
                  networks=ctx.networks, volumes=ctx.volumes)
    services = r.mapping(top["services"], "services", allow_null=True) if (
        "services" in top) else {}
    if not services and services is not None:
        r.problems.error(top["services"].loc if "services" in top else Loc(first, 1),
                         "services", "at least one service is required")
    for key, node in (services or {}).items():
        spec = convert_service(r, ctx, key, node)
        if spec is not None:
            stack.services[spec.annotations.name] = spec
    return stack
