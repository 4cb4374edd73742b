"""Typed access to a stack file's values: each getter checks one value's type and, when
it is wrong, records an error naming the file, line and key path and returns None.

The stack converters read through a `Reader`, so a whole file is checked in one pass and
every problem is reported, not only the first.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable, Mapping

from swarmlet.errors import SpecError
from swarmlet.stack.errors import Problems, describe
from swarmlet.stack.yamltree import YNode
from swarmlet.units import parse_cpu, parse_duration, parse_memory

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Reader:
    """Getters over YNodes that record problems in `problems`."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def error(self, node: YNode, path: str, message: str) -> None:
        self.problems.error(node.loc, path, message)

    def warn(self, node: YNode, path: str, message: str) -> None:
        self.problems.warn(node.loc, path, message)

    def expected(self, node: YNode, path: str, what: str) -> None:
        self.error(node, path, f"expected {what}, got {describe(node.plain())}")

    # ------------------------------------------------------------------ structure

    def mapping(self, node: YNode, path: str, allow_null: bool = False) -> dict[str, YNode] | None:
        if node.value is None and allow_null:
            return {}
        if not isinstance(node.value, dict):
            self.expected(node, path, "a mapping")
            return None
        return dict(node.value)

    def keys(
        self,
        node: YNode,
        path: str,
        allowed: Iterable[str],
        ignored: Mapping[str, str] | None = None,
    ) -> dict[str, YNode] | None:
        """The mapping's entries whose keys are allowed; unknown keys are errors, keys in
        `ignored` are warnings (the value says why), `x-*` extension keys are skipped."""
        entries = self.mapping(node, path)
        if entries is None:
            return None
        allowed = list(allowed)
        out = {}
        for key, child in entries.items():
            sub = join(path, key)
            if key in allowed:
                out[key] = child
            elif key.startswith("x-"):
                continue
            elif ignored and key in ignored:
                self.warn(child, sub, ignored[key])
            else:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.error(child, sub, f"unknown key{hint}")
        return out

    def items(self, node: YNode, path: str) -> list[YNode] | None:
        if not isinstance(node.value, list):
            self.expected(node, path, "a list")
            return None
        return list(node.value)

    # ------------------------------------------------------------------ scalars

    def string(self, node: YNode, path: str, allow_numbers: bool = True) -> str | None:
        v = node.value
        if isinstance(v, str):
            return v
        if allow_numbers and isinstance(v, int | float) and not isinstance(v, bool):
            return node.raw if node.raw is not None else str(v)
        self.expected(node, path, "a string")
        return None

    def integer(self, node: YNode, path: str, minimum: int | None = 0) -> int | None:
        v = node.value
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int):
            self.expected(node, path, "an integer")
            return None
        if minimum is not None and v < minimum:
            self.error(node, path, f"must be at least {minimum}, got {v}")
            return None
        return v

    def number(self, node: YNode, path: str) -> float | None:
        v = node.value
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.expected(node, path, "a number")
            return None
        return float(v)

    def boolean(self, node: YNode, path: str) -> bool | None:
        v = node.value
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        if not isinstance(v, bool):
            self.expected(node, path, "true or false")
            return None
        return v

    def choice(self, node: YNode, path: str, choices: tuple[str, ...]) -> str | None:
        v = self.string(node, path, allow_numbers=False)
        if v is None:
            return None
        if v not in choices:
            self.error(node, path, f"expected one of {', '.join(choices)}; got {describe(v)}")
            return None
        return v

    def _unit(self, node: YNode, path: str, parse: object) -> object | None:
        text = self.string(node, path)
        if text is None:
            return None
        try:
            return parse(text, field=path)  # type: ignore[operator]
        except SpecError as e:
            self.error(node, path, e.problem)
            return None

    def duration(self, node: YNode, path: str) -> float | None:
        value = self._unit(node, path, parse_duration)
        if isinstance(value, float) and value < 0:
            self.error(node, path, "must not be negative")
            return None
        return value if isinstance(value, float) else None

    def memory(self, node: YNode, path: str) -> int | None:
        value = self._unit(node, path, parse_memory)
        return value if isinstance(value, int) else None

    def cpus(self, node: YNode, path: str) -> int | None:
        value = self._unit(node, path, parse_cpu)
        return value if isinstance(value, int) else None

    # ------------------------------------------------------------------ composites

    def string_list(self, node: YNode, path: str) -> list[str] | None:
        items = self.items(node, path)
        if items is None:
            return None
        out = [self.string(item, f"{path}[{i}]") for i, item in enumerate(items)]
        return None if any(s is None for s in out) else [s for s in out if s is not None]

    def command(self, node: YNode, path: str) -> list[str] | None:
        """A command as a string (split like a shell would) or a list of strings."""
        if isinstance(node.value, str):
            try:
                return shlex.split(node.value)
            except ValueError as e:
                self.error(node, path, f"cannot split {describe(node.value)}: {e}")
                return None
        if node.value is None:
            return []
        if not isinstance(node.value, list):
            self.expected(node, path, "a string or a list of strings")
            return None
        return self.string_list(node, path)

    def key_values(self, node: YNode, path: str) -> dict[str, tuple[str | None, YNode]] | None:
        """`KEY=VALUE` list items or a mapping -> {key: (value or None, node)}."""
        out: dict[str, tuple[str | None, YNode]] = {}
        if isinstance(node.value, dict):
            for key, child in node.value.items():
                sub = join(path, key)
                if child.value is None:
                    out[key] = (None, child)
                elif isinstance(child.value, bool):
                    out[key] = ("true" if child.value else "false", child)
                elif (text := self.string(child, sub)) is not None:
                    out[key] = (text, child)
            return out
        if node.value is not None and not isinstance(node.value, list):
            self.expected(node, path, "a mapping or a list of KEY=VALUE strings")
            return None
        for i, item in enumerate(node.value or []):
            text = self.string(item, f"{path}[{i}]")
            if text is None:
                continue
            key, sep, value = text.partition("=")
            if not key:
                self.error(item, f"{path}[{i}]", f"expected KEY=VALUE, got {describe(text)}")
                continue
            out[key] = (value if sep else None, item)
        return out
