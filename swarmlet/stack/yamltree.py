"""YAML text -> a tree of `YNode`s that remember where every value was written.

Built on PyYAML's compose (node) API so that each mapping value and list item keeps its
FILE:LINE; scalars are resolved with the safe loader's YAML 1.1 rules (ints, floats,
bools, null), keys stay as written. Merge keys (`<<: *anchor`) are flattened. Duplicate
keys, non-string keys, several documents and recursive aliases are errors; so is a tree
blown up by aliases past `MAX_NODES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from swarmlet.stack.errors import Loc, Problems

MAX_NODES = 200_000
_PLAIN = (str, int, float, bool, type(None))


@dataclass
class YNode:
    """A value from a stack file: dict[str, YNode] | list[YNode] | str | int | float | bool
    | None, where it was written, and whether it came out of variable interpolation."""

    value: Any
    loc: Loc
    interpolated: bool = False
    raw: str | None = None  # a scalar's text as written (8080:80 is an int in YAML 1.1)

    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        """The value with every YNode unwrapped (for comparisons and tests)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


class _TooBig(Exception):
    pass


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str, problems: Problems) -> None:
        self.loader = loader
        self.file = file
        self.problems = problems
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, line: int, path: str) -> YNode:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig
        loc = Loc(self.file, line)
        if id(node) in self.active:
            self.problems.error(loc, path, "recursive alias")
            return YNode(None, loc)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return YNode(self._mapping(node, path), loc)
            if isinstance(node, yaml.SequenceNode):
                items = [
                    self.build(item, item.start_mark.line + 1, f"{path}[{i}]")
                    for i, item in enumerate(node.value)
                ]
                return YNode(items, loc)
            return YNode(self._scalar(node), loc, raw=str(node.value))
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, YNode]:
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        self.loader.flatten_mapping(node)
        merged = len(node.value) - explicit  # pairs from `<<:` come first; later ones win
        out: dict[str, YNode] = {}
        inherited: set[str] = set()
        for i, (key_node, value_node) in enumerate(node.value):
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.error(Loc(self.file, line), path, "keys must be strings")
                continue
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key in out and key not in inherited:
                self.problems.error(Loc(self.file, line), sub, "duplicate key")
                continue
            out[key] = self.build(value_node, line, sub)
            if i < merged:
                inherited.add(key)
            else:
                inherited.discard(key)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        value = self.loader.construct_object(node, deep=True)
        return value if isinstance(value, _PLAIN) else str(node.value)


def parse_yaml(text: str, file: str, problems: Problems) -> YNode | None:
    """The tree of one YAML document (an empty file is an empty mapping); None after an
    error that leaves nothing to check (syntax error, several documents)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YNode({}, Loc(file, 1))
        return _Builder(loader, file, problems).build(node, node.start_mark.line + 1, "")
    except _TooBig:
        problems.error(Loc(file, 0), "", f"too many values (more than {MAX_NODES}; aliases?)")
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = e.problem or e.context or "syntax error"
        if "expected a single document" in str(e.context or ""):
            what = "expected a single YAML document, found several"
        problems.error(Loc(file, line), "", f"invalid YAML: {what}")
    except yaml.YAMLError as e:
        problems.error(Loc(file, 0), "", f"invalid YAML: {' '.join(str(e).split())}")
    finally:
        loader.dispose()
    return None
