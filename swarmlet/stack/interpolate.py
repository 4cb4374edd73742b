"""Variable interpolation in stack files, and `.env` / env_file parsing. Pure.

Supported forms, as in Compose: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty),
`${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}` (an error when unset or
empty / unset), `${VAR:+alt}` / `${VAR+alt}`, and `$$` for a literal `$`. Defaults may
themselves contain interpolations. An unset variable without a default becomes "" with
a warning. Interpolation applies to values only, never to keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from swarmlet.stack.errors import Loc, Problems
from swarmlet.stack.yamltree import YNode

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HELP = "use $VAR or ${VAR}, and $$ for a literal $"
_OPS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(Exception):
    """A value cannot be interpolated; str() is the problem (no location)."""


@dataclass
class Result:
    text: str
    unset: list[str] = field(default_factory=list)  # variables used while unset


def interpolate(text: str, lookup: Callable[[str], str | None]) -> Result:
    """`text` with every variable replaced; InterpolationError names the problem."""
    out = Result("")
    out.text = _expand(text, lookup, out)
    return out


def _expand(text: str, lookup: Callable[[str], str | None], res: Result) -> str:
    parts: list[str] = []
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            parts.append(text[i:])
            return "".join(parts)
        parts.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$":
            parts.append("$")
            i = j + 2
        elif nxt == "{":
            end = _closing(text, j + 2)
            if end < 0:
                raise InterpolationError(f'invalid interpolation "{text}": missing "}}" ({_HELP})')
            parts.append(_braced(text[j + 2 : end], text, lookup, res))
            i = end + 1
        else:
            m = _NAME.match(text, j + 1)
            if m is None:
                raise InterpolationError(f'invalid interpolation "{text}" ({_HELP})')
            parts.append(_value(m.group(0), lookup, res))
            i = m.end()


def _closing(text: str, start: int) -> int:
    """Index of the "}" closing a "${" whose body starts at `start`, or -1."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, whole: str, lookup: Callable[[str], str | None], res: Result) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InterpolationError(f'invalid interpolation "{whole}" ({_HELP})')
    name, rest = m.group(0), body[m.end() :]
    if not rest:
        return _value(name, lookup, res)
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f'invalid interpolation "{whole}" ({_HELP})')
    arg = rest[len(op) :]
    value = lookup(name)
    missing = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return _expand(arg, lookup, res) if missing else str(value)
    if op in (":+", "+"):
        return "" if missing else _expand(arg, lookup, res)
    if missing:
        detail = _expand(arg, lookup, res)
        raise InterpolationError(
            f"required variable {name} is missing a value" + (f": {detail}" if detail else "")
        )
    return str(value)


def _value(name: str, lookup: Callable[[str], str | None], res: Result) -> str:
    value = lookup(name)
    if value is None:
        res.unset.append(name)
        return ""
    return value


# --------------------------------------------------------------------------- trees


def interpolate_tree(
    node: YNode, lookup: Callable[[str], str | None], problems: Problems, path: str = ""
) -> None:
    """Interpolate every string value of the tree in place; problems name the key path."""
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            interpolate_tree(child, lookup, problems, f"{path}.{key}" if path else key)
        return
    if isinstance(node.value, list):
        for i, child in enumerate(node.value):
            interpolate_tree(child, lookup, problems, f"{path}[{i}]")
        return
    if not isinstance(node.value, str) or "$" not in node.value:
        return
    try:
        res = interpolate(node.value, lookup)
    except InterpolationError as e:
        problems.error(node.loc, path, str(e))
        return
    for name in dict.fromkeys(res.unset):
        problems.warn(node.loc, path, f"variable {name} is not set; using an empty string")
    node.value = node.raw = res.text
    node.interpolated = True


# --------------------------------------------------------------------------- env files


def parse_env_file(
    text: str, file: str, problems: Problems, environ: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """KEY=VALUE lines (optionally `export KEY=VALUE`), # comments, quoted values.

    A bare `KEY` takes its value from `environ` (None when unset there)."""
    out: dict[str, str | None] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key):
            problems.error(Loc(file, number), "", f'invalid line "{raw.strip()}" (use KEY=VALUE)')
            continue
        if not sep:
            out[key] = (environ or {}).get(key)
            continue
        out[key] = _env_value(value.strip())
    return out


def _env_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    hash_at = value.find(" #")
    return value[:hash_at].rstrip() if hash_at >= 0 else value
